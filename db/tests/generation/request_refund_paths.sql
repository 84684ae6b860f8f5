-- A request that fails at the provider, or is canceled, leaves the user's balance exactly
-- where it was before the request; the daily allowance comes back too.
begin;
select plan(8);

select tests.seed_models();
select tests.create_user() as u \gset

select tests.as_user(:'u');
select (creditgate.get_balance() ->> 'balance')::bigint as before \gset
select creditgate.request_generation('video-test', '{"prompt": "x"}', 'f-1') ->> 'generation_id' as g \gset
select is((creditgate.get_balance() ->> 'balance')::bigint, (:before - 303)::bigint, 'the request charged 303');
select is((creditgate.get_balance() #>> '{daily,used}')::bigint, 303::bigint, 'and counts against the daily cap');

-- A worker claims it and reports a final failure.
select tests.as_service();
select creditgate.service_claim_generations('w-1', 1, 60) -> 0 ->> 'lease_token' as lease \gset
select is(
  creditgate.service_settle_generation(:'g', 'w-1', :'lease',
    '{"status": "failed", "retryable": false, "error": {"code": "provider_error", "message": "boom"}}') ->> 'status',
  'failed', 'the worker reports a final failure');

select tests.as_user(:'u');
select is((creditgate.get_balance() ->> 'balance')::bigint, :before::bigint, 'a failed generation costs nothing');
select is((creditgate.get_balance() #>> '{daily,used}')::bigint, 0::bigint, 'nor any daily allowance');
select throws_ok(format('select creditgate.cancel_generation(%L)', :'g'),
  'PT409', 'invalid_state', 'a failed generation cannot be canceled (no second refund)');

-- Cancel while queued.
select creditgate.cancel_generation((creditgate.request_generation('img-test', '{"prompt": "y"}', 'f-2') ->> 'generation_id')::uuid);
select is((creditgate.get_balance() ->> 'balance')::bigint, :before::bigint, 'request + cancel costs nothing');

select tests.as_service();
select is((creditgate.audit() ->> 'ok')::boolean, true, 'the audit finds nothing wrong');

select * from finish();
rollback;
