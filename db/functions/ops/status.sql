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
