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
