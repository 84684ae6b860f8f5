-- creditgate.audit(): the generation checks (invariants 2 and 3, stuck leases, media
-- ownership) pass on real flows and catch each kind of damage. Damage is injected as the
-- owner in a subtransaction that pg_temp.audit_after() audits and then rolls back.
begin;
select plan(26);

create function pg_temp.check_of(p_audit jsonb, p_name text) returns jsonb
language sql as $$
  select c - 'name' from jsonb_array_elements(p_audit -> 'checks') as c where c ->> 'name' = p_name
$$;
create function pg_temp.failures(p_audit jsonb, p_name text) returns bigint
language sql as $$ select (pg_temp.check_of(p_audit, p_name) ->> 'failures')::bigint $$;
-- The audit as it would be after p_damage; the damage itself is undone (a plpgsql variable
-- outlives the rolled-back subtransaction).
create function pg_temp.audit_after(p_damage text, p_since timestamptz default null) returns jsonb
language plpgsql as $$
declare
  v_audit jsonb;
begin
  begin
    execute p_damage;
    v_audit := creditgate.audit(p_since);
    raise exception using errcode = 'TT001', message = 'undo the damage';
  exception when sqlstate 'TT001' then
    null;
  end;
  return v_audit;
end
$$;

select tests.worker_models();
select tests.create_user() as u \gset
select tests.create_user() as v \gset

-- Real flows: succeeded at a partial cost, failed, canceled, re-queued, still queued, running.
select tests.make_queued_generation(:'u', 'chat-test', 40, '{"messages": [{"role": "user", "content": "x"}]}') as g_ok \gset
select tests.make_queued_generation(:'u', 'img-test', 100) as g_fail \gset
select tests.make_queued_generation(:'v', 'img-test', 100) as g_retry \gset
select tests.make_queued_generation(:'v', 'img-test', 100) as g_run \gset
select tests.request_as(:'u', 'img-test') as g_cancel \gset
select tests.request_as(:'v', 'img-test') as g_queued \gset
update creditgate.generations set created_at = '2000-01-01'::timestamptz + (case id
  when :'g_ok' then 1 when :'g_fail' then 2 when :'g_retry' then 3 when :'g_run' then 4 else 5 end) * interval '1 s'
where id in (:'g_ok', :'g_fail', :'g_retry', :'g_run');
select tests.as_service();
create temp table jobs as select creditgate.service_claim_generations('w1', 4) as j;
grant select on jobs to service_role;
create function pg_temp.token(p_id uuid) returns text
language sql as $$ select x ->> 'lease_token' from pg_temp.jobs, jsonb_array_elements(j) as x where x ->> 'generation_id' = p_id::text $$;
select creditgate.service_settle_generation(:'g_ok', 'w1', pg_temp.token(:'g_ok'),
  '{"status": "succeeded", "actual_cost": 13, "output": {"text": "hi"}}');
select creditgate.service_settle_generation(:'g_fail', 'w1', pg_temp.token(:'g_fail'),
  '{"status": "failed", "error": {"code": "bad_request"}}');
select creditgate.service_settle_generation(:'g_retry', 'w1', pg_temp.token(:'g_retry'),
  '{"status": "failed", "retryable": true, "error": {"code": "timeout"}}');
select tests.as_user(:'u');
select creditgate.cancel_generation(:'g_cancel');
select tests.as_owner();

create temp table clean as select creditgate.audit() as a;
select is((select (a ->> 'ok')::boolean from clean), true, 'every flow leaves a clean audit');
select is(
  (select jsonb_object_agg(n, pg_temp.failures(a, n)) from clean,
     unnest(array['generation_charged_once', 'generation_refunds_match_outcome', 'stuck_leases',
                  'media_owned_like_generation', 'generations_reference_models',
                  'daily_usage_matches_ledger']) as n),
  '{"generation_charged_once": 0, "generation_refunds_match_outcome": 0, "stuck_leases": 0,
    "media_owned_like_generation": 0, "generations_reference_models": 0,
    "daily_usage_matches_ledger": 0}'::jsonb,
  'the generation checks are there and pass'
);

-- A generation nobody paid for.
select pg_temp.audit_after(format($$
  insert into creditgate.generations (id, user_id, model_id, kind, params, cost, idempotency_key)
  values ('a0000000-0000-4000-8000-000000000001', %L, 'img-test', 'image', '{}', 100, 'free-ride')
$$, :'u')) as a_unpaid \gset
select is(pg_temp.failures(:'a_unpaid', 'generation_charged_once'), 1::bigint, 'a generation without a spend is caught');
select is(pg_temp.check_of(:'a_unpaid', 'generation_charged_once') #>> '{samples,0,generation_id}',
  'a0000000-0000-4000-8000-000000000001', 'and named in the samples');
select is((:'a_unpaid'::jsonb ->> 'ok')::boolean, false, 'the audit is not ok');

-- Charged the wrong amount.
select pg_temp.audit_after(format('update creditgate.generations set cost = 99 where id = %L', :'g_queued')) as a_amount \gset
select is(pg_temp.failures(:'a_amount', 'generation_charged_once'), 1::bigint, 'a spend that is not the cost is caught');

-- A second spend naming the generation.
select pg_temp.audit_after(format('select creditgate_private.spend_credits(%L, 5, %L, %L)',
  :'v', 'charge-again:' || :'g_queued', :'g_queued')) as a_twice \gset
select is(pg_temp.failures(:'a_twice', 'generation_charged_once'), 1::bigint, 'a second charge for one generation is caught');

-- A double refund of a failed generation (a second key slipping past the cap).
select pg_temp.audit_after(format('select creditgate_private.post_entry(%L, %L, 100, %L, %L, %L, %L)',
  :'u', 'refund', 'refund-again:' || :'g_fail', 'x', 'charge:' || :'g_fail', :'g_fail')) as a_double \gset
select is(pg_temp.failures(:'a_double', 'generation_refunds_match_outcome'), 1::bigint, 'a double refund is caught');
select is((pg_temp.check_of(:'a_double', 'generation_refunds_match_outcome') #> '{samples,0}') - 'actual_cost',
  jsonb_build_object('generation_id', :'g_fail', 'status', 'failed', 'cost', 100, 'refunded', 200, 'entries', 2),
  'the sample shows the cost, what was refunded and in how many entries');
select is(pg_temp.failures(:'a_double', 'refunds_within_charge'), 1::bigint, 'the ledger-side check agrees');

-- A failed or canceled generation that was never refunded.
select pg_temp.audit_after(format(
  'update creditgate.generations set status = %L, finished_at = now() where id = %L', 'canceled', :'g_queued'
)) as a_unrefunded \gset
select is(pg_temp.failures(:'a_unrefunded', 'generation_refunds_match_outcome'), 1::bigint,
  'a canceled generation without its refund is caught');

-- A success refunded something other than cost - actual_cost.
select pg_temp.audit_after(format('update creditgate.generations set actual_cost = 20 where id = %L', :'g_ok')) as a_partial \gset
select is(pg_temp.failures(:'a_partial', 'generation_refunds_match_outcome'), 1::bigint,
  'a success refunded the wrong amount is caught');

-- A refund for a job still queued (e.g. a re-queued job refunded early).
select pg_temp.audit_after(format('select creditgate_private.refund_credits(%L, %L, 100, %L)',
  :'v', 'charge:' || :'g_retry', 'refund:' || :'g_retry')) as a_early \gset
select is(pg_temp.failures(:'a_early', 'generation_refunds_match_outcome'), 1::bigint, 'a refund before the outcome is caught');

-- Stuck leases: the reaper has not run for a while.
select pg_temp.audit_after(format(
  'update creditgate_private.generation_leases set lease_expires_at = now() - interval %L where generation_id = %L', '9 minutes', :'g_run'
)) as a_recent \gset
select pg_temp.audit_after(format(
  'update creditgate_private.generation_leases set lease_expires_at = now() - interval %L where generation_id = %L', '11 minutes', :'g_run'
)) as a_stuck \gset
select is(pg_temp.failures(:'a_recent', 'stuck_leases'), 0::bigint, 'a lease expired 9 minutes ago is not stuck yet');
select is(pg_temp.failures(:'a_stuck', 'stuck_leases'), 1::bigint, 'a lease expired 11 minutes ago is stuck');
select is(pg_temp.check_of(:'a_stuck', 'stuck_leases') #>> '{samples,0,generation_id}', :'g_run', 'named in the samples');

-- Media of another user than its generation's.
select pg_temp.audit_after(format(
  'select tests.media_for(%L); update creditgate.media set user_id = %L where user_id = %L', :'u', :'v', :'u'
)) as a_media \gset
select is(pg_temp.failures(:'a_media', 'media_owned_like_generation'), 1::bigint,
  'media owned by someone else than its generation''s owner is caught');
select is(pg_temp.check_of(:'a_media', 'media_owned_like_generation') #>> '{samples,0,user_id}', :'v', 'named in the samples');

-- A generation naming a model that is not in the registry.
select pg_temp.audit_after(format(
  'update creditgate.generations set model_id = %L where id = %L', 'gone-model', :'g_queued'
)) as a_model \gset
select is(pg_temp.failures(:'a_model', 'generations_reference_models'), 1::bigint,
  'a generation of a model missing from the registry is caught');
select is(pg_temp.check_of(:'a_model', 'generations_reference_models') #>> '{samples,0,model_id}', 'gone-model',
  'named in the samples');

-- Today's usage on the balance row disagreeing with today's charges and refunds.
select pg_temp.audit_after(format(
  'update creditgate.balances set daily_used = daily_used + 7 where user_id = %L', :'u'
)) as a_daily \gset
select is(pg_temp.failures(:'a_daily', 'daily_usage_matches_ledger'), 1::bigint,
  'a daily usage counter off by 7 is caught');
select is((pg_temp.check_of(:'a_daily', 'daily_usage_matches_ledger') #>> '{samples,0,daily_used}')::bigint
    - (pg_temp.check_of(:'a_daily', 'daily_usage_matches_ledger') #>> '{samples,0,ledger_used}')::bigint,
  7::bigint, 'the sample shows both figures');
select pg_temp.audit_after(format(
  'update creditgate.balances set daily_used_on = daily_used_on - 1 where user_id = %L', :'u'
)) as a_daily_lost \gset
select is(pg_temp.failures(:'a_daily_lost', 'daily_usage_matches_ledger'), 1::bigint,
  'a counter left on yesterday while the ledger charged today is caught');

-- since: only generations changed or with ledger activity since then are re-derived.
select pg_temp.audit_after(format('update creditgate.generations set cost = 99 where id = %L', :'g_queued'),
  now() + interval '1 minute') as a_since \gset
select pg_temp.audit_after(format('update creditgate.generations set cost = 99 where id = %L', :'g_queued'),
  now() - interval '1 day') as a_since_wide \gset
select is(pg_temp.failures(:'a_since', 'generation_charged_once'), 0::bigint, 'since skips generations untouched since then');
select is(pg_temp.failures(:'a_since_wide', 'generation_charged_once'), 1::bigint, 'a window covering the change re-checks it');

select is((creditgate.audit() ->> 'ok')::boolean, true, 'every damage was undone: clean again');

select * from finish();
rollback;
