-- creditgate.service_reap_expired_leases(now): jobs whose lease ran out go back to the
-- queue while attempts are left, else fail with a full refund; live leases are left alone;
-- the clock is the `now` argument (no sleeping).
begin;
select plan(22);

select tests.worker_models();
select tests.create_user() as u \gset
select tests.create_user() as v \gset
select tests.balance_of(:'u') as u0 \gset
select tests.balance_of(:'v') as v0 \gset

-- g_retry: attempts left. g_last: on its last attempt. g_live: a longer lease.
select tests.make_queued_generation(:'u', 'img-test', 100, p_max_attempts => 3) as g_retry \gset
select tests.make_queued_generation(:'v', 'img-test', 70, p_max_attempts => 1) as g_last \gset
select tests.make_queued_generation(:'u', 'chat-test', 20, '{"messages": [{"role": "user", "content": "x"}]}') as g_live \gset

select tests.as_service();
select creditgate.service_claim_generations('w-short', 2, 30) as c1 \gset
select creditgate.service_claim_generations('w-long', 1, 600) as c2 \gset

select is(
  creditgate.service_reap_expired_leases(),
  '{"requeued": 0, "failed": 0, "refunded": 0}'::jsonb,
  'nothing has expired yet: nothing to do'
);
select is(
  creditgate.service_reap_expired_leases(now() + interval '29 seconds'),
  '{"requeued": 0, "failed": 0, "refunded": 0}'::jsonb,
  'a lease is alive until it expires'
);
select is(
  creditgate.service_reap_expired_leases(now() + interval '30 seconds'),
  '{"requeued": 1, "failed": 1, "refunded": 70}'::jsonb,
  'at expiry: one re-queued, one failed and refunded'
);
select tests.as_owner();

select is(
  (select row(status, attempts, lease_owner, lease_token, lease_expires_at, error ->> 'code')::text
   from tests.generations_full where id = :'g_retry'),
  row('queued', 1, null::text, null::uuid, null::timestamptz, 'lease_expired')::text,
  'attempts left: queued again, lease cleared, error lease_expired'
);
select is(tests.balance_of(:'u'), :u0::bigint - 100 - 20, 're-queued: the charge stands');
select is(
  (select row(status, actual_cost, lease_token, finished_at = now(), error ->> 'code')::text
   from tests.generations_full where id = :'g_last'),
  row('failed', 0, null::uuid, true, 'lease_expired')::text,
  'last attempt: failed, lease cleared, finished'
);
select is(tests.balance_of(:'v'), :v0::bigint, 'last attempt: refunded in full, balance as before the request');
select results_eq(
  format($$select entry_type::text, amount::bigint, idempotency_key::text from creditgate.ledger
    where charge_key = %L$$, 'charge:' || :'g_last'),
  format($$values ('refund'::text, 70::bigint, %L::text)$$, 'refund:' || :'g_last'),
  'the refund is keyed refund:<generation_id>'
);
select is((select status from creditgate.generations where id = :'g_live'), 'running', 'a live lease is left alone');
select is(
  (select string_agg(c.attempt || ':' || c.worker_id || ':' || c.provider || ':' || c.outcome || ':' || c.error_code, ',' order by c.generation_id = :'g_retry')
   from creditgate_private.provider_calls as c),
  '1:w-short:local:lease_expired:lease_expired,1:w-short:local:lease_expired:lease_expired',
  'each reaped lease is logged as a lease_expired attempt of its worker'
);
select is(
  (select array_agg(c.lease_token::text order by c.lease_token) from creditgate_private.provider_calls as c),
  (select array_agg(j ->> 'lease_token' order by j ->> 'lease_token') from jsonb_array_elements(:'c1'::jsonb) as j),
  'with the lease tokens that expired'
);

-- Reaping again changes nothing.
select tests.as_service();
select is(
  creditgate.service_reap_expired_leases(now() + interval '30 seconds'),
  '{"requeued": 0, "failed": 0, "refunded": 0}'::jsonb,
  'a second sweep finds nothing (the re-queued job is not running)'
);

-- The re-queued job runs again and can expire again until its attempts are used up.
select is(
  creditgate.service_claim_generations('w2', 1, 10) #>> '{0,attempt}', '2',
  'the re-queued job is claimed for attempt 2'
);
select is(
  creditgate.service_reap_expired_leases(now() + interval '1 hour') -> 'requeued', '2'::jsonb,
  'an hour later attempt 2 has expired, and so has the 10-minute lease: both re-queued'
);
select is(
  creditgate.service_claim_generations('w3', 1, 10) #>> '{0,attempt}', '3',
  'attempt 3'
);
select is(
  creditgate.service_reap_expired_leases(now() + interval '1 hour'),
  '{"requeued": 0, "failed": 1, "refunded": 100}'::jsonb,
  'the last attempt expiring fails and refunds it'
);
select tests.as_owner();
select is(
  (select row(status, attempts)::text from creditgate.generations where id = :'g_retry'),
  row('failed', 3)::text,
  'failed after three attempts'
);
select is(
  (select count(*) from creditgate_private.provider_calls where generation_id = :'g_retry'),
  3::bigint,
  'three lease_expired attempts logged'
);
select is(tests.balance_of(:'u'), :u0::bigint - 20, 'the failed job''s charge is back; the re-queued chat''s stands');

-- The expired worker cannot settle afterwards.
select tests.as_service();
select throws_ok(
  format('select creditgate.service_settle_generation(%L, %L, %L, %L)', :'g_last', 'w-short',
    (select j ->> 'lease_token' from jsonb_array_elements(:'c1'::jsonb) as j where j ->> 'generation_id' = :'g_last'),
    '{"status": "failed", "error": {"code": "timeout"}}'),
  'PT409', 'lease_lost', 'a reaped worker reporting late: lease_lost'
);
select throws_ok($$select creditgate.service_reap_expired_leases(null)$$,
  'PT400', 'invalid_request', 'now is required');
select tests.as_owner();

select is((creditgate.audit() ->> 'ok')::boolean, true, 'the audit is clean');

select * from finish();
rollback;
