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
