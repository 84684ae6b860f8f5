-- creditgate.service_settle_generation: outcome.error.detail, the provider's own (redacted)
-- text, goes to creditgate_private.provider_calls only. The owner-readable generation keeps
-- the normalized code and the worker's safe message (issue 18, item 2).
begin;
select plan(8);

select tests.worker_models();
select tests.create_user() as u \gset
select tests.make_queued_generation(:'u', 'img-test', 100) as g \gset
select tests.make_queued_generation(:'u', 'img-test', 100) as g_plain \gset
select tests.make_queued_generation(:'u', 'img-test', 100) as g_long \gset
update creditgate.generations set created_at = '2000-01-01' where id = :'g';
update creditgate.generations set created_at = '2000-01-02' where id = :'g_plain';
update creditgate.generations set created_at = '2000-01-03' where id = :'g_long';
select tests.as_service();
select creditgate.service_claim_generations('w1', 1) #>> '{0,lease_token}' as t \gset
select creditgate.service_claim_generations('w1', 1) #>> '{0,lease_token}' as t_plain \gset
select creditgate.service_claim_generations('w1', 1) #>> '{0,lease_token}' as t_long \gset

select is(
  tests.error_json(format(
    'select creditgate.service_settle_generation(%L, %L, %L, %L::jsonb)', :'g', 'w1', :'t',
    '{"status": "failed", "error": {"code": "server_error", "message": "m", "detail": 5}}'
  )) #>> '{detail,field}',
  'outcome.error.detail',
  'error.detail is a string'
);

select is(
  creditgate.service_settle_generation(:'g', 'w1', :'t', jsonb_build_object(
    'status', 'failed', 'retryable', false,
    'error', jsonb_build_object(
      'code', 'server_error',
      'message', 'the provider failed',
      'detail', 'POST /models/org/secret-model -> HTTP 500: CUDA OOM on node gpu-7.internal'
    )
  )) ->> 'status',
  'failed',
  'a failure with a detail is accepted'
);
select creditgate.service_settle_generation(:'g_plain', 'w1', :'t_plain',
  '{"status": "failed", "retryable": false, "error": {"code": "timeout", "message": "no answer"}}');
select creditgate.service_settle_generation(:'g_long', 'w1', :'t_long', jsonb_build_object(
  'status', 'failed', 'retryable', false,
  'error', jsonb_build_object('code', 'server_error', 'message', 'the provider failed',
    'detail', repeat('x', 5000))
));
select tests.as_owner();

select is(
  (select error from creditgate.generations where id = :'g'),
  '{"code": "server_error", "message": "the provider failed"}'::jsonb,
  'the generation keeps the code and the safe message only'
);
select is(
  (select error_code || ' | ' || error_message from creditgate_private.provider_calls where generation_id = :'g'),
  'server_error | POST /models/org/secret-model -> HTTP 500: CUDA OOM on node gpu-7.internal',
  'provider_calls keeps the provider text'
);
select is(
  (select count(*) from creditgate.ledger where entry_type = 'refund' and generation_id = :'g'),
  1::bigint,
  'the failure is refunded'
);
select is(
  (select error_message from creditgate_private.provider_calls where generation_id = :'g_plain'),
  'no answer',
  'without a detail, provider_calls keeps the message'
);
select is(
  (select length(error_message) from creditgate_private.provider_calls where generation_id = :'g_long'),
  4000,
  'a detail is kept up to 4000 characters'
);
select is(
  (select error from creditgate.generations where id = :'g_long'),
  '{"code": "server_error", "message": "the provider failed"}'::jsonb,
  'a long detail stays out of the generation'
);

select * from finish();
rollback;
