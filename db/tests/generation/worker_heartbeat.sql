-- creditgate.service_heartbeat: extends a live lease held by the caller; lease_lost for
-- anyone else, an expired lease or a job no longer running; not_found; argument errors.
begin;
select plan(17);

select tests.worker_models();
select tests.create_user() as u \gset
select tests.make_queued_generation(:'u', 'img-test', 100) as g \gset
select tests.make_queued_generation(:'u', 'img-test', 100) as g_other \gset

select tests.as_service();
select creditgate.service_claim_generations('w1', 1, 30) #>> '{0,lease_token}' as token \gset
select creditgate.service_claim_generations('w2', 1, 30) #>> '{0,lease_token}' as token_other \gset

select is(
  creditgate.service_heartbeat(:'g', 'w1', :'token', 300),
  jsonb_build_object('generation_id', :'g', 'lease_expires_at', now() + interval '300 seconds'),
  'heartbeat extends the lease to now + lease_seconds and says until when'
);
select is(
  (select lease_expires_at from tests.generations_full where id = :'g'),
  now() + interval '300 seconds',
  'the new expiry is stored'
);
select is(
  creditgate.service_heartbeat(:'g', 'w1', :'token') ->> 'generation_id', :'g',
  'lease_seconds defaults to 120'
);
select is(
  (select lease_token::text || lease_owner || status || attempts::text from tests.generations_full where id = :'g'),
  :'token' || 'w1' || 'running' || '1',
  'a heartbeat changes nothing but the expiry'
);

-- Not the holder.
select throws_ok(format('select creditgate.service_heartbeat(%L, %L, %L, 60)', :'g', 'w2', :'token'),
  'PT409', 'lease_lost', 'another worker id with the right token: lease_lost');
select throws_ok(format('select creditgate.service_heartbeat(%L, %L, %L, 60)', :'g', 'w1', :'token_other'),
  'PT409', 'lease_lost', 'the right worker with another lease''s token: lease_lost');
select throws_ok(format('select creditgate.service_heartbeat(%L, %L, %L, 60)', :'g', 'w1', gen_random_uuid()),
  'PT409', 'lease_lost', 'an unknown token: lease_lost');

-- An expired lease is lost, even before the reaper runs.
select tests.as_owner();
update creditgate_private.generation_leases set lease_expires_at = now() - interval '1 second' where generation_id = :'g_other';
select tests.as_service();
select throws_ok(format('select creditgate.service_heartbeat(%L, %L, %L, 60)', :'g_other', 'w2', :'token_other'),
  'PT409', 'lease_lost', 'an expired lease cannot be renewed');

-- Settled: the lease is gone.
select creditgate.service_settle_generation(:'g', 'w1', :'token', jsonb_build_object(
  'status', 'succeeded',
  'media', jsonb_build_array(jsonb_build_object('storage_key', 'media/' || :'g' || '/0.png', 'content_type', 'image/png', 'bytes', 10))
));
select throws_ok(format('select creditgate.service_heartbeat(%L, %L, %L, 60)', :'g', 'w1', :'token'),
  'PT409', 'lease_lost', 'a settled job has no lease to extend');

select throws_ok(format('select creditgate.service_heartbeat(%L, %L, %L, 60)', gen_random_uuid(), 'w1', :'token'),
  'PT404', 'not_found', 'an unknown generation: not_found');

-- Argument errors.
select throws_ok(format('select creditgate.service_heartbeat(null, %L, %L, 60)', 'w1', :'token'),
  'PT400', 'invalid_request', 'generation_id is required');
select throws_ok(format('select creditgate.service_heartbeat(%L, null, %L, 60)', :'g', :'token'),
  'PT400', 'invalid_request', 'worker_id is required');
select throws_ok(format('select creditgate.service_heartbeat(%L, %L, %L, 60)', :'g', 'w1', 'not-a-token'),
  'PT400', 'invalid_request', 'a lease token is a uuid');
select throws_ok(format('select creditgate.service_heartbeat(%L, %L, null, 60)', :'g', 'w1'),
  'PT400', 'invalid_request', 'lease_token is required');
select throws_ok(format('select creditgate.service_heartbeat(%L, %L, %L, 4)', :'g', 'w1', :'token'),
  'PT400', 'invalid_request', 'lease_seconds >= 5');
select throws_ok(format('select creditgate.service_heartbeat(%L, %L, %L, 3601)', :'g', 'w1', :'token'),
  'PT400', 'invalid_request', 'lease_seconds <= 3600');
select throws_ok(format('select creditgate.service_heartbeat(%L, %L, %L, null)', :'g', 'w1', :'token'),
  'PT409', 'lease_lost', 'a null lease_seconds passes validation (it means setting lease_seconds: worker_lease_setting.sql)');

select tests.as_owner();
select * from finish();
rollback;
