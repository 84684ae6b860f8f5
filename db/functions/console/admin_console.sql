-- The console's admin reads (DESIGN §9). Admin checked inside each, against
-- creditgate_private.admins (creditgate_private.require_admin), never JWT metadata.
--
-- creditgate.admin_daily_stats(since = now() - 30 days) -> jsonb              authenticated
--   {since, days: [date], credits: [{day, sold, granted, spent, refunded, expired, clawed_back}],
--    outstanding: [{day, balance}], generations_by_status: [{day, status, count}],
--    generations_by_model: [{day, model_id, count}],
--    providers: [{day, calls, failures, failure_rate, p50_latency_ms, p95_latency_ms}]}
--   One entry per UTC day from `since` to today (empty days included for credits and
--   outstanding). `outstanding` is every user's balance summed at the end of that day: the
--   credits the operator still owes as service, i.e. the liability.
-- creditgate.admin_find_user(query text) -> jsonb                              authenticated
--   {user: {id, email, created_at, is_admin}, balance: {balance, plan, available},
--    lots: [...], ledger: [... newest 50], generations: [... newest 20]} for a user id or an
--   email (case-insensitive).
-- creditgate.admin_list_models() -> jsonb [{id, kind, name, enabled}]          authenticated
--   Every model, disabled ones included (creditgate.models shows clients enabled ones only).
-- creditgate.admin_get_settings() -> jsonb [{key, value, default, description, updated_at}]
-- creditgate.admin_run_audit() -> jsonb                                        authenticated
--   creditgate.audit() over everything, for an admin (audit itself is service_role only).
-- Errors: PT401 not_authenticated, PT403 forbidden; admin_find_user also PT400
--   invalid_request (empty query) and PT404 not_found (no such user);
--   admin_daily_stats PT400 invalid_request (since missing or more than 366 days back).

create or replace function creditgate.admin_daily_stats(
  since timestamptz default now() - interval '30 days'
)
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_first date;
  v_last date := (now() at time zone 'UTC')::date;
  v_start timestamptz;
  v_days jsonb;
  v_credits jsonb;
  v_outstanding jsonb;
  v_by_status jsonb;
  v_by_model jsonb;
  v_providers jsonb;
begin
  perform creditgate_private.require_admin();
  if admin_daily_stats.since is null then
    perform creditgate_private.invalid('since', 'required');
  end if;
  if admin_daily_stats.since < now() - interval '366 days' then
    perform creditgate_private.invalid('since', 'at most 366 days back');
  end if;
  -- Whole UTC days: the first day starts at its midnight, whatever time `since` names.
  v_first := least((admin_daily_stats.since at time zone 'UTC')::date, v_last);
  v_start := v_first::timestamp at time zone 'UTC';

  select jsonb_agg(to_jsonb(d.day::date) order by d.day) into v_days
  from generate_series(v_first, v_last, interval '1 day') as d (day);

  with flows as (
    select
      (l.created_at at time zone 'UTC')::date as day,
      coalesce(sum(l.amount) filter (where l.entry_type = 'purchase'), 0) as sold,
      coalesce(sum(l.amount) filter (
        where l.entry_type in ('signup_bonus', 'grant', 'admin_recharge')
      ), 0) as granted,
      coalesce(sum(l.amount) filter (where l.entry_type = 'spend'), 0) as spent,
      coalesce(sum(l.amount) filter (where l.entry_type = 'refund'), 0) as refunded,
      coalesce(sum(l.amount) filter (where l.entry_type = 'expire'), 0) as expired,
      coalesce(sum(l.amount) filter (where l.entry_type = 'clawback'), 0) as clawed_back,
      sum(l.delta) as net
    from creditgate.ledger as l
    where l.created_at >= v_start
    group by 1
  ),
  opening as (
    select coalesce(sum(l.delta), 0) as total
    from creditgate.ledger as l
    where l.created_at < v_start
  ),
  series as (
    select
      d.day::date as day,
      coalesce(f.sold, 0) as sold,
      coalesce(f.granted, 0) as granted,
      coalesce(f.spent, 0) as spent,
      coalesce(f.refunded, 0) as refunded,
      coalesce(f.expired, 0) as expired,
      coalesce(f.clawed_back, 0) as clawed_back,
      (select o.total from opening as o)
      + sum(coalesce(f.net, 0)) over (order by d.day) as outstanding
    from generate_series(v_first, v_last, interval '1 day') as d (day)
    left join flows as f on f.day = d.day::date
  )
  select
    jsonb_agg(jsonb_build_object(
      'day', s.day, 'sold', s.sold, 'granted', s.granted, 'spent', s.spent,
      'refunded', s.refunded, 'expired', s.expired, 'clawed_back', s.clawed_back
    ) order by s.day),
    jsonb_agg(jsonb_build_object('day', s.day, 'balance', s.outstanding) order by s.day)
  into v_credits, v_outstanding
  from series as s;

  select
    coalesce(jsonb_agg(jsonb_build_object('day', g.day, 'status', g.status, 'count', g.n)
      order by g.day, g.status), '[]'::jsonb)
  into v_by_status
  from (
    select (x.created_at at time zone 'UTC')::date as day, x.status, count(*) as n
    from creditgate.generations as x
    where x.created_at >= v_start
    group by 1, 2
  ) as g;

  select
    coalesce(jsonb_agg(jsonb_build_object('day', g.day, 'model_id', g.model_id, 'count', g.n)
      order by g.day, g.model_id), '[]'::jsonb)
  into v_by_model
  from (
    select (x.created_at at time zone 'UTC')::date as day, x.model_id, count(*) as n
    from creditgate.generations as x
    where x.created_at >= v_start
    group by 1, 2
  ) as g;

  select coalesce(jsonb_agg(jsonb_build_object(
    'day', p.day,
    'calls', p.calls,
    'failures', p.failures,
    'failure_rate', round(p.failures::numeric / p.calls, 4),
    'p50_latency_ms', p.p50,
    'p95_latency_ms', p.p95
  ) order by p.day), '[]'::jsonb) into v_providers
  from (
    select
      (c.created_at at time zone 'UTC')::date as day,
      count(*) as calls,
      count(*) filter (where c.outcome <> 'succeeded') as failures,
      round(percentile_cont(0.5) within group (order by c.latency_ms))::bigint as p50,
      round(percentile_cont(0.95) within group (order by c.latency_ms))::bigint as p95
    from creditgate_private.provider_calls as c
    where c.created_at >= v_start
    group by 1
  ) as p;

  return jsonb_build_object(
    'since', v_start,
    'days', v_days,
    'credits', v_credits,
    'outstanding', v_outstanding,
    'generations_by_status', v_by_status,
    'generations_by_model', v_by_model,
    'providers', v_providers
  );
end
$$;
comment on function creditgate.admin_daily_stats(timestamptz) is
'Console overview: credits sold/granted/spent/refunded/expired, outstanding balances, generations and provider health per UTC day.';

create or replace function creditgate.admin_find_user(query text)
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_query text := btrim(coalesce(admin_find_user.query, ''));
  v_user auth.users;
begin
  perform creditgate_private.require_admin();
  if v_query = '' or length(v_query) > 320 then
    perform creditgate_private.invalid('query', 'an email or a user id');
  end if;
  if v_query ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then
    select u.* into v_user from auth.users as u where u.id = v_query::uuid;
  else
    select u.* into v_user from auth.users as u
    where lower(u.email) = lower(v_query)
    order by u.created_at
    limit 1;
  end if;
  if v_user.id is null then
    perform creditgate_private.raise_error('not_found', jsonb_build_object('object', 'user'));
  end if;

  return jsonb_build_object(
    'user', jsonb_build_object(
      'id', v_user.id,
      'email', v_user.email,
      'created_at', v_user.created_at,
      'is_admin', exists (select 1 from creditgate_private.admins as a where a.user_id = v_user.id)
    ),
    'balance', coalesce((
      select jsonb_build_object(
        'balance', b.balance,
        'plan', b.plan,
        'available', creditgate_private.available_credits(b.user_id, now())
      )
      from creditgate.balances as b
      where b.user_id = v_user.id
    ), jsonb_build_object('balance', 0, 'plan', 'free', 'available', 0)),
    'lots', coalesce((
      select jsonb_agg(jsonb_build_object(
        'id', l.id, 'category', l.category, 'priority', l.priority, 'amount', l.amount,
        'remaining', l.remaining, 'expires_at', l.expires_at, 'created_at', l.created_at
      ) order by l.created_at desc, l.id desc)
      from creditgate.credit_lots as l
      where l.user_id = v_user.id
    ), '[]'::jsonb),
    'ledger', coalesce((
      select jsonb_agg(jsonb_build_object(
        'id', e.id, 'entry_type', e.entry_type, 'amount', e.amount, 'delta', e.delta,
        'balance_after', e.balance_after, 'reason', e.reason, 'generation_id', e.generation_id,
        'created_at', e.created_at
      ) order by e.id desc)
      from (
        select x.* from creditgate.ledger as x
        where x.user_id = v_user.id
        order by x.id desc
        limit 50
      ) as e
    ), '[]'::jsonb),
    'generations', coalesce((
      select jsonb_agg(jsonb_build_object(
        'id', g.id, 'model_id', g.model_id, 'kind', g.kind, 'status', g.status,
        'cost', g.cost, 'created_at', g.created_at, 'finished_at', g.finished_at
      ) order by g.created_at desc, g.id desc)
      from (
        select x.* from creditgate.generations as x
        where x.user_id = v_user.id
        order by x.created_at desc, x.id desc
        limit 20
      ) as g
    ), '[]'::jsonb)
  );
end
$$;
comment on function creditgate.admin_find_user(text) is
'Console user look-up by id or email: balance, lots, recent ledger entries and generations.';

create or replace function creditgate.admin_list_models()
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  perform creditgate_private.require_admin();
  return coalesce((
    select jsonb_agg(jsonb_build_object(
      'id', m.id, 'kind', m.kind, 'name', m.name, 'enabled', m.enabled
    ) order by m.sort_order, m.id)
    from creditgate.models as m
  ), '[]'::jsonb);
end
$$;
comment on function creditgate.admin_list_models() is
'Every model with its on/off switch, disabled ones included, for the console.';

create or replace function creditgate.admin_get_settings()
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  perform creditgate_private.require_admin();
  return coalesce((
    select jsonb_agg(jsonb_build_object(
      'key', d.key,
      'value', coalesce(s.value, d.value),
      'default', d.value,
      'description', d.description,
      'updated_at', s.updated_at
    ) order by d.key)
    from creditgate_private.setting_defaults() as d
    left join creditgate_private.settings as s on s.key = d.key
  ), '[]'::jsonb);
end
$$;
comment on function creditgate.admin_get_settings() is
'Every known setting with its current value, default and meaning, for the console.';

create or replace function creditgate.admin_run_audit()
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  perform creditgate_private.require_admin();
  return creditgate.audit(null);
end
$$;
comment on function creditgate.admin_run_audit() is
'Admins run every money invariant check now (creditgate.audit over all users).';

revoke all on function creditgate.admin_daily_stats(timestamptz) from public, anon, authenticated;
revoke all on function creditgate.admin_find_user(text) from public, anon, authenticated;
revoke all on function creditgate.admin_list_models() from public, anon, authenticated;
revoke all on function creditgate.admin_get_settings() from public, anon, authenticated;
revoke all on function creditgate.admin_run_audit() from public, anon, authenticated;
grant execute on function creditgate.admin_daily_stats(timestamptz) to authenticated;
grant execute on function creditgate.admin_find_user(text) to authenticated;
grant execute on function creditgate.admin_list_models() to authenticated;
grant execute on function creditgate.admin_get_settings() to authenticated;
grant execute on function creditgate.admin_run_audit() to authenticated;
