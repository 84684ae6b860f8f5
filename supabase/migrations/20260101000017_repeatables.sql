-- creditgate generated migration; do not edit. source: repeatables sha256: 304f787b48f280b79e8a5101f8b13c13e91548cc67266370352b54554d43e2e6

-- ===== db/functions/console/admin_console.sql =====
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

-- ===== db/functions/generation/admin.sql =====
-- creditgate.admin_set_setting(key text, value jsonb) -> jsonb {key, value}       authenticated
--   Sets an app-wide setting (maintenance_mode, signup_bonus, plan_daily_caps,
--   media_ttl_hours, max_prompt_length, max_attempts, lease_seconds...). Only keys listed in
--   creditgate_private.setting_defaults(), with values setting_problem() accepts.
-- creditgate.admin_set_model_enabled(model_id text, enabled boolean) -> jsonb
--   {model_id, enabled}: switches a model on or off for new requests (queued ones still run).
--   Errors: PT401 not_authenticated, PT403 forbidden (not in creditgate_private.admins),
--   PT400 invalid_request (field key / value / enabled), PT404 not_found (model).

create or replace function creditgate.admin_set_setting(key text, value jsonb)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_admin_id uuid := creditgate_private.require_admin();
  v_problem text;
begin
  if admin_set_setting.key is null or not exists (
    select 1 from creditgate_private.setting_defaults() as d where d.key = admin_set_setting.key
  ) then
    perform creditgate_private.invalid('key', 'unknown setting');
  end if;
  v_problem := creditgate_private.setting_problem(admin_set_setting.key, admin_set_setting.value);
  if v_problem is not null then
    perform creditgate_private.invalid('value', v_problem);
  end if;
  insert into creditgate_private.settings as s (key, value, updated_at, updated_by)
  values (admin_set_setting.key, admin_set_setting.value, now(), v_admin_id)
  on conflict on constraint settings_pkey do update
    set value = excluded.value, updated_at = excluded.updated_at, updated_by = excluded.updated_by;
  return jsonb_build_object('key', admin_set_setting.key, 'value', admin_set_setting.value);
end
$$;
comment on function creditgate.admin_set_setting(text, jsonb) is
'Admins set a known app-wide setting to a value of the right type and range.';

create or replace function creditgate.admin_set_model_enabled(model_id text, enabled boolean)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_found text;
begin
  perform creditgate_private.require_admin();
  if admin_set_model_enabled.enabled is null then
    perform creditgate_private.invalid('enabled', 'must be true or false');
  end if;
  update creditgate.models as m
  set enabled = admin_set_model_enabled.enabled
  where m.id = admin_set_model_enabled.model_id
  returning m.id into v_found;
  if v_found is null then
    perform creditgate_private.raise_error('not_found', jsonb_build_object('object', 'model'));
  end if;
  return jsonb_build_object('model_id', v_found, 'enabled', admin_set_model_enabled.enabled);
end
$$;
comment on function creditgate.admin_set_model_enabled(text, boolean) is
'Admins switch a model on or off for new requests; generations already queued still run.';

revoke all on function creditgate.admin_set_setting(text, jsonb) from public, anon, authenticated;
revoke all on function creditgate.admin_set_model_enabled(text, boolean) from public, anon, authenticated;
grant execute on function creditgate.admin_set_setting(text, jsonb) to authenticated;
grant execute on function creditgate.admin_set_model_enabled(text, boolean) to authenticated;

-- ===== db/functions/generation/admin_stats.sql =====
-- creditgate.admin_stats(since = now() - 7 days) -> jsonb                authenticated, admin checked inside
--   {since, users: {total, new, active},
--    generations: {total, by_status: {status: n}, by_kind: {kind: n},
--                  by_model: {model_id: {count, succeeded, failed, credits}},
--                  by_day: [{day, count, succeeded, failed}]},
--    credits: {granted, spent, refunded, expired, clawed_back, forfeited, net_spent},
--    providers: [{provider, calls, failures, failure_rate, p50_latency_ms}]}
--   Everything counts activity at or after `since`; days are UTC. `credits` per model is
--   what its generations finally cost (cost - refunds). Provider failures are every
--   attempt that did not succeed, lease expiries included.
-- Errors: PT401 not_authenticated, PT403 forbidden, PT400 invalid_request (since required).

create or replace function creditgate.admin_stats(since timestamptz default now() - interval '7 days')
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_users jsonb;
  v_generations jsonb;
  v_credits jsonb;
  v_providers jsonb;
begin
  perform creditgate_private.require_admin();
  if admin_stats.since is null then
    perform creditgate_private.invalid('since', 'required');
  end if;

  select jsonb_build_object(
    'total', count(*),
    'new', count(*) filter (where b.created_at >= admin_stats.since),
    'active', (
      select count(distinct g.user_id) from creditgate.generations as g
      where g.created_at >= admin_stats.since
    )
  ) into v_users
  from creditgate.balances as b;

  with recent as (
    select
      g.id, g.model_id, g.kind, g.status, g.created_at,
      g.cost - coalesce((
        select sum(r.amount) from creditgate.ledger as r where r.charge_key = 'charge:' || g.id::text
      ), 0) as credits
    from creditgate.generations as g
    where g.created_at >= admin_stats.since
  )
  select jsonb_build_object(
    'total', (select count(*) from recent),
    'by_status', coalesce((
      select jsonb_object_agg(s.status, s.n order by s.status)
      from (select r.status, count(*) as n from recent as r group by r.status) as s
    ), '{}'::jsonb),
    'by_kind', coalesce((
      select jsonb_object_agg(k.kind, k.n order by k.kind)
      from (select r.kind, count(*) as n from recent as r group by r.kind) as k
    ), '{}'::jsonb),
    'by_model', coalesce((
      select jsonb_object_agg(m.model_id, jsonb_build_object(
        'count', m.n, 'succeeded', m.succeeded, 'failed', m.failed, 'credits', m.credits
      ) order by m.model_id)
      from (
        select r.model_id, count(*) as n,
          count(*) filter (where r.status = 'succeeded') as succeeded,
          count(*) filter (where r.status = 'failed') as failed,
          sum(r.credits) as credits
        from recent as r
        group by r.model_id
      ) as m
    ), '{}'::jsonb),
    'by_day', coalesce((
      select jsonb_agg(jsonb_build_object(
        'day', d.day, 'count', d.n, 'succeeded', d.succeeded, 'failed', d.failed
      ) order by d.day)
      from (
        select (r.created_at at time zone 'UTC')::date as day, count(*) as n,
          count(*) filter (where r.status = 'succeeded') as succeeded,
          count(*) filter (where r.status = 'failed') as failed
        from recent as r
        group by 1
      ) as d
    ), '[]'::jsonb)
  ) into v_generations;

  select jsonb_build_object(
    'granted', coalesce(sum(l.amount) filter (
      where l.entry_type in ('signup_bonus', 'purchase', 'grant', 'admin_recharge')
    ), 0),
    'spent', coalesce(sum(l.amount) filter (where l.entry_type = 'spend'), 0),
    'refunded', coalesce(sum(l.amount) filter (where l.entry_type = 'refund'), 0),
    'expired', coalesce(sum(l.amount) filter (where l.entry_type = 'expire'), 0),
    'clawed_back', coalesce(sum(l.amount) filter (where l.entry_type = 'clawback'), 0),
    'forfeited', coalesce(sum(l.amount) filter (where l.entry_type = 'forfeit'), 0),
    'net_spent', coalesce(sum(l.amount) filter (where l.entry_type = 'spend'), 0)
      - coalesce(sum(l.amount) filter (where l.entry_type = 'refund'), 0)
  ) into v_credits
  from creditgate.ledger as l
  where l.created_at >= admin_stats.since;

  select coalesce(jsonb_agg(jsonb_build_object(
    'provider', p.provider,
    'calls', p.calls,
    'failures', p.failures,
    'failure_rate', round(p.failures::numeric / p.calls, 4),
    'p50_latency_ms', p.p50
  ) order by p.provider), '[]'::jsonb) into v_providers
  from (
    select
      coalesce(c.provider, 'unknown') as provider,
      count(*) as calls,
      count(*) filter (where c.outcome <> 'succeeded') as failures,
      round(percentile_cont(0.5) within group (order by c.latency_ms))::bigint as p50
    from creditgate_private.provider_calls as c
    where c.created_at >= admin_stats.since
    group by 1
  ) as p;

  return jsonb_build_object(
    'since', admin_stats.since,
    'users', v_users,
    'generations', v_generations,
    'credits', v_credits,
    'providers', v_providers
  );
end
$$;
comment on function creditgate.admin_stats(timestamptz) is
'Operator dashboard: users, generations by status/kind/model/day, credit flows, provider health.';
revoke all on function creditgate.admin_stats(timestamptz) from public, anon, authenticated;
grant execute on function creditgate.admin_stats(timestamptz) to authenticated;

-- ===== db/functions/generation/cancel.sql =====
-- creditgate.cancel_generation(generation_id uuid) -> jsonb                     authenticated
--   {generation_id, status: 'canceled', refunded, balance}
--   The owner cancels a generation that no worker has claimed yet; its charge is refunded
--   in full (key refund:<generation_id>), in the same transaction.
--   Errors: PT401 not_authenticated, PT404 not_found (unknown or not the caller's),
--   PT409 invalid_state (already running, finished or canceled; DETAIL {status}).
--
-- Locks: the caller's balance row first (as every money operation), then the generation
-- row. A worker's claim skips the locked row (SKIP LOCKED) and then sees it canceled.

create or replace function creditgate.cancel_generation(generation_id uuid)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user_id uuid := creditgate_private.require_user();
  v_generation creditgate.generations;
  v_refund jsonb;
begin
  -- Cheap unlocked look first, so a stranger's or unknown id never takes the balance lock.
  if not exists (
    select 1 from creditgate.generations as g
    where g.id = cancel_generation.generation_id and g.user_id = v_user_id
  ) then
    perform creditgate_private.raise_error('not_found', jsonb_build_object('object', 'generation'));
  end if;

  perform creditgate_private.lock_balance(v_user_id);
  select g.* into v_generation
  from creditgate.generations as g
  where g.id = cancel_generation.generation_id and g.user_id = v_user_id
  for update;
  if v_generation.status <> 'queued' then
    perform creditgate_private.raise_error(
      'invalid_state', jsonb_build_object('status', v_generation.status, 'allowed', 'queued')
    );
  end if;

  update creditgate.generations as g
  set status = 'canceled', finished_at = now(), updated_at = now(),
      error = jsonb_build_object('code', 'canceled', 'message', 'Canceled by the user.')
  where g.id = v_generation.id;
  perform pg_notify('creditgate_generation_settled', v_generation.id::text);
  v_refund := creditgate_private.refund_credits(
    v_user_id, 'charge:' || v_generation.id::text, v_generation.cost, 'refund:' || v_generation.id,
    'canceled', jsonb_build_object('generation_id', v_generation.id)
  );
  return jsonb_build_object(
    'generation_id', v_generation.id,
    'status', 'canceled',
    'refunded', (v_refund ->> 'refunded')::bigint,
    'balance', (v_refund ->> 'balance')::bigint
  );
end
$$;
comment on function creditgate.cancel_generation(uuid) is
'The owner cancels a queued generation; its charge is refunded in full in the same transaction.';

revoke all on function creditgate.cancel_generation(uuid) from public, anon, authenticated;
grant execute on function creditgate.cancel_generation(uuid) to authenticated;

-- ===== db/functions/generation/media_flags.sql =====
-- creditgate.save_media(media_id uuid) -> jsonb                                  authenticated
-- creditgate.delete_media(media_id uuid) -> jsonb                                authenticated
--   Both return {id, generation_id, saved, expires_at, deleted_at}.
--   save: keep the media (saved, no expiry). Only live media: deleted, purged or already
--   expired media (the purge sweep may be removing the file) are gone.
--   delete: deleted_at = now, not saved, expires_at = now so the purge sweep removes the
--   file soon. Deleting again returns the row unchanged.
--   Errors: PT401 not_authenticated, PT404 not_found (unknown, not the caller's, or gone).

create or replace function creditgate_private.media_json(p_media creditgate.media)
returns jsonb
language sql
immutable
set search_path = ''
as $$
  select jsonb_build_object(
    'id', p_media.id,
    'generation_id', p_media.generation_id,
    'saved', p_media.saved,
    'expires_at', p_media.expires_at,
    'deleted_at', p_media.deleted_at
  );
$$;
comment on function creditgate_private.media_json(creditgate.media) is
'What save_media and delete_media return about a media row (no storage key).';

create or replace function creditgate.save_media(media_id uuid)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user_id uuid := creditgate_private.require_user();
  v_media creditgate.media;
begin
  update creditgate.media as m
  set saved = true, expires_at = null
  where m.id = save_media.media_id
    and m.user_id = v_user_id
    and m.deleted_at is null
    and m.purged_at is null
    and (m.expires_at is null or m.expires_at > now())
  returning m.* into v_media;
  if v_media.id is null then
    perform creditgate_private.raise_error('not_found', jsonb_build_object('object', 'media'));
  end if;
  return creditgate_private.media_json(v_media);
end
$$;
comment on function creditgate.save_media(uuid) is
'The owner keeps a media item: saved, never expires. Gone (deleted, purged, expired) media are not found.';

create or replace function creditgate.delete_media(media_id uuid)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user_id uuid := creditgate_private.require_user();
  v_media creditgate.media;
begin
  select m.* into v_media
  from creditgate.media as m
  where m.id = delete_media.media_id and m.user_id = v_user_id
  for update;
  if v_media.id is null then
    perform creditgate_private.raise_error('not_found', jsonb_build_object('object', 'media'));
  end if;
  if v_media.deleted_at is null then
    update creditgate.media as m
    set deleted_at = now(),
        saved = false,
        -- Expire now so the purge sweep removes the file; a purged file keeps its record.
        expires_at = case when m.purged_at is null then now() else m.expires_at end
    where m.id = v_media.id
    returning m.* into v_media;
  end if;
  return creditgate_private.media_json(v_media);
end
$$;
comment on function creditgate.delete_media(uuid) is
'The owner deletes a media item: hidden as deleted and expired now, so the purge sweep removes the file.';

revoke all on function creditgate_private.media_json(creditgate.media) from public, anon, authenticated;
revoke all on function creditgate.save_media(uuid) from public, anon, authenticated;
revoke all on function creditgate.delete_media(uuid) from public, anon, authenticated;
grant execute on function creditgate.save_media(uuid) to authenticated;
grant execute on function creditgate.delete_media(uuid) to authenticated;

-- ===== db/functions/generation/media_retention.sql =====
-- Media retention: the cleanup command lists files to delete from storage, deletes them,
-- then marks them purged. service_role only.
--
-- creditgate.service_expired_media(max_items, now = now()) -> jsonb [{media_id, storage_key}]
--   Unpurged media whose TTL ran out (expires_at <= now; saved media carry no expiry and
--   never appear) or that their owner deleted, and the files of erased media rows (deleted
--   accounts, creditgate_private.media_purges). Oldest first.
--   Errors: PT400 invalid_request (max_items 1-10000, now required).
-- creditgate.service_mark_media_purged(media_ids uuid[]) -> jsonb {purged}
--   Sets purged_at on listed media that are temporary or deleted; already purged ones and
--   saved, undeleted ones are left alone, so a replay purges nothing twice. Listed files of
--   erased media rows leave the purge queue.
--   Errors: PT400 invalid_request (media_ids required, at most 10000).

create or replace function creditgate.service_expired_media(
  max_items integer default 1000,
  now timestamptz default now()
) returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  if service_expired_media.max_items is null or service_expired_media.max_items not between 1 and 10000 then
    perform creditgate_private.invalid('max_items', 'between 1 and 10000');
  end if;
  if service_expired_media.now is null then
    perform creditgate_private.invalid('now', 'required');
  end if;
  return coalesce((
    select jsonb_agg(jsonb_build_object('media_id', d.id, 'storage_key', d.storage_key) order by d.due, d.id)
    from (
      select m.id, m.storage_key, least(m.expires_at, m.deleted_at) as due
      from (
        -- Two index-backed halves: expired temporaries, and media their owner deleted.
        select x.id, x.storage_key, x.expires_at, x.deleted_at
        from creditgate.media as x
        where x.purged_at is null
          and x.expires_at <= service_expired_media.now
          and not x.saved
        union
        select x.id, x.storage_key, x.expires_at, x.deleted_at
        from creditgate.media as x
        where x.purged_at is null
          and x.deleted_at <= service_expired_media.now
        union all
        -- Files whose media rows were erased with their account.
        select p.media_id, p.storage_key, p.queued_at, null
        from creditgate_private.media_purges as p
        where p.queued_at <= service_expired_media.now
      ) as m
      order by least(m.expires_at, m.deleted_at), m.id
      limit service_expired_media.max_items
    ) as d
  ), '[]'::jsonb);
end
$$;
comment on function creditgate.service_expired_media(integer, timestamptz) is
'Media files due for deletion from storage: expired temporaries and owner-deleted media.';
revoke all on function creditgate.service_expired_media(integer, timestamptz) from public, anon, authenticated;
grant execute on function creditgate.service_expired_media(integer, timestamptz) to service_role;

create or replace function creditgate.service_mark_media_purged(media_ids uuid[])
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_purged integer;
  v_erased integer;
begin
  if service_mark_media_purged.media_ids is null then
    perform creditgate_private.invalid('media_ids', 'required');
  end if;
  if cardinality(service_mark_media_purged.media_ids) > 10000 then
    perform creditgate_private.invalid('media_ids', 'at most 10000 ids');
  end if;
  update creditgate.media as m
  set purged_at = now()
  where m.id = any(service_mark_media_purged.media_ids)
    and m.purged_at is null
    -- A saved, live file is never marked gone, whatever the caller lists.
    and (m.deleted_at is not null or (m.expires_at is not null and not m.saved));
  get diagnostics v_purged = row_count;
  delete from creditgate_private.media_purges as p
  where p.media_id = any(service_mark_media_purged.media_ids);
  get diagnostics v_erased = row_count;
  return jsonb_build_object('purged', v_purged + v_erased);
end
$$;
comment on function creditgate.service_mark_media_purged(uuid[]) is
'Records that media files were deleted from storage (idempotent; never marks saved media).';
revoke all on function creditgate.service_mark_media_purged(uuid[]) from public, anon, authenticated;
grant execute on function creditgate.service_mark_media_purged(uuid[]) to service_role;

-- ===== db/functions/generation/pricing.sql =====
-- creditgate.quote(model_id text, params jsonb) -> jsonb            anon, authenticated
--   {model_id, kind, cost, breakdown, params}: the price request_generation would charge.
--   Errors: PT400 invalid_request (DETAIL {field, reason}), PT404 not_found (model),
--   PT503 model_unavailable.
--
-- Private helpers shared with request_generation, so a quote and a charge can never disagree:
-- creditgate_private.param_int(p_params, p_field, p_min, p_max) -> bigint       PT400
-- creditgate_private.param_number(p_params, p_field, p_min, p_max) -> numeric   PT400
-- creditgate_private.param_text(p_params, p_field, p_min, p_max, p_trim) -> text PT400
-- creditgate_private.validate_params(p_model, p_params, p_user_id) -> jsonb      PT400
--   Strict: a JSON object, known keys only, exact JSON types, ranges; returns the
--   normalized params (model defaults filled in, numbers in canonical form) that are
--   hashed for idempotency, priced, stored on the generation and sent to the worker.
--   With p_user_id, an edit's init_media_id must be that user's live image.
-- creditgate_private.price_params(p_model, p_params, p_breakdown = true) -> jsonb {cost, breakdown}
--   ceil(base + per_megapixel*MP + per_step*steps + per_second*seconds
--        + per_1k_tokens*tokens/1000 + LoRA prices), at least 1. Monotonic in every input.

create or replace function creditgate_private.param_int(
  p_params jsonb,
  p_field text,
  p_min bigint,
  p_max bigint
) returns bigint
language plpgsql
immutable
set search_path = ''
as $$
declare
  v_value jsonb := p_params -> p_field;
  v_number numeric;
begin
  if v_value is null then
    return null;
  end if;
  if jsonb_typeof(v_value) <> 'number' then
    perform creditgate_private.invalid(p_field, 'must be an integer');
  end if;
  v_number := (v_value #>> '{}')::numeric;
  if v_number <> trunc(v_number) then
    perform creditgate_private.invalid(p_field, 'must be an integer');
  end if;
  if v_number not between p_min and p_max then
    perform creditgate_private.invalid(p_field, format('must be between %s and %s', p_min, p_max));
  end if;
  return v_number::bigint;
end
$$;
comment on function creditgate_private.param_int(jsonb, text, bigint, bigint) is
'A whole-number param within a range (null if absent), else PT400 naming the field.';

create or replace function creditgate_private.param_number(
  p_params jsonb,
  p_field text,
  p_min numeric,
  p_max numeric
) returns numeric
language plpgsql
immutable
set search_path = ''
as $$
declare
  v_value jsonb := p_params -> p_field;
  v_number numeric;
begin
  if v_value is null then
    return null;
  end if;
  if jsonb_typeof(v_value) <> 'number' then
    perform creditgate_private.invalid(p_field, 'must be a number');
  end if;
  v_number := (v_value #>> '{}')::numeric;
  if v_number not between p_min and p_max then
    perform creditgate_private.invalid(p_field, format('must be between %s and %s', p_min, p_max));
  end if;
  -- 7, 7.0 and 7.00 are one request: canonical scale so they hash alike.
  return trim_scale(v_number);
end
$$;
comment on function creditgate_private.param_number(jsonb, text, numeric, numeric) is
'A numeric param within a range in canonical scale (null if absent), else PT400 naming the field.';

create or replace function creditgate_private.param_text(
  p_params jsonb,
  p_field text,
  p_min integer,
  p_max integer,
  p_trim boolean default true
) returns text
language plpgsql
immutable
set search_path = ''
as $$
declare
  v_value jsonb := p_params -> p_field;
  v_text text;
begin
  if v_value is null then
    if p_min > 0 then
      perform creditgate_private.invalid(p_field, 'required');
    end if;
    return null;
  end if;
  if jsonb_typeof(v_value) <> 'string' then
    perform creditgate_private.invalid(p_field, 'must be a string');
  end if;
  v_text := v_value #>> '{}';
  if p_trim then
    v_text := btrim(v_text, E' \t\r\n');
  end if;
  if length(v_text) < p_min then
    perform creditgate_private.invalid(p_field, 'must not be empty');
  end if;
  if length(v_text) > p_max then
    perform creditgate_private.invalid(p_field, format('at most %s characters', p_max));
  end if;
  return v_text;
end
$$;
comment on function creditgate_private.param_text(jsonb, text, integer, integer, boolean) is
'A string param (trimmed) within length limits (null if absent and optional), else PT400.';

create or replace function creditgate_private.validate_params(
  p_model creditgate.models,
  p_params jsonb,
  p_user_id uuid default null
) returns jsonb
language plpgsql
stable
set search_path = ''
as $$
declare
  v_allowed text[];
  v_key text;
  v_params jsonb;
  v_out jsonb;
  v_text_max integer;
  v_setting jsonb;
  v_max_side integer;
  v_width bigint;
  v_height bigint;
  v_media_text text;
  v_media_id uuid;
  v_message jsonb;
  v_index integer := 0;
  v_chars bigint := 0::bigint;
  v_messages jsonb := '[]'::jsonb;
begin
  if p_params is null or jsonb_typeof(p_params) <> 'object' then
    perform creditgate_private.invalid('params', 'must be a JSON object');
  end if;
  v_allowed := case p_model.kind
    when 'image' then array['prompt', 'negative_prompt', 'width', 'height', 'steps', 'seed',
                            'cfg_scale', 'loras']
    when 'edit' then array['prompt', 'negative_prompt', 'init_media_id', 'strength', 'width',
                           'height', 'steps', 'seed', 'cfg_scale', 'loras']
    when 'video' then array['prompt', 'negative_prompt', 'width', 'height', 'duration_seconds',
                            'fps', 'seed']
    when 'chat' then array['messages', 'max_tokens', 'temperature']
  end;
  -- Unknown keys: an operator on the common path, a query only to name the first one.
  if p_params - v_allowed <> '{}'::jsonb then
    select k.key into v_key from jsonb_object_keys(p_params - v_allowed) as k (key)
    order by k.key limit 1;
    perform creditgate_private.invalid(left(v_key, 64), 'unknown key');
  end if;

  -- Built-in defaults, under the model's defaults, under the client's values; then
  -- everything is validated alike, defaults included. A model's defaults never supply the
  -- request's subject (prompt, messages, input image, LoRAs); keys its kind does not know
  -- are never read below (the result is built key by key).
  v_params := case p_model.kind
    when 'chat' then jsonb_build_object(
      'max_tokens', least(512, coalesce(p_model.max_output_tokens, 4096)), 'temperature', 0.7)
    when 'video' then '{"negative_prompt": "", "width": 512, "height": 512, "duration_seconds": 4, "fps": 8}'::jsonb
    when 'edit' then '{"negative_prompt": "", "width": 512, "height": 512, "steps": 20, "cfg_scale": 7, "strength": 0.75, "loras": []}'::jsonb
    else '{"negative_prompt": "", "width": 512, "height": 512, "steps": 20, "cfg_scale": 7, "loras": []}'::jsonb
  end;
  v_params := v_params
    || (p_model.defaults - array['prompt', 'messages', 'init_media_id', 'loras'])
    || p_params;

  v_text_max := p_model.max_prompt_length;
  v_setting := creditgate_private.setting('max_prompt_length');
  if creditgate_private.json_is_int(v_setting, 1, 100000) then
    v_text_max := least(v_text_max, (v_setting #>> '{}')::integer);
  end if;

  if p_model.kind = 'chat' then
    if jsonb_typeof(v_params -> 'messages') is distinct from 'array' then
      perform creditgate_private.invalid('messages', 'required: an array of {role, content}');
    end if;
    if jsonb_array_length(v_params -> 'messages') not between 1 and 50 then
      perform creditgate_private.invalid('messages', 'between 1 and 50 messages');
    end if;
    for v_message in select e.value from jsonb_array_elements(v_params -> 'messages') as e loop
      if jsonb_typeof(v_message) <> 'object' then
        perform creditgate_private.invalid(format('messages[%s]', v_index), 'must be an object {role, content}');
      end if;
      for v_key in select k.key from jsonb_object_keys(v_message) as k (key) order by k.key loop
        if v_key not in ('role', 'content') then
          perform creditgate_private.invalid(format('messages[%s].%s', v_index, left(v_key, 64)), 'unknown key');
        end if;
      end loop;
      if jsonb_typeof(v_message -> 'role') is distinct from 'string'
         or v_message ->> 'role' not in ('system', 'user', 'assistant') then
        perform creditgate_private.invalid(format('messages[%s].role', v_index), 'one of system, user, assistant');
      end if;
      if jsonb_typeof(v_message -> 'content') is distinct from 'string' then
        perform creditgate_private.invalid(format('messages[%s].content', v_index), 'must be a string');
      end if;
      v_chars := v_chars + length(v_message ->> 'content');
      if v_chars > v_text_max then
        perform creditgate_private.invalid(
          'messages', format('at most %s characters of content in all', v_text_max)
        );
      end if;
      v_messages := v_messages || jsonb_build_array(v_message);
      v_index := v_index + 1;
    end loop;
    if not exists (
      select 1 from jsonb_array_elements(v_messages) as e where length(trim(e.value ->> 'content')) > 0
    ) then
      perform creditgate_private.invalid('messages', 'at least one message needs non-blank content');
    end if;
    return jsonb_build_object(
      'messages', v_messages,
      'max_tokens', creditgate_private.param_int(v_params, 'max_tokens', 1, coalesce(p_model.max_output_tokens, 4096)),
      'temperature', creditgate_private.param_number(v_params, 'temperature', 0, 2)
    );
  end if;

  -- image, edit, video
  v_out := jsonb_build_object(
    'prompt', creditgate_private.param_text(v_params, 'prompt', 1, v_text_max),
    'negative_prompt', creditgate_private.param_text(v_params, 'negative_prompt', 0, v_text_max)
  );

  v_max_side := case when p_model.kind = 'video' then 1920 else 2048 end;
  v_width := creditgate_private.param_int(v_params, 'width', 64, coalesce(p_model.max_width, v_max_side));
  if v_width % 8 <> 0 then
    perform creditgate_private.invalid('width', 'must be a multiple of 8');
  end if;
  v_height := creditgate_private.param_int(v_params, 'height', 64, coalesce(p_model.max_height, v_max_side));
  if v_height % 8 <> 0 then
    perform creditgate_private.invalid('height', 'must be a multiple of 8');
  end if;
  if p_model.max_pixels is not null and v_width * v_height > p_model.max_pixels then
    perform creditgate_private.invalid(
      'height', format('width*height must be at most %s pixels', p_model.max_pixels)
    );
  end if;
  v_out := v_out || jsonb_build_object('width', v_width, 'height', v_height);
  if v_params ? 'seed' then
    -- No seed means the worker picks one; a random default here would break idempotency.
    v_out := v_out || jsonb_build_object('seed', creditgate_private.param_int(v_params, 'seed', 0, 4294967295));
  end if;

  if p_model.kind = 'video' then
    return v_out || jsonb_build_object(
      'duration_seconds', creditgate_private.param_int(
        v_params, 'duration_seconds', 1, coalesce(p_model.max_duration_seconds, 10)),
      'fps', creditgate_private.param_int(v_params, 'fps', 1, 30)
    );
  end if;

  v_out := v_out || jsonb_build_object(
    'steps', creditgate_private.param_int(v_params, 'steps', 1, coalesce(p_model.max_steps, 150)),
    'cfg_scale', creditgate_private.param_number(v_params, 'cfg_scale', 1, 30),
    'loras', creditgate_private.check_loras(p_model, v_params -> 'loras')
  );

  if p_model.kind = 'edit' then
    v_media_text := creditgate_private.param_text(v_params, 'init_media_id', 1, 36, false);
    if v_media_text !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then
      perform creditgate_private.invalid('init_media_id', 'must be a uuid');
    end if;
    v_media_id := v_media_text::uuid;
    if p_user_id is not null and not exists (
      select 1 from creditgate.media as m
      where m.id = v_media_id
        and m.user_id = p_user_id
        and m.deleted_at is null
        and m.purged_at is null
        and (m.expires_at is null or m.expires_at > now())
        and m.content_type like 'image/%'
    ) then
      perform creditgate_private.invalid('init_media_id', 'not one of your images');
    end if;
    v_out := v_out || jsonb_build_object(
      'init_media_id', v_media_id,
      'strength', creditgate_private.param_number(v_params, 'strength', 0, 1)
    );
  end if;
  return v_out;
end
$$;
comment on function creditgate_private.validate_params(creditgate.models, jsonb, uuid) is
'Strict per-kind params validation shared by quote and request_generation; returns normalized params.';

drop function if exists creditgate_private.price_params(creditgate.models, jsonb);
create or replace function creditgate_private.price_params(
  p_model creditgate.models,
  p_params jsonb,
  p_breakdown boolean default true
) returns jsonb
language plpgsql
stable
set search_path = ''
as $$
declare
  v_megapixels numeric := 0::numeric;
  v_steps bigint := 0::bigint;
  v_seconds bigint := 0::bigint;
  v_prompt_tokens bigint := 0::bigint;
  v_output_tokens bigint := 0::bigint;
  v_loras jsonb := '[]'::jsonb;
  v_lora_cost bigint := 0::bigint;
  v_subtotal numeric;
  v_cost bigint;
begin
  if p_params ? 'width' then
    v_megapixels := (p_params ->> 'width')::numeric * (p_params ->> 'height')::numeric / 1000000;
  end if;
  v_steps := coalesce((p_params ->> 'steps')::bigint, 0);
  v_seconds := coalesce((p_params ->> 'duration_seconds')::bigint, 0);
  if p_model.kind = 'chat' then
    -- About four characters a token; the output is priced at its ceiling (max_tokens) and
    -- the unused part refunded at settle time.
    select ceil(coalesce(sum(length(e.value ->> 'content')), 0) / 4.0)::bigint into v_prompt_tokens
    from jsonb_array_elements(p_params -> 'messages') as e;
    v_output_tokens := (p_params ->> 'max_tokens')::bigint;
  end if;
  if jsonb_typeof(p_params -> 'loras') = 'array' and p_params -> 'loras' <> '[]'::jsonb then
    select
      coalesce(jsonb_agg(jsonb_build_object('id', l.id, 'price', l.price) order by r.ord), '[]'::jsonb),
      coalesce(sum(l.price), 0)::bigint
    into v_loras, v_lora_cost
    from jsonb_array_elements(p_params -> 'loras') with ordinality as r (value, ord)
    join creditgate.loras as l on l.id = r.value ->> 'id';
  end if;

  v_subtotal := p_model.price_base
    + p_model.price_per_megapixel * v_megapixels
    + p_model.price_per_step * v_steps
    + p_model.price_per_second * v_seconds
    + p_model.price_per_1k_tokens * (v_prompt_tokens + v_output_tokens) / 1000
    + v_lora_cost;
  v_cost := greatest(1, ceil(v_subtotal))::bigint;
  if not p_breakdown then
    return jsonb_build_object('cost', v_cost);  -- the charge path needs no breakdown
  end if;
  return jsonb_build_object(
    'cost', v_cost,
    'breakdown', jsonb_build_object(
      'base', p_model.price_base,
      'megapixels', trim_scale(round(v_megapixels, 6)),
      'megapixel_cost', trim_scale(round(p_model.price_per_megapixel * v_megapixels, 4)),
      'steps', v_steps,
      'step_cost', trim_scale(round(p_model.price_per_step * v_steps, 4)),
      'seconds', v_seconds,
      'second_cost', trim_scale(round(p_model.price_per_second * v_seconds, 4)),
      'prompt_tokens', v_prompt_tokens,
      'output_tokens', v_output_tokens,
      'token_cost', trim_scale(round(p_model.price_per_1k_tokens * (v_prompt_tokens + v_output_tokens) / 1000, 4)),
      'loras', v_loras,
      'lora_cost', v_lora_cost,
      'subtotal', trim_scale(round(v_subtotal, 4)),
      'total', v_cost
    )
  );
end
$$;
comment on function creditgate_private.price_params(creditgate.models, jsonb, boolean) is
'Integer credit price of normalized params (rounded up, at least 1) with its breakdown.';

create or replace function creditgate.quote(model_id text, params jsonb)
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_model creditgate.models := creditgate_private.find_model(quote.model_id);
  v_params jsonb;
  v_price jsonb;
begin
  -- auth.uid() is null for anon: an edit's init_media_id is then only checked for shape.
  v_params := creditgate_private.validate_params(v_model, quote.params, auth.uid());
  v_price := creditgate_private.price_params(v_model, v_params);
  return jsonb_build_object(
    'model_id', v_model.id,
    'kind', v_model.kind,
    'cost', v_price -> 'cost',
    'breakdown', v_price -> 'breakdown',
    'params', v_params
  );
end
$$;
comment on function creditgate.quote(text, jsonb) is
'Price of a generation request with its breakdown and normalized params; validates exactly as request_generation.';

revoke all on function creditgate_private.param_int(jsonb, text, bigint, bigint) from public, anon, authenticated;
revoke all on function creditgate_private.param_number(jsonb, text, numeric, numeric) from public, anon, authenticated;
revoke all on function creditgate_private.param_text(jsonb, text, integer, integer, boolean) from public, anon, authenticated;
revoke all on function creditgate_private.validate_params(creditgate.models, jsonb, uuid) from public, anon, authenticated;
revoke all on function creditgate_private.price_params(creditgate.models, jsonb, boolean) from public, anon, authenticated;
revoke all on function creditgate.quote(text, jsonb) from public, anon, authenticated;
grant execute on function creditgate.quote(text, jsonb) to anon, authenticated;

-- ===== db/functions/generation/registry.sql =====
-- creditgate_private.find_model(p_model_id) -> creditgate.models
--   PT400 invalid_request (field model_id), PT404 not_found, PT503 model_unavailable
-- creditgate_private.check_loras(p_model, p_loras) -> jsonb  normalized [{id, weight}]
--   PT400 invalid_request naming loras, loras[i], loras[i].id or loras[i].weight
--
-- The public registry as the request path sees it. Routes and LoRA sources are never read
-- here: nothing a client can call learns an endpoint, provider model or file path, and an
-- unknown, disabled or ill-fitting LoRA gets one and the same answer.

create or replace function creditgate_private.find_model(p_model_id text)
returns creditgate.models
language plpgsql
stable
set search_path = ''
as $$
declare
  v_model creditgate.models;
begin
  if p_model_id is null then
    perform creditgate_private.invalid('model_id', 'required');
  end if;
  select m.* into v_model from creditgate.models as m where m.id = p_model_id;
  if v_model.id is null then
    perform creditgate_private.raise_error('not_found', jsonb_build_object('object', 'model'));
  end if;
  if not v_model.enabled then
    perform creditgate_private.raise_error(
      'model_unavailable', jsonb_build_object('model_id', v_model.id)
    );
  end if;
  return v_model;
end
$$;
comment on function creditgate_private.find_model(text) is
'The enabled model a request names: PT404 if unknown, PT503 model_unavailable if switched off.';

create or replace function creditgate_private.check_loras(p_model creditgate.models, p_loras jsonb)
returns jsonb
language plpgsql
stable
set search_path = ''
as $$
declare
  v_out jsonb := '[]'::jsonb;
  v_item jsonb;
  v_index integer := 0;
  v_field text;
  v_key text;
  v_id text;
  v_weight numeric;
  v_seen text[] := '{}'::text[];
begin
  if p_loras is null or jsonb_typeof(p_loras) <> 'array' then
    perform creditgate_private.invalid('loras', 'must be an array of {id, weight}');
  end if;
  if jsonb_array_length(p_loras) > p_model.max_loras then
    perform creditgate_private.invalid(
      'loras', format('at most %s LoRAs for this model', p_model.max_loras)
    );
  end if;
  if p_loras = '[]'::jsonb then
    return v_out;  -- the common case: no query
  end if;
  for v_item in select e.value from jsonb_array_elements(p_loras) as e loop
    v_field := format('loras[%s]', v_index);
    if jsonb_typeof(v_item) <> 'object' then
      perform creditgate_private.invalid(v_field, 'must be an object {id, weight}');
    end if;
    for v_key in select k.key from jsonb_object_keys(v_item) as k (key) loop
      if v_key not in ('id', 'weight') then
        perform creditgate_private.invalid(v_field || '.' || left(v_key, 64), 'unknown key');
      end if;
    end loop;
    if jsonb_typeof(v_item -> 'id') is distinct from 'string' then
      perform creditgate_private.invalid(v_field || '.id', 'required string');
    end if;
    v_id := v_item ->> 'id';
    -- The registry's own id pattern: nothing path-, URL- or escape-like ever gets further.
    if v_id !~ '^[a-z0-9][a-z0-9_-]{0,63}$' then
      perform creditgate_private.invalid(v_field || '.id', 'not a LoRA id');
    end if;
    if v_id = any (v_seen) then
      perform creditgate_private.invalid(v_field || '.id', 'duplicate LoRA');
    end if;
    if not exists (
      select 1 from creditgate.loras as l
      where l.id = v_id and l.enabled and p_model.id = any (l.model_ids)
    ) then
      perform creditgate_private.invalid(v_field || '.id', 'unknown LoRA for this model');
    end if;
    v_weight := 1;
    if v_item ? 'weight' then
      if jsonb_typeof(v_item -> 'weight') <> 'number' then
        perform creditgate_private.invalid(v_field || '.weight', 'must be a number');
      end if;
      v_weight := (v_item ->> 'weight')::numeric;
      if v_weight not between -2 and 2 then
        perform creditgate_private.invalid(v_field || '.weight', 'must be between -2 and 2');
      end if;
    end if;
    v_seen := v_seen || v_id;
    v_out := v_out || jsonb_build_array(
      jsonb_build_object('id', v_id, 'weight', trim_scale(v_weight))
    );
    v_index := v_index + 1;
  end loop;
  return v_out;
end
$$;
comment on function creditgate_private.check_loras(creditgate.models, jsonb) is
'Validates requested LoRAs against the public registry; unknown, disabled and ill-fitting look alike.';

revoke all on function creditgate_private.find_model(text) from public, anon, authenticated;
revoke all on function creditgate_private.check_loras(creditgate.models, jsonb) from public, anon, authenticated;

-- ===== db/functions/generation/request.sql =====
-- creditgate.request_generation(model_id text, params jsonb, idempotency_key text) -> jsonb
--   authenticated. {generation_id, status, cost, balance, replayed}
--   One transaction: the key first (a recorded request, same body -> its original result,
--   whatever changed since; another body -> PT409), then maintenance, model, validate,
--   price, rate limits, daily cap, charge, create the queued generation, notify workers
--   ('creditgate_generations', payload = generation id). A replay counts against no limit.
--   Errors: PT401 not_authenticated, PT400 invalid_request, PT503 maintenance,
--   PT404 not_found (model), PT503 model_unavailable, PT409 idempotency_key_reused,
--   PT429 rate_limited {scope, retry_after_seconds}, PT429 daily_cap_reached
--   {cap, used, resets_at}, PT402 insufficient_credits {required, available}.
--
-- creditgate_private.client_ip() -> inet
--   The client address from the one header named by setting client_ip_header, in the
--   request.headers PostgREST sets: 'cf-connecting-ip' (default; Supabase's edge sets it)
--   or 'x-forwarded-for:N' (the Nth entry from the right). Null when absent or not an
--   address. No other header is read, so a client cannot pick its bucket.
-- creditgate_private.ip_bucket(p_ip) -> text
--   The IP rules' subject: the IPv4 address, the IPv6 /64, or 'unknown' (null address).
-- creditgate_private.take_rate_limits(p_user_id, p_ip, p_kind, p_now) -> void   PT429
--   Counts this request against every enabled rule (fixed windows aligned to the epoch).
--   IP rules always apply: an unreadable address counts in the shared 'unknown' bucket.
--   A rule already at its limit is not incremented, and the PT429 rolls back the others,
--   so a rejected request consumes nothing.

create or replace function creditgate_private.client_ip()
returns inet
language plpgsql
stable
set search_path = ''
as $$
declare
  v_raw text := nullif(current_setting('request.headers', true), '');
  v_setting text := creditgate_private.setting('client_ip_header') #>> '{}';
  v_header text;
  v_from_right integer;
  v_value text;
  v_entries text[];
  v_ip inet;
begin
  if v_raw is null or v_setting is null then
    return null;
  end if;
  -- '<header>' (one address) or '<header>:N' (the Nth comma-separated entry from the right:
  -- the entry the Nth trusted proxy, counted from ours, appended; entries further left were
  -- written by the client). setting_problem() keeps the value to that form.
  v_header := split_part(v_setting, ':', 1);
  v_from_right := nullif(split_part(v_setting, ':', 2), '')::integer;
  begin
    v_value := v_raw::jsonb ->> v_header;
  exception when others then
    return null;
  end;
  if v_from_right is not null then
    v_entries := string_to_array(v_value, ',');
    if coalesce(cardinality(v_entries), 0) < v_from_right then
      return null;
    end if;
    v_value := v_entries[cardinality(v_entries) - v_from_right + 1];
  end if;
  v_value := btrim(v_value);
  if v_value is null or v_value = '' or length(v_value) > 45 or v_value !~ '^[0-9A-Fa-f.:]+$' then
    return null;
  end if;
  begin
    v_ip := host(v_value::inet)::inet;
  exception when others then
    return null;
  end;
  -- An IPv4 client seen through an IPv6 socket (::ffff:a.b.c.d) is that IPv4 address.
  if family(v_ip) = 6 and v_ip << '::ffff:0.0.0.0/96'::inet then
    v_ip := '0.0.0.0'::inet + (v_ip - '::ffff:0.0.0.0'::inet);
  end if;
  return v_ip;
end
$$;
comment on function creditgate_private.client_ip() is
'The client address from the header named by setting client_ip_header (Nth entry from the right with :N), or null when unreadable.';

create or replace function creditgate_private.ip_bucket(p_ip inet)
returns text
language sql
immutable
set search_path = ''
as $$
  -- One IPv6 subscriber gets a /64 (billions of addresses to rotate through): the /64 is
  -- the bucket. An unreadable or absent address is never let through unlimited: every such
  -- request shares the bucket 'unknown'.
  select case
    when p_ip is null then 'unknown'
    when family(p_ip) = 6 then network(set_masklen(p_ip, 64))::text
    else host(p_ip)
  end;
$$;
comment on function creditgate_private.ip_bucket(inet) is
'Rate-limit subject of a client address: the IPv4 address, the IPv6 /64, or unknown.';

create or replace function creditgate_private.take_rate_limits(
  p_user_id uuid,
  p_ip inet,
  p_kind text,
  p_now timestamptz default now()
) returns void
language plpgsql
set search_path = ''
as $$
declare
  v_rule creditgate_private.rate_limit_rules;
  v_subject text;
  v_ip_subject text := creditgate_private.ip_bucket(p_ip);
  v_window_start timestamptz;
  v_count integer;
begin
  -- Rules in id order: every transaction takes counter rows in the same order.
  for v_rule in
    select r.* from creditgate_private.rate_limit_rules as r
    where r.enabled and (r.kind is null or r.kind = p_kind)
    order by r.id
  loop
    v_subject := case v_rule.scope when 'user' then p_user_id::text else v_ip_subject end;
    v_window_start := to_timestamp(
      floor(extract(epoch from p_now) / v_rule.window_seconds) * v_rule.window_seconds
    );
    v_count := null;
    insert into creditgate_private.rate_limit_counters as c (rule_id, subject, window_start, count)
    values (v_rule.id, v_subject, v_window_start, 1)
    on conflict (rule_id, subject, window_start) do update
      set count = c.count + 1
      where c.count < v_rule.max_requests
    returning c.count into v_count;
    if v_count is null then
      perform creditgate_private.raise_error('rate_limited', jsonb_build_object(
        'scope', v_rule.scope,
        'retry_after_seconds', greatest(1, ceil(extract(epoch from
          v_window_start + make_interval(secs => v_rule.window_seconds) - p_now)))::integer
      ));
    end if;
    if v_count = 1 then
      -- First request of a new window: older windows of this subject are spent.
      delete from creditgate_private.rate_limit_counters as c
      where c.rule_id = v_rule.id and c.subject = v_subject and c.window_start < v_window_start;
    end if;
  end loop;
end
$$;
comment on function creditgate_private.take_rate_limits(uuid, inet, text, timestamptz) is
'Counts a request against every matching rule atomically; PT429 (nothing consumed) at the limit.';

-- Requests recorded before 0010 hashed the normalized params (registry defaults merged in);
-- 0010 marked those hashes 'legacy:'. A retry of such a request still matches when its body
-- normalizes to what was recorded, so a retry across the upgrade is not refused.
create or replace function creditgate_private.legacy_request_matches(
  p_recorded_hash text,
  p_model_id text,
  p_params jsonb,
  p_user_id uuid
) returns boolean
language plpgsql
stable
set search_path = ''
as $$
declare
  v_model creditgate.models;
begin
  if p_recorded_hash not like 'legacy:%' then
    return false;
  end if;
  select m.* into v_model from creditgate.models as m where m.id = p_model_id;
  if not found then
    return false;
  end if;
  begin
    return p_recorded_hash = 'legacy:' || md5(jsonb_build_object(
      'model_id', v_model.id,
      'params', creditgate_private.validate_params(v_model, p_params, p_user_id)
    )::text);
  exception when others then
    return false;
  end;
end
$$;
comment on function creditgate_private.legacy_request_matches(text, text, jsonb, uuid) is
'Whether a retry matches a request recorded before 0010 (hash of the normalized params).';

create or replace function creditgate.request_generation(
  model_id text,
  params jsonb,
  idempotency_key text
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user_id uuid := creditgate_private.require_user();
  v_model creditgate.models;
  v_params jsonb;
  v_price jsonb;
  v_cost bigint;
  v_hash text;
  v_existing_id uuid;
  v_existing_hash text;
  v_balance creditgate.balances;
  v_daily jsonb;
  v_ip inet;
  v_generation_id uuid;
  v_spend jsonb;
  v_now timestamptz := now();
begin
  perform creditgate_private.check_key(request_generation.idempotency_key);
  -- What the client sent, nothing derived from the registry: a retry of the same body
  -- matches whatever changed since (defaults, prices, limits).
  v_hash := md5(jsonb_build_array(request_generation.model_id, request_generation.params)::text);

  -- The per-user mutex (lock_balance): concurrent calls with one key queue here, and the
  -- first one's generation is visible to the rest once it commits. The row also gives the
  -- plan and today's usage for the daily cap.
  select b.* into v_balance from creditgate.balances as b where b.user_id = v_user_id for update;
  if not found then
    perform creditgate_private.raise_error('not_found', jsonb_build_object('object', 'user'));
  end if;

  -- Replays first (DESIGN §3): a recorded request gets its original answer before any
  -- check that may have changed since (maintenance, model, params, limits, caps).
  select r.generation_id, r.request_hash into v_existing_id, v_existing_hash
  from creditgate_private.generation_requests as r
  where r.user_id = v_user_id and r.idempotency_key = request_generation.idempotency_key;
  if v_existing_id is not null then
    if v_existing_hash <> v_hash
       and not creditgate_private.legacy_request_matches(
         v_existing_hash, request_generation.model_id, request_generation.params, v_user_id
       ) then
      perform creditgate_private.raise_error(
        'idempotency_key_reused',
        jsonb_build_object('idempotency_key', request_generation.idempotency_key)
      );
    end if;
    -- The original answer: the status it was created with and the balance its charge left.
    return (
      select jsonb_build_object(
        'generation_id', v_existing_id,
        'status', 'queued',
        'cost', l.amount,
        'balance', l.balance_after,
        'replayed', true
      )
      from creditgate.ledger as l
      where l.idempotency_key = 'charge:' || v_existing_id::text
    );
  end if;

  if creditgate_private.setting('maintenance_mode') = 'true'::jsonb then
    perform creditgate_private.raise_error('maintenance');
  end if;
  v_model := creditgate_private.find_model(request_generation.model_id);
  v_params := creditgate_private.validate_params(v_model, request_generation.params, v_user_id);
  v_price := creditgate_private.price_params(v_model, v_params, false);
  v_cost := (v_price ->> 'cost')::bigint;
  v_ip := creditgate_private.client_ip();
  v_generation_id := creditgate_private.uuid_v7();

  perform creditgate_private.take_rate_limits(v_user_id, v_ip, v_model.kind, v_now);

  v_daily := creditgate_private.daily_usage(v_balance);
  if jsonb_typeof(v_daily -> 'cap') = 'number'
     and (v_daily ->> 'used')::bigint + v_cost > (v_daily ->> 'cap')::bigint then
    perform creditgate_private.raise_error('daily_cap_reached', jsonb_build_object(
      'cap', v_daily -> 'cap',
      'used', v_daily -> 'used',
      'resets_at', date_trunc('day', v_now at time zone 'UTC') at time zone 'UTC' + interval '1 day'
    ));
  end if;

  v_spend := creditgate_private.spend_credits(
    v_user_id, v_cost, 'charge:' || v_generation_id, v_generation_id, 'generation',
    jsonb_build_object('model_id', v_model.id, 'kind', v_model.kind), v_now
  );
  insert into creditgate.generations (
    id, user_id, model_id, kind, status, params, cost, idempotency_key, max_attempts, prices
  ) values (
    v_generation_id, v_user_id, v_model.id, v_model.kind, 'queued', v_params, v_cost,
    request_generation.idempotency_key,
    coalesce((creditgate_private.setting('max_attempts') #>> '{}')::integer, 3),
    -- The prices charged: a settle that prices usage uses them, never today's.
    jsonb_build_object(
      'price_base', v_model.price_base,
      'price_per_megapixel', v_model.price_per_megapixel,
      'price_per_step', v_model.price_per_step,
      'price_per_second', v_model.price_per_second,
      'price_per_1k_tokens', v_model.price_per_1k_tokens
    )
  );
  insert into creditgate_private.generation_requests (
    user_id, idempotency_key, generation_id, request_hash, client_ip
  ) values (
    v_user_id, request_generation.idempotency_key, v_generation_id, v_hash, v_ip
  );
  -- Wake the workers only if this job is the only one queued. A transaction that notified
  -- takes a database-wide lock at commit and holds it through the WAL flush, so notifying
  -- on every request would make all requests commit one at a time. A job queued behind
  -- others needs no signal: whoever woke for those claims it with them, and a worker
  -- that claimed anything claims again shortly after (so a job that committed just after
  -- that claim is not left waiting for the idle poll).
  if not exists (
    select 1 from creditgate.generations as g
    where g.status = 'queued' and g.id <> v_generation_id
  ) then
    perform pg_notify('creditgate_generations', v_generation_id::text);
  end if;
  return jsonb_build_object(
    'generation_id', v_generation_id,
    'status', 'queued',
    'cost', v_cost,
    'balance', (v_spend ->> 'balance')::bigint,
    'replayed', false
  );
end
$$;
comment on function creditgate.request_generation(text, jsonb, text) is
'Validates, prices, rate-limits, caps, charges and queues a generation in one transaction; replays by key.';

revoke all on function creditgate_private.client_ip() from public, anon, authenticated;
revoke all on function creditgate_private.ip_bucket(inet) from public, anon, authenticated;
revoke all on function creditgate_private.take_rate_limits(uuid, inet, text, timestamptz) from public, anon, authenticated;
revoke all on function creditgate_private.legacy_request_matches(text, text, jsonb, uuid) from public, anon, authenticated;
revoke all on function creditgate.request_generation(text, jsonb, text) from public, anon, authenticated;
grant execute on function creditgate.request_generation(text, jsonb, text) to authenticated;

-- ===== db/functions/generation/worker.sql =====
-- The worker side of a generation's life: claim, heartbeat, settle, reap. service_role only.
--
-- creditgate.service_claim_generations(worker_id, max_jobs = 1, lease_seconds = null) -> jsonb
--   Leases up to max_jobs queued generations, oldest first (FOR UPDATE SKIP LOCKED, so
--   concurrent workers never get the same job). Each job carries its server-only route,
--   resolved LoRA sources, the edit input and a fresh lease token.
--   lease_seconds null (not given): setting lease_seconds (default 120).
--   Errors: PT400 invalid_request (worker_id 1-100 chars, max_jobs 1-100, lease_seconds from 5
--   to the max_lease_seconds setting, default 3600).
-- creditgate.service_heartbeat(generation_id, worker_id, lease_token, lease_seconds = null)
--   -> jsonb {generation_id, lease_expires_at}
--   Extends a live lease. Errors: PT400, PT404 not_found, PT409 lease_lost.
-- creditgate.service_settle_generation(generation_id, worker_id, lease_token, outcome) -> jsonb
--   {generation_id, status, refunded, actual_cost, media: [{media_id, storage_key}], requeued}
--   Records the attempt and applies its outcome: succeeded (media, output, refund of
--   cost - actual_cost), failed + retryable with attempts left (back to queued, no refund),
--   failed (full refund). A succeeded outcome with no output is failed/empty_output.
--   actual_cost defaults to the cost; for chat without one, output.usage.completion_tokens
--   prices the turn in SQL (chat_actual_cost) and the unused part is refunded.
--   Idempotent per lease: a replay under the same lease returns the stored result.
--   A job of a deleted account (creditgate_private.deleted_users) settles too, keeping
--   nothing personal: no media rows (its files are queued for purge), no output, no error
--   text; a retryable failure is final (its params are erased); chat usage is not repriced
--   (the priced params are erased: actual_cost or the charge); what is refunded is
--   forfeited at once (forfeit:refund:<generation_id>).
--   Errors: PT400 invalid_request (DETAIL names the outcome field), PT404, PT409 lease_lost.
-- creditgate.service_reap_expired_leases(now = now()) -> jsonb {requeued, failed, refunded}
--   Jobs whose worker stopped renewing its lease: re-queued while attempts are left, else
--   failed and refunded in full. A deleted account's job is never re-queued: failed,
--   refunded, and the refund forfeited. Errors: PT400.
--
-- Locking: money-moving paths (settle, reap) lock the user's balance row first
-- (lock_balance), then the generation row; the reaper locks users in user_id order. Claim
-- and heartbeat touch only generation rows and never wait on a balance.

create or replace function creditgate_private.check_lease_args(
  p_generation_id uuid,
  p_worker_id text,
  p_lease_token text
) returns uuid
language plpgsql
immutable
set search_path = ''
as $$
begin
  if p_generation_id is null then
    perform creditgate_private.invalid('generation_id', 'required');
  end if;
  perform creditgate_private.check_worker_id(p_worker_id);
  if p_lease_token is null
     or p_lease_token !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then
    perform creditgate_private.invalid('lease_token', 'the lease token service_claim_generations returned');
  end if;
  return p_lease_token::uuid;
end
$$;
comment on function creditgate_private.check_lease_args(uuid, text, text) is
'Validates the (generation, worker, lease token) triple of heartbeat and settle; PT400.';

create or replace function creditgate_private.check_worker_id(p_worker_id text)
returns void
language plpgsql
immutable
set search_path = ''
as $$
begin
  if p_worker_id is null or length(p_worker_id) not between 1 and 100 or p_worker_id ~ '[[:cntrl:]]' then
    perform creditgate_private.invalid('worker_id', '1-100 characters, no control characters');
  end if;
end
$$;
comment on function creditgate_private.check_worker_id(text) is
'Worker ids name the lease holder in logs and provider_calls: 1-100 printable characters.';

create or replace function creditgate_private.default_lease_seconds()
returns integer
language plpgsql
stable
set search_path = ''
as $$
declare
  v_value jsonb := creditgate_private.setting('lease_seconds');
begin
  if creditgate_private.json_is_int(v_value, 5, 86400) then
    return (v_value #>> '{}')::integer;
  end if;
  return 120;
end
$$;
comment on function creditgate_private.default_lease_seconds() is
'The lease a claim or heartbeat gets when the worker names none: setting lease_seconds (default 120).';

create or replace function creditgate_private.check_lease_seconds(p_lease_seconds integer)
returns void
language plpgsql
stable
set search_path = ''
as $$
declare
  v_max jsonb := creditgate_private.setting('max_lease_seconds');
  v_max_seconds integer := 3600;
begin
  if creditgate_private.json_is_int(v_max, 5, 86400) then
    v_max_seconds := (v_max #>> '{}')::integer;
  end if;
  if p_lease_seconds is null or p_lease_seconds not between 5 and v_max_seconds then
    perform creditgate_private.invalid('lease_seconds', format('between 5 and %s', v_max_seconds));
  end if;
end
$$;
comment on function creditgate_private.check_lease_seconds(integer) is
'Leases last 5 s to max_lease_seconds (default 1 h): long enough to heartbeat, short enough to recover a dead worker.';

-- What a worker needs to run one claimed generation. Server-only: routes, LoRA sources and
-- storage keys never reach a client response.
create or replace function creditgate_private.job_json(p_generation creditgate.generations)
returns jsonb
language sql
stable
set search_path = ''
as $$
  select jsonb_build_object(
    'generation_id', p_generation.id,
    'user_id', p_generation.user_id,
    'kind', p_generation.kind,
    'model_id', p_generation.model_id,
    'params', p_generation.params,
    'attempt', p_generation.attempts,
    'max_attempts', p_generation.max_attempts,
    'lease_token', l.lease_token,
    'lease_expires_at', l.lease_expires_at,
    'cost', p_generation.cost,
    'route', (
      select jsonb_build_object(
        'provider', r.provider,
        'provider_model', r.provider_model,
        'endpoint', r.endpoint,
        'options', r.options
      )
      from creditgate_private.model_routes as r
      where r.model_id = p_generation.model_id
    ),
    -- params.loras was validated at request time: [{id, weight}] (a bare id means weight 1).
    'loras', coalesce((
      select jsonb_agg(
        jsonb_build_object('id', l.id, 'weight', l.weight, 'source', s.source) order by l.n
      )
      from (
        select
          case jsonb_typeof(e.item) when 'string' then e.item #>> '{}' else e.item ->> 'id' end as id,
          case jsonb_typeof(e.item -> 'weight') when 'number' then e.item -> 'weight' else '1'::jsonb end
            as weight,
          e.n
        from jsonb_array_elements(
          case jsonb_typeof(p_generation.params -> 'loras')
            when 'array' then p_generation.params -> 'loras'
            else '[]'::jsonb
          end
        ) with ordinality as e (item, n)
      ) as l
      left join creditgate_private.lora_sources as s on s.lora_id = l.id
    ), '[]'::jsonb),
    'init_media', case when p_generation.kind = 'edit' then (
      select jsonb_build_object(
        'media_id', m.id, 'storage_key', m.storage_key, 'content_type', m.content_type
      )
      from creditgate.media as m
      where p_generation.params ->> 'init_media_id'
          ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
        and m.id = (p_generation.params ->> 'init_media_id')::uuid
        and m.user_id = p_generation.user_id
        and m.purged_at is null
    ) end
  )
  from creditgate_private.generation_leases as l
  where l.generation_id = p_generation.id;
$$;
comment on function creditgate_private.job_json(creditgate.generations) is
'A claimed job for the worker: params, lease, route, resolved LoRA sources, edit input media.';

create or replace function creditgate.service_claim_generations(
  worker_id text,
  max_jobs integer default 1,
  lease_seconds integer default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_ids uuid[];
  v_lease_seconds integer := coalesce(
    service_claim_generations.lease_seconds, creditgate_private.default_lease_seconds()
  );
begin
  perform creditgate_private.check_worker_id(service_claim_generations.worker_id);
  if service_claim_generations.max_jobs is null
     or service_claim_generations.max_jobs not between 1 and 100 then
    perform creditgate_private.invalid('max_jobs', 'between 1 and 100');
  end if;
  perform creditgate_private.check_lease_seconds(v_lease_seconds);

  with picked as (
    select g.id
    from creditgate.generations as g
    where g.status = 'queued'
    order by g.created_at, g.id
    limit service_claim_generations.max_jobs
    for update skip locked
  ),
  claimed as (
    update creditgate.generations as g
    set status = 'running',
      attempts = g.attempts + 1,
      started_at = now(),
      updated_at = now()
    from picked as p
    where g.id = p.id
    returning g.id
  ),
  -- One lease row per generation, reused by each attempt (a replayed settle of an earlier
  -- attempt still finds its result: settled_lease_token is kept).
  leased as (
    insert into creditgate_private.generation_leases as l (
      generation_id, lease_owner, lease_token, lease_expires_at
    )
    select
      c.id,
      service_claim_generations.worker_id,
      gen_random_uuid(),
      now() + make_interval(secs => v_lease_seconds)
    from claimed as c
    on conflict (generation_id) do update
      set lease_owner = excluded.lease_owner,
        lease_token = excluded.lease_token,
        lease_expires_at = excluded.lease_expires_at
    returning l.generation_id
  )
  select array_agg(l.generation_id) into v_ids from leased as l;

  return coalesce((
    select jsonb_agg(creditgate_private.job_json(g) order by g.created_at, g.id)
    from creditgate.generations as g
    where g.id = any(v_ids)
  ), '[]'::jsonb);
end
$$;
comment on function creditgate.service_claim_generations(text, integer, integer) is
'Leases up to max_jobs queued generations (oldest first, SKIP LOCKED) with route and lease token.';
revoke all on function creditgate.service_claim_generations(text, integer, integer) from public, anon, authenticated;
grant execute on function creditgate.service_claim_generations(text, integer, integer) to service_role;

create or replace function creditgate.service_heartbeat(
  generation_id uuid,
  worker_id text,
  lease_token text,
  lease_seconds integer default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_token uuid;
  v_generation creditgate.generations;
  v_lease creditgate_private.generation_leases;
  v_expires_at timestamptz;
  v_lease_seconds integer := coalesce(
    service_heartbeat.lease_seconds, creditgate_private.default_lease_seconds()
  );
begin
  v_token := creditgate_private.check_lease_args(
    service_heartbeat.generation_id, service_heartbeat.worker_id, service_heartbeat.lease_token
  );
  perform creditgate_private.check_lease_seconds(v_lease_seconds);

  -- The generation row's lock guards its lease row (every writer of a lease holds it).
  select g.* into v_generation
  from creditgate.generations as g
  where g.id = service_heartbeat.generation_id
  for update;
  if not found then
    perform creditgate_private.raise_error('not_found', jsonb_build_object('object', 'generation'));
  end if;
  select l.* into v_lease
  from creditgate_private.generation_leases as l
  where l.generation_id = v_generation.id;
  -- An expired lease is lost even before the reaper runs: the job may be re-queued any time.
  if v_generation.status <> 'running'
     or v_lease.lease_owner is distinct from service_heartbeat.worker_id
     or v_lease.lease_token is distinct from v_token
     or v_lease.lease_expires_at <= now() then
    perform creditgate_private.raise_error(
      'lease_lost',
      jsonb_build_object('generation_id', v_generation.id, 'status', v_generation.status)
    );
  end if;

  update creditgate_private.generation_leases as l
  set lease_expires_at = now() + make_interval(secs => v_lease_seconds)
  where l.generation_id = v_generation.id
  returning l.lease_expires_at into v_expires_at;
  return jsonb_build_object('generation_id', v_generation.id, 'lease_expires_at', v_expires_at);
end
$$;
comment on function creditgate.service_heartbeat(uuid, text, text, integer) is
'Extends the caller''s live lease on a running generation; PT409 lease_lost once it is not theirs.';
revoke all on function creditgate.service_heartbeat(uuid, text, text, integer) from public, anon, authenticated;
grant execute on function creditgate.service_heartbeat(uuid, text, text, integer) to service_role;

-- Outcome validation helpers: each names the offending field in PT400's DETAIL.
create or replace function creditgate_private.outcome_integer(
  p_value jsonb,
  p_field text,
  p_min bigint,
  p_max bigint
) returns bigint
language plpgsql
immutable
set search_path = ''
as $$
begin
  if p_value is null or jsonb_typeof(p_value) = 'null' then
    return null;
  end if;
  -- The same rules as request params (one implementation, one set of messages).
  return creditgate_private.param_int(jsonb_build_object(p_field, p_value), p_field, p_min, p_max);
end
$$;
comment on function creditgate_private.outcome_integer(jsonb, text, bigint, bigint) is
'A JSON integer within bounds (null when absent), else PT400 naming the field.';

create or replace function creditgate_private.outcome_text(
  p_value jsonb,
  p_field text,
  p_max_length integer
) returns text
language plpgsql
immutable
set search_path = ''
as $$
begin
  if p_value is null or jsonb_typeof(p_value) = 'null' then
    return null;
  end if;
  return creditgate_private.param_text(
    jsonb_build_object(p_field, p_value), p_field, 1, p_max_length, false
  );
end
$$;
comment on function creditgate_private.outcome_text(jsonb, text, integer) is
'A non-empty JSON string up to a length (null when absent), else PT400 naming the field.';

create or replace function creditgate_private.outcome_object(
  p_value jsonb,
  p_field text,
  p_keys text[]
) returns jsonb
language plpgsql
immutable
set search_path = ''
as $$
declare
  v_key text;
begin
  if p_value is null or jsonb_typeof(p_value) = 'null' then
    return null;
  end if;
  if jsonb_typeof(p_value) <> 'object' then
    perform creditgate_private.invalid(p_field, 'must be a JSON object');
  end if;
  if p_keys is not null then
    select k into v_key from jsonb_object_keys(p_value) as k where k <> all(p_keys) order by k limit 1;
    if v_key is not null then
      perform creditgate_private.invalid(p_field || '.' || v_key, 'unknown field');
    end if;
  end if;
  return p_value;
end
$$;
comment on function creditgate_private.outcome_object(jsonb, text, text[]) is
'A JSON object with only the listed keys (any keys when null; null when absent), else PT400.';

-- The strict reading of a settle outcome for one generation, normalized:
-- {status, retryable, actual_cost, media: [...], output, provider: {name, http_status,
-- latency_ms}, error: {code, message}}. A succeeded outcome without output comes back as
-- failed / not retryable / empty_output. The input's error.detail (string) is checked and
-- left out: only provider_calls keeps it.
create or replace function creditgate_private.settle_outcome(
  p_generation creditgate.generations,
  p_outcome jsonb
) returns jsonb
language plpgsql
stable
set search_path = ''
as $$
declare
  v_outcome jsonb;
  v_status text;
  v_retryable boolean := false;
  v_actual_cost bigint;
  v_media jsonb := '[]'::jsonb;
  v_media_in jsonb;
  v_item jsonb;
  v_index integer := 0;
  v_field text;
  v_key_pattern text;
  v_storage_key text;
  v_content_type text;
  v_duration numeric;
  v_output jsonb;
  v_provider jsonb;
  v_error jsonb;
  v_error_code text;
  v_error_message text;
  v_text text;
begin
  v_outcome := creditgate_private.outcome_object(
    p_outcome, 'outcome',
    array['status', 'retryable', 'actual_cost', 'media', 'output', 'provider', 'error']
  );
  if v_outcome is null then
    perform creditgate_private.invalid('outcome', 'required');
  end if;

  v_status := v_outcome ->> 'status';
  if jsonb_typeof(v_outcome -> 'status') is distinct from 'string'
     or v_status not in ('succeeded', 'failed') then
    perform creditgate_private.invalid('outcome.status', 'succeeded or failed');
  end if;

  if jsonb_typeof(v_outcome -> 'retryable') = 'boolean' then
    v_retryable := (v_outcome ->> 'retryable')::boolean;
  elsif coalesce(jsonb_typeof(v_outcome -> 'retryable'), 'null') <> 'null' then
    perform creditgate_private.invalid('outcome.retryable', 'must be a boolean');
  end if;
  if v_retryable and v_status = 'succeeded' then
    perform creditgate_private.invalid('outcome.retryable', 'only for a failed outcome');
  end if;

  v_actual_cost := creditgate_private.outcome_integer(
    v_outcome -> 'actual_cost', 'outcome.actual_cost', 0, p_generation.cost
  );
  if v_actual_cost is not null and v_status <> 'succeeded' then
    perform creditgate_private.invalid('outcome.actual_cost', 'only for a succeeded outcome');
  end if;

  -- Media: files the worker already uploaded under media/<generation_id>/. Absent and
  -- JSON null both mean none (as for every other optional field).
  if coalesce(jsonb_typeof(v_outcome -> 'media'), 'null') not in ('array', 'null') then
    perform creditgate_private.invalid('outcome.media', 'must be an array');
  end if;
  v_media_in := case jsonb_typeof(v_outcome -> 'media') when 'array' then v_outcome -> 'media' else '[]'::jsonb end;
  if jsonb_array_length(v_media_in) > 0 then
    if v_status <> 'succeeded' then
      perform creditgate_private.invalid('outcome.media', 'only for a succeeded outcome');
    end if;
    if p_generation.kind = 'chat' then
      perform creditgate_private.invalid('outcome.media', 'chat generations produce no media');
    end if;
    if jsonb_array_length(v_media_in) > 16 then
      perform creditgate_private.invalid('outcome.media', 'at most 16 items');
    end if;
  end if;
  -- As media_storage_key_check, and the file name may not start with a dot ('..', '.env').
  v_key_pattern := '^media/' || p_generation.id::text || '/[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}$';
  for v_item in select e from jsonb_array_elements(v_media_in) as e loop
    v_field := format('outcome.media[%s]', v_index);
    perform creditgate_private.outcome_object(
      v_item, v_field,
      array['storage_key', 'content_type', 'bytes', 'width', 'height', 'duration_seconds']
    );
    if jsonb_typeof(v_item) is distinct from 'object' then
      perform creditgate_private.invalid(v_field, 'must be a JSON object');
    end if;
    v_storage_key := creditgate_private.outcome_text(v_item -> 'storage_key', v_field || '.storage_key', 200);
    if v_storage_key is null or v_storage_key !~ v_key_pattern then
      perform creditgate_private.invalid(
        v_field || '.storage_key', 'media/<generation_id>/<file name: [A-Za-z0-9._-], not starting with a dot>'
      );
    end if;
    v_content_type := creditgate_private.outcome_text(v_item -> 'content_type', v_field || '.content_type', 100);
    if v_content_type is null or v_content_type !~ '^[a-z]+/[a-z0-9][a-z0-9.+-]*$' then
      perform creditgate_private.invalid(v_field || '.content_type', 'a MIME type such as image/png');
    end if;
    if creditgate_private.outcome_integer(v_item -> 'bytes', v_field || '.bytes', 1, 1099511627776) is null then
      perform creditgate_private.invalid(v_field || '.bytes', 'required');
    end if;
    perform creditgate_private.outcome_integer(v_item -> 'width', v_field || '.width', 1, 65535);
    perform creditgate_private.outcome_integer(v_item -> 'height', v_field || '.height', 1, 65535);
    if coalesce(jsonb_typeof(v_item -> 'duration_seconds'), 'null') <> 'null' then
      v_duration := case jsonb_typeof(v_item -> 'duration_seconds')
        when 'number' then (v_item ->> 'duration_seconds')::numeric
      end;
      if v_duration is null or v_duration not between 0 and 86400 then
        perform creditgate_private.invalid(v_field || '.duration_seconds', 'a number from 0 to 86400');
      end if;
    end if;
    v_media := v_media || jsonb_build_array(v_item);
    v_index := v_index + 1;
  end loop;
  if (select count(distinct e ->> 'storage_key') from jsonb_array_elements(v_media) as e)
     <> jsonb_array_length(v_media) then
    perform creditgate_private.invalid('outcome.media', 'each storage_key once');
  end if;

  v_output := creditgate_private.outcome_object(v_outcome -> 'output', 'outcome.output', null);
  if v_output is not null and length(v_output::text) > 1000000 then
    perform creditgate_private.invalid('outcome.output', 'at most 1 MB of JSON');
  end if;
  -- Chat usage prices the turn when the worker sends no actual_cost (see chat_actual_cost).
  if p_generation.kind = 'chat' and v_output ? 'usage' then
    perform creditgate_private.outcome_object(v_output -> 'usage', 'outcome.output.usage', null);
    perform creditgate_private.outcome_integer(
      v_output #> '{usage,completion_tokens}', 'outcome.output.usage.completion_tokens', 0, 1000000000
    );
  end if;

  v_provider := coalesce(creditgate_private.outcome_object(
    v_outcome -> 'provider', 'outcome.provider', array['name', 'http_status', 'latency_ms']
  ), '{}'::jsonb);
  v_provider := jsonb_build_object(
    'name', creditgate_private.outcome_text(v_provider -> 'name', 'outcome.provider.name', 50),
    'http_status', creditgate_private.outcome_integer(
      v_provider -> 'http_status', 'outcome.provider.http_status', 100, 599
    ),
    'latency_ms', creditgate_private.outcome_integer(
      v_provider -> 'latency_ms', 'outcome.provider.latency_ms', 0, 86400000
    )
  );

  -- error.detail: the provider's own text, redacted by the worker; provider_calls keeps
  -- it (service_settle_generation), the normalized outcome (and so the generation) does not.
  v_error := creditgate_private.outcome_object(
    v_outcome -> 'error', 'outcome.error', array['code', 'message', 'detail']
  );
  if coalesce(jsonb_typeof(v_error -> 'detail'), 'null') not in ('null', 'string') then
    perform creditgate_private.invalid('outcome.error.detail', 'must be a string');
  end if;
  if v_error is not null then
    if v_status = 'succeeded' then
      perform creditgate_private.invalid('outcome.error', 'only for a failed outcome');
    end if;
    v_error_code := creditgate_private.outcome_text(v_error -> 'code', 'outcome.error.code', 100);
    if jsonb_typeof(v_error -> 'message') = 'string' then
      v_error_message := left(v_error ->> 'message', 2000);
    elsif coalesce(jsonb_typeof(v_error -> 'message'), 'null') <> 'null' then
      perform creditgate_private.invalid('outcome.error.message', 'must be a string');
    end if;
  end if;
  if v_status = 'failed' and v_error_code is null then
    perform creditgate_private.invalid('outcome.error.code', 'required for a failed outcome');
  end if;

  -- An empty success is a failure the user never pays for (DESIGN §3).
  if v_status = 'succeeded' then
    if p_generation.kind = 'chat' then
      v_text := case jsonb_typeof(v_output -> 'text') when 'string' then v_output ->> 'text' end;
      if v_text is null or btrim(v_text) = '' then
        v_status := 'failed';
      end if;
    elsif jsonb_array_length(v_media) = 0 then
      v_status := 'failed';
    end if;
    if v_status = 'failed' then
      v_retryable := false;
      v_actual_cost := null;
      v_error_code := 'empty_output';
      v_error_message := 'the provider reported success but returned no output';
    end if;
  end if;

  return jsonb_build_object(
    'status', v_status,
    'retryable', v_retryable,
    'actual_cost', v_actual_cost,
    'media', case when v_status = 'succeeded' then v_media else '[]'::jsonb end,
    'output', case when v_status = 'succeeded' then v_output end,
    'provider', v_provider,
    'error', case when v_error_code is not null then
      jsonb_build_object('code', v_error_code, 'message', v_error_message)
    end
  );
end
$$;
comment on function creditgate_private.settle_outcome(creditgate.generations, jsonb) is
'Validates a worker''s outcome strictly (PT400 naming the field) and normalizes it.';

-- What a chat turn cost: the request's own price with max_tokens replaced by the output
-- tokens the provider reported, at the prices it was charged at (generations.prices, not
-- the registry's current ones), so the prompt is priced exactly as it was charged. Never
-- more than the charge. Pricing stays in SQL (price_params); the worker only reports usage.
create or replace function creditgate_private.chat_actual_cost(
  p_generation creditgate.generations,
  p_completion_tokens bigint
) returns bigint
language plpgsql
stable
set search_path = ''
as $$
declare
  v_model creditgate.models;
  v_params jsonb;
begin
  select m.* into v_model from creditgate.models as m where m.id = p_generation.model_id;
  if v_model.id is null or p_completion_tokens is null then
    return p_generation.cost;
  end if;
  if jsonb_typeof(p_generation.prices) = 'object' then
    v_model := jsonb_populate_record(v_model, p_generation.prices);
  end if;
  v_params := p_generation.params || jsonb_build_object(
    'max_tokens', least(p_completion_tokens, coalesce((p_generation.params ->> 'max_tokens')::bigint, p_completion_tokens))
  );
  return least(
    p_generation.cost,
    (creditgate_private.price_params(v_model, v_params, false) ->> 'cost')::bigint
  );
end
$$;
comment on function creditgate_private.chat_actual_cost(creditgate.generations, bigint) is
'Price of a chat turn with its real output tokens (capped at the charge); unused tokens are refunded.';

-- Media TTL in hours from the media_ttl_hours setting (a positive number; default 24).
create or replace function creditgate_private.media_ttl()
returns interval
language plpgsql
stable
set search_path = ''
as $$
declare
  v_value jsonb := creditgate_private.setting('media_ttl_hours');
begin
  if jsonb_typeof(v_value) = 'number' and (v_value #>> '{}')::numeric > 0 then
    return make_interval(secs => ((v_value #>> '{}')::numeric * 3600)::double precision);
  end if;
  return interval '24 hours';
end
$$;
comment on function creditgate_private.media_ttl() is
'How long unsaved media live: setting media_ttl_hours (positive number), 24 hours if unset.';

create or replace function creditgate.service_settle_generation(
  generation_id uuid,
  worker_id text,
  lease_token text,
  outcome jsonb
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_token uuid;
  v_generation creditgate.generations;
  v_lease creditgate_private.generation_leases;
  v_charge_key text;
  v_outcome jsonb;
  v_status text;
  v_actual_cost bigint;
  v_refunded bigint := 0::bigint;
  v_requeued boolean := false;
  v_media jsonb := '[]'::jsonb;
  v_result jsonb;
  v_ttl interval;
  v_deleted boolean;
begin
  v_token := creditgate_private.check_lease_args(
    service_settle_generation.generation_id,
    service_settle_generation.worker_id,
    service_settle_generation.lease_token
  );
  -- kind, cost and user never change: read them unlocked to validate before taking locks.
  select g.* into v_generation
  from creditgate.generations as g
  where g.id = service_settle_generation.generation_id;
  if not found then
    perform creditgate_private.raise_error('not_found', jsonb_build_object('object', 'generation'));
  end if;
  v_outcome := creditgate_private.settle_outcome(v_generation, service_settle_generation.outcome);

  perform creditgate_private.lock_balance(v_generation.user_id);
  select g.* into v_generation
  from creditgate.generations as g
  where g.id = service_settle_generation.generation_id
  for update;
  select l.* into v_lease
  from creditgate_private.generation_leases as l
  where l.generation_id = v_generation.id;

  -- Replay of a settle that already took effect under this lease: first settle wins.
  if v_lease.settled_lease_token = v_token then
    return v_lease.settle_result;
  end if;
  if v_generation.status <> 'running'
     or v_lease.lease_owner is distinct from service_settle_generation.worker_id
     or v_lease.lease_token is distinct from v_token then
    perform creditgate_private.raise_error(
      'lease_lost',
      jsonb_build_object('generation_id', v_generation.id, 'status', v_generation.status)
    );
  end if;
  -- An expired lease the reaper has not taken back yet is still this worker's: its result
  -- is as good as any, and taking it spares the user a retry.

  -- Read under the balance lock, which the account's deletion holds until it commits.
  v_deleted := creditgate_private.user_deleted(v_generation.user_id);
  v_status := v_outcome ->> 'status';
  v_charge_key := 'charge:' || v_generation.id::text;
  insert into creditgate_private.provider_calls (
    generation_id, attempt, worker_id, provider, http_status, latency_ms, outcome,
    error_code, error_message, lease_token
  ) values (
    v_generation.id,
    v_generation.attempts,
    service_settle_generation.worker_id,
    coalesce(
      v_outcome #>> '{provider,name}',
      (select r.provider from creditgate_private.model_routes as r where r.model_id = v_generation.model_id)
    ),
    (v_outcome #>> '{provider,http_status}')::integer,
    (v_outcome #>> '{provider,latency_ms}')::integer,
    v_status,
    v_outcome #>> '{error,code}',
    -- error.detail, the provider's redacted text, is for operators only (settle_outcome).
    case when not v_deleted then
      left(coalesce(service_settle_generation.outcome #>> '{error,detail}', v_outcome #>> '{error,message}'), 4000)
    end,
    v_token
  );

  if v_status = 'succeeded' then
    v_actual_cost := (v_outcome ->> 'actual_cost')::bigint;
    if v_actual_cost is null and v_generation.kind = 'chat' and not v_deleted
       and jsonb_typeof(v_outcome #> '{output,usage,completion_tokens}') = 'number' then
      v_actual_cost := creditgate_private.chat_actual_cost(
        v_generation, (v_outcome #>> '{output,usage,completion_tokens}')::numeric::bigint
      );
    end if;
    v_actual_cost := coalesce(v_actual_cost, v_generation.cost);
    v_ttl := creditgate_private.media_ttl();
    -- A deleted account gets no media rows: the uploaded files go straight to the purge.
    insert into creditgate_private.media_purges (media_id, storage_key)
    select gen_random_uuid(), e.item ->> 'storage_key'
    from jsonb_array_elements(v_outcome -> 'media') as e (item)
    where v_deleted
    on conflict do nothing;
    with inserted as (
      insert into creditgate.media (
        generation_id, user_id, position, storage_key, content_type, bytes, width, height,
        duration_seconds, expires_at
      )
      select
        v_generation.id,
        v_generation.user_id,
        (e.n - 1)::integer,
        e.item ->> 'storage_key',
        e.item ->> 'content_type',
        -- Validated whole numbers, which JSON may spell 2048.0: through numeric.
        (e.item ->> 'bytes')::numeric::bigint,
        (e.item ->> 'width')::numeric::integer,
        (e.item ->> 'height')::numeric::integer,
        (e.item ->> 'duration_seconds')::numeric,
        now() + v_ttl
      from jsonb_array_elements(v_outcome -> 'media') with ordinality as e (item, n)
      where not v_deleted
      returning id, position, storage_key
    )
    select coalesce(
      jsonb_agg(jsonb_build_object('media_id', i.id, 'storage_key', i.storage_key) order by i.position),
      '[]'::jsonb
    ) into v_media
    from inserted as i;
    if v_actual_cost < v_generation.cost then
      v_refunded := (creditgate_private.refund_credits(
        v_generation.user_id, v_charge_key, v_generation.cost - v_actual_cost,
        'refund:' || v_generation.id::text, 'generation cost less than charged',
        jsonb_build_object('generation_id', v_generation.id, 'actual_cost', v_actual_cost)
      ) ->> 'refunded')::bigint;
    end if;
  elsif (v_outcome ->> 'retryable')::boolean and v_generation.attempts < v_generation.max_attempts
        and not v_deleted then
    v_status := 'queued';
    v_requeued := true;
  else
    v_actual_cost := 0;
    v_refunded := (creditgate_private.refund_credits(
      v_generation.user_id, v_charge_key, v_generation.cost,
      'refund:' || v_generation.id::text, 'generation failed',
      -- The code only: the ledger is append-only, so no provider text (which may echo the
      -- prompt) may go there; it could never be erased.
      jsonb_build_object('generation_id', v_generation.id, 'error', jsonb_build_object(
        'code', v_outcome #> '{error,code}'
      ))
    ) ->> 'refunded')::bigint;
  end if;
  if v_deleted and v_refunded > 0 then
    perform creditgate_private.forfeit_credits(
      v_generation.user_id, 'forfeit:refund:' || v_generation.id::text, 'account deleted',
      jsonb_build_object('generation_id', v_generation.id)
    );
  end if;

  v_result := jsonb_build_object(
    'generation_id', v_generation.id,
    'status', v_status,
    'refunded', v_refunded,
    'actual_cost', v_actual_cost,
    'media', v_media,
    'requeued', v_requeued
  );
  update creditgate.generations as g
  set status = v_status,
    actual_cost = v_actual_cost,
    output = case when not v_deleted then nullif(v_outcome -> 'output', 'null'::jsonb) end,
    error = case
      when not v_deleted then nullif(v_outcome -> 'error', 'null'::jsonb)
      when v_outcome ? 'error' then jsonb_build_object('code', v_outcome #> '{error,code}')
    end,
    finished_at = case when v_requeued then null else now() end,
    updated_at = now()
  where g.id = v_generation.id;
  update creditgate_private.generation_leases as l
  set lease_owner = null,
    lease_token = null,
    lease_expires_at = null,
    settle_result = v_result,
    settled_lease_token = v_token
  where l.generation_id = v_generation.id;
  if v_requeued then
    perform pg_notify('creditgate_generations', v_generation.id::text);
  else
    -- Wakes HTTP requests waiting for this generation (a channel workers do not listen on).
    perform pg_notify('creditgate_generation_settled', v_generation.id::text);
  end if;
  return v_result;
end
$$;
comment on function creditgate.service_settle_generation(uuid, text, text, jsonb) is
'Applies a worker''s outcome once per lease: media and partial refund, re-queue, or full refund.';
revoke all on function creditgate.service_settle_generation(uuid, text, text, jsonb) from public, anon, authenticated;
grant execute on function creditgate.service_settle_generation(uuid, text, text, jsonb) to service_role;

create or replace function creditgate.service_reap_expired_leases(now timestamptz default now())
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_candidate record;
  v_user_id uuid;
  v_generation creditgate.generations;
  v_lease creditgate_private.generation_leases;
  v_error jsonb;
  v_requeued integer := 0;
  v_failed integer := 0;
  v_refunded bigint := 0::bigint;
  v_refund bigint;
  v_deleted boolean;
begin
  if service_reap_expired_leases.now is null then
    perform creditgate_private.invalid('now', 'required');
  end if;
  for v_candidate in
    select g.id, g.user_id
    from creditgate_private.generation_leases as l
    join creditgate.generations as g on g.id = l.generation_id
    where l.lease_expires_at <= service_reap_expired_leases.now and g.status = 'running'
    order by g.user_id, g.id
  loop
    if v_user_id is distinct from v_candidate.user_id then
      perform creditgate_private.lock_balance(v_candidate.user_id);
      v_user_id := v_candidate.user_id;
    end if;
    -- Re-read under the locks: the worker may have settled or heartbeaten meanwhile.
    select g.* into v_generation
    from creditgate.generations as g
    where g.id = v_candidate.id
    for update;
    select l.* into v_lease
    from creditgate_private.generation_leases as l
    where l.generation_id = v_generation.id;
    continue when v_generation.status <> 'running'
      or v_lease.lease_expires_at > service_reap_expired_leases.now;

    v_error := jsonb_build_object(
      'code', 'lease_expired',
      'message', 'the worker stopped renewing its lease'
    );
    insert into creditgate_private.provider_calls (
      generation_id, attempt, worker_id, provider, outcome, error_code, error_message, lease_token
    ) values (
      v_generation.id,
      v_generation.attempts,
      v_lease.lease_owner,
      (select r.provider from creditgate_private.model_routes as r where r.model_id = v_generation.model_id),
      'lease_expired',
      v_error ->> 'code',
      v_error ->> 'message',
      v_lease.lease_token
    );
    update creditgate_private.generation_leases as l
    set lease_owner = null, lease_token = null, lease_expires_at = null
    where l.generation_id = v_generation.id;
    -- A deleted account's job never runs again (its params are erased).
    v_deleted := creditgate_private.user_deleted(v_generation.user_id);
    if v_generation.attempts < v_generation.max_attempts and not v_deleted then
      update creditgate.generations as g
      set status = 'queued',
        error = v_error,
        updated_at = pg_catalog.now()
      where g.id = v_generation.id;
      perform pg_notify('creditgate_generations', v_generation.id::text);
      v_requeued := v_requeued + 1;
    else
      update creditgate.generations as g
      set status = 'failed',
        actual_cost = 0,
        error = v_error,
        finished_at = pg_catalog.now(),
        updated_at = pg_catalog.now()
      where g.id = v_generation.id;
      perform pg_notify('creditgate_generation_settled', v_generation.id::text);
      v_refund := (creditgate_private.refund_credits(
        v_generation.user_id, 'charge:' || v_generation.id::text, v_generation.cost,
        'refund:' || v_generation.id::text, 'generation failed: worker lease expired',
        jsonb_build_object('generation_id', v_generation.id, 'error', v_error)
      ) ->> 'refunded')::bigint;
      if v_deleted and v_refund > 0 then
        perform creditgate_private.forfeit_credits(
          v_generation.user_id, 'forfeit:refund:' || v_generation.id::text, 'account deleted',
          jsonb_build_object('generation_id', v_generation.id)
        );
      end if;
      v_refunded := v_refunded + v_refund;
      v_failed := v_failed + 1;
    end if;
  end loop;
  return jsonb_build_object('requeued', v_requeued, 'failed', v_failed, 'refunded', v_refunded);
end
$$;
comment on function creditgate.service_reap_expired_leases(timestamptz) is
'Takes back jobs whose worker vanished: re-queued while attempts are left, else failed and refunded.';
revoke all on function creditgate.service_reap_expired_leases(timestamptz) from public, anon, authenticated;
grant execute on function creditgate.service_reap_expired_leases(timestamptz) to service_role;

revoke all on function creditgate_private.check_lease_args(uuid, text, text) from public, anon, authenticated;
revoke all on function creditgate_private.check_worker_id(text) from public, anon, authenticated;
revoke all on function creditgate_private.check_lease_seconds(integer) from public, anon, authenticated;
revoke all on function creditgate_private.default_lease_seconds() from public, anon, authenticated;
revoke all on function creditgate_private.job_json(creditgate.generations) from public, anon, authenticated;
revoke all on function creditgate_private.outcome_integer(jsonb, text, bigint, bigint) from public, anon, authenticated;
revoke all on function creditgate_private.outcome_text(jsonb, text, integer) from public, anon, authenticated;
revoke all on function creditgate_private.outcome_object(jsonb, text, text[]) from public, anon, authenticated;
revoke all on function creditgate_private.settle_outcome(creditgate.generations, jsonb) from public, anon, authenticated;
revoke all on function creditgate_private.media_ttl() from public, anon, authenticated;
revoke all on function creditgate_private.chat_actual_cost(creditgate.generations, bigint) from public, anon, authenticated;

-- ===== db/functions/ledger/account.sql =====
-- creditgate.get_balance() -> jsonb {balance, available, owed, plan, expiring, daily}   authenticated
-- creditgate.is_admin() -> boolean                                              authenticated
-- Errors: PT401 not_authenticated (get_balance: no caller; both: a deleted account).

drop function if exists creditgate_private.daily_usage(uuid, text);
create or replace function creditgate_private.daily_usage(p_balance creditgate.balances)
returns jsonb
language plpgsql
stable
set search_path = ''
as $$
declare
  -- The current UTC day; caps reset at UTC midnight.
  v_today date := (now() at time zone 'UTC')::date;
  v_cap jsonb := creditgate_private.setting('plan_daily_caps') -> coalesce(p_balance.plan, 'free');
begin
  -- From the balance row the caller has already read (no row: nothing used, plan free).
  -- Net of refunds (the ledger trigger keeps the figure): failed and canceled generations
  -- were refunded in full, succeeded ones cost their actual_cost, queued and running ones
  -- hold their full price until settled.
  return jsonb_build_object(
    'used', case when p_balance.daily_used_on = v_today then p_balance.daily_used::bigint else 0 end,
    'cap', case when jsonb_typeof(v_cap) = 'number' then v_cap else 'null'::jsonb end
  );
end
$$;
comment on function creditgate_private.daily_usage(creditgate.balances) is
'Credits charged today (UTC, net of refunds) by the balance row''s user, and their plan''s cap (null = uncapped).';
revoke all on function creditgate_private.daily_usage(creditgate.balances) from public, anon, authenticated;

create or replace function creditgate.get_balance()
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_user_id uuid := creditgate_private.require_user();
  v_row creditgate.balances;
begin
  select b.* into v_row from creditgate.balances as b where b.user_id = v_user_id;
  return jsonb_build_object(
    'balance', coalesce(v_row.balance::bigint, 0),
    'available', creditgate_private.available_credits(v_user_id, now()),
    -- Credits a Stripe refund or dispute could not take back; the next credits pay them.
    'owed', coalesce(v_row.owed::bigint, 0),
    'plan', coalesce(v_row.plan::text, 'free'),
    'expiring', coalesce((
      select jsonb_agg(jsonb_build_object(
        'lot_id', l.id, 'amount', l.remaining, 'category', l.category, 'expires_at', l.expires_at
      ) order by l.expires_at, l.id)
      from creditgate.credit_lots as l
      where l.user_id = v_user_id
        and l.live
        and l.expires_at > now()
        and l.expires_at <= now() + interval '30 days'
    ), '[]'::jsonb),
    'daily', creditgate_private.daily_usage(v_row)
  );
end
$$;
comment on function creditgate.get_balance() is
'The caller''s balance, spendable credits, credits owed after clawbacks, plan, lots expiring within 30 days, daily usage.';
revoke all on function creditgate.get_balance() from public, anon, authenticated;
grant execute on function creditgate.get_balance() to authenticated;

create or replace function creditgate.is_admin()
returns boolean
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_user_id uuid := auth.uid();
begin
  if v_user_id is null then
    return false;
  end if;
  -- A deleted account's still-valid JWT: PT401, as from every client function (the
  -- service's account check for routes that only read tables).
  perform creditgate_private.require_user();
  return exists (select 1 from creditgate_private.admins as a where a.user_id = v_user_id);
end
$$;
comment on function creditgate.is_admin() is
'Whether the caller is an admin (creditgate_private.admins; never JWT metadata). PT401 for a deleted account.';
revoke all on function creditgate.is_admin() from public, anon, authenticated;
grant execute on function creditgate.is_admin() to authenticated;

-- ===== db/functions/ledger/audit.sql =====
-- creditgate.audit(since) -> jsonb {ok, checks: [{name, failures, samples}]}   service_role
--
-- Re-derives every money invariant (DESIGN §3) from the raw rows. `since` limits the
-- per-user checks to users with ledger activity since then (null = everyone).
-- Checks live in creditgate_private.audit_checks(); each returns a failure count and up to
-- five sample rows so an operator can see what broke.

create or replace function creditgate_private.audit_checks(p_since timestamptz)
returns table (name text, failures bigint, samples jsonb)
language plpgsql
stable
set search_path = ''
as $$
begin
  -- Invariant 1: balance = sum(ledger.delta) = sum(lots.remaining) >= 0, per user.
  return query
  with users as (
    select b.user_id, b.balance
    from creditgate.balances as b
    where p_since is null or exists (
      select 1 from creditgate.ledger as l where l.user_id = b.user_id and l.created_at >= p_since
    )
  ),
  sums as (
    select
      u.user_id,
      u.balance,
      coalesce((select sum(l.delta) from creditgate.ledger as l where l.user_id = u.user_id), 0) as ledger_sum,
      coalesce((select sum(c.remaining) from creditgate.credit_lots as c where c.user_id = u.user_id), 0) as lots_sum
    from users as u
  ),
  bad as (
    select * from sums as s
    where s.balance <> s.ledger_sum or s.balance <> s.lots_sum or s.balance < 0
  )
  select 'balance_matches_ledger_and_lots'::text, count(*),
    coalesce(jsonb_agg(to_jsonb(b) - 'rn') filter (where b.rn <= 5), '[]')
  from (select bad.*, row_number() over () as rn from bad) as b;

  -- balance_after on each entry continues the running sum of that user's deltas.
  return query
  with chain as (
    select l.id, l.user_id, l.balance_after,
      sum(l.delta) over (partition by l.user_id order by l.id) as running
    from creditgate.ledger as l
    where p_since is null or l.user_id in (
      select x.user_id from creditgate.ledger as x where x.created_at >= p_since
    )
  ),
  bad as (select c.* from chain as c where c.balance_after <> c.running)
  select 'balance_after_chain'::text, count(*),
    coalesce(jsonb_agg(to_jsonb(b) - 'rn') filter (where b.rn <= 5), '[]')
  from (select bad.*, row_number() over (order by bad.id) as rn from bad) as b;

  -- Each entry's lot movements add up to its delta; each lot's movements to its remaining,
  -- which is never more than the lot's amount.
  return query
  with bad as (
    select l.id as entry_id, l.delta, coalesce(sum(m.amount), 0) as moved
    from creditgate.ledger as l
    left join creditgate_private.lot_movements as m on m.ledger_id = l.id
    where p_since is null or l.created_at >= p_since
    group by l.id, l.delta
    having coalesce(sum(m.amount), 0) <> l.delta
  )
  select 'entry_lot_movements_match_delta'::text, count(*),
    coalesce(jsonb_agg(to_jsonb(b) - 'rn') filter (where b.rn <= 5), '[]')
  from (select bad.*, row_number() over (order by bad.entry_id) as rn from bad) as b;

  return query
  with bad as (
    select c.id as lot_id, c.remaining, coalesce(sum(m.amount), 0) as moved
    from creditgate.credit_lots as c
    left join creditgate_private.lot_movements as m on m.lot_id = c.id
    group by c.id, c.remaining, c.amount
    having coalesce(sum(m.amount), 0) <> c.remaining or c.remaining > c.amount
  )
  select 'lot_remaining_matches_movements'::text, count(*),
    coalesce(jsonb_agg(to_jsonb(b) - 'rn') filter (where b.rn <= 5), '[]')
  from (select bad.*, row_number() over (order by bad.lot_id) as rn from bad) as b;

  -- Every lot movement names an existing entry and an existing lot of that entry's user
  -- (checked here rather than by foreign keys, which cost the charge path two lookups and two
  -- row locks; movements are written only by the money primitives).
  return query
  with bad as (
    select m.ledger_id, m.lot_id, m.amount, e.user_id as entry_user_id, c.user_id as lot_user_id
    from creditgate_private.lot_movements as m
    left join creditgate.ledger as e on e.id = m.ledger_id
    left join creditgate.credit_lots as c on c.id = m.lot_id
    where e.id is null or c.id is null or c.user_id <> e.user_id
  )
  select 'lot_movements_reference_entries_and_lots'::text, count(*),
    coalesce(jsonb_agg(to_jsonb(b) - 'rn') filter (where b.rn <= 5), '[]')
  from (select bad.*, row_number() over (order by bad.ledger_id, bad.lot_id) as rn from bad) as b;

  -- Invariant 4: no ledger key applied twice (also holds if the unique index were dropped).
  return query
  with bad as (
    select l.idempotency_key, count(*) as entries
    from creditgate.ledger as l
    group by l.idempotency_key
    having count(*) > 1
  )
  select 'idempotency_keys_unique'::text, count(*),
    coalesce(jsonb_agg(to_jsonb(b) - 'rn') filter (where b.rn <= 5), '[]')
  from (select bad.*, row_number() over () as rn from bad) as b;

  -- Invariant 3 (ledger side): every refund returns part of a spend of the same user, and
  -- the refunds of a charge never exceed it.
  return query
  with refunded as (
    select r.charge_key, r.user_id, sum(r.amount) as refunded
    from creditgate.ledger as r
    where r.entry_type = 'refund'
    group by r.charge_key, r.user_id
  ),
  bad as (
    select f.charge_key, f.user_id, s.amount as charged, f.refunded
    from refunded as f
    left join creditgate.ledger as s
      on s.idempotency_key = f.charge_key and s.entry_type = 'spend' and s.user_id = f.user_id
    where s.id is null or f.refunded > s.amount
  )
  select 'refunds_within_charge'::text, count(*),
    coalesce(jsonb_agg(to_jsonb(b) - 'rn') filter (where b.rn <= 5), '[]')
  from (select bad.*, row_number() over () as rn from bad) as b;

  -- Clawback records agree with their ledger entries.
  return query
  with bad as (
    select c.idempotency_key, c.taken, l.amount as posted
    from creditgate_private.clawbacks as c
    left join creditgate.ledger as l on l.id = c.ledger_id
    where (c.taken > 0) <> (l.id is not null)
       or (l.id is not null
           and (l.amount <> c.taken or l.entry_type <> 'clawback' or l.user_id <> c.user_id))
  )
  select 'clawbacks_match_ledger'::text, count(*),
    coalesce(jsonb_agg(to_jsonb(b) - 'rn') filter (where b.rn <= 5), '[]')
  from (select bad.*, row_number() over () as rn from bad) as b;

  -- Owed credits (DESIGN §3, turn 2): per user, owed >= 0 and owed = what clawbacks could
  -- not take, less what later credits paid (the ledger's collection entries), less what won
  -- disputes forgave.
  return query
  with collections as (
    select l.user_id, l.metadata ->> 'clawback_key' as clawback_key, sum(l.amount) as collected
    from creditgate.ledger as l
    where l.entry_type = 'clawback' and l.metadata ? 'paid_from_entry_id'
    group by l.user_id, l.metadata ->> 'clawback_key'
  ),
  per_user as (
    select c.user_id,
      sum(c.requested - c.taken) as shortfalls,
      sum(c.cancelled) as cancelled,
      coalesce(sum(k.collected), 0) as collected,
      count(*) filter (where coalesce(k.collected, 0) + c.cancelled > c.requested - c.taken) as overpaid
    from creditgate_private.clawbacks as c
    left join collections as k on k.clawback_key = c.idempotency_key and k.user_id = c.user_id
    group by c.user_id
  ),
  bad as (
    select b.user_id, b.owed::bigint as owed, p.shortfalls, p.collected, p.cancelled, p.overpaid
    from creditgate.balances as b
    left join per_user as p on p.user_id = b.user_id
    where b.owed < 0
       or b.owed <> coalesce(p.shortfalls - p.collected - p.cancelled, 0)
       or coalesce(p.overpaid, 0) > 0
  )
  select 'owed_matches_shortfalls'::text, count(*),
    coalesce(jsonb_agg(to_jsonb(b) - 'rn') filter (where b.rn <= 5), '[]')
  from (select bad.*, row_number() over (order by bad.user_id) as rn from bad) as b;

  -- Each clawback's collected figure is the sum of the collection entries tied to it, and
  -- every collection entry names a clawback of its user.
  return query
  with collections as (
    select l.user_id, l.metadata ->> 'clawback_key' as clawback_key, sum(l.amount) as collected
    from creditgate.ledger as l
    where l.entry_type = 'clawback' and l.metadata ? 'paid_from_entry_id'
    group by l.user_id, l.metadata ->> 'clawback_key'
  ),
  bad as (
    select coalesce(c.idempotency_key, k.clawback_key) as clawback_key,
      c.collected as recorded, k.collected as posted
    from creditgate_private.clawbacks as c
    full join collections as k on k.clawback_key = c.idempotency_key and k.user_id = c.user_id
    where c.idempotency_key is null or c.collected <> coalesce(k.collected, 0)
  )
  select 'owed_collections_match_ledger'::text, count(*),
    coalesce(jsonb_agg(to_jsonb(b) - 'rn') filter (where b.rn <= 5), '[]')
  from (select bad.*, row_number() over (order by bad.clawback_key) as rn from bad) as b;

  -- Paid checkouts held because amount or currency did not match the pack: each needs an
  -- operator's decision (grant by hand or refund), then resolved_at.
  return query
  with bad as (
    select h.idempotency_key, h.user_id, h.price_id, h.quantity, h.reason, h.expected_amount,
      h.expected_currency, h.amount_total, h.currency, h.created_at
    from creditgate_private.checkout_holds as h
    where h.resolved_at is null
  )
  select 'checkout_holds_unresolved'::text, count(*),
    coalesce(jsonb_agg(to_jsonb(b) - 'rn') filter (where b.rn <= 5), '[]')
  from (select bad.*, row_number() over (order by bad.created_at) as rn from bad) as b;

  -- Settings sanity: only known keys, each of its default's JSON type (null = any).
  return query
  with bad as (
    select s.key, s.value, d.value as default_value
    from creditgate_private.settings as s
    left join creditgate_private.setting_defaults() as d on d.key = s.key
    where d.key is null
       or (jsonb_typeof(d.value) <> 'null' and jsonb_typeof(s.value) <> jsonb_typeof(d.value))
  )
  select 'settings_known_and_typed'::text, count(*),
    coalesce(jsonb_agg(to_jsonb(b) - 'rn') filter (where b.rn <= 5), '[]')
  from (select bad.*, row_number() over () as rn from bad) as b;

  -- Generations in scope: created, changed or refunded since p_since (null = all).
  -- Invariant 2: each generation has exactly one spend, keyed by its charge key, for its
  -- cost, from its owner (and no other spend names it).
  return query
  with gens as (
    select g.*, 'charge:' || g.id::text as charge_key from creditgate.generations as g
    where p_since is null or g.updated_at >= p_since or exists (
      select 1 from creditgate.ledger as x where x.generation_id = g.id and x.created_at >= p_since
    )
  ),
  bad as (
    select g.id as generation_id, g.cost, g.charge_key, s.entry_type, s.amount, s.user_id,
      (select count(*) from creditgate.ledger as o
        where o.entry_type = 'spend' and o.generation_id = g.id
          and o.idempotency_key <> g.charge_key) as other_spends
    from gens as g
    left join creditgate.ledger as s on s.idempotency_key = g.charge_key
    where s.id is null
       or s.entry_type <> 'spend'
       or s.amount <> g.cost
       or s.user_id <> g.user_id
       or exists (
         select 1 from creditgate.ledger as o
         where o.entry_type = 'spend' and o.generation_id = g.id and o.idempotency_key <> g.charge_key
       )
  )
  select 'generation_charged_once'::text, count(*),
    coalesce(jsonb_agg(to_jsonb(b) - 'rn') filter (where b.rn <= 5), '[]')
  from (select bad.*, row_number() over (order by bad.generation_id) as rn from bad) as b;

  -- Invariant 3: refunds follow the outcome. Never more than the charge; failed and
  -- canceled refunded in full by exactly one entry; succeeded refunded cost - actual_cost
  -- (by at most one entry); queued and running not refunded at all.
  return query
  with gens as (
    select g.*, 'charge:' || g.id::text as charge_key from creditgate.generations as g
    where p_since is null or g.updated_at >= p_since or exists (
      select 1 from creditgate.ledger as x where x.generation_id = g.id and x.created_at >= p_since
    )
  ),
  refunds as (
    select g.id as generation_id, g.status, g.cost, g.actual_cost,
      coalesce(sum(r.amount), 0) as refunded, count(r.id) as entries
    from gens as g
    left join creditgate.ledger as r on r.charge_key = g.charge_key and r.entry_type = 'refund'
    group by g.id, g.status, g.cost, g.actual_cost
  ),
  bad as (
    select f.* from refunds as f
    where f.refunded > f.cost
       or (f.status in ('failed', 'canceled') and (f.refunded <> f.cost or f.entries <> 1))
       or (f.status = 'succeeded' and (
         f.actual_cost is null or f.refunded <> f.cost - f.actual_cost or f.entries > 1
       ))
       or (f.status in ('queued', 'running') and f.entries > 0)
  )
  select 'generation_refunds_match_outcome'::text, count(*),
    coalesce(jsonb_agg(to_jsonb(b) - 'rn') filter (where b.rn <= 5), '[]')
  from (select bad.*, row_number() over (order by bad.generation_id) as rn from bad) as b;

  -- Ops: running jobs whose lease ran out over 10 minutes ago (is the reaper running?), or
  -- that hold no lease at all (the lease lives in a private table, without a foreign key).
  return query
  with bad as (
    select g.id as generation_id, l.lease_owner, l.lease_expires_at, g.attempts
    from creditgate.generations as g
    left join creditgate_private.generation_leases as l on l.generation_id = g.id
    where g.status = 'running'
      and (l.lease_expires_at is null or l.lease_expires_at < now() - interval '10 minutes')
  )
  select 'stuck_leases'::text, count(*),
    coalesce(jsonb_agg(to_jsonb(b) - 'rn') filter (where b.rn <= 5), '[]')
  from (select bad.*, row_number() over (order by bad.lease_expires_at) as rn from bad) as b;

  -- Generations name an existing model (checked here rather than by a foreign key, whose
  -- check share-locked the model's row in every request for that model).
  return query
  with bad as (
    select g.id as generation_id, g.model_id, g.kind
    from creditgate.generations as g
    where (p_since is null or g.updated_at >= p_since)
      and not exists (select 1 from creditgate.models as m where m.id = g.model_id)
  )
  select 'generations_reference_models'::text, count(*),
    coalesce(jsonb_agg(to_jsonb(b) - 'rn') filter (where b.rn <= 5), '[]')
  from (select bad.*, row_number() over (order by bad.generation_id) as rn from bad) as b;

  -- Media belong to an existing generation of the same user.
  return query
  with bad as (
    select m.id as media_id, m.user_id, m.generation_id, g.user_id as generation_user_id
    from creditgate.media as m
    left join creditgate.generations as g on g.id = m.generation_id
    where (p_since is null or m.created_at >= p_since)
      and (g.id is null or g.user_id <> m.user_id)
  )
  select 'media_owned_like_generation'::text, count(*),
    coalesce(jsonb_agg(to_jsonb(b) - 'rn') filter (where b.rn <= 5), '[]')
  from (select bad.*, row_number() over (order by bad.media_id) as rn from bad) as b;

  -- Today's usage on each balance row (what daily caps read) equals today's generation
  -- charges in the ledger less their refunds.
  return query
  with today as (
    select (now() at time zone 'UTC')::date as day
  ),
  charged as (
    select l.user_id, l.amount - coalesce((
      select sum(r.amount) from creditgate.ledger as r where r.charge_key = l.idempotency_key
    ), 0) as net
    from creditgate.ledger as l, today as t
    where l.entry_type = 'spend'
      and l.generation_id is not null
      and l.created_at >= t.day::timestamp at time zone 'UTC'
      and (l.created_at at time zone 'UTC')::date = t.day
  ),
  derived as (
    select c.user_id, sum(c.net)::bigint as used from charged as c group by c.user_id
  ),
  bad as (
    select b.user_id,
      case when b.daily_used_on = t.day then b.daily_used::bigint else 0 end as daily_used,
      coalesce(d.used, 0) as ledger_used
    from creditgate.balances as b
    cross join today as t
    left join derived as d on d.user_id = b.user_id
    where (b.daily_used_on = t.day or d.user_id is not null)
      and (case when b.daily_used_on = t.day then b.daily_used::bigint else 0 end)
          <> coalesce(d.used, 0)
  )
  select 'daily_usage_matches_ledger'::text, count(*),
    coalesce(jsonb_agg(to_jsonb(b) - 'rn') filter (where b.rn <= 5), '[]')
  from (select bad.*, row_number() over (order by bad.user_id) as rn from bad) as b;

  -- Deleted accounts hold nothing: no credits, no media rows, no work waiting to run, no
  -- personal data on their generations (running work may still settle; it keeps nothing).
  return query
  with deleted as (
    select d.user_id,
      coalesce((select b.balance::bigint from creditgate.balances as b where b.user_id = d.user_id), 0)
        as balance,
      (select count(*) from creditgate.media as m where m.user_id = d.user_id) as media,
      (select count(*) from creditgate.generations as g
       where g.user_id = d.user_id
         and (g.status = 'queued' or g.params <> '{}'::jsonb or g.output is not null))
      + (select count(*) from creditgate_private.generation_requests as r
         where r.user_id = d.user_id and r.client_ip is not null) as generations
    from creditgate_private.deleted_users as d
    where p_since is null or d.deleted_at >= p_since
  ),
  bad as (
    select x.* from deleted as x
    where x.balance <> 0 or x.media > 0 or x.generations > 0
  )
  select 'deleted_users_hold_nothing'::text, count(*),
    coalesce(jsonb_agg(to_jsonb(b) - 'rn') filter (where b.rn <= 5), '[]')
  from (select bad.*, row_number() over (order by bad.user_id) as rn from bad) as b;
end
$$;
comment on function creditgate_private.audit_checks(timestamptz) is
'Every audit check: name, number of failures, up to five samples.';
revoke all on function creditgate_private.audit_checks(timestamptz) from public, anon, authenticated;

create or replace function creditgate.audit(since timestamptz default null)
returns jsonb
language sql
stable
security definer
set search_path = ''
as $$
  select jsonb_build_object(
    'ok', coalesce(bool_and(c.failures = 0), true),
    'checks', coalesce(jsonb_agg(jsonb_build_object(
      'name', c.name, 'failures', c.failures, 'samples', c.samples
    )), '[]')
  )
  from creditgate_private.audit_checks(since) as c;
$$;
comment on function creditgate.audit(timestamptz) is
'Checks every money invariant; {ok, checks: [{name, failures, samples}]}. For operators and tests.';
revoke all on function creditgate.audit(timestamptz) from public, anon, authenticated;
grant execute on function creditgate.audit(timestamptz) to service_role;

-- ===== db/functions/ledger/deletion.sql =====
-- Account deletion (DESIGN §3 amendments). GoTrue, and the Supabase dashboard through it,
-- deletes a user's auth.users row as supabase_auth_admin; that delete must always succeed.
--
-- creditgate_private.user_deleted(p_user_id) -> boolean
--   Whether the user's auth.users row was deleted (creditgate_private.deleted_users).
-- creditgate_private.forfeit_credits(p_user_id, p_key, p_reason, p_metadata) -> bigint
--   Posts a `forfeit` entry for the user's whole balance, taking every lot with credits
--   left (expired or not); returns the amount (0: nothing to forfeit, no entry). The
--   caller holds the balance lock. Never fails on its key: a key already taken (a user id
--   deleted twice) gets a unique suffix, so a delete is never refused.
-- creditgate_private.erase_generations(p_user_id, p_generation_id) -> void
--   Erases what is personal from the user's generations (all of them, or one): params,
--   output, error texts (the code stays); the client address and request hash of their
--   request records; the media list of their settle results; the provider's error texts
--   in provider_calls. Status, costs and keys stay.
-- creditgate_private.tg_users__after_delete(): AFTER DELETE on auth.users.
--   In the deleting transaction, under the user's balance lock: records the deletion,
--   drops admin rights and the user's rate-limit counters, cancels and refunds queued work
--   (refund:<generation_id>), forfeits the rest (forfeit:<user_id>), queues the user's media
--   files for purge and deletes their media rows, erases personal data from generations.
--   Work already running settles later (service_settle_generation, the reaper): it is never
--   re-queued, keeps nothing personal, and what it refunds is forfeited at once.
--   Raises nothing on purpose: a failure here would fail GoTrue's delete.

create or replace function creditgate_private.user_deleted(p_user_id uuid)
returns boolean
language plpgsql
stable
set search_path = ''
as $$
begin
  return exists (select 1 from creditgate_private.deleted_users as d where d.user_id = p_user_id);
end
$$;
comment on function creditgate_private.user_deleted(uuid) is
'Whether the user''s account (auth.users row) was deleted.';

create or replace function creditgate_private.forfeit_credits(
  p_user_id uuid,
  p_key text,
  p_reason text,
  p_metadata jsonb default '{}'
) returns bigint
language plpgsql
set search_path = ''
as $$
declare
  v_balance bigint;
  v_key text := p_key;
  v_hash text;
  v_entry creditgate.ledger;
  v_moved bigint;
begin
  select b.balance into v_balance from creditgate.balances as b where b.user_id = p_user_id;
  if coalesce(v_balance, 0) = 0 then
    return 0;
  end if;
  v_hash := md5(jsonb_build_array('forfeit', p_user_id, v_balance)::text);
  perform pg_catalog.pg_advisory_xact_lock(1667720057, pg_catalog.hashtext(v_key));
  if exists (select 1 from creditgate.ledger as l where l.idempotency_key = v_key) then
    v_key := left(p_key, 200) || ':' || gen_random_uuid()::text;
  end if;
  v_entry := creditgate_private.post_entry(
    p_user_id, 'forfeit', v_balance, v_key, v_hash, null, null, p_reason, p_metadata
  );
  -- Every lot with credits left, expired ones included: the balance counts them until the
  -- expiry sweep runs, and the account keeps nothing.
  with lots as (
    select l.id, l.remaining
    from creditgate.credit_lots as l
    where l.user_id = p_user_id and l.live
    for update
  ),
  emptied as (
    update creditgate.credit_lots as l
    set remaining = 0
    from lots as o
    where l.id = o.id
    returning l.id, o.remaining as taken
  ),
  recorded as (
    insert into creditgate_private.lot_movements (ledger_id, lot_id, amount)
    select v_entry.id, e.id, -e.taken from emptied as e
    returning amount
  )
  select coalesce(-sum(r.amount), 0) into v_moved from recorded as r;
  if v_moved <> v_balance then
    raise exception 'lots of user % hold % of a balance of %', p_user_id, v_moved, v_balance;
  end if;
  return v_balance;
end
$$;
comment on function creditgate_private.forfeit_credits(uuid, text, text, jsonb) is
'Forfeits the user''s whole balance (a closed account keeps nothing): one forfeit entry emptying every lot.';

create or replace function creditgate_private.erase_generations(
  p_user_id uuid,
  p_generation_id uuid default null
) returns void
language plpgsql
set search_path = ''
as $$
begin
  update creditgate.generations as g
  set params = '{}'::jsonb,
    output = null,
    error = nullif(jsonb_strip_nulls(jsonb_build_object('code', g.error -> 'code')), '{}'::jsonb)
  where g.user_id = p_user_id
    and (p_generation_id is null or g.id = p_generation_id);
  -- The request record: the client's address, and the hash of what it sent (a hash of the
  -- prompt would confirm a guess of it). The key stays, so the record still names the row.
  update creditgate_private.generation_requests as r
  set client_ip = null, request_hash = 'erased'
  where r.user_id = p_user_id
    and (p_generation_id is null or r.generation_id = p_generation_id);
  update creditgate_private.generation_leases as l
  set settle_result = jsonb_set(l.settle_result, '{media}', '[]'::jsonb)
  where l.settle_result ? 'media'
    and l.generation_id in (
      select g.id from creditgate.generations as g
      where g.user_id = p_user_id and (p_generation_id is null or g.id = p_generation_id)
    );
  update creditgate_private.provider_calls as c
  set error_message = null
  where c.error_message is not null
    and c.generation_id in (
      select g.id from creditgate.generations as g
      where g.user_id = p_user_id and (p_generation_id is null or g.id = p_generation_id)
    );
end
$$;
comment on function creditgate_private.erase_generations(uuid, uuid) is
'Erases the personal data of a deleted user''s generations (params, output, error texts); costs and status stay.';

create or replace function creditgate_private.tg_users__after_delete()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_generation creditgate.generations;
begin
  insert into creditgate_private.deleted_users (user_id) values (old.id)
  on conflict (user_id) do update set deleted_at = excluded.deleted_at;
  delete from creditgate_private.admins as a where a.user_id = old.id;
  delete from creditgate_private.rate_limit_counters as c where c.subject = old.id::text;

  -- The user's balance lock, as every money operation takes it first: a settle, a cancel
  -- or a request of this user waits for this transaction, then sees the account deleted.
  perform 1 from creditgate.balances as b where b.user_id = old.id for update;
  if not found then
    -- Never had a balance row (signed up before creditgate): no money, no work.
    return null;
  end if;

  for v_generation in
    select g.* from creditgate.generations as g
    where g.user_id = old.id and g.status = 'queued'
    order by g.id
    for update
  loop
    update creditgate.generations as g
    set status = 'canceled', finished_at = now(), updated_at = now(),
      error = jsonb_build_object('code', 'account_deleted')
    where g.id = v_generation.id;
    perform pg_notify('creditgate_generation_settled', v_generation.id::text);
    perform creditgate_private.refund_credits(
      old.id, 'charge:' || v_generation.id::text, v_generation.cost, 'refund:' || v_generation.id::text,
      'canceled: account deleted', jsonb_build_object('generation_id', v_generation.id)
    );
  end loop;
  perform creditgate_private.forfeit_credits(old.id, 'forfeit:' || old.id::text, 'account deleted');

  -- Files go through the purge sweep; their rows go now (saved ones too).
  insert into creditgate_private.media_purges (media_id, storage_key)
  select m.id, m.storage_key
  from creditgate.media as m
  where m.user_id = old.id and m.purged_at is null
  on conflict do nothing;
  delete from creditgate.media as m where m.user_id = old.id;

  perform creditgate_private.erase_generations(old.id);
  return null;
end
$$;
comment on function creditgate_private.tg_users__after_delete() is
'A deleted auth user: queued work refunded, credits forfeited, personal data erased, files queued for purge.';

revoke all on function creditgate_private.user_deleted(uuid) from public, anon, authenticated;
revoke all on function creditgate_private.forfeit_credits(uuid, text, text, jsonb) from public, anon, authenticated;
revoke all on function creditgate_private.erase_generations(uuid, uuid) from public, anon, authenticated;
revoke all on function creditgate_private.tg_users__after_delete() from public, anon, authenticated;

create or replace trigger creditgate_on_auth_user_deleted
after delete on auth.users
for each row execute function creditgate_private.tg_users__after_delete();

-- ===== db/functions/ledger/expiry.sql =====
-- creditgate.service_expire_credits(now, max_lots) -> jsonb {users, lots, credits, more}   service_role
--   Posts one `expire` entry per lapsed lot with credits left (key expire:<lot_id>:<n>).
--   Expired credits are already unspendable (available_credits); this makes the ledger say so.
--   Users are locked in user_id order, so concurrent sweeps never deadlock.

create or replace function creditgate.service_expire_credits(
  now timestamptz default now(),
  max_lots integer default 10000
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_lot record;
  v_user_id uuid;
  v_remaining bigint;
  v_seq bigint;
  v_key text;
  v_entry creditgate.ledger;
  v_users integer := 0;
  v_lots integer := 0;
  v_credits bigint := 0;
begin
  if service_expire_credits.max_lots is null or service_expire_credits.max_lots < 1 then
    perform creditgate_private.invalid('max_lots', 'must be >= 1');
  end if;
  for v_lot in
    select l.id, l.user_id
    from creditgate.credit_lots as l
    where l.live and l.expires_at <= service_expire_credits.now
    order by l.user_id, l.id
    limit service_expire_credits.max_lots
  loop
    if v_user_id is distinct from v_lot.user_id then
      perform creditgate_private.lock_balance(v_lot.user_id);
      v_user_id := v_lot.user_id;
      v_users := v_users + 1;
    end if;
    -- Re-read under the user's lock: a spend may have emptied it meanwhile.
    select l.remaining into v_remaining from creditgate.credit_lots as l where l.id = v_lot.id;
    continue when v_remaining = 0;
    -- The lot's nth expiry (a refund into an expired lot makes a second one): the first
    -- n whose key is free, found through the ledger's key index. Only this sweep posts
    -- expire: keys (service_grant_credits refuses creditgate's prefixes), and it holds the
    -- lot owner's lock, so a free key stays free until it commits: no key lock needed,
    -- which keeps a sweep of thousands of lots out of the shared lock table.
    v_seq := 1;
    v_key := format('expire:%s:1', v_lot.id);
    while exists (select 1 from creditgate.ledger as e where e.idempotency_key = v_key) loop
      v_seq := v_seq + 1;
      v_key := format('expire:%s:%s', v_lot.id, v_seq);
    end loop;
    v_entry := creditgate_private.post_entry(
      v_lot.user_id, 'expire', v_remaining, v_key,
      md5(jsonb_build_array('expire', v_lot.id, v_seq)::text),
      null, null, 'credits expired', jsonb_build_object('lot_id', v_lot.id)
    );
    update creditgate.credit_lots as l set remaining = 0 where l.id = v_lot.id;
    insert into creditgate_private.lot_movements (ledger_id, lot_id, amount)
    values (v_entry.id, v_lot.id, -v_remaining);
    v_lots := v_lots + 1;
    v_credits := v_credits + v_remaining;
  end loop;
  return jsonb_build_object(
    'users', v_users, 'lots', v_lots, 'credits', v_credits,
    'more', exists (
      select 1 from creditgate.credit_lots as l
      where l.live and l.expires_at <= service_expire_credits.now
    )
  );
end
$$;
comment on function creditgate.service_expire_credits(timestamptz, integer) is
'Posts expire entries for lapsed lots (credits were unspendable from the instant they expired).';
revoke all on function creditgate.service_expire_credits(timestamptz, integer) from public, anon, authenticated;
grant execute on function creditgate.service_expire_credits(timestamptz, integer) to service_role;

-- ===== db/functions/ledger/grants.sql =====
-- creditgate.service_grant_credits(user_id, amount, entry_type, idempotency_key, category,
--   expires_at, priority, reason, metadata) -> jsonb            service_role only
-- creditgate.admin_add_credits(user_id, amount, reason, idempotency_key) -> jsonb
--                                                               authenticated, admin checked inside
-- Errors: PT400 invalid_request, PT401, PT403 forbidden, PT404 not_found (unknown user),
--         PT409 idempotency_key_reused. service_grant_credits refuses keys in creditgate's
--         own namespaces (PT400; owed: is what collections of owed credits post under); admin_add_credits stores its keys as admin:<key>.

create or replace function creditgate.service_grant_credits(
  user_id uuid,
  amount bigint,
  entry_type text,
  idempotency_key text,
  category text default 'promotional',
  expires_at timestamptz default null,
  priority integer default 50,
  reason text default null,
  metadata jsonb default '{}'
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
begin
  -- creditgate's own keys are posted by creditgate alone. A grant under one would squat
  -- an entry creditgate owes later: a generation's refund (refund:<id>) would then fail
  -- with PT409 forever, a lot's expiry or a Stripe event's credits likewise.
  if service_grant_credits.idempotency_key ~ '^(signup|stripe|admin|charge|refund|expire|forfeit|owed):' then
    perform creditgate_private.invalid(
      'idempotency_key',
      'the prefixes signup:, stripe:, admin:, charge:, refund:, expire:, forfeit: and owed: are creditgate''s own'
    );
  end if;
  return creditgate_private.grant_credits(
    service_grant_credits.user_id,
    service_grant_credits.amount,
    service_grant_credits.entry_type,
    service_grant_credits.idempotency_key,
    service_grant_credits.category,
    service_grant_credits.expires_at,
    service_grant_credits.priority,
    service_grant_credits.reason,
    coalesce(service_grant_credits.metadata, '{}')
  );
end
$$;
comment on function creditgate.service_grant_credits(uuid, bigint, text, text, text, timestamptz, integer, text, jsonb) is
'Backend grant of credits (bonus, purchase, grant, admin_recharge) as a lot; idempotent by key.';
revoke all on function creditgate.service_grant_credits(uuid, bigint, text, text, text, timestamptz, integer, text, jsonb) from public, anon, authenticated;
grant execute on function creditgate.service_grant_credits(uuid, bigint, text, text, text, timestamptz, integer, text, jsonb) to service_role;

create or replace function creditgate.admin_add_credits(
  user_id uuid,
  amount bigint,
  reason text,
  idempotency_key text
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_admin_id uuid := creditgate_private.require_admin();
  v_result jsonb;
begin
  if admin_add_credits.reason is null or length(trim(admin_add_credits.reason)) = 0 then
    perform creditgate_private.invalid('reason', 'required');
  end if;
  perform creditgate_private.check_key(admin_add_credits.idempotency_key);
  -- Namespaced so an admin key can never collide with a system key (stripe:, signup:...).
  v_result := creditgate_private.grant_credits(
    admin_add_credits.user_id,
    admin_add_credits.amount,
    'admin_recharge',
    'admin:' || admin_add_credits.idempotency_key,
    'promotional',
    null,
    50,
    admin_add_credits.reason,
    '{}'::jsonb
  );
  -- Who granted it stays server-side (the ledger is readable by its owner).
  insert into creditgate_private.admin_grants (ledger_id, admin_id)
  values ((v_result ->> 'entry_id')::bigint, v_admin_id)
  on conflict (ledger_id) do nothing;
  return v_result;
end
$$;
comment on function creditgate.admin_add_credits(uuid, bigint, text, text) is
'Admin recharge of a user''s credits. Admin rights come from creditgate_private.admins only.';
revoke all on function creditgate.admin_add_credits(uuid, bigint, text, text) from public, anon, authenticated;
grant execute on function creditgate.admin_add_credits(uuid, bigint, text, text) to authenticated;

-- ===== db/functions/ledger/primitives.sql =====
-- Private money primitives. Every credit movement in creditgate goes through these.
--
-- Locking: the caller's balances row is locked first (lock_balance) and held to commit;
-- every other row a primitive touches belongs to that user, so per-user work serializes
-- on one row and multi-user work (the expiry sweep) locks users in user_id order. Then
-- find_entry locks the idempotency key (a transaction advisory lock), so two users' calls
-- with one key take turns too; nothing waits for a balance while holding a key.
--
-- require_user() -> uuid                         PT401 not_authenticated (also a deleted account)
-- require_admin() -> uuid                        PT401, PT403 forbidden
-- check_key(p_key)                               PT400 invalid_request
-- lock_balance(p_user_id, p_create) -> bigint    PT404 not_found
-- find_entry(p_key, p_request_hash) -> ledger    PT409 idempotency_key_reused
-- post_entry(...) -> ledger                      (caller holds the balance lock, key is free)
-- move_lots(p_entry_id, p_user_id, p_amount, p_now, p_paid_first) -> bigint
-- available_credits(p_user_id, p_now) -> bigint
-- grant_credits(...) -> jsonb                    PT400, PT404, PT409
-- spend_credits(...) -> jsonb                    PT400, PT402, PT404, PT409
-- refund_credits(...) -> jsonb                   PT400, PT404, PT409
-- collect_owed(p_user_id, p_source_id, p_amount, p_now) -> bigint
--                                                (caller holds the balance lock)
-- owed_paid(p_entry) -> jsonb                     what collect_owed took after an entry
-- take_clawback(...) -> jsonb                     (caller holds the balance and key locks)

create or replace function creditgate_private.require_user()
returns uuid
language plpgsql
stable
set search_path = ''
as $$
declare
  v_user_id uuid := auth.uid();
begin
  if v_user_id is null then
    perform creditgate_private.raise_error('not_authenticated');
  end if;
  -- A deleted account's JWT stays valid until it expires; it may do nothing. (The lookup
  -- is written out, not a call of user_deleted(): one function call less per request.)
  if exists (select 1 from creditgate_private.deleted_users as d where d.user_id = v_user_id) then
    perform creditgate_private.raise_error(
      'not_authenticated', jsonb_build_object('reason', 'account_deleted')
    );
  end if;
  return v_user_id;
end
$$;
comment on function creditgate_private.require_user() is
'The calling user from the verified JWT (auth.uid()), or PT401 (none, or a deleted account).';

create or replace function creditgate_private.require_admin()
returns uuid
language plpgsql
stable
set search_path = ''
as $$
declare
  v_user_id uuid := creditgate_private.require_user();
begin
  if not exists (select 1 from creditgate_private.admins as a where a.user_id = v_user_id) then
    perform creditgate_private.raise_error('forbidden', jsonb_build_object('requires', 'admin'));
  end if;
  return v_user_id;
end
$$;
comment on function creditgate_private.require_admin() is
'The caller if listed in creditgate_private.admins, else PT403. JWT metadata is never read.';

create or replace function creditgate_private.check_key(p_key text, p_field text default 'idempotency_key')
returns void
language plpgsql
immutable
set search_path = ''
as $$
begin
  if p_key is null or length(p_key) not between 1 and 200 or p_key !~ '^[\x21-\x7e]+$' then
    perform creditgate_private.invalid(p_field, '1-200 printable ASCII characters, no spaces');
  end if;
end
$$;
comment on function creditgate_private.check_key(text, text) is
'Idempotency keys: 1-200 printable ASCII characters.';

create or replace function creditgate_private.lock_balance(p_user_id uuid, p_create boolean default false)
returns bigint
language plpgsql
set search_path = ''
as $$
declare
  v_balance bigint;
begin
  select b.balance into v_balance
  from creditgate.balances as b
  where b.user_id = p_user_id
  for update;
  if found then
    return v_balance;
  end if;
  if not p_create or not exists (select 1 from auth.users as u where u.id = p_user_id) then
    perform creditgate_private.raise_error('not_found', jsonb_build_object('object', 'user'));
  end if;
  insert into creditgate.balances (user_id) values (p_user_id) on conflict (user_id) do nothing;
  select b.balance into v_balance
  from creditgate.balances as b
  where b.user_id = p_user_id
  for update;
  return v_balance;
end
$$;
comment on function creditgate_private.lock_balance(uuid, boolean) is
'Locks the user''s balance row (creating it for known users when asked): the per-user mutex.';

create or replace function creditgate_private.find_entry(p_key text, p_request_hash text)
returns creditgate.ledger
language plpgsql
set search_path = ''
as $$
declare
  v_entry creditgate.ledger;
begin
  -- The key's own lock, held to commit. Calls for one user already take turns on the
  -- balance lock; calls of two users with one key hold different balance locks, so they
  -- take turns here instead, and the later one finds the earlier one's entry below (a new
  -- statement: a new snapshot) and gets PT409, not the ledger's unique violation.
  -- Advisory locks of class 1667720057 ('cgky') are creditgate's: key hashes may collide,
  -- which only makes two unrelated keys wait for each other.
  perform pg_catalog.pg_advisory_xact_lock(1667720057, pg_catalog.hashtext(p_key));
  select l.* into v_entry from creditgate.ledger as l where l.idempotency_key = p_key;
  if found and v_entry.request_hash <> p_request_hash then
    perform creditgate_private.raise_error(
      'idempotency_key_reused', jsonb_build_object('idempotency_key', p_key)
    );
  end if;
  return v_entry;
end
$$;
comment on function creditgate_private.find_entry(text, text) is
'Locks the key to commit; the entry already posted under it (replay), PT409 if posted for another request.';

create or replace function creditgate_private.available_credits(p_user_id uuid, p_now timestamptz)
returns bigint
language plpgsql
stable
set search_path = ''
as $$
declare
  v_available bigint;
begin
  -- plpgsql rather than sql throughout this file: plpgsql caches its plans per session,
  -- a non-inlined sql function is parsed and planned again on every call.
  select coalesce(sum(l.remaining), 0)::bigint into v_available
  from creditgate.credit_lots as l
  where l.user_id = p_user_id
    and l.live
    and (l.expires_at is null or l.expires_at > p_now);
  return v_available;
end
$$;
comment on function creditgate_private.available_credits(uuid, timestamptz) is
'Spendable credits: lots with something left that have not expired at p_now.';

create or replace function creditgate_private.post_entry(
  p_user_id uuid,
  p_entry_type text,
  p_amount bigint,
  p_key text,
  p_request_hash text,
  p_charge_key text default null,
  p_generation_id uuid default null,
  p_reason text default null,
  p_metadata jsonb default '{}'
) returns creditgate.ledger
language plpgsql
set search_path = ''
as $$
declare
  v_entry creditgate.ledger;
begin
  -- delta and balance_after are set, and the balance moved, by the ledger's BEFORE INSERT
  -- trigger. The caller holds the balance lock and has found the key free (find_entry,
  -- which also holds the key's lock, or the expiry sweep's own keys).
  insert into creditgate.ledger (
    user_id, entry_type, amount, delta, balance_after, idempotency_key, request_hash,
    charge_key, generation_id, reason, metadata
  ) values (
    p_user_id, p_entry_type, p_amount, 0, 0, p_key, p_request_hash,
    p_charge_key, p_generation_id, p_reason, coalesce(p_metadata, '{}')
  )
  returning * into v_entry;
  return v_entry;
end
$$;
comment on function creditgate_private.post_entry(uuid, text, bigint, text, text, text, uuid, text, jsonb) is
'Appends one ledger entry (its trigger moves the cached balance). Caller holds the balance lock.';

create or replace function creditgate_private.move_lots(
  p_entry_id bigint,
  p_user_id uuid,
  p_amount bigint,
  p_now timestamptz,
  p_paid_first boolean default false
) returns bigint
language plpgsql
set search_path = ''
as $$
declare
  v_moved bigint;
begin
  -- Burn order (DESIGN §3): priority, soonest expiry (never-expiring last), promotional
  -- before paid, oldest first. Clawbacks take paid credits first.
  with ordered as (
    select
      l.id,
      l.remaining,
      sum(l.remaining) over (
        order by
          case when p_paid_first then l.category = 'paid' end desc nulls last,
          l.priority, l.expires_at nulls last, l.category desc, l.created_at, l.id
      ) as running
    from creditgate.credit_lots as l
    where l.user_id = p_user_id
      and l.live
      and (l.expires_at is null or l.expires_at > p_now)
  ),
  taken as (
    select o.id, least(o.remaining, p_amount - (o.running - o.remaining)) as n
    from ordered as o
    where o.running - o.remaining < p_amount
  ),
  updated as (
    update creditgate.credit_lots as l
    set remaining = l.remaining - t.n
    from taken as t
    where l.id = t.id
    returning l.id, t.n
  ),
  recorded as (
    insert into creditgate_private.lot_movements (ledger_id, lot_id, amount)
    select p_entry_id, u.id, -u.n from updated as u
    returning amount
  )
  select coalesce(-sum(r.amount), 0) into v_moved from recorded as r;
  if v_moved <> p_amount then
    raise exception 'lots of user % cover % of %', p_user_id, v_moved, p_amount;
  end if;
  return v_moved;
end
$$;
comment on function creditgate_private.move_lots(bigint, uuid, bigint, timestamptz, boolean) is
'Takes p_amount from the user''s unexpired lots in burn order and records the movements.';

create or replace function creditgate_private.entry_json(p_entry creditgate.ledger, p_replayed boolean)
returns jsonb
language plpgsql
immutable
set search_path = ''
as $$
begin
  return jsonb_build_object(
    'entry_id', p_entry.id,
    'entry_type', p_entry.entry_type,
    'amount', p_entry.amount,
    'balance', p_entry.balance_after,
    'replayed', p_replayed
  );
end
$$;
comment on function creditgate_private.entry_json(creditgate.ledger, boolean) is
'The result returned for a posted (or replayed) entry: the original figures.';

create or replace function creditgate_private.grant_credits(
  p_user_id uuid,
  p_amount bigint,
  p_entry_type text,
  p_key text,
  p_category text default 'promotional',
  p_expires_at timestamptz default null,
  p_priority integer default 50,
  p_reason text default null,
  p_metadata jsonb default '{}',
  p_request_hash text default null,
  p_now timestamptz default now()
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_hash text;
  v_entry creditgate.ledger;
  v_lot_id uuid;
begin
  if p_user_id is null then
    perform creditgate_private.invalid('user_id', 'required');
  end if;
  if p_amount is null or p_amount <= 0 then
    perform creditgate_private.invalid('amount', 'must be a positive integer');
  end if;
  if p_entry_type is null
     or p_entry_type not in ('signup_bonus', 'purchase', 'grant', 'admin_recharge') then
    perform creditgate_private.invalid(
      'entry_type', 'one of signup_bonus, purchase, grant, admin_recharge'
    );
  end if;
  if p_category is null or p_category not in ('paid', 'promotional') then
    perform creditgate_private.invalid('category', 'paid or promotional');
  end if;
  if p_priority is null or p_priority not between 0 and 100 then
    perform creditgate_private.invalid('priority', 'between 0 and 100');
  end if;
  perform creditgate_private.check_key(p_key);
  v_hash := coalesce(p_request_hash, md5(jsonb_build_array(
    'grant', p_user_id, p_amount, p_entry_type, p_category, p_expires_at, p_priority
  )::text));

  perform creditgate_private.lock_balance(p_user_id, true);
  v_entry := creditgate_private.find_entry(p_key, v_hash);
  if v_entry.id is null then
    -- A deleted account keeps nothing (its balance was forfeited): no new credits either.
    if creditgate_private.user_deleted(p_user_id) then
      perform creditgate_private.raise_error('not_found', jsonb_build_object('object', 'user'));
    end if;
    if p_expires_at is not null and p_expires_at <= p_now then
      perform creditgate_private.invalid('expires_at', 'must be in the future');
    end if;
    v_entry := creditgate_private.post_entry(
      p_user_id, p_entry_type, p_amount, p_key, v_hash, null, null, p_reason, p_metadata
    );
    insert into creditgate.credit_lots (
      user_id, category, priority, amount, remaining, expires_at, source_entry_id
    ) values (
      p_user_id, p_category, p_priority, p_amount, p_amount, p_expires_at, v_entry.id
    )
    returning id into v_lot_id;
    insert into creditgate_private.lot_movements (ledger_id, lot_id, amount)
    values (v_entry.id, v_lot_id, p_amount);
    -- Credits owed after a clawback are paid first (DESIGN §3, turn 2).
    if creditgate_private.collect_owed(p_user_id, v_entry.id, p_amount, p_now) > 0 then
      return creditgate_private.entry_json(v_entry, false) || jsonb_build_object('lot_id', v_lot_id)
        || creditgate_private.owed_paid(v_entry);
    end if;
    return creditgate_private.entry_json(v_entry, false) || jsonb_build_object('lot_id', v_lot_id);
  end if;
  select l.id into v_lot_id from creditgate.credit_lots as l where l.source_entry_id = v_entry.id;
  return creditgate_private.entry_json(v_entry, true) || jsonb_build_object('lot_id', v_lot_id)
    || creditgate_private.owed_paid(v_entry);
end
$$;
comment on function creditgate_private.grant_credits(uuid, bigint, text, text, text, timestamptz, integer, text, jsonb, text, timestamptz) is
'Posts a credit entry and the lot it creates; a replayed key returns the original result.';

create or replace function creditgate_private.spend_credits(
  p_user_id uuid,
  p_amount bigint,
  p_key text,
  p_generation_id uuid default null,
  p_reason text default null,
  p_metadata jsonb default '{}',
  p_now timestamptz default now()
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_hash text;
  v_entry creditgate.ledger;
  v_available bigint;
  v_lot_id uuid;
  v_remaining bigint;
begin
  -- The charge path of every generation (docs/benchmarks.md).
  if p_amount is null or p_amount <= 0 then
    perform creditgate_private.invalid('amount', 'must be a positive integer');
  end if;
  perform creditgate_private.check_key(p_key);
  v_hash := md5(jsonb_build_array('spend', p_user_id, p_amount, p_generation_id)::text);

  perform creditgate_private.lock_balance(p_user_id);
  v_entry := creditgate_private.find_entry(p_key, v_hash);
  if v_entry.id is not null then
    return creditgate_private.entry_json(v_entry, true);
  end if;

  -- Most charges fit in the first lot in burn order: take it with simple statements.
  -- (live = remaining > 0: the index behind this lists only lots that can still pay.)
  select l.id, l.remaining into v_lot_id, v_remaining
  from creditgate.credit_lots as l
  where l.user_id = p_user_id
    and l.live
    and (l.expires_at is null or l.expires_at > p_now)
  order by l.priority, l.expires_at nulls last, l.category desc, l.created_at, l.id
  limit 1;
  if v_remaining >= p_amount then
    update creditgate.credit_lots as l set remaining = l.remaining - p_amount where l.id = v_lot_id;
    v_entry := creditgate_private.post_entry(
      p_user_id, 'spend', p_amount, p_key, v_hash, null, p_generation_id, p_reason, p_metadata
    );
    insert into creditgate_private.lot_movements (ledger_id, lot_id, amount)
    values (v_entry.id, v_lot_id, -p_amount);
    return creditgate_private.entry_json(v_entry, false);
  end if;

  -- Otherwise the lots in burn order (move_lots), once unexpired ones are known to cover it.
  v_available := creditgate_private.available_credits(p_user_id, p_now);
  if v_available < p_amount then
    perform creditgate_private.raise_error(
      'insufficient_credits',
      jsonb_build_object('required', p_amount, 'available', v_available)
    );
  end if;
  v_entry := creditgate_private.post_entry(
    p_user_id, 'spend', p_amount, p_key, v_hash, null, p_generation_id, p_reason, p_metadata
  );
  perform creditgate_private.move_lots(v_entry.id, p_user_id, p_amount, p_now);
  return creditgate_private.entry_json(v_entry, false);
end
$$;
comment on function creditgate_private.spend_credits(uuid, bigint, text, uuid, text, jsonb, timestamptz) is
'Charges p_amount under key p_key (the charge key), burning lots in order. PT402 if short.';

create or replace function creditgate_private.refund_credits(
  p_user_id uuid,
  p_charge_key text,
  p_amount bigint,
  p_key text,
  p_reason text default null,
  p_metadata jsonb default '{}'
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_hash text;
  v_entry creditgate.ledger;
  v_charge creditgate.ledger;
  v_refunded bigint;
  v_amount bigint;
  v_returned bigint;
begin
  if p_amount is null or p_amount <= 0 then
    perform creditgate_private.invalid('amount', 'must be a positive integer');
  end if;
  perform creditgate_private.check_key(p_key);
  perform creditgate_private.check_key(p_charge_key, 'charge_key');
  v_hash := md5(jsonb_build_array('refund', p_user_id, p_charge_key, p_amount)::text);

  perform creditgate_private.lock_balance(p_user_id);
  v_entry := creditgate_private.find_entry(p_key, v_hash);
  if v_entry.id is not null then
    return creditgate_private.entry_json(v_entry, true) || jsonb_build_object('refunded', v_entry.amount)
      || creditgate_private.owed_paid(v_entry);
  end if;

  select l.* into v_charge from creditgate.ledger as l where l.idempotency_key = p_charge_key;
  if v_charge.id is null or v_charge.entry_type <> 'spend' or v_charge.user_id <> p_user_id then
    perform creditgate_private.raise_error('not_found', jsonb_build_object('object', 'charge'));
  end if;
  select coalesce(sum(l.amount), 0) into v_refunded
  from creditgate.ledger as l
  where l.charge_key = p_charge_key;
  v_amount := least(p_amount, v_charge.amount - v_refunded);
  if v_amount <= 0 then
    -- Nothing left to refund on this charge: no entry, nothing moves.
    return jsonb_build_object(
      'entry_id', null, 'entry_type', 'refund', 'amount', 0, 'refunded', 0,
      'balance', (select b.balance from creditgate.balances as b where b.user_id = p_user_id),
      'replayed', false
    );
  end if;

  v_entry := creditgate_private.post_entry(
    p_user_id, 'refund', v_amount, p_key, v_hash, p_charge_key, v_charge.generation_id,
    p_reason, p_metadata
  );
  -- Return credits to the lots that paid, last-burned first (the reverse burn order),
  -- never more to a lot than this charge still holds of it. Expired lots get theirs back
  -- too; the expiry sweep then expires them, as it would have without the charge.
  with open_per_lot as (
    select m.lot_id, -sum(m.amount) as open
    from creditgate_private.lot_movements as m
    join creditgate.ledger as e on e.id = m.ledger_id
    where e.id = v_charge.id or e.charge_key = p_charge_key
    group by m.lot_id
    having -sum(m.amount) > 0
  ),
  ordered as (
    select
      o.lot_id,
      o.open,
      sum(o.open) over (
        order by l.priority desc, l.expires_at desc nulls first, l.category, l.created_at desc, l.id desc
      ) as running
    from open_per_lot as o
    join creditgate.credit_lots as l on l.id = o.lot_id
  ),
  given as (
    select o.lot_id, least(o.open, v_amount - (o.running - o.open)) as n
    from ordered as o
    where o.running - o.open < v_amount
  ),
  updated as (
    update creditgate.credit_lots as l
    set remaining = l.remaining + g.n
    from given as g
    where l.id = g.lot_id
    returning l.id, g.n
  ),
  recorded as (
    insert into creditgate_private.lot_movements (ledger_id, lot_id, amount)
    select v_entry.id, u.id, u.n from updated as u
    returning amount
  )
  select coalesce(sum(r.amount), 0) into v_returned from recorded as r;
  if v_returned <> v_amount then
    raise exception 'refund % of charge % returned % to lots', v_amount, p_charge_key, v_returned;
  end if;
  -- A refund of work charged before a clawback pays what is owed first: credits that work
  -- held when the dispute came never come back spendable.
  if creditgate_private.collect_owed(p_user_id, v_entry.id, v_amount, now()) > 0 then
    return creditgate_private.entry_json(v_entry, false) || jsonb_build_object('refunded', v_amount)
      || creditgate_private.owed_paid(v_entry);
  end if;
  return creditgate_private.entry_json(v_entry, false) || jsonb_build_object('refunded', v_amount);
end
$$;
comment on function creditgate_private.refund_credits(uuid, text, bigint, text, text, jsonb) is
'Refunds up to what charge p_charge_key still holds, once per key, back into its lots.';

create or replace function creditgate_private.collect_owed(
  p_user_id uuid,
  p_source_id bigint,
  p_amount bigint,
  p_now timestamptz
) returns bigint
language plpgsql
set search_path = ''
as $$
declare
  v_owed bigint;
  v_left bigint;
  v_open record;
  v_take bigint;
  v_entry creditgate.ledger;
  v_paid bigint := 0;
begin
  -- Called by every primitive that credits the user (grants, purchases, refunds, a won
  -- dispute's return), after its entry is posted, with the balance lock held. While the
  -- user owes credits nothing else is spendable (a clawback took all of it, and each
  -- collection takes all that arrived or all that is owed), so what is spendable now is
  -- what just arrived: it pays the oldest open shortfalls first, one clawback entry per
  -- dispute, each tied to it by its key and metadata.
  select b.owed into v_owed from creditgate.balances as b where b.user_id = p_user_id;
  if coalesce(v_owed, 0) = 0 then
    return 0;
  end if;
  v_left := least(v_owed, p_amount, creditgate_private.available_credits(p_user_id, p_now));
  for v_open in
    select c.idempotency_key, c.requested - c.taken - c.collected - c.cancelled as open
    from creditgate_private.clawbacks as c
    where c.user_id = p_user_id
      and c.collected + c.cancelled < c.requested - c.taken
    order by c.created_at, c.idempotency_key
    for update
  loop
    exit when v_left <= 0;
    v_take := least(v_left, v_open.open);
    v_entry := creditgate_private.post_entry(
      p_user_id, 'clawback', v_take,
      'owed:' || p_source_id::text || ':' || v_open.idempotency_key,
      md5(jsonb_build_array('owed', p_user_id, p_source_id, v_open.idempotency_key, v_take)::text),
      null, null, 'owed after a clawback',
      jsonb_build_object('clawback_key', v_open.idempotency_key, 'paid_from_entry_id', p_source_id)
    );
    perform creditgate_private.move_lots(v_entry.id, p_user_id, v_take, p_now, true);
    update creditgate_private.clawbacks as c
    set collected = c.collected + v_take
    where c.idempotency_key = v_open.idempotency_key;
    v_left := v_left - v_take;
    v_paid := v_paid + v_take;
  end loop;
  if v_paid > 0 then
    update creditgate.balances as b set owed = b.owed - v_paid where b.user_id = p_user_id;
  end if;
  return v_paid;
end
$$;
comment on function creditgate_private.collect_owed(uuid, bigint, bigint, timestamptz) is
'Pays what the user owes after clawbacks from credits that just arrived (entry p_source_id), oldest shortfall first.';

create or replace function creditgate_private.owed_paid(p_entry creditgate.ledger)
returns jsonb
language plpgsql
stable
set search_path = ''
as $$
declare
  v_paid bigint;
  v_balance bigint;
begin
  -- Collections are posted in the credit's own transaction, so they share its created_at
  -- (the ledger's per-user index finds them). Nothing collected: no keys added, so results
  -- stay as they were before owed credits existed.
  select sum(l.amount), (array_agg(l.balance_after order by l.id desc))[1]
  into v_paid, v_balance
  from creditgate.ledger as l
  where l.user_id = p_entry.user_id
    and l.created_at = p_entry.created_at
    and l.id > p_entry.id
    and l.entry_type = 'clawback'
    and l.metadata ->> 'paid_from_entry_id' = p_entry.id::text;
  if v_paid is null then
    return '{}'::jsonb;
  end if;
  return jsonb_build_object('owed_paid', v_paid, 'balance', v_balance);
end
$$;
comment on function creditgate_private.owed_paid(creditgate.ledger) is
'What collect_owed took after a credit entry and the balance it left ({} if nothing): part of the entry''s result, replays too.';

create or replace function creditgate_private.take_clawback(
  p_user_id uuid,
  p_key text,
  p_hash text,
  p_amount bigint,
  p_reason text,
  p_metadata jsonb,
  p_kind text default 'clawback',
  p_payment_id text default null,
  p_payment_amount bigint default null,
  p_amount_refunded bigint default null,
  p_payment_credits bigint default null,
  p_now timestamptz default now()
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_taken bigint := 0;
  v_entry creditgate.ledger;
  v_balance bigint;
begin
  -- The caller holds the balance lock and the key's lock and found no clawback under the
  -- key. Takes what is spendable now (paid lots first); the rest is owed.
  if p_amount > 0 then
    v_taken := least(p_amount, creditgate_private.available_credits(p_user_id, p_now));
  end if;
  if v_taken > 0 then
    v_entry := creditgate_private.post_entry(
      p_user_id, 'clawback', v_taken, p_key, p_hash, null, null, p_reason, p_metadata
    );
    perform creditgate_private.move_lots(v_entry.id, p_user_id, v_taken, p_now, true);
  end if;
  insert into creditgate_private.clawbacks (
    idempotency_key, user_id, requested, taken, ledger_id, reason, kind, payment_id,
    payment_amount, amount_refunded, payment_credits
  ) values (
    p_key, p_user_id, p_amount, v_taken, v_entry.id, p_reason, p_kind, p_payment_id,
    p_payment_amount, p_amount_refunded, p_payment_credits
  )
  on conflict (idempotency_key) do nothing;
  if not found then
    -- Unreachable while the caller holds the key's lock (kept so a clawback can never be
    -- recorded twice). Nothing of this call survives the error.
    perform creditgate_private.raise_error(
      'idempotency_key_reused', jsonb_build_object('idempotency_key', p_key)
    );
  end if;
  update creditgate.balances as b
  set owed = b.owed + (p_amount - v_taken)
  where b.user_id = p_user_id
  returning b.balance into v_balance;
  return jsonb_build_object(
    'requested', p_amount, 'taken', v_taken, 'shortfall', p_amount - v_taken,
    'entry_id', v_entry.id, 'balance', v_balance, 'replayed', false
  );
end
$$;
comment on function creditgate_private.take_clawback(uuid, text, text, bigint, text, jsonb, text, text, bigint, bigint, bigint, timestamptz) is
'Takes back up to p_amount of what is spendable (paid first), records the clawback and adds the rest to what is owed.';

revoke all on function creditgate_private.require_user() from public, anon, authenticated;
revoke all on function creditgate_private.require_admin() from public, anon, authenticated;
revoke all on function creditgate_private.check_key(text, text) from public, anon, authenticated;
revoke all on function creditgate_private.lock_balance(uuid, boolean) from public, anon, authenticated;
revoke all on function creditgate_private.find_entry(text, text) from public, anon, authenticated;
revoke all on function creditgate_private.available_credits(uuid, timestamptz) from public, anon, authenticated;
revoke all on function creditgate_private.post_entry(uuid, text, bigint, text, text, text, uuid, text, jsonb) from public, anon, authenticated;
revoke all on function creditgate_private.move_lots(bigint, uuid, bigint, timestamptz, boolean) from public, anon, authenticated;
revoke all on function creditgate_private.entry_json(creditgate.ledger, boolean) from public, anon, authenticated;
revoke all on function creditgate_private.grant_credits(uuid, bigint, text, text, text, timestamptz, integer, text, jsonb, text, timestamptz) from public, anon, authenticated;
revoke all on function creditgate_private.spend_credits(uuid, bigint, text, uuid, text, jsonb, timestamptz) from public, anon, authenticated;
revoke all on function creditgate_private.refund_credits(uuid, text, bigint, text, text, jsonb) from public, anon, authenticated;
revoke all on function creditgate_private.collect_owed(uuid, bigint, bigint, timestamptz) from public, anon, authenticated;
revoke all on function creditgate_private.owed_paid(creditgate.ledger) from public, anon, authenticated;
revoke all on function creditgate_private.take_clawback(uuid, text, text, bigint, text, jsonb, text, text, bigint, bigint, bigint, timestamptz) from public, anon, authenticated;

-- ===== db/functions/ledger/signup.sql =====
-- creditgate_private.tg_users__after_insert(): AFTER INSERT on auth.users.
--   Creates the balance row. A permanent user gets the signup bonus (setting signup_bonus,
--   default 1000, key signup:<user_id>, promotional). An anonymous sign-in
--   (auth.users.is_anonymous) gets setting anonymous_signup_bonus instead (default 0, key
--   signup:anonymous:<user_id>): anonymous users cost nothing to mint, so a bonus for each
--   would be credits for the asking.
-- creditgate_private.tg_users__after_update(): AFTER UPDATE OF is_anonymous on auth.users,
--   only when it goes true -> false (the user linked an email, phone or identity). Grants
--   the signup bonus then, once: a user who already holds signup:<user_id> gets nothing.
--   Never fails GoTrue's update because of a bonus already granted.
-- Both run as the definer: GoTrue writes auth.users as supabase_auth_admin, which has no
-- rights on creditgate tables.

create or replace function creditgate_private.grant_signup_bonus(
  p_user_id uuid,
  p_setting text,
  p_key text
) returns void
language plpgsql
set search_path = ''
as $$
declare
  v_bonus bigint := coalesce((creditgate_private.setting(p_setting))::bigint, 0);
  v_days numeric := (creditgate_private.setting('signup_bonus_expires_days') #>> '{}')::numeric;
begin
  if v_bonus > 0 then
    perform creditgate_private.grant_credits(
      p_user_id, v_bonus, 'signup_bonus', p_key, 'promotional',
      now() + make_interval(days => v_days::integer), 50, 'signup bonus'
    );
  end if;
end
$$;
comment on function creditgate_private.grant_signup_bonus(uuid, text, text) is
'Grants the bonus named by a setting (signup_bonus or anonymous_signup_bonus) under p_key, if above 0.';

create or replace function creditgate_private.tg_users__after_insert()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into creditgate.balances (user_id) values (new.id) on conflict (user_id) do nothing;
  if new.is_anonymous then
    perform creditgate_private.grant_signup_bonus(
      new.id, 'anonymous_signup_bonus', 'signup:anonymous:' || new.id::text
    );
  else
    perform creditgate_private.grant_signup_bonus(new.id, 'signup_bonus', 'signup:' || new.id::text);
  end if;
  return null;
end
$$;
comment on function creditgate_private.tg_users__after_insert() is
'New auth user: balance row plus the signup bonus (the anonymous bonus for anonymous sign-ins), once per user.';

create or replace function creditgate_private.tg_users__after_update()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  -- The user's balance lock first (created if missing: a user from before creditgate),
  -- then the key's: concurrent conversions of one user take turns, and the later one finds
  -- the bonus posted. A bonus already posted is never re-applied, even if the setting
  -- changed since (grant_credits would refuse that replay with PT409 and fail the update).
  perform creditgate_private.lock_balance(new.id, true);
  perform pg_catalog.pg_advisory_xact_lock(1667720057, pg_catalog.hashtext('signup:' || new.id::text));
  if not exists (
    select 1 from creditgate.ledger as l where l.idempotency_key = 'signup:' || new.id::text
  ) then
    perform creditgate_private.grant_signup_bonus(new.id, 'signup_bonus', 'signup:' || new.id::text);
  end if;
  return null;
end
$$;
comment on function creditgate_private.tg_users__after_update() is
'An anonymous user became permanent: the signup bonus, once (key signup:<user_id>).';

revoke all on function creditgate_private.grant_signup_bonus(uuid, text, text) from public, anon, authenticated;
revoke all on function creditgate_private.tg_users__after_insert() from public, anon, authenticated;
revoke all on function creditgate_private.tg_users__after_update() from public, anon, authenticated;

create or replace trigger creditgate_on_auth_user_created
after insert on auth.users
for each row execute function creditgate_private.tg_users__after_insert();

create or replace trigger creditgate_on_auth_user_made_permanent
after update of is_anonymous on auth.users
for each row
when (old.is_anonymous and not new.is_anonymous)
execute function creditgate_private.tg_users__after_update();

-- ===== db/functions/ledger/stripe.sql =====
-- creditgate.service_apply_checkout(event_id, user_id, price_id, quantity, amount_total,
--   currency, session_id, amount_tax) -> jsonb                                      service_role
--   Credits for a paid Stripe checkout; amount from creditgate.credit_packs. Granted only
--   when amount_total - amount_tax and currency equal the pack's price times quantity;
--   otherwise held (creditgate_private.checkout_holds, reported by audit()) and nothing is
--   granted. Key stripe:checkout:<session_id> (one grant per Checkout Session, whichever
--   event brings it), or stripe:<event_id> without a session.
-- creditgate.service_clawback(event_id, user_id, amount, reason) -> jsonb          service_role
--   A clawback keyed stripe:<event_id>: takes back up to what is spendable (paid lots first);
--   the rest is owed, paid first from any credit that reaches the user later.
-- creditgate.service_stripe_refund(refund_id, user_id, payment_id, credits, payment_amount,
--   amount_refunded, reason) -> jsonb                                               service_role
--   A (partial) refund of a Stripe payment that bought `credits`: claws back
--   floor(credits * amount_refunded / payment_amount) for the payment in total, less what
--   earlier refunds and an open dispute of it asked for. Key stripe:refund:<refund_id>.
-- creditgate.service_stripe_dispute(dispute_id, user_id, payment_id, credits, reason) -> jsonb
--   A dispute of a payment: claws back its credits less what refunds of it already asked
--   for. Key stripe:dispute:<dispute_id>.                                           service_role
-- creditgate.service_stripe_dispute_won(dispute_id, user_id, payment_id, reason) -> jsonb
--   The merchant won: returns what the dispute's clawback took (and collected since) to
--   the lots it came from and cancels what is still owed, once. Key
--   stripe:dispute-won:<dispute_id>. Won before the dispute was seen: the dispute is
--   recorded as won with nothing taken, and its late arrival replays that.  service_role
-- Errors: PT400 invalid_request, PT404 not_found (unknown price or user), PT409 idempotency_key_reused.

drop function if exists creditgate.service_apply_checkout(text, uuid, text, integer);
create or replace function creditgate.service_apply_checkout(
  event_id text,
  user_id uuid,
  price_id text,
  quantity integer default 1,
  amount_total bigint default null,
  currency text default null,
  session_id text default null,
  amount_tax bigint default 0
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_pack creditgate.credit_packs;
  v_key text;
  v_hash text;
  v_entry creditgate.ledger;
  v_reason text;
  v_result jsonb;
begin
  perform creditgate_private.check_key(service_apply_checkout.event_id, 'event_id');
  if service_apply_checkout.quantity is null or service_apply_checkout.quantity not between 1 and 1000 then
    perform creditgate_private.invalid('quantity', 'between 1 and 1000');
  end if;
  if service_apply_checkout.amount_total is null or service_apply_checkout.amount_total < 0 then
    perform creditgate_private.invalid('amount_total', 'the amount paid, in the currency''s smallest unit');
  end if;
  if service_apply_checkout.currency is null or service_apply_checkout.currency !~ '^[A-Za-z]{3}$' then
    perform creditgate_private.invalid('currency', 'an ISO 4217 code');
  end if;
  if service_apply_checkout.amount_tax is not null and service_apply_checkout.amount_tax < 0 then
    perform creditgate_private.invalid('amount_tax', 'zero or more');
  end if;
  if service_apply_checkout.session_id is not null then
    perform creditgate_private.check_key(service_apply_checkout.session_id, 'session_id');
  end if;
  select p.* into v_pack
  from creditgate.credit_packs as p
  where p.stripe_price_id = service_apply_checkout.price_id;
  if v_pack.id is null then
    perform creditgate_private.raise_error(
      'not_found', jsonb_build_object('object', 'credit_pack', 'price_id', service_apply_checkout.price_id)
    );
  end if;
  -- One grant per Checkout Session: checkout.session.completed and
  -- checkout.session.async_payment_succeeded of one session are two events for one payment.
  v_key := 'stripe:' || coalesce('checkout:' || service_apply_checkout.session_id, service_apply_checkout.event_id);
  -- The request is the purchase itself; the lot's expiry is derived from the pack at first
  -- delivery, so a retry hours later still matches.
  v_hash := md5(jsonb_build_array(
    'checkout', service_apply_checkout.user_id, service_apply_checkout.price_id,
    service_apply_checkout.quantity
  )::text);

  perform creditgate_private.lock_balance(service_apply_checkout.user_id, true);
  v_entry := creditgate_private.find_entry(v_key, v_hash);
  if v_entry.id is null then
    -- What was paid must be what the pack costs: a session created with another amount or
    -- currency (or a discount) buys nothing automatically; an operator decides.
    if lower(service_apply_checkout.currency) <> lower(v_pack.currency) then
      v_reason := 'currency_mismatch';
    elsif service_apply_checkout.amount_total - coalesce(service_apply_checkout.amount_tax, 0)
          <> v_pack.price_cents::bigint * service_apply_checkout.quantity then
      v_reason := 'amount_mismatch';
    end if;
    if v_reason is not null then
      insert into creditgate_private.checkout_holds (
        idempotency_key, event_id, session_id, user_id, price_id, quantity, expected_amount,
        expected_currency, amount_total, amount_tax, currency, reason
      ) values (
        v_key, service_apply_checkout.event_id, service_apply_checkout.session_id,
        service_apply_checkout.user_id, service_apply_checkout.price_id,
        service_apply_checkout.quantity, v_pack.price_cents::bigint * service_apply_checkout.quantity,
        lower(v_pack.currency), service_apply_checkout.amount_total,
        service_apply_checkout.amount_tax, lower(service_apply_checkout.currency), v_reason
      )
      on conflict (idempotency_key) do nothing;
      return jsonb_build_object(
        'held', true, 'reason', v_reason, 'pack_id', v_pack.id, 'credits', 0,
        'expected_amount', v_pack.price_cents::bigint * service_apply_checkout.quantity,
        'expected_currency', lower(v_pack.currency),
        'amount', service_apply_checkout.amount_total - coalesce(service_apply_checkout.amount_tax, 0),
        'currency', lower(service_apply_checkout.currency),
        'replayed', not found
      );
    end if;
  end if;
  v_result := creditgate_private.grant_credits(
    service_apply_checkout.user_id,
    v_pack.credits * service_apply_checkout.quantity,
    'purchase',
    v_key,
    v_pack.category,
    now() + v_pack.expires_after,
    v_pack.priority,
    'stripe checkout',
    jsonb_build_object(
      'event_id', service_apply_checkout.event_id, 'price_id', service_apply_checkout.price_id,
      'pack_id', v_pack.id, 'quantity', service_apply_checkout.quantity
    ) || case
      when service_apply_checkout.session_id is null then '{}'::jsonb
      else jsonb_build_object('session_id', service_apply_checkout.session_id)
    end,
    v_hash
  );
  return v_result || jsonb_build_object('pack_id', v_pack.id, 'credits', v_result -> 'amount');
end
$$;
comment on function creditgate.service_apply_checkout(text, uuid, text, integer, bigint, text, text, bigint) is
'Applies a paid Stripe checkout once per session, only if it paid the pack''s price: credits come from credit_packs, never the client.';
revoke all on function creditgate.service_apply_checkout(text, uuid, text, integer, bigint, text, text, bigint) from public, anon, authenticated;
grant execute on function creditgate.service_apply_checkout(text, uuid, text, integer, bigint, text, text, bigint) to service_role;

create or replace function creditgate.service_clawback(
  event_id text,
  user_id uuid,
  amount bigint,
  reason text
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_key text;
  v_hash text;
  v_prior creditgate_private.clawbacks;
  v_entry creditgate.ledger;
  v_balance bigint;
begin
  perform creditgate_private.check_key(service_clawback.event_id, 'event_id');
  if service_clawback.amount is null or service_clawback.amount <= 0 then
    perform creditgate_private.invalid('amount', 'must be a positive integer');
  end if;
  v_key := 'stripe:' || service_clawback.event_id;
  v_hash := md5(jsonb_build_array('clawback', service_clawback.user_id, service_clawback.amount)::text);

  v_balance := creditgate_private.lock_balance(service_clawback.user_id);
  -- The event's key lock (find_entry), so the same event for two users takes turns and the
  -- later call sees the earlier one's clawback row below. A ledger entry under the key is
  -- this clawback's own (same request: the row below replays it, with the balance the entry
  -- left) or another request's (PT409).
  v_entry := creditgate_private.find_entry(v_key, v_hash);
  select c.* into v_prior from creditgate_private.clawbacks as c where c.idempotency_key = v_key;
  if v_prior.idempotency_key is not null then
    if v_prior.user_id <> service_clawback.user_id or v_prior.requested <> service_clawback.amount then
      perform creditgate_private.raise_error(
        'idempotency_key_reused', jsonb_build_object('idempotency_key', v_key)
      );
    end if;
    return jsonb_build_object(
      'requested', v_prior.requested, 'taken', v_prior.taken, 'shortfall', v_prior.shortfall,
      'entry_id', v_prior.ledger_id,
      'balance', coalesce(v_entry.balance_after::bigint, v_balance),
      'replayed', true
    );
  end if;
  return creditgate_private.take_clawback(
    service_clawback.user_id, v_key, v_hash, service_clawback.amount, service_clawback.reason,
    jsonb_build_object('event_id', service_clawback.event_id, 'requested', service_clawback.amount)
  );
end
$$;
comment on function creditgate.service_clawback(text, uuid, bigint, text) is
'Takes back credits after a Stripe refund or dispute, at most what is spendable; the rest is owed.';
revoke all on function creditgate.service_clawback(text, uuid, bigint, text) from public, anon, authenticated;
grant execute on function creditgate.service_clawback(text, uuid, bigint, text) to service_role;

create or replace function creditgate_private.payment_clawback_replay(
  p_key text,
  p_user_id uuid,
  p_payment_id text,
  p_balance bigint
) returns jsonb
language plpgsql
stable
set search_path = ''
as $$
declare
  v_prior creditgate_private.clawbacks;
begin
  -- The clawback already recorded under p_key (same user and payment: its original figures,
  -- replayed; otherwise PT409), or null.
  select c.* into v_prior from creditgate_private.clawbacks as c where c.idempotency_key = p_key;
  if v_prior.idempotency_key is null then
    return null;
  end if;
  if v_prior.user_id <> p_user_id or v_prior.payment_id is distinct from p_payment_id then
    perform creditgate_private.raise_error(
      'idempotency_key_reused', jsonb_build_object('idempotency_key', p_key)
    );
  end if;
  return jsonb_build_object(
    'requested', v_prior.requested, 'taken', v_prior.taken, 'shortfall', v_prior.shortfall,
    'entry_id', v_prior.ledger_id, 'balance', p_balance, 'replayed', true
  );
end
$$;
comment on function creditgate_private.payment_clawback_replay(text, uuid, text, bigint) is
'Replay of a refund or dispute clawback already recorded under the key; PT409 if it was for another user or payment.';
revoke all on function creditgate_private.payment_clawback_replay(text, uuid, text, bigint) from public, anon, authenticated;

create or replace function creditgate_private.payment_claimed(p_user_id uuid, p_payment_id text)
returns table (refunds bigint, disputes bigint, money_refunded bigint)
language plpgsql
stable
set search_path = ''
as $$
begin
  -- What the payment's clawbacks already asked for: its refunds (for good), its disputes
  -- not won (a won dispute gave back what it took), and the most money reported refunded.
  return query
  select
    coalesce(sum(c.requested) filter (where c.kind = 'refund'), 0)::bigint,
    coalesce(sum(c.requested) filter (where c.kind = 'dispute' and c.resolution is null), 0)::bigint,
    coalesce(max(c.amount_refunded), 0)::bigint
  from creditgate_private.clawbacks as c
  where c.payment_id = p_payment_id and c.user_id = p_user_id;
end
$$;
comment on function creditgate_private.payment_claimed(uuid, text) is
'Credits already asked back for a Stripe payment by refunds and open disputes, and the most money refunded.';
revoke all on function creditgate_private.payment_claimed(uuid, text) from public, anon, authenticated;

create or replace function creditgate.service_stripe_refund(
  refund_id text,
  user_id uuid,
  payment_id text,
  credits bigint,
  payment_amount bigint,
  amount_refunded bigint,
  reason text default 'stripe refund'
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_key text;
  v_hash text;
  v_balance bigint;
  v_replay jsonb;
  v_claimed record;
  v_money bigint;
  v_target bigint;
  v_request bigint;
begin
  perform creditgate_private.check_key(service_stripe_refund.refund_id, 'refund_id');
  perform creditgate_private.check_key(service_stripe_refund.payment_id, 'payment_id');
  if service_stripe_refund.credits is null or service_stripe_refund.credits <= 0 then
    perform creditgate_private.invalid('credits', 'must be a positive integer');
  end if;
  if service_stripe_refund.payment_amount is null or service_stripe_refund.payment_amount <= 0 then
    perform creditgate_private.invalid('payment_amount', 'must be a positive integer');
  end if;
  if service_stripe_refund.amount_refunded is null or service_stripe_refund.amount_refunded < 0 then
    perform creditgate_private.invalid('amount_refunded', 'zero or more');
  end if;
  v_key := 'stripe:refund:' || service_stripe_refund.refund_id;
  -- The refund, not the event that reported it: a later event lists the same refund with a
  -- larger amount refunded in total, and must replay it.
  v_hash := md5(jsonb_build_array(
    'stripe_refund', service_stripe_refund.user_id, service_stripe_refund.payment_id,
    service_stripe_refund.credits, service_stripe_refund.payment_amount
  )::text);

  v_balance := creditgate_private.lock_balance(service_stripe_refund.user_id);
  perform creditgate_private.find_entry(v_key, v_hash);
  v_replay := creditgate_private.payment_clawback_replay(
    v_key, service_stripe_refund.user_id, service_stripe_refund.payment_id, v_balance
  );
  if v_replay is not null then
    return v_replay;
  end if;
  -- Every clawback of one payment is the same user's, so the balance lock above serializes
  -- them: the figures below are current. In proportion to the money refunded so far,
  -- rounded down once for the total (so refunds of 1/3 + 1/3 + 1/3 take the whole pack),
  -- never more than the pack, less what was asked already (an open dispute asked for it all).
  select * into v_claimed
  from creditgate_private.payment_claimed(service_stripe_refund.user_id, service_stripe_refund.payment_id);
  v_money := least(
    greatest(service_stripe_refund.amount_refunded, v_claimed.money_refunded),
    service_stripe_refund.payment_amount
  );
  v_target := floor(
    service_stripe_refund.credits::numeric * v_money / service_stripe_refund.payment_amount
  )::bigint;
  v_request := greatest(0, v_target - v_claimed.refunds - v_claimed.disputes);
  return creditgate_private.take_clawback(
    service_stripe_refund.user_id, v_key, v_hash, v_request, service_stripe_refund.reason,
    jsonb_build_object(
      'refund_id', service_stripe_refund.refund_id, 'payment_id', service_stripe_refund.payment_id,
      'requested', v_request
    ),
    'refund', service_stripe_refund.payment_id, service_stripe_refund.payment_amount, v_money,
    service_stripe_refund.credits
  );
end
$$;
comment on function creditgate.service_stripe_refund(text, uuid, text, bigint, bigint, bigint, text) is
'Claws back a Stripe refund''s share of the credits a payment bought (rounded down, never past the pack), once per refund id.';
revoke all on function creditgate.service_stripe_refund(text, uuid, text, bigint, bigint, bigint, text) from public, anon, authenticated;
grant execute on function creditgate.service_stripe_refund(text, uuid, text, bigint, bigint, bigint, text) to service_role;

create or replace function creditgate.service_stripe_dispute(
  dispute_id text,
  user_id uuid,
  payment_id text,
  credits bigint,
  reason text default 'stripe dispute'
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_key text;
  v_hash text;
  v_balance bigint;
  v_replay jsonb;
  v_claimed record;
  v_request bigint;
begin
  perform creditgate_private.check_key(service_stripe_dispute.dispute_id, 'dispute_id');
  perform creditgate_private.check_key(service_stripe_dispute.payment_id, 'payment_id');
  if service_stripe_dispute.credits is null or service_stripe_dispute.credits <= 0 then
    perform creditgate_private.invalid('credits', 'must be a positive integer');
  end if;
  v_key := 'stripe:dispute:' || service_stripe_dispute.dispute_id;
  v_hash := md5(jsonb_build_array(
    'stripe_dispute', service_stripe_dispute.user_id, service_stripe_dispute.payment_id
  )::text);

  v_balance := creditgate_private.lock_balance(service_stripe_dispute.user_id);
  perform creditgate_private.find_entry(v_key, v_hash);
  v_replay := creditgate_private.payment_clawback_replay(
    v_key, service_stripe_dispute.user_id, service_stripe_dispute.payment_id, v_balance
  );
  if v_replay is not null then
    return v_replay;
  end if;
  -- What refunds of this payment (and any other open dispute of it) already asked for is
  -- not asked again: a refund and a dispute of one charge never take the credits twice.
  select * into v_claimed
  from creditgate_private.payment_claimed(service_stripe_dispute.user_id, service_stripe_dispute.payment_id);
  v_request := greatest(0, service_stripe_dispute.credits - v_claimed.refunds - v_claimed.disputes);
  return creditgate_private.take_clawback(
    service_stripe_dispute.user_id, v_key, v_hash, v_request, service_stripe_dispute.reason,
    jsonb_build_object(
      'dispute_id', service_stripe_dispute.dispute_id, 'payment_id', service_stripe_dispute.payment_id,
      'requested', v_request
    ),
    'dispute', service_stripe_dispute.payment_id
  );
end
$$;
comment on function creditgate.service_stripe_dispute(text, uuid, text, bigint, text) is
'Claws back the credits a disputed Stripe payment bought, less what its refunds took; the rest is owed. Once per dispute.';
revoke all on function creditgate.service_stripe_dispute(text, uuid, text, bigint, text) from public, anon, authenticated;
grant execute on function creditgate.service_stripe_dispute(text, uuid, text, bigint, text) to service_role;

create or replace function creditgate.service_stripe_dispute_won(
  dispute_id text,
  user_id uuid,
  payment_id text,
  reason text default 'stripe dispute won'
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_key text;
  v_return_key text;
  v_hash text;
  v_claw creditgate_private.clawbacks;
  v_open bigint;
  v_returned bigint;
  v_given bigint;
  v_entry creditgate.ledger;
  v_balance bigint;
  v_credits bigint;
  v_payment_amount bigint;
  v_money bigint;
  v_refunds bigint;
  v_due bigint;
begin
  perform creditgate_private.check_key(service_stripe_dispute_won.dispute_id, 'dispute_id');
  perform creditgate_private.check_key(service_stripe_dispute_won.payment_id, 'payment_id');
  v_key := 'stripe:dispute:' || service_stripe_dispute_won.dispute_id;
  v_return_key := 'stripe:dispute-won:' || service_stripe_dispute_won.dispute_id;
  v_hash := md5(jsonb_build_array(
    'stripe_dispute_won', service_stripe_dispute_won.user_id, service_stripe_dispute_won.payment_id
  )::text);

  v_balance := creditgate_private.lock_balance(service_stripe_dispute_won.user_id);
  -- The dispute's own key first (as service_stripe_dispute takes it), then the return's.
  perform creditgate_private.find_entry(
    v_key,
    md5(jsonb_build_array(
      'stripe_dispute', service_stripe_dispute_won.user_id, service_stripe_dispute_won.payment_id
    )::text)
  );
  v_entry := creditgate_private.find_entry(v_return_key, v_hash);
  select c.* into v_claw
  from creditgate_private.clawbacks as c
  where c.idempotency_key = v_key
  for update;
  if v_claw.idempotency_key is null then
    -- Won before the dispute itself arrived (events come in any order): record the dispute
    -- as won with nothing taken, so its late delivery replays that and takes nothing.
    insert into creditgate_private.clawbacks (
      idempotency_key, user_id, requested, taken, reason, kind, payment_id, resolution, resolved_at
    ) values (
      v_key, service_stripe_dispute_won.user_id, 0, 0, service_stripe_dispute_won.reason,
      'dispute', service_stripe_dispute_won.payment_id, 'won', now()
    );
    return jsonb_build_object(
      'returned', 0, 'cancelled', 0, 'entry_id', null, 'balance', v_balance, 'replayed', false
    );
  end if;
  if v_claw.user_id <> service_stripe_dispute_won.user_id
     or v_claw.payment_id is distinct from service_stripe_dispute_won.payment_id
     or v_claw.kind <> 'dispute' then
    perform creditgate_private.raise_error(
      'idempotency_key_reused', jsonb_build_object('idempotency_key', v_key)
    );
  end if;
  if v_claw.resolution is not null then
    -- The balance the win left: after the refunds' catch-up, else after collections for
    -- other disputes, else after the return itself (nothing returned: the balance now).
    return jsonb_build_object(
      'returned', v_claw.returned, 'cancelled', v_claw.cancelled, 'entry_id', v_entry.id,
      'balance', coalesce(
        (select l.balance_after::bigint from creditgate.ledger as l
         where l.idempotency_key = 'stripe:refund-after-won:' || service_stripe_dispute_won.dispute_id),
        (creditgate_private.owed_paid(v_entry) ->> 'balance')::bigint,
        v_entry.balance_after::bigint,
        v_balance
      ),
      'replayed', true
    );
  end if;

  -- Cancel what is still owed, return everything the dispute took: its clawback and the
  -- collections made for it since, each to the lot it came from.
  v_open := v_claw.requested - v_claw.taken - v_claw.collected - v_claw.cancelled;
  v_returned := v_claw.taken + v_claw.collected;
  update creditgate_private.clawbacks as c
  set cancelled = c.cancelled + v_open, returned = v_returned, resolution = 'won', resolved_at = now()
  where c.idempotency_key = v_key;
  update creditgate.balances as b
  set owed = b.owed - v_open
  where b.user_id = service_stripe_dispute_won.user_id;
  if v_returned > 0 then
    v_entry := creditgate_private.post_entry(
      service_stripe_dispute_won.user_id, 'purchase', v_returned, v_return_key, v_hash, null, null,
      service_stripe_dispute_won.reason,
      jsonb_build_object(
        'dispute_id', service_stripe_dispute_won.dispute_id,
        'payment_id', service_stripe_dispute_won.payment_id, 'clawback_key', v_key
      )
    );
    with taken_per_lot as (
      select m.lot_id, -sum(m.amount) as n
      from creditgate_private.lot_movements as m
      join creditgate.ledger as e on e.id = m.ledger_id
      where e.user_id = service_stripe_dispute_won.user_id
        and e.entry_type = 'clawback'
        and (e.id = v_claw.ledger_id or e.metadata ->> 'clawback_key' = v_key)
      group by m.lot_id
    ),
    updated as (
      update creditgate.credit_lots as l
      set remaining = l.remaining + t.n
      from taken_per_lot as t
      where l.id = t.lot_id
      returning l.id, t.n
    ),
    recorded as (
      insert into creditgate_private.lot_movements (ledger_id, lot_id, amount)
      select v_entry.id, u.id, u.n from updated as u
      returning amount
    )
    select coalesce(sum(r.amount), 0) into v_given from recorded as r;
    if v_given <> v_returned then
      raise exception 'dispute % returned % of % to lots', v_key, v_given, v_returned;
    end if;
    v_balance := v_entry.balance_after;
    -- Returned credits are credits reaching the user: another dispute's debt comes first.
    if creditgate_private.collect_owed(service_stripe_dispute_won.user_id, v_entry.id, v_returned, now()) > 0 then
      v_balance := (creditgate_private.owed_paid(v_entry) ->> 'balance')::bigint;
    end if;
  end if;
  -- Refunds of the payment that arrived while the dispute was open asked for nothing (the
  -- dispute had asked for everything). Now that it no longer counts, they take their share.
  select
    max(c.payment_credits), max(c.payment_amount), max(c.amount_refunded),
    coalesce(sum(c.requested), 0)
  into v_credits, v_payment_amount, v_money, v_refunds
  from creditgate_private.clawbacks as c
  where c.payment_id = service_stripe_dispute_won.payment_id
    and c.user_id = service_stripe_dispute_won.user_id
    and c.kind = 'refund';
  if v_payment_amount > 0 then
    v_due := floor(v_credits::numeric * least(v_money, v_payment_amount) / v_payment_amount)::bigint
      - v_refunds
      - (select coalesce(sum(c.requested), 0) from creditgate_private.clawbacks as c
         where c.payment_id = service_stripe_dispute_won.payment_id
           and c.user_id = service_stripe_dispute_won.user_id
           and c.kind = 'dispute' and c.resolution is null);
    if v_due > 0 then
      v_balance := (creditgate_private.take_clawback(
        service_stripe_dispute_won.user_id,
        'stripe:refund-after-won:' || service_stripe_dispute_won.dispute_id, v_hash, v_due,
        'stripe refund',
        jsonb_build_object(
          'dispute_id', service_stripe_dispute_won.dispute_id,
          'payment_id', service_stripe_dispute_won.payment_id, 'requested', v_due
        ),
        'refund', service_stripe_dispute_won.payment_id, v_payment_amount, v_money, v_credits
      ) ->> 'balance')::bigint;
    end if;
  end if;
  return jsonb_build_object(
    'returned', v_returned, 'cancelled', v_open, 'entry_id', v_entry.id, 'balance', v_balance,
    'replayed', false
  );
end
$$;
comment on function creditgate.service_stripe_dispute_won(text, uuid, text, text) is
'A dispute the merchant won: returns what its clawback took and cancels what is still owed, exactly once.';
revoke all on function creditgate.service_stripe_dispute_won(text, uuid, text, text) from public, anon, authenticated;
grant execute on function creditgate.service_stripe_dispute_won(text, uuid, text, text) to service_role;

-- ===== db/functions/ledger/triggers.sql =====
-- Ledger guards.
-- tg_ledger__before_insert: sets delta's sign from entry_type (callers give amount only),
--   moves the user's (locked) balance row by it and sets balance_after to the result; keeps
--   the row's daily usage (credits charged for generations today, UTC, net of refunds).
-- tg_ledger__refuse_change: UPDATE, DELETE and TRUNCATE are refused for every role.

create or replace function creditgate_private.tg_ledger__before_insert()
returns trigger
language plpgsql
set search_path = ''
as $$
declare
  -- The entry's UTC day (created_at defaults to now(): the day its generation's
  -- created_at falls on).
  v_day date := (new.created_at at time zone 'UTC')::date;
  -- What this entry adds to that day's usage: a generation's charge adds its amount, a
  -- refund of a charge posted the same day takes its amount back; anything else, nothing.
  v_used bigint := 0;
begin
  if new.amount is null or new.amount <= 0 then
    raise exception using errcode = '23514', message = 'ledger amount must be > 0';
  end if;
  new.delta := case
    when new.entry_type in ('signup_bonus', 'purchase', 'grant', 'admin_recharge', 'refund')
      then new.amount
    when new.entry_type in ('spend', 'expire', 'clawback', 'forfeit')
      then -new.amount
  end;
  if (new.entry_type = 'refund') <> (new.charge_key is not null) then
    raise exception using
      errcode = '23514',
      message = 'a refund, and only a refund, names the charge it refunds (charge_key)';
  end if;
  if new.generation_id is not null then
    if new.entry_type = 'spend' then
      v_used := new.amount;
    elsif new.entry_type = 'refund' and exists (
      select 1 from creditgate.ledger as c
      where c.idempotency_key = new.charge_key
        and (c.created_at at time zone 'UTC')::date = v_day
    ) then
      v_used := -new.amount;
    end if;
  end if;
  -- The entry moves the cached balance with it, in the same statement, so the two cannot
  -- disagree. The caller holds this row's lock (lock_balance), so the figure is current; a
  -- balance that would go negative fails the balances domain check (23514).
  -- Daily usage restarts on the first counted entry of a new day. A transaction that began
  -- before midnight but reaches the row after one that began after it counts nowhere: its
  -- day is over, and the newer day's figure must not include it.
  update creditgate.balances as b
  set balance = b.balance + new.delta,
      updated_at = now(),
      daily_used = case
        when v_used = 0 or b.daily_used_on > v_day then b.daily_used
        -- never below zero, even for a refund that should not exist (audit reports those)
        when b.daily_used_on = v_day then greatest(0, b.daily_used + v_used)
        else greatest(0, v_used)
      end,
      daily_used_on = case
        when v_used = 0 or b.daily_used_on > v_day then b.daily_used_on
        else v_day
      end
  where b.user_id = new.user_id
  returning b.balance into new.balance_after;
  if not found then
    raise exception using
      errcode = '23503',
      message = format('no balance row for user %s', new.user_id);
  end if;
  return new;
end
$$;
comment on function creditgate_private.tg_ledger__before_insert() is
'Computes the signed delta from entry_type (no caller can pick the sign), moves the balance by it and records balance_after.';

create or replace function creditgate_private.tg_ledger__refuse_change()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  raise exception using
    errcode = '42501',
    message = 'creditgate.ledger is append-only',
    detail = format('%s refused', tg_op),
    hint = 'Post a compensating entry (refund, clawback) instead.';
end
$$;
comment on function creditgate_private.tg_ledger__refuse_change() is
'Refuses UPDATE, DELETE and TRUNCATE on the ledger, for every role including the owner.';

create or replace trigger ledger_before_insert
before insert on creditgate.ledger
for each row execute function creditgate_private.tg_ledger__before_insert();

create or replace trigger ledger_refuse_update_delete
before update or delete on creditgate.ledger
for each row execute function creditgate_private.tg_ledger__refuse_change();

create or replace trigger ledger_refuse_truncate
before truncate on creditgate.ledger
for each statement execute function creditgate_private.tg_ledger__refuse_change();

-- Lot movements are part of the ledger's history: append-only too.
create or replace trigger lot_movements_refuse_update_delete
before update or delete on creditgate_private.lot_movements
for each row execute function creditgate_private.tg_ledger__refuse_change();

create or replace trigger lot_movements_refuse_truncate
before truncate on creditgate_private.lot_movements
for each statement execute function creditgate_private.tg_ledger__refuse_change();

revoke all on function creditgate_private.tg_ledger__before_insert() from public, anon, authenticated;
revoke all on function creditgate_private.tg_ledger__refuse_change() from public, anon, authenticated;

-- ===== db/functions/ops/jobs.sql =====
-- Periodic jobs (DESIGN §8). One function runs a job by name; pg_cron calls it
-- (`creditgate schedule install`), and so does `creditgate worker` through
-- service_run_due_jobs when the pg_cron jobs are not installed.
--
-- creditgate_private.run_job(p_job, p_runner, p_now) -> jsonb {job, ok, result}
--   Runs one job in a subtransaction (a failure is recorded, not raised) and records it in
--   job_runs and jobs.last_*. Jobs: expire-credits, reap-leases, prune-rate-limits,
--   mark-media, audit.   PT404 not_found (unknown job)
-- creditgate_private.job_expiring_credits(p_now) -> jsonb {events}
-- creditgate_private.job_prune_rate_limits(p_now) -> jsonb {deleted}
-- creditgate_private.job_mark_media(p_now) -> jsonb {marked, unqueued}
-- creditgate_private.job_audit(p_now) -> jsonb {audit_run_id, ok, failures}
-- creditgate_private.set_jobs_on_pg_cron(p_on) -> integer   (schedule install / remove)
-- creditgate.service_run_due_jobs(runner, now) -> jsonb {locked, ran: [...]}   service_role
--   Runs every job not on pg_cron whose period has passed since its last start. A
--   transaction advisory lock (class 1667720058, key 1) makes one caller at a time the
--   runner; the others return {locked: true} at once. Due-ness is read under that lock from
--   jobs.last_started_at, so however many workers call, each job runs once per period.
--   PT400 invalid_request (runner)

create or replace function creditgate_private.job_expiring_credits(p_now timestamptz)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_days integer := coalesce((creditgate_private.setting('credits_expiring_days') #>> '{}')::integer, 0);
  v_lot record;
  v_events integer := 0;
begin
  if v_days <= 0 then
    return jsonb_build_object('events', 0);
  end if;
  for v_lot in
    select l.id, l.user_id, l.remaining, l.expires_at, l.category
    from creditgate.credit_lots as l
    where l.remaining > 0
      and l.expires_at > p_now
      and l.expires_at <= p_now + make_interval(days => v_days)
      -- Already announced: skipped through the events' dedupe_key index, not re-inserted.
      and not exists (
        select 1 from creditgate_private.events as e
        where e.dedupe_key = 'credits.expiring:' || l.id::text
      )
    order by l.expires_at, l.id
  loop
    if creditgate_private.emit_event(
      'credits.expiring', v_lot.user_id,
      jsonb_build_object(
        'user_id', v_lot.user_id, 'lot_id', v_lot.id, 'remaining', v_lot.remaining,
        'category', v_lot.category, 'expires_at', v_lot.expires_at
      ),
      'credits.expiring:' || v_lot.id::text
    ) is not null then
      v_events := v_events + 1;
    end if;
  end loop;
  return jsonb_build_object('events', v_events);
end
$$;
comment on function creditgate_private.job_expiring_credits(timestamptz) is
'credits.expiring once per lot that expires within credits_expiring_days.';

create or replace function creditgate_private.job_prune_rate_limits(p_now timestamptz)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_deleted integer;
begin
  delete from creditgate_private.rate_limit_counters as c
  using creditgate_private.rate_limit_rules as r
  where r.id = c.rule_id
    and c.window_start + make_interval(secs => r.window_seconds) < p_now;
  get diagnostics v_deleted = row_count;
  return jsonb_build_object('deleted', v_deleted);
end
$$;
comment on function creditgate_private.job_prune_rate_limits(timestamptz) is
'Deletes rate-limit counters whose window has ended (they can never count again).';

create or replace function creditgate_private.job_mark_media(p_now timestamptz)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_marked integer;
  v_unqueued integer;
begin
  insert into creditgate_private.media_purge_queue (media_id, storage_key, due_at)
  select m.id, m.storage_key, m.expires_at
  from creditgate.media as m
  where m.purged_at is null and m.expires_at <= p_now and not m.saved
  on conflict (media_id) do nothing;
  get diagnostics v_marked = row_count;
  -- Files purged since (by `creditgate cleanup`), saved meanwhile, or erased leave the queue.
  delete from creditgate_private.media_purge_queue as q
  where not exists (
    select 1 from creditgate.media as m
    where m.id = q.media_id and m.purged_at is null and not m.saved
  );
  get diagnostics v_unqueued = row_count;
  return jsonb_build_object('marked', v_marked, 'unqueued', v_unqueued);
end
$$;
comment on function creditgate_private.job_mark_media(timestamptz) is
'Queues expired temporary media for purge; drops queue rows already purged or saved.';

create or replace function creditgate_private.job_audit(p_now timestamptz)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_started timestamptz := clock_timestamp();
  v_result jsonb := creditgate.audit();
  v_ok boolean := coalesce((v_result ->> 'ok')::boolean, false);
  v_failures bigint;
  v_run_id bigint;
begin
  select coalesce(sum((c ->> 'failures')::bigint), 0) into v_failures
  from jsonb_array_elements(v_result -> 'checks') as c;
  insert into creditgate_private.audit_runs (started_at, finished_at, ok, failures, result)
  values (v_started, clock_timestamp(), v_ok, v_failures, v_result)
  returning id into v_run_id;
  if not v_ok then
    perform creditgate_private.emit_event(
      'audit.failed', null,
      jsonb_build_object(
        'audit_run_id', v_run_id, 'failures', v_failures, 'at', p_now,
        'checks', (
          select coalesce(jsonb_agg(jsonb_build_object('name', c ->> 'name', 'failures', (c ->> 'failures')::bigint)), '[]')
          from jsonb_array_elements(v_result -> 'checks') as c
          where (c ->> 'failures')::bigint > 0
        )
      )
    );
  end if;
  return jsonb_build_object('audit_run_id', v_run_id, 'ok', v_ok, 'failures', v_failures);
end
$$;
comment on function creditgate_private.job_audit(timestamptz) is
'Runs audit(), stores it in audit_runs, raises audit.failed when any check fails.';

create or replace function creditgate_private.run_job(
  p_job text,
  p_runner text default 'pg_cron',
  p_now timestamptz default now()
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_started timestamptz := clock_timestamp();
  v_result jsonb;
  v_ok boolean := true;
begin
  if not exists (select 1 from creditgate_private.jobs as j where j.name = p_job) then
    perform creditgate_private.raise_error('not_found', jsonb_build_object('job', p_job));
  end if;
  begin
    v_result := case p_job
      when 'expire-credits' then
        creditgate.service_expire_credits(now => p_now)
        || creditgate_private.job_expiring_credits(p_now)
      when 'reap-leases' then creditgate.service_reap_expired_leases(now => p_now)
      when 'prune-rate-limits' then creditgate_private.job_prune_rate_limits(p_now)
      when 'mark-media' then creditgate_private.job_mark_media(p_now)
      when 'audit' then creditgate_private.job_audit(p_now)
    end;
  exception when others then
    v_ok := false;
    v_result := jsonb_build_object('error', sqlerrm, 'sqlstate', sqlstate);
  end;
  insert into creditgate_private.job_runs (job, runner, started_at, finished_at, ok, result)
  values (p_job, left(p_runner, 200), v_started, clock_timestamp(), v_ok, coalesce(v_result, '{}'));
  update creditgate_private.jobs as j
  set last_started_at = v_started, last_finished_at = clock_timestamp(),
    last_ok = v_ok, last_result = coalesce(v_result, '{}')
  where j.name = p_job;
  return jsonb_build_object('job', p_job, 'ok', v_ok, 'result', coalesce(v_result, '{}'));
end
$$;
comment on function creditgate_private.run_job(text, text, timestamptz) is
'Runs one periodic job and records the run; what pg_cron''s creditgate-* jobs call.';

create or replace function creditgate_private.set_jobs_on_pg_cron(p_on boolean)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_count integer;
begin
  update creditgate_private.jobs as j set on_pg_cron = p_on where j.on_pg_cron is distinct from p_on;
  get diagnostics v_count = row_count;
  return v_count;
end
$$;
comment on function creditgate_private.set_jobs_on_pg_cron(boolean) is
'Records whether pg_cron runs the jobs (workers run them otherwise).';

create or replace function creditgate.service_run_due_jobs(
  runner text,
  now timestamptz default now()
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_job record;
  v_ran jsonb := '[]';
begin
  if service_run_due_jobs.runner is null or length(service_run_due_jobs.runner) not between 1 and 200 then
    perform creditgate_private.invalid('runner', '1 to 200 characters');
  end if;
  if not pg_catalog.pg_try_advisory_xact_lock(1667720058, 1) then
    return jsonb_build_object('locked', true, 'ran', v_ran);
  end if;
  for v_job in
    select j.name
    from creditgate_private.jobs as j
    where not j.on_pg_cron
      and (j.last_started_at is null
        or j.last_started_at + make_interval(secs => j.interval_seconds) <= service_run_due_jobs.now)
    order by j.name
  loop
    v_ran := v_ran || creditgate_private.run_job(v_job.name, service_run_due_jobs.runner, service_run_due_jobs.now);
  end loop;
  return jsonb_build_object('locked', false, 'ran', v_ran);
end
$$;
comment on function creditgate.service_run_due_jobs(text, timestamptz) is
'Workers without pg_cron: runs the jobs whose period has passed, one runner at a time.';

revoke all on function creditgate_private.job_expiring_credits(timestamptz) from public, anon, authenticated;
revoke all on function creditgate_private.job_prune_rate_limits(timestamptz) from public, anon, authenticated;
revoke all on function creditgate_private.job_mark_media(timestamptz) from public, anon, authenticated;
revoke all on function creditgate_private.job_audit(timestamptz) from public, anon, authenticated;
revoke all on function creditgate_private.run_job(text, text, timestamptz) from public, anon, authenticated;
revoke all on function creditgate_private.set_jobs_on_pg_cron(boolean) from public, anon, authenticated;
revoke all on function creditgate.service_run_due_jobs(text, timestamptz) from public, anon, authenticated;
grant execute on function creditgate.service_run_due_jobs(text, timestamptz) to service_role;

-- ===== db/functions/ops/outbox.sql =====
-- The transactional outbox (DESIGN §8). Events are rows of creditgate_private.events,
-- inserted by triggers and jobs in the transaction of their cause: a cause that rolls back
-- leaves no event, and one that commits always has its event. Each event is fanned out at
-- once to the enabled webhook endpoints that want its type (webhook_deliveries).
--
-- creditgate_private.emit_event(p_type, p_user_id, p_payload, p_dedupe_key) -> uuid
--   Inserts one event (none if p_dedupe_key was already used: "once per lot") and its
--   deliveries; returns its id, or null when deduplicated.
-- Triggers (cheap WHEN clauses, since the request path updates balances and inserts ledger
-- rows on every charge):
--   ledger AFTER INSERT, credit entry types           -> credits.added
--   balances AFTER UPDATE OF balance, a fall that may cross a threshold (bounds in its
--     WHEN, kept current by a trigger on settings) -> balance.low when it crosses
--   generations AFTER UPDATE OF status, now final     -> generation.succeeded | generation.failed
--   clawbacks AFTER INSERT, shortfall > 0             -> clawback.owed
-- Payloads carry ids, amounts and timestamps only: never prompts, outputs, error texts or
-- secrets.

create or replace function creditgate_private.emit_event(
  p_type text,
  p_user_id uuid,
  p_payload jsonb,
  p_dedupe_key text default null
) returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_id uuid;
begin
  insert into creditgate_private.events (id, event_type, user_id, dedupe_key, payload)
  values (creditgate_private.uuid_v7(), p_type, p_user_id, p_dedupe_key, p_payload)
  on conflict on constraint events_dedupe_key_key do nothing
  returning id into v_id;
  if v_id is null then
    return null;
  end if;
  insert into creditgate_private.webhook_deliveries (event_id, endpoint_id)
  select v_id, e.id
  from creditgate_private.webhook_endpoints as e
  where e.enabled and (p_type = any(e.event_types) or '*' = any(e.event_types));
  if found then
    perform pg_notify('creditgate_webhooks', '');
  end if;
  return v_id;
end
$$;
comment on function creditgate_private.emit_event(text, uuid, jsonb, text) is
'Writes one outbox event (deduplicated by key) and queues its webhook deliveries.';

create or replace function creditgate_private.tg_ledger__after_insert_event()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform creditgate_private.emit_event(
    'credits.added', new.user_id,
    jsonb_build_object(
      'user_id', new.user_id, 'entry_id', new.id, 'entry_type', new.entry_type,
      'amount', new.amount, 'balance_after', new.balance_after,
      'generation_id', new.generation_id, 'created_at', new.created_at
    )
  );
  return null;
end
$$;
comment on function creditgate_private.tg_ledger__after_insert_event() is
'credits.added for every credit entry (signup bonus, purchase, grant, admin recharge, refund).';

create or replace function creditgate_private.tg_balances__after_update_event()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_threshold bigint;
begin
  -- Runs only for falls that may cross a threshold (see install_balance_low_trigger), on
  -- the request path: the threshold (the plan's override in plan_low_balance_thresholds,
  -- else low_balance_threshold) is read in one query (100 is the catalog's default; a test
  -- keeps the two equal). An AFTER trigger: a BEFORE one would re-fetch and lock the old
  -- row on every update, even when its WHEN is false.
  select coalesce(
    (select (s.value ->> new.plan)::bigint from creditgate_private.settings as s
     where s.key = 'plan_low_balance_thresholds' and jsonb_typeof(s.value -> new.plan) = 'number'),
    (select (s.value #>> '{}')::bigint from creditgate_private.settings as s
     where s.key = 'low_balance_threshold'),
    100
  ) into v_threshold;
  -- The balance row is locked by every money operation, so OLD is the balance the previous
  -- committed operation left: exactly one update crosses the threshold per fall, however
  -- many spends race; a rise back to the threshold or above re-arms it.
  if v_threshold > 0 and old.balance >= v_threshold and new.balance < v_threshold then
    perform creditgate_private.emit_event(
      'balance.low', new.user_id,
      jsonb_build_object(
        'user_id', new.user_id, 'balance', new.balance, 'previous_balance', old.balance,
        'threshold', v_threshold, 'plan', new.plan, 'at', now()
      )
    );
  end if;
  return null;
end
$$;
comment on function creditgate_private.tg_balances__after_update_event() is
'balance.low when a balance falls below its plan''s threshold (once per crossing).';

create or replace function creditgate_private.tg_generations__after_update_event()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform creditgate_private.emit_event(
    'generation.' || new.status, new.user_id,
    jsonb_build_object(
      'generation_id', new.id, 'user_id', new.user_id, 'model_id', new.model_id,
      'kind', new.kind, 'cost', new.cost, 'actual_cost', new.actual_cost,
      'attempts', new.attempts, 'error_code', new.error ->> 'code',
      'created_at', new.created_at, 'finished_at', new.finished_at
    )
  );
  return null;
end
$$;
comment on function creditgate_private.tg_generations__after_update_event() is
'generation.succeeded or generation.failed when a generation reaches that status.';

create or replace function creditgate_private.tg_clawbacks__after_insert_event()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform creditgate_private.emit_event(
    'clawback.owed', new.user_id,
    jsonb_build_object(
      'user_id', new.user_id, 'clawback_key', new.idempotency_key, 'kind', new.kind,
      'payment_id', new.payment_id, 'requested', new.requested, 'taken', new.taken,
      'owed', new.requested - new.taken, 'created_at', new.created_at
    )
  );
  return null;
end
$$;
comment on function creditgate_private.tg_clawbacks__after_insert_event() is
'clawback.owed when a clawback could not take everything it asked for.';

create or replace trigger ledger_after_insert_event
after insert on creditgate.ledger
for each row
when (new.entry_type in ('signup_bonus', 'purchase', 'grant', 'admin_recharge', 'refund'))
execute function creditgate_private.tg_ledger__after_insert_event();

-- The balances trigger's WHEN clause carries the lowest and highest threshold in force as
-- constants, so a spend that cannot cross any threshold (the balance stays above the
-- highest, or was already below the lowest) costs no function call at all. Re-created
-- whenever a threshold setting changes, and here with the current settings.
create or replace function creditgate_private.install_balance_low_trigger()
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_default bigint := coalesce(
    (select (s.value #>> '{}')::bigint from creditgate_private.settings as s
     where s.key = 'low_balance_threshold'),
    (creditgate_private.setting_catalog() -> 'low_balance_threshold' ->> 'value')::bigint
  );
  v_min bigint;
  v_max bigint;
begin
  select least(v_default, min(o.value::text::bigint)), greatest(v_default, max(o.value::text::bigint))
  into v_min, v_max
  from creditgate_private.settings as s
  cross join lateral jsonb_each(s.value) as o
  where s.key = 'plan_low_balance_thresholds' and jsonb_typeof(o.value) = 'number';
  v_min := coalesce(v_min, v_default);
  v_max := coalesce(v_max, v_default);
  execute format(
    'create or replace trigger balances_after_update_event'
    ' after update of balance on creditgate.balances for each row'
    ' when (new.balance < old.balance and new.balance < %s and old.balance >= %s)'
    ' execute function creditgate_private.tg_balances__after_update_event()',
    greatest(v_max, 0), greatest(v_min, 1)
  );
end
$$;
comment on function creditgate_private.install_balance_low_trigger() is
'(Re)creates the balance.low trigger with the current lowest and highest thresholds in its WHEN.';

create or replace function creditgate_private.tg_settings__after_change_thresholds()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform creditgate_private.install_balance_low_trigger();
  return null;
end
$$;
comment on function creditgate_private.tg_settings__after_change_thresholds() is
'A threshold setting changed: re-create the balance.low trigger with the new bounds.';

create or replace trigger settings_after_write_thresholds
after insert or update on creditgate_private.settings
for each row
when (new.key in ('low_balance_threshold', 'plan_low_balance_thresholds'))
execute function creditgate_private.tg_settings__after_change_thresholds();

create or replace trigger settings_after_delete_thresholds
after delete on creditgate_private.settings
for each row
when (old.key in ('low_balance_threshold', 'plan_low_balance_thresholds'))
execute function creditgate_private.tg_settings__after_change_thresholds();
-- The balances trigger itself is created by db/policies/ops.sql, once every function it
-- reads exists.

create or replace trigger generations_after_update_event
after update of status on creditgate.generations
for each row
when (new.status in ('succeeded', 'failed') and old.status is distinct from new.status)
execute function creditgate_private.tg_generations__after_update_event();

create or replace trigger clawbacks_after_insert_event
after insert on creditgate_private.clawbacks
for each row
when (new.requested > new.taken)
execute function creditgate_private.tg_clawbacks__after_insert_event();

revoke all on function creditgate_private.emit_event(text, uuid, jsonb, text) from public, anon, authenticated;
revoke all on function creditgate_private.tg_ledger__after_insert_event() from public, anon, authenticated;
revoke all on function creditgate_private.tg_balances__after_update_event() from public, anon, authenticated;
revoke all on function creditgate_private.install_balance_low_trigger() from public, anon, authenticated;
revoke all on function creditgate_private.tg_settings__after_change_thresholds() from public, anon, authenticated;
revoke all on function creditgate_private.tg_generations__after_update_event() from public, anon, authenticated;
revoke all on function creditgate_private.tg_clawbacks__after_insert_event() from public, anon, authenticated;

-- ===== db/functions/ops/status.sql =====
-- creditgate.service_ops_status(now) -> jsonb   service_role
--   What `creditgate status` and the /metrics gauges show (DESIGN §8): queue depth and age
--   of the oldest queued job; running leases and leases past expiry; provider failure rate
--   per provider over the last hour; outbox backlog and parked deliveries; the last audit;
--   the jobs and their last runs. `attention` lists what an operator must look at (empty
--   when all is well): expired leases, parked deliveries, a failed or missing audit, a job
--   that failed or is overdue (not started within twice its period plus five minutes), a
--   provider failing more than half of at least 5 calls in the last hour.

create or replace function creditgate.service_ops_status(now timestamptz default now())
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := service_ops_status.now;
  v_queue jsonb;
  v_leases jsonb;
  v_providers jsonb;
  v_outbox jsonb;
  v_audit jsonb;
  v_jobs jsonb;
  v_attention jsonb := '[]';
begin
  select jsonb_build_object(
    'depth', count(*),
    'oldest_age_seconds', coalesce(extract(epoch from v_now - min(g.created_at)), 0)
  ) into v_queue
  from creditgate.generations as g where g.status = 'queued';

  select jsonb_build_object(
    'running', count(*),
    'expired', count(*) filter (where l.lease_expires_at <= v_now)
  ) into v_leases
  from creditgate.generations as g
  -- Leases live in creditgate_private.generation_leases since 0010.
  left join creditgate_private.generation_leases as l on l.generation_id = g.id
  where g.status = 'running';

  select coalesce(jsonb_agg(jsonb_build_object(
    'provider', p.provider, 'calls', p.calls, 'failures', p.failures,
    'failure_rate', round(p.failures::numeric / p.calls, 4)
  ) order by p.provider), '[]') into v_providers
  from (
    select coalesce(c.provider, 'unknown') as provider, count(*) as calls,
      count(*) filter (where c.outcome <> 'succeeded') as failures
    from creditgate_private.provider_calls as c
    where c.created_at > v_now - interval '1 hour'
    group by 1
  ) as p;

  select jsonb_build_object(
    'pending', count(*) filter (where d.status in ('pending', 'delivering')),
    'oldest_pending_age_seconds', coalesce(extract(epoch from v_now - min(d.created_at)
      filter (where d.status in ('pending', 'delivering'))), 0),
    'parked', count(*) filter (where d.status = 'parked'),
    'events_last_hour', (select count(*) from creditgate_private.events as e
      where e.created_at > v_now - interval '1 hour')
  ) into v_outbox
  from creditgate_private.webhook_deliveries as d
  where d.status in ('pending', 'delivering', 'parked');

  select coalesce((
    select jsonb_build_object(
      'id', a.id, 'started_at', a.started_at, 'ok', a.ok, 'failures', a.failures,
      'age_seconds', extract(epoch from v_now - a.started_at)
    )
    from creditgate_private.audit_runs as a order by a.started_at desc, a.id desc limit 1
  ), 'null') into v_audit;

  select coalesce(jsonb_agg(jsonb_build_object(
    'name', j.name, 'runner', case when j.on_pg_cron then 'pg_cron' else 'worker' end,
    'cron_schedule', j.cron_schedule, 'interval_seconds', j.interval_seconds,
    'last_started_at', j.last_started_at, 'last_ok', j.last_ok,
    'last_duration_ms', round(extract(epoch from j.last_finished_at - j.last_started_at) * 1000),
    'overdue', j.last_started_at is null
      or j.last_started_at < v_now - make_interval(secs => 2 * j.interval_seconds + 300)
  ) order by j.name), '[]') into v_jobs
  from creditgate_private.jobs as j;

  if (v_leases ->> 'expired')::bigint > 0 then
    v_attention := v_attention || jsonb_build_array(format('%s lease(s) past expiry', v_leases ->> 'expired'));
  end if;
  if (v_outbox ->> 'parked')::bigint > 0 then
    v_attention := v_attention || jsonb_build_array(format('%s parked webhook deliveries', v_outbox ->> 'parked'));
  end if;
  if v_audit = 'null'::jsonb then
    v_attention := v_attention || jsonb_build_array('no audit has run');
  elsif not (v_audit ->> 'ok')::boolean then
    v_attention := v_attention || jsonb_build_array(format('the last audit failed (%s failures)', v_audit ->> 'failures'));
  end if;
  v_attention := v_attention || coalesce((
    select jsonb_agg(case when (x ->> 'last_ok')::boolean is false
      then format('job %s failed on its last run', x ->> 'name')
      else format('job %s is overdue', x ->> 'name') end)
    from jsonb_array_elements(v_jobs) as x
    where (x ->> 'overdue')::boolean or (x ->> 'last_ok')::boolean is false
  ), '[]');
  v_attention := v_attention || coalesce((
    select jsonb_agg(format('provider %s failed %s of %s calls in the last hour',
      x ->> 'provider', x ->> 'failures', x ->> 'calls'))
    from jsonb_array_elements(v_providers) as x
    where (x ->> 'calls')::bigint >= 5 and (x ->> 'failure_rate')::numeric > 0.5
  ), '[]');

  return jsonb_build_object(
    'at', v_now, 'queue', v_queue, 'leases', v_leases, 'providers', v_providers,
    'outbox', v_outbox, 'audit', v_audit, 'jobs', v_jobs, 'attention', v_attention
  );
end
$$;
comment on function creditgate.service_ops_status(timestamptz) is
'Operator status: queue, leases, provider failures, outbox, last audit, jobs, and what needs attention.';
revoke all on function creditgate.service_ops_status(timestamptz) from public, anon, authenticated;
grant execute on function creditgate.service_ops_status(timestamptz) to service_role;

-- ===== db/functions/ops/webhooks.sql =====
-- Webhook endpoints and deliveries (DESIGN §8, Standard Webhooks).
--
-- Operators (creditgate webhooks ..., as the database owner) call the private functions;
-- admins (console) call the admin_* wrappers, admin checked inside. Workers call the
-- service_* pair: claim due deliveries (FOR UPDATE SKIP LOCKED, with a lease, so a worker
-- killed mid-delivery only delays it until the lease expires), then report each attempt.
--
-- creditgate_private.webhook_add(p_url, p_event_types, p_secret, p_description) -> jsonb
--   {endpoint_id, url, event_types, secret}: the secret (whsec_<base64>) is shown once.
--   PT400 invalid_request (url: https only, http only on loopback with webhook_allow_loopback;
--   event_types: known types or '*'; secret: whsec_ + base64 of 24-64 bytes)
-- creditgate_private.webhook_list() -> jsonb [{endpoint_id, url, event_types, enabled, ...}]
-- creditgate_private.webhook_disable(p_endpoint_id, p_reason) -> jsonb   PT404 not_found
--   Pending deliveries to it are canceled.
-- creditgate_private.webhook_redeliver(p_delivery_id) -> jsonb   PT404, PT409 invalid_state
--   Sends a delivery again (same webhook-id) with a fresh retry budget; not while in flight
--   or while its endpoint is disabled.
-- creditgate_private.webhook_deliveries(p_endpoint_id, p_status, p_max_items) -> jsonb
-- creditgate.admin_add_webhook_endpoint / admin_list_webhook_endpoints /
--   admin_disable_webhook_endpoint / admin_redeliver_webhook / admin_webhook_deliveries:
--   the same for admins (PT401, PT403).
-- creditgate.service_claim_webhook_deliveries(worker_id, max_items, lease_seconds) -> jsonb
--   [{delivery_id, lease_token, attempt, url, secret, webhook_id, body, allow_loopback}]
--   Due pending deliveries and deliveries whose lease expired (that attempt is recorded as
--   lease_expired). PT400 invalid_request.
-- creditgate.service_finish_webhook_delivery(delivery_id, worker_id, lease_token, outcome)
--   -> jsonb {delivery_id, status, next_attempt_at}
--   outcome {http_status, latency_ms, error, refused}: 2xx delivered; 410 disables the
--   endpoint; refused (address policy) parks it; anything else is retried after
--   base * 2^(attempt-1) seconds (capped, jitter 50-100%), or parked once the retry budget
--   (webhook_retry_budget_hours since the first try or the last redeliver) is spent.
--   PT400 invalid_request, PT409 lease_lost.

create or replace function creditgate_private.webhook_event_types()
returns text []
language sql
immutable
set search_path = ''
as $$
  select array[
    'balance.low', 'credits.expiring', 'credits.added', 'generation.succeeded',
    'generation.failed', 'clawback.owed', 'audit.failed'
  ]::text [];
$$;
comment on function creditgate_private.webhook_event_types() is
'Every event type an endpoint may subscribe to (plus ''*'' for all).';

create or replace function creditgate_private.webhook_add(
  p_url text,
  p_event_types text [],
  p_secret text default null,
  p_description text default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_host text;
  v_secret text := coalesce(p_secret, 'whsec_' || encode(extensions.gen_random_bytes(32), 'base64'));
  v_id uuid;
begin
  if p_url is null or length(p_url) > 2000 or p_url !~* '^https?://[^/?#@\s]+([/?#][^\s]*)?$' then
    perform creditgate_private.invalid('url', 'an absolute http(s) URL without credentials');
  end if;
  v_host := lower(substring(p_url from '^[A-Za-z]+://(\[[^\]]+\]|[^/:?#]+)'));
  if p_url ~* '^http://' and not (
    coalesce((creditgate_private.setting('webhook_allow_loopback') #>> '{}')::boolean, false)
    and (v_host in ('localhost', '[::1]') or v_host ~ '^127\.\d+\.\d+\.\d+$')
  ) then
    perform creditgate_private.invalid('url', 'https only (http only to loopback when webhook_allow_loopback is on)');
  end if;
  if p_event_types is null or cardinality(p_event_types) = 0 or exists (
    select 1 from unnest(p_event_types) as t (name)
    where t.name is null or not (t.name = '*' or t.name = any(creditgate_private.webhook_event_types()))
  ) then
    perform creditgate_private.invalid('event_types', 'known event types or *');
  end if;
  if v_secret !~ '^whsec_[A-Za-z0-9+/=]{32,90}$' then
    perform creditgate_private.invalid('secret', 'whsec_ followed by base64 of 24 to 64 bytes');
  end if;
  insert into creditgate_private.webhook_endpoints (url, secret, event_types, description)
  values (p_url, v_secret, (select array_agg(distinct t) from unnest(p_event_types) as t), p_description)
  returning id into v_id;
  return jsonb_build_object(
    'endpoint_id', v_id, 'url', p_url,
    'event_types', (select e.event_types from creditgate_private.webhook_endpoints as e where e.id = v_id),
    'secret', v_secret
  );
end
$$;
comment on function creditgate_private.webhook_add(text, text [], text, text) is
'Registers a webhook endpoint; returns its secret once.';

create or replace function creditgate_private.webhook_list()
returns jsonb
language sql
stable
security definer
set search_path = ''
as $$
  select coalesce(jsonb_agg(jsonb_build_object(
    'endpoint_id', e.id, 'url', e.url, 'event_types', e.event_types, 'description', e.description,
    'enabled', e.enabled, 'disabled_reason', e.disabled_reason, 'created_at', e.created_at,
    'pending', (select count(*) from creditgate_private.webhook_deliveries as d
      where d.endpoint_id = e.id and d.status in ('pending', 'delivering')),
    'parked', (select count(*) from creditgate_private.webhook_deliveries as d
      where d.endpoint_id = e.id and d.status = 'parked')
  ) order by e.created_at, e.id), '[]')
  from creditgate_private.webhook_endpoints as e;
$$;
comment on function creditgate_private.webhook_list() is
'Every webhook endpoint with its backlog (secrets are never listed).';

create or replace function creditgate_private.webhook_disable(p_endpoint_id uuid, p_reason text default 'disabled')
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_canceled integer;
begin
  update creditgate_private.webhook_endpoints as e
  set enabled = false, disabled_reason = left(coalesce(p_reason, 'disabled'), 500), updated_at = now()
  where e.id = p_endpoint_id;
  if not found then
    perform creditgate_private.raise_error('not_found', jsonb_build_object('endpoint_id', p_endpoint_id));
  end if;
  update creditgate_private.webhook_deliveries as d
  set status = 'canceled', updated_at = now()
  where d.endpoint_id = p_endpoint_id and d.status = 'pending';
  get diagnostics v_canceled = row_count;
  return jsonb_build_object('endpoint_id', p_endpoint_id, 'enabled', false, 'canceled', v_canceled);
end
$$;
comment on function creditgate_private.webhook_disable(uuid, text) is
'Disables an endpoint and cancels its pending deliveries.';

create or replace function creditgate_private.webhook_redeliver(p_delivery_id bigint)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_delivery creditgate_private.webhook_deliveries;
begin
  select d.* into v_delivery from creditgate_private.webhook_deliveries as d
  where d.id = p_delivery_id for update;
  if not found then
    perform creditgate_private.raise_error('not_found', jsonb_build_object('delivery_id', p_delivery_id));
  end if;
  if v_delivery.status = 'delivering' or not (
    select e.enabled from creditgate_private.webhook_endpoints as e where e.id = v_delivery.endpoint_id
  ) then
    perform creditgate_private.raise_error('invalid_state', jsonb_build_object(
      'delivery_id', p_delivery_id, 'status', v_delivery.status,
      'reason', 'in flight, or its endpoint is disabled'
    ));
  end if;
  update creditgate_private.webhook_deliveries as d
  set status = 'pending', next_attempt_at = now(), budget_started_at = now(), updated_at = now()
  where d.id = p_delivery_id;
  perform pg_notify('creditgate_webhooks', '');
  return jsonb_build_object('delivery_id', p_delivery_id, 'status', 'pending');
end
$$;
comment on function creditgate_private.webhook_redeliver(bigint) is
'Queues a delivery again (same webhook-id) with a fresh retry budget.';

create or replace function creditgate_private.webhook_deliveries(
  p_endpoint_id uuid default null,
  p_status text default null,
  p_max_items integer default 50
) returns jsonb
language sql
stable
security definer
set search_path = ''
as $$
  select coalesce(jsonb_agg(x.j order by x.id desc), '[]')
  from (
    select d.id, jsonb_build_object(
      'delivery_id', d.id, 'endpoint_id', d.endpoint_id, 'event_id', d.event_id,
      'event_type', ev.event_type, 'status', d.status, 'attempts', d.attempts,
      'next_attempt_at', d.next_attempt_at, 'last_http_status', d.last_http_status,
      'last_error', d.last_error, 'created_at', d.created_at, 'delivered_at', d.delivered_at,
      'history', (
        select coalesce(jsonb_agg(jsonb_build_object(
          'attempt', a.attempt, 'started_at', a.started_at, 'outcome', a.outcome,
          'http_status', a.http_status, 'latency_ms', a.latency_ms, 'error', a.error
        ) order by a.id), '[]')
        from creditgate_private.webhook_attempts as a where a.delivery_id = d.id
      )
    ) as j
    from creditgate_private.webhook_deliveries as d
    inner join creditgate_private.events as ev on ev.id = d.event_id
    where (p_endpoint_id is null or d.endpoint_id = p_endpoint_id)
      and (p_status is null or d.status = p_status)
    order by d.id desc
    limit least(greatest(coalesce(p_max_items, 50), 1), 1000)
  ) as x;
$$;
comment on function creditgate_private.webhook_deliveries(uuid, text, integer) is
'Delivery state with every attempt, newest first.';

-- Admin wrappers (console): the admin is checked against creditgate_private.admins.
create or replace function creditgate.admin_add_webhook_endpoint(
  url text,
  event_types text [],
  secret text default null,
  description text default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform creditgate_private.require_admin();
  return creditgate_private.webhook_add(
    admin_add_webhook_endpoint.url, admin_add_webhook_endpoint.event_types,
    admin_add_webhook_endpoint.secret, admin_add_webhook_endpoint.description
  );
end
$$;
comment on function creditgate.admin_add_webhook_endpoint(text, text [], text, text) is
'Admins register a webhook endpoint (URL, event types); the secret is returned once.';

create or replace function creditgate.admin_list_webhook_endpoints()
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform creditgate_private.require_admin();
  return creditgate_private.webhook_list();
end
$$;
comment on function creditgate.admin_list_webhook_endpoints() is
'Admins list webhook endpoints and their backlog (no secrets).';

create or replace function creditgate.admin_disable_webhook_endpoint(endpoint_id uuid)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform creditgate_private.require_admin();
  return creditgate_private.webhook_disable(admin_disable_webhook_endpoint.endpoint_id, 'disabled by an admin');
end
$$;
comment on function creditgate.admin_disable_webhook_endpoint(uuid) is
'Admins disable a webhook endpoint; its pending deliveries are canceled.';

create or replace function creditgate.admin_redeliver_webhook(delivery_id bigint)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform creditgate_private.require_admin();
  return creditgate_private.webhook_redeliver(admin_redeliver_webhook.delivery_id);
end
$$;
comment on function creditgate.admin_redeliver_webhook(bigint) is
'Admins send a delivery again with the same webhook-id.';

create or replace function creditgate.admin_webhook_deliveries(
  endpoint_id uuid default null,
  status text default null,
  max_items integer default 50
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform creditgate_private.require_admin();
  return creditgate_private.webhook_deliveries(
    admin_webhook_deliveries.endpoint_id, admin_webhook_deliveries.status, admin_webhook_deliveries.max_items
  );
end
$$;
comment on function creditgate.admin_webhook_deliveries(uuid, text, integer) is
'Admins read delivery state and every attempt.';

create or replace function creditgate.service_claim_webhook_deliveries(
  worker_id text,
  max_items integer default 10,
  lease_seconds integer default 60
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := now();
  v_claimed jsonb := '[]';
  v_row record;
  v_token uuid;
  v_allow boolean := coalesce((creditgate_private.setting('webhook_allow_loopback') #>> '{}')::boolean, false);
begin
  perform creditgate_private.check_worker_id(service_claim_webhook_deliveries.worker_id);
  if service_claim_webhook_deliveries.max_items is null or service_claim_webhook_deliveries.max_items not between 1 and 100 then
    perform creditgate_private.invalid('max_items', 'between 1 and 100');
  end if;
  if service_claim_webhook_deliveries.lease_seconds is null or service_claim_webhook_deliveries.lease_seconds not between 1 and 3600 then
    perform creditgate_private.invalid('lease_seconds', 'between 1 and 3600');
  end if;
  for v_row in
    select d.id, d.status, d.attempts, d.lease_owner, d.lease_token, d.lease_expires_at,
      e.url, e.secret, ev.id as event_id, ev.event_type, ev.payload, ev.created_at as event_at
    from creditgate_private.webhook_deliveries as d
    inner join creditgate_private.webhook_endpoints as e on e.id = d.endpoint_id
    inner join creditgate_private.events as ev on ev.id = d.event_id
    where e.enabled
      and ((d.status = 'pending' and d.next_attempt_at <= v_now)
        or (d.status = 'delivering' and d.lease_expires_at <= v_now))
    order by coalesce(d.lease_expires_at, d.next_attempt_at), d.id
    limit service_claim_webhook_deliveries.max_items
    for update of d skip locked
  loop
    if v_row.status = 'delivering' then
      -- The worker holding it vanished (killed mid-delivery): record that attempt.
      insert into creditgate_private.webhook_attempts (delivery_id, attempt, worker_id, started_at, outcome, error)
      values (v_row.id, v_row.attempts, v_row.lease_owner, v_row.lease_expires_at, 'lease_expired',
        'the worker stopped before reporting the attempt');
    end if;
    v_token := gen_random_uuid();
    update creditgate_private.webhook_deliveries as d
    set status = 'delivering', attempts = d.attempts + 1,
      lease_owner = service_claim_webhook_deliveries.worker_id, lease_token = v_token,
      lease_expires_at = v_now + make_interval(secs => service_claim_webhook_deliveries.lease_seconds),
      updated_at = v_now
    where d.id = v_row.id;
    v_claimed := v_claimed || jsonb_build_object(
      'delivery_id', v_row.id, 'lease_token', v_token, 'attempt', v_row.attempts + 1,
      'url', v_row.url, 'secret', v_row.secret, 'webhook_id', 'msg_' || replace(v_row.event_id::text, '-', ''),
      'event_type', v_row.event_type, 'allow_loopback', v_allow,
      'body', jsonb_build_object(
        'type', v_row.event_type,
        'timestamp', to_char(v_row.event_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'data', v_row.payload
      )::text
    );
  end loop;
  return v_claimed;
end
$$;
comment on function creditgate.service_claim_webhook_deliveries(text, integer, integer) is
'Workers claim due webhook deliveries (SKIP LOCKED, leased; expired leases are taken over).';

create or replace function creditgate.service_finish_webhook_delivery(
  delivery_id bigint,
  worker_id text,
  lease_token text,
  outcome jsonb
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_delivery creditgate_private.webhook_deliveries;
  v_http integer;
  v_latency integer;
  v_error text;
  v_kind text;
  v_status text;
  v_next timestamptz;
  v_base numeric := coalesce((creditgate_private.setting('webhook_backoff_base_seconds') #>> '{}')::numeric, 5);
  v_max numeric := coalesce((creditgate_private.setting('webhook_backoff_max_seconds') #>> '{}')::numeric, 21600);
  v_budget numeric := coalesce((creditgate_private.setting('webhook_retry_budget_hours') #>> '{}')::numeric, 72);
  v_delay numeric;
begin
  if service_finish_webhook_delivery.outcome is null or jsonb_typeof(service_finish_webhook_delivery.outcome) <> 'object' then
    perform creditgate_private.invalid('outcome', 'an object');
  end if;
  if service_finish_webhook_delivery.lease_token is null
     or service_finish_webhook_delivery.lease_token !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then
    perform creditgate_private.invalid('lease_token', 'a UUID');
  end if;
  select d.* into v_delivery from creditgate_private.webhook_deliveries as d
  where d.id = service_finish_webhook_delivery.delivery_id for update;
  if not found or v_delivery.status <> 'delivering'
     or v_delivery.lease_token <> service_finish_webhook_delivery.lease_token::uuid
     or v_delivery.lease_owner is distinct from service_finish_webhook_delivery.worker_id then
    perform creditgate_private.raise_error('lease_lost', jsonb_build_object('delivery_id', service_finish_webhook_delivery.delivery_id));
  end if;
  v_http := case when jsonb_typeof(service_finish_webhook_delivery.outcome -> 'http_status') = 'number'
    then (service_finish_webhook_delivery.outcome ->> 'http_status')::integer end;
  v_latency := case when jsonb_typeof(service_finish_webhook_delivery.outcome -> 'latency_ms') = 'number'
    then (service_finish_webhook_delivery.outcome ->> 'latency_ms')::numeric::integer end;
  v_error := left(service_finish_webhook_delivery.outcome ->> 'error', 500);
  v_kind := case
    when coalesce((service_finish_webhook_delivery.outcome ->> 'refused')::boolean, false) then 'refused'
    when v_http between 200 and 299 then 'delivered'
    when v_http = 410 then 'gone'
    else 'failed'
  end;
  insert into creditgate_private.webhook_attempts (
    delivery_id, attempt, worker_id, started_at, outcome, http_status, latency_ms, error
  ) values (
    v_delivery.id, v_delivery.attempts, v_delivery.lease_owner,
    clock_timestamp() - make_interval(secs => coalesce(v_latency, 0) / 1000.0),
    v_kind, v_http, v_latency, v_error
  );
  if v_kind = 'delivered' then
    v_status := 'delivered';
  elsif v_kind = 'gone' then
    v_status := 'canceled';
    perform creditgate_private.webhook_disable(v_delivery.endpoint_id, 'the receiver answered 410 Gone');
  elsif v_kind = 'refused' then
    v_status := 'parked';
  else
    v_delay := least(v_base * power(2::numeric, greatest(v_delivery.attempts - 1, 0)), v_max)
      * (0.5 + random()::numeric / 2);
    v_next := now() + make_interval(secs => v_delay::double precision);
    v_status := case
      when v_next > v_delivery.budget_started_at + make_interval(secs => (v_budget * 3600)::double precision)
        then 'parked'
      else 'pending'
    end;
  end if;
  update creditgate_private.webhook_deliveries as d
  set status = v_status,
    next_attempt_at = coalesce(v_next, d.next_attempt_at),
    lease_owner = null, lease_token = null, lease_expires_at = null,
    last_http_status = v_http, last_error = v_error,
    delivered_at = case when v_status = 'delivered' then now() else d.delivered_at end,
    updated_at = now()
  where d.id = v_delivery.id;
  return jsonb_build_object(
    'delivery_id', v_delivery.id, 'status', v_status,
    'next_attempt_at', case when v_status = 'pending' then v_next end
  );
end
$$;
comment on function creditgate.service_finish_webhook_delivery(bigint, text, text, jsonb) is
'Workers report one delivery attempt: delivered, retried with backoff, parked, or endpoint gone.';

revoke all on function creditgate_private.webhook_event_types() from public, anon, authenticated;
revoke all on function creditgate_private.webhook_add(text, text [], text, text) from public, anon, authenticated;
revoke all on function creditgate_private.webhook_list() from public, anon, authenticated;
revoke all on function creditgate_private.webhook_disable(uuid, text) from public, anon, authenticated;
revoke all on function creditgate_private.webhook_redeliver(bigint) from public, anon, authenticated;
revoke all on function creditgate_private.webhook_deliveries(uuid, text, integer) from public, anon, authenticated;
revoke all on function creditgate.admin_add_webhook_endpoint(text, text [], text, text) from public, anon, authenticated;
revoke all on function creditgate.admin_list_webhook_endpoints() from public, anon, authenticated;
revoke all on function creditgate.admin_disable_webhook_endpoint(uuid) from public, anon, authenticated;
revoke all on function creditgate.admin_redeliver_webhook(bigint) from public, anon, authenticated;
revoke all on function creditgate.admin_webhook_deliveries(uuid, text, integer) from public, anon, authenticated;
grant execute on function creditgate.admin_add_webhook_endpoint(text, text [], text, text) to authenticated;
grant execute on function creditgate.admin_list_webhook_endpoints() to authenticated;
grant execute on function creditgate.admin_disable_webhook_endpoint(uuid) to authenticated;
grant execute on function creditgate.admin_redeliver_webhook(bigint) to authenticated;
grant execute on function creditgate.admin_webhook_deliveries(uuid, text, integer) to authenticated;
revoke all on function creditgate.service_claim_webhook_deliveries(text, integer, integer) from public, anon, authenticated;
revoke all on function creditgate.service_finish_webhook_delivery(bigint, text, text, jsonb) from public, anon, authenticated;
grant execute on function creditgate.service_claim_webhook_deliveries(text, integer, integer) to service_role;
grant execute on function creditgate.service_finish_webhook_delivery(bigint, text, text, jsonb) to service_role;

-- ===== db/functions/private/errors.sql =====
-- creditgate_private.error_codes() -> table (message, sqlstate, hint)
-- creditgate_private.raise_error(p_message, p_detail, p_hint)
--
-- The one registry of intentional errors (DESIGN §5). SQLSTATEs are PostgREST's PTxyz
-- codes, so Supabase clients get HTTP status xyz. MESSAGE is a constant code, DETAIL is
-- JSON, HINT is advice. Raising an unregistered message is itself an error.

create or replace function creditgate_private.error_codes()
returns table (message text, sqlstate text, hint text)
language sql
immutable
set search_path = ''
as $$
  values
    ('invalid_request', 'PT400', 'Fix the field named in DETAIL and retry.'),
    ('not_authenticated', 'PT401', 'Sign in and send the access token.'),
    ('insufficient_credits', 'PT402', 'Buy or earn more credits, or lower the request.'),
    ('forbidden', 'PT403', 'This action needs an admin.'),
    ('not_found', 'PT404', 'Check the id; it may not exist or not be yours.'),
    ('idempotency_key_reused', 'PT409', 'Use a new idempotency key for a different request.'),
    ('invalid_state', 'PT409', 'The object is not in a state that allows this action.'),
    ('lease_lost', 'PT409', 'Another worker holds this job now; drop the result.'),
    ('rate_limited', 'PT429', 'Wait retry_after_seconds before retrying.'),
    ('daily_cap_reached', 'PT429', 'The daily limit resets at resets_at.'),
    ('maintenance', 'PT503', 'The app is in maintenance; retry later.'),
    ('model_unavailable', 'PT503', 'This model is switched off; pick another one.')
$$;
comment on function creditgate_private.error_codes() is
'Registry of every intentional error: constant message, PTxyz SQLSTATE, advice.';

create or replace function creditgate_private.raise_error(
  p_message text,
  p_detail jsonb default '{}',
  p_hint text default null
) returns void
language plpgsql
set search_path = ''
as $$
declare
  v_sqlstate text;
  v_hint text;
begin
  select e.sqlstate, e.hint into v_sqlstate, v_hint
  from creditgate_private.error_codes() as e
  where e.message = p_message;
  if v_sqlstate is null then
    raise exception 'unregistered error code: %', p_message;
  end if;
  raise exception using
    errcode = v_sqlstate,
    message = p_message,
    detail = coalesce(p_detail, '{}'::jsonb)::text,
    hint = coalesce(p_hint, v_hint);
end
$$;
comment on function creditgate_private.raise_error(text, jsonb, text) is
'Raise a registered error: SQLSTATE and default hint come from error_codes().';

create or replace function creditgate_private.invalid(p_field text, p_reason text)
returns void
language sql
set search_path = ''
as $$
  select creditgate_private.raise_error(
    'invalid_request', jsonb_build_object('field', p_field, 'reason', p_reason)
  );
$$;
comment on function creditgate_private.invalid(text, text) is
'Shorthand for PT400 invalid_request naming the offending field.';

revoke all on function creditgate_private.error_codes() from public, anon, authenticated;
revoke all on function creditgate_private.raise_error(text, jsonb, text) from public, anon, authenticated;
revoke all on function creditgate_private.invalid(text, text) from public, anon, authenticated;

-- ===== db/functions/private/ids.sql =====
-- creditgate_private.uuid_v7() -> uuid
--   A time-ordered UUID (RFC 9562 version 7): 48 bits of Unix time in milliseconds, then
--   random bits. Generation ids use it, so the generations primary key and the ledger's
--   charge keys ('charge:' || id) grow at their right edge instead of touching a random
--   index page per request (measured with `creditgate bench`: fewer pages written, far
--   fewer full-page images in the WAL after each checkpoint).

create or replace function creditgate_private.uuid_v7()
returns uuid
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_random text := gen_random_uuid()::text;  -- xxxxxxxx-xxxx-4xxx-vxxx-xxxxxxxxxxxx
  v_time text := lpad(to_hex((extract(epoch from clock_timestamp()) * 1000)::bigint), 12, '0');
begin
  -- A version 4 UUID with its first 48 bits replaced by the time and its version digit
  -- 4 by 7; the random bits and RFC 9562 variant stay.
  return (left(v_time, 8) || '-' || right(v_time, 4) || '-7' || substr(v_random, 16))::uuid;
end
$$;
comment on function creditgate_private.uuid_v7() is
'A time-ordered version 7 UUID (millisecond Unix time, then random bits).';

revoke all on function creditgate_private.uuid_v7() from public, anon, authenticated;

-- ===== db/functions/private/settings.sql =====
-- creditgate_private.setting_catalog() -> jsonb  {key: {value, description}}
-- creditgate_private.setting_defaults() -> table (key, value, description)
-- creditgate_private.setting(p_key) -> jsonb
-- creditgate_private.setting_problem(p_key, p_value) -> text   null when p_value is acceptable
--
-- Settings live in creditgate_private.settings; a key absent there takes its default
-- here. Only keys listed here exist: admin_set_setting refuses anything else, and refuses a
-- value that setting_problem() objects to (the audit's settings check uses it too).

create or replace function creditgate_private.setting_catalog()
returns jsonb
language plpgsql
immutable
set search_path = ''
as $$
begin
  -- One constant: setting() reads a default with an operator, no query (it runs several
  -- times on every request).
  return '{
    "maintenance_mode": {"value": false,
      "description": "true switches off new generations (PT503 maintenance)"},
    "signup_bonus": {"value": 1000,
      "description": "credits granted to each new user (0 = none)"},
    "anonymous_signup_bonus": {"value": 0,
      "description": "credits granted to each new anonymous user (auth.users.is_anonymous); the signup bonus waits until the user becomes permanent"},
    "signup_bonus_expires_days": {"value": null,
      "description": "days until the signup bonus expires (null = never)"},
    "plan_daily_caps": {"value": {"free": 20000, "pro": 500000},
      "description": "credits a user may be charged per UTC day, by balances.plan (net of refunds); a plan missing here, or mapped to null, is uncapped; 0 blocks the plan"},
    "media_ttl_hours": {"value": 24,
      "description": "hours until unsaved media expire and are purged"},
    "max_prompt_length": {"value": 10000,
      "description": "app-wide ceiling on prompt (and chat conversation) characters; each model has its own, lower limit"},
    "max_attempts": {"value": 3,
      "description": "provider attempts per generation before it fails and is refunded"},
    "lease_seconds": {"value": 120,
      "description": "default worker lease on a claimed generation"},
    "max_lease_seconds": {"value": 3600,
      "description": "longest lease a worker may ask for"},
    "client_ip_header": {"value": "cf-connecting-ip",
      "description": "the one request header that holds the client address for per-IP rate limits: a header name (cf-connecting-ip: set by Supabase''s edge and by the bundled service) or x-forwarded-for:N (the Nth entry from the right, N = trusted proxies that append to it); see docs/security.md"},
    "low_balance_threshold": {"value": 100,
      "description": "balance.low fires when a balance falls below this (0 = never)"},
    "plan_low_balance_thresholds": {"value": {},
      "description": "per-plan override of low_balance_threshold, by balances.plan"},
    "credits_expiring_days": {"value": 7,
      "description": "credits.expiring fires this many days before a lot expires"},
    "webhook_retry_budget_hours": {"value": 72,
      "description": "hours a webhook delivery is retried before it is parked"},
    "webhook_backoff_base_seconds": {"value": 5,
      "description": "first retry delay of a webhook delivery; doubles per attempt, with jitter"},
    "webhook_backoff_max_seconds": {"value": 21600,
      "description": "longest delay between two webhook delivery attempts"},
    "webhook_allow_loopback": {"value": false,
      "description": "development only: allow http:// webhook URLs on 127.0.0.1/::1/localhost"}
  }'::jsonb;
end
$$;
comment on function creditgate_private.setting_catalog() is
'Every known setting: {key: {value: default, description}}.';

create or replace function creditgate_private.setting_defaults()
returns table (key text, value jsonb, description text)
language plpgsql
immutable
set search_path = ''
as $$
begin
  return query
  select c.key, c.value -> 'value', c.value ->> 'description'
  from jsonb_each(creditgate_private.setting_catalog()) as c
  order by c.key;
end
$$;
comment on function creditgate_private.setting_defaults() is
'Every known setting with its default and meaning.';

create or replace function creditgate_private.setting(p_key text)
returns jsonb
language plpgsql
stable
set search_path = ''
as $$
declare
  v_value jsonb;
begin
  -- plpgsql, not sql: its plans are cached per session, and this runs on every request.
  select s.value into v_value from creditgate_private.settings as s where s.key = p_key;
  if found then
    return v_value;
  end if;
  return creditgate_private.setting_catalog() -> p_key -> 'value';
end
$$;
comment on function creditgate_private.setting(text) is
'Current value of a setting, falling back to its default.';

create or replace function creditgate_private.setting_problem(p_key text, p_value jsonb)
returns text
language plpgsql
immutable
set search_path = ''
as $$
declare
  v_type text := jsonb_typeof(p_value);
  v_plan text;
  v_cap jsonb;
begin
  if p_value is null then
    return 'required';
  end if;
  case p_key
    when 'maintenance_mode' then
      if v_type <> 'boolean' then
        return 'must be true or false';
      end if;
    when 'signup_bonus' then
      if not creditgate_private.json_is_int(p_value, 0, 1000000000) then
        return 'must be an integer between 0 and 1000000000';
      end if;
    when 'anonymous_signup_bonus' then
      if not creditgate_private.json_is_int(p_value, 0, 1000000000) then
        return 'must be an integer between 0 and 1000000000';
      end if;
    when 'signup_bonus_expires_days' then
      if v_type <> 'null' and not creditgate_private.json_is_int(p_value, 1, 3650) then
        return 'must be null or an integer between 1 and 3650';
      end if;
    when 'plan_daily_caps' then
      if v_type <> 'object' then
        return 'must be an object mapping plan names to a credit cap (integer >= 0) or null';
      end if;
      for v_plan, v_cap in select e.key, e.value from jsonb_each(p_value) as e loop
        if v_plan !~ '^[a-z][a-z0-9_]{0,31}$' then
          return 'plan names are lower-case identifiers (as balances.plan)';
        end if;
        if jsonb_typeof(v_cap) <> 'null'
           and not creditgate_private.json_is_int(v_cap, 0, 1000000000000000) then
          return 'caps must be null or an integer between 0 and 1000000000000000';
        end if;
      end loop;
    when 'media_ttl_hours' then
      if not creditgate_private.json_is_int(p_value, 1, 8760) then
        return 'must be an integer between 1 and 8760';
      end if;
    when 'max_prompt_length' then
      if not creditgate_private.json_is_int(p_value, 1, 100000) then
        return 'must be an integer between 1 and 100000';
      end if;
    when 'max_attempts' then
      if not creditgate_private.json_is_int(p_value, 1, 10) then
        return 'must be an integer between 1 and 10';
      end if;
    when 'lease_seconds' then
      if not creditgate_private.json_is_int(p_value, 5, 86400) then
        return 'must be an integer between 5 and 86400';
      end if;
    when 'max_lease_seconds' then
      if not creditgate_private.json_is_int(p_value, 5, 86400) then
        return 'must be an integer between 5 and 86400';
      end if;
    when 'client_ip_header' then
      if v_type <> 'string' or (p_value #>> '{}') !~ '^[a-z0-9][a-z0-9-]{0,63}(:[1-9][0-9]?)?$' then
        return 'must be a lower-case header name, optionally with :N (1-99) for the Nth comma-separated entry from the right';
      end if;
    when 'low_balance_threshold' then
      if not creditgate_private.json_is_int(p_value, 0, 1000000000000000) then
        return 'must be an integer between 0 and 1000000000000000';
      end if;
    when 'plan_low_balance_thresholds' then
      if v_type <> 'object' then
        return 'must be an object mapping plan names to a threshold (integer >= 0)';
      end if;
      for v_plan, v_cap in select e.key, e.value from jsonb_each(p_value) as e loop
        if v_plan !~ '^[a-z][a-z0-9_]{0,31}$' then
          return 'plan names are lower-case identifiers (as balances.plan)';
        end if;
        if not creditgate_private.json_is_int(v_cap, 0, 1000000000000000) then
          return 'thresholds must be integers between 0 and 1000000000000000';
        end if;
      end loop;
    when 'credits_expiring_days' then
      if not creditgate_private.json_is_int(p_value, 0, 365) then
        return 'must be an integer between 0 and 365';
      end if;
    when 'webhook_retry_budget_hours' then
      if v_type <> 'number' or (p_value #>> '{}')::numeric not between 0.001 and 720 then
        return 'must be a number of hours between 0.001 and 720';
      end if;
    when 'webhook_backoff_base_seconds' then
      if v_type <> 'number' or (p_value #>> '{}')::numeric not between 0.05 and 3600 then
        return 'must be a number of seconds between 0.05 and 3600';
      end if;
    when 'webhook_backoff_max_seconds' then
      if v_type <> 'number' or (p_value #>> '{}')::numeric not between 0.05 and 604800 then
        return 'must be a number of seconds between 0.05 and 604800';
      end if;
    when 'webhook_allow_loopback' then
      if v_type <> 'boolean' then
        return 'must be true or false';
      end if;
    else
      return 'unknown setting';
  end case;
  return null;
end
$$;
comment on function creditgate_private.setting_problem(text, jsonb) is
'Why a value is unacceptable for a setting (null if it is fine): one place for types and ranges.';

-- A JSON number that is a whole number within [p_min, p_max].
create or replace function creditgate_private.json_is_int(p_value jsonb, p_min numeric, p_max numeric)
returns boolean
language plpgsql
immutable
set search_path = ''
as $$
declare
  v_number numeric;
begin
  if p_value is null or jsonb_typeof(p_value) <> 'number' then
    return false;
  end if;
  v_number := (p_value #>> '{}')::numeric;
  return v_number = trunc(v_number) and v_number between p_min and p_max;
end
$$;
comment on function creditgate_private.json_is_int(jsonb, numeric, numeric) is
'Whether a JSON value is a whole number within a range (1e3 and 512.0 count; "5" does not).';

revoke all on function creditgate_private.setting_catalog() from public, anon, authenticated;
revoke all on function creditgate_private.setting_defaults() from public, anon, authenticated;
revoke all on function creditgate_private.setting(text) from public, anon, authenticated;
revoke all on function creditgate_private.setting_problem(text, jsonb) from public, anon, authenticated;
revoke all on function creditgate_private.json_is_int(jsonb, numeric, numeric) from public, anon, authenticated;

-- ===== db/policies/accounts.sql =====
-- RLS and privileges for account deletion's private tables: RLS on with no policy, no
-- grants (only creditgate's definer functions read or write them).

alter table creditgate_private.deleted_users enable row level security;
alter table creditgate_private.media_purges enable row level security;

revoke all on table creditgate_private.deleted_users, creditgate_private.media_purges
  from public, anon, authenticated, service_role;

-- ===== db/policies/generation.sql =====
-- RLS and privileges for the generation lifecycle tables.
-- Public registry: enabled models and LoRAs are readable by anyone (their routes and
-- sources live in private tables nobody but the owner can read). Generations and media:
-- owners read their own rows; every write goes through definer functions. Private tables:
-- RLS on with no policy, no grants.

alter table creditgate.models enable row level security;
alter table creditgate.loras enable row level security;
alter table creditgate.generations enable row level security;
alter table creditgate.media enable row level security;
alter table creditgate_private.model_routes enable row level security;
alter table creditgate_private.lora_sources enable row level security;
alter table creditgate_private.rate_limit_rules enable row level security;
alter table creditgate_private.rate_limit_counters enable row level security;
alter table creditgate_private.provider_calls enable row level security;

revoke all on table creditgate.models, creditgate.loras, creditgate.generations, creditgate.media
  from public, anon, authenticated, service_role;
revoke all on table creditgate_private.model_routes, creditgate_private.lora_sources,
  creditgate_private.rate_limit_rules, creditgate_private.rate_limit_counters,
  creditgate_private.provider_calls
  from public, anon, authenticated, service_role;
revoke all on sequence creditgate_private.provider_calls_id_seq
  from public, anon, authenticated, service_role;

grant select on table creditgate.models, creditgate.loras to anon, authenticated, service_role;
grant select on table creditgate.generations, creditgate.media to authenticated, service_role;

drop policy if exists "Anyone can read enabled models" on creditgate.models;
create policy "Anyone can read enabled models" on creditgate.models
  for select to anon, authenticated using (enabled);

drop policy if exists "Anyone can read enabled LoRAs" on creditgate.loras;
create policy "Anyone can read enabled LoRAs" on creditgate.loras
  for select to anon, authenticated using (enabled);

drop policy if exists "Users can read their own generations" on creditgate.generations;
create policy "Users can read their own generations" on creditgate.generations
  for select to authenticated using (user_id = (select auth.uid()));

drop policy if exists "Users can read their own media" on creditgate.media;
create policy "Users can read their own media" on creditgate.media
  for select to authenticated using (user_id = (select auth.uid()));

-- Realtime: owners follow their generations' status (RLS applies to subscribers). The
-- publication carries an explicit column list: only what the owner may read, so a column
-- added later is not streamed until it is listed here. Where the publication exists
-- without this list (Supabase creates it; an older creditgate added the whole table) the
-- table is dropped from it and added back with the list. A FOR ALL TABLES publication
-- cannot take a column list; every column of generations is owner-visible anyway.
do $$
declare
  v_columns text[] := array[
    'id', 'user_id', 'model_id', 'kind', 'status', 'params', 'cost', 'actual_cost',
    'idempotency_key', 'attempts', 'max_attempts', 'output', 'error', 'created_at',
    'started_at', 'finished_at', 'updated_at', 'prices'
  ];
  v_published text[];
  v_listed boolean;
begin
  if not exists (
    select 1 from pg_catalog.pg_publication
    where pubname = 'supabase_realtime' and not puballtables
  ) then
    return;
  end if;
  -- prattrs is null when the table is published whole (no column list).
  select pr.prattrs is not null,
    (select array_agg(a.attname::text) from pg_catalog.pg_attribute as a
     where a.attrelid = pr.prrelid and a.attnum = any(pr.prattrs::int2 []))
  into v_listed, v_published
  from pg_catalog.pg_publication_rel as pr
  inner join pg_catalog.pg_publication as p on p.oid = pr.prpubid
  where p.pubname = 'supabase_realtime' and pr.prrelid = 'creditgate.generations'::regclass;
  if found then
    if v_listed and v_published @> v_columns and v_published <@ v_columns then
      return;
    end if;
    alter publication supabase_realtime drop table creditgate.generations;
  end if;
  execute format(
    'alter publication supabase_realtime add table creditgate.generations (%s)',
    (select string_agg(format('%I', c), ', ') from unnest(v_columns) as c)
  );
end
$$;

-- ===== db/policies/ledger.sql =====
-- RLS and privileges for the money tables. Clients read their own rows; nobody but the
-- owner (through definer functions) writes — not anon, not authenticated, not service_role.

alter table creditgate.balances enable row level security;
alter table creditgate.credit_lots enable row level security;
alter table creditgate.ledger enable row level security;
alter table creditgate.credit_packs enable row level security;
alter table creditgate_private.lot_movements enable row level security;
alter table creditgate_private.settings enable row level security;
alter table creditgate_private.admins enable row level security;
alter table creditgate_private.clawbacks enable row level security;
alter table creditgate_private.checkout_holds enable row level security;

revoke all on table creditgate.balances, creditgate.credit_lots, creditgate.ledger,
  creditgate.credit_packs from public, anon, authenticated, service_role;
revoke all on table creditgate_private.lot_movements, creditgate_private.settings,
  creditgate_private.admins, creditgate_private.clawbacks, creditgate_private.checkout_holds
  from public, anon, authenticated, service_role;

grant select on table creditgate.balances, creditgate.credit_lots, creditgate.ledger
  to authenticated, service_role;
grant select on table creditgate.credit_packs to anon, authenticated, service_role;

drop policy if exists "Users can read their own balance" on creditgate.balances;
create policy "Users can read their own balance" on creditgate.balances
  for select to authenticated using (user_id = (select auth.uid()));

drop policy if exists "Users can read their own credit lots" on creditgate.credit_lots;
create policy "Users can read their own credit lots" on creditgate.credit_lots
  for select to authenticated using (user_id = (select auth.uid()));

drop policy if exists "Users can read their own ledger entries" on creditgate.ledger;
create policy "Users can read their own ledger entries" on creditgate.ledger
  for select to authenticated using (user_id = (select auth.uid()));

drop policy if exists "Anyone can read active credit packs" on creditgate.credit_packs;
create policy "Anyone can read active credit packs" on creditgate.credit_packs
  for select to anon, authenticated using (active);

-- ===== db/policies/ops.sql =====
-- RLS and privileges for the operations tables (jobs, runs, audit results, outbox,
-- webhooks, purge queue): all private. RLS on with no policy, no grants; everything goes
-- through definer functions.

alter table creditgate_private.jobs enable row level security;
alter table creditgate_private.job_runs enable row level security;
alter table creditgate_private.audit_runs enable row level security;
alter table creditgate_private.events enable row level security;
alter table creditgate_private.webhook_endpoints enable row level security;
alter table creditgate_private.webhook_deliveries enable row level security;
alter table creditgate_private.webhook_attempts enable row level security;
alter table creditgate_private.media_purge_queue enable row level security;

revoke all on table creditgate_private.jobs, creditgate_private.job_runs,
  creditgate_private.audit_runs, creditgate_private.events,
  creditgate_private.webhook_endpoints, creditgate_private.webhook_deliveries,
  creditgate_private.webhook_attempts, creditgate_private.media_purge_queue
  from public, anon, authenticated, service_role;
revoke all on sequence creditgate_private.job_runs_id_seq, creditgate_private.audit_runs_id_seq,
  creditgate_private.webhook_deliveries_id_seq, creditgate_private.webhook_attempts_id_seq
  from public, anon, authenticated, service_role;

-- The balance.low trigger on creditgate.balances, with the current threshold bounds
-- (db/functions/ops/outbox.sql); here because policies run after every function exists.
select creditgate_private.install_balance_low_trigger();

-- ===== db/policies/private_internals.sql =====
-- RLS and privileges for the server-only bookkeeping of generations and admin grants
-- (0010): idempotency records, leases and settle results, who granted what. RLS on with
-- no policy, no grants: only creditgate's definer functions read or write them.

alter table creditgate_private.generation_requests enable row level security;
alter table creditgate_private.generation_leases enable row level security;
alter table creditgate_private.admin_grants enable row level security;

revoke all on table creditgate_private.generation_requests, creditgate_private.generation_leases,
  creditgate_private.admin_grants
  from public, anon, authenticated, service_role;
