-- creditgate.service_claim_generations: oldest queued jobs first, lease fields, the job a
-- worker gets (route, LoRA sources, edit input), and every argument error.
begin;
select plan(31);

select tests.worker_models();
select tests.create_user() as u \gset
select tests.create_user() as other \gset
select balance as u_before from creditgate.balances where user_id = :'u' \gset

select tests.as_service();
select is(creditgate.service_claim_generations('w1'), '[]'::jsonb, 'an empty queue gives an empty array');
select tests.as_owner();

-- Three jobs in creation order; the third asks for a LoRA.
select tests.make_queued_generation(:'u', 'img-test', 100) as g1 \gset
select tests.make_queued_generation(:'other', 'chat-test', 7,
  '{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 500}') as g2 \gset
select tests.make_queued_generation(:'u', 'img-test', 150,
  '{"prompt": "ink", "loras": [{"id": "lora-a", "weight": 0.6}]}') as g3 \gset
-- Made first but created later: order is by created_at, not by insertion.
update creditgate.generations set created_at = created_at + interval '1 hour' where id = :'g1';

select tests.as_service();
create temp table claim1 as
  select creditgate.service_claim_generations('worker-a', 2, 60) as jobs;
select tests.as_owner();

select is(jsonb_array_length((select jobs from claim1)), 2, 'max_jobs bounds the batch');
select is(
  (select jsonb_agg(j ->> 'generation_id') from claim1, jsonb_array_elements(jobs) as j),
  jsonb_build_array(:'g2', :'g3'),
  'oldest created_at first'
);
select results_eq(
  format($$select status::text, attempts, lease_owner, lease_expires_at, started_at
    from tests.generations_full where id in (%L, %L) order by created_at$$, :'g2', :'g3'),
  $$values ('running'::text, 1, 'worker-a'::text, now() + interval '60 seconds', now()),
           ('running'::text, 1, 'worker-a'::text, now() + interval '60 seconds', now())$$,
  'claimed jobs are running, attempt 1, leased to the worker for lease_seconds'
);
select is(
  (select count(distinct lease_token) from tests.generations_full where id in (:'g2', :'g3')),
  2::bigint,
  'each claimed job has its own lease token'
);
select is(
  (select jsonb_agg(j ->> 'lease_token' order by j ->> 'generation_id') from claim1, jsonb_array_elements(jobs) as j),
  (select jsonb_agg(lease_token::text order by id::text) from tests.generations_full where id in (:'g2', :'g3')),
  'the job carries the stored lease token'
);
select is(
  (select status from creditgate.generations where id = :'g1'), 'queued',
  'the newest job stays queued'
);

-- The job a worker gets.
create temp table job3 as
  select j as job from claim1, jsonb_array_elements(jobs) as j where j ->> 'generation_id' = :'g3';
select is(
  (select job - 'lease_token' - 'lease_expires_at' - 'route' - 'loras' - 'params' - 'init_media' from job3),
  jsonb_build_object(
    'generation_id', :'g3', 'user_id', :'u', 'kind', 'image', 'model_id', 'img-test',
    'attempt', 1, 'max_attempts', 3, 'cost', 150
  ),
  'job: ids, kind, model, attempt, max_attempts, cost'
);
select is(
  (select job -> 'params' from job3),
  '{"prompt": "ink", "loras": [{"id": "lora-a", "weight": 0.6}]}'::jsonb,
  'job: the stored params'
);
select is(
  (select job -> 'route' from job3),
  (select jsonb_build_object('provider', r.provider, 'provider_model', r.provider_model,
     'endpoint', r.endpoint, 'options', r.options)
   from creditgate_private.model_routes as r where r.model_id = 'img-test'),
  'job: the server-only route of the model'
);
select is((select job #>> '{route,provider}' from job3), 'local', 'job: routed to the local runner');
select is(
  (select job -> 'loras' from job3),
  '[{"id": "lora-a", "weight": 0.6, "source": "loras/lora-a.safetensors"}]'::jsonb,
  'job: LoRAs resolved to their private sources, weights kept'
);
select is(
  (select job -> 'lease_expires_at' from job3),
  to_jsonb(now() + interval '60 seconds'),
  'job: lease expiry'
);
select is(
  (select j -> 'loras' from claim1, jsonb_array_elements(jobs) as j where j ->> 'generation_id' = :'g2'),
  '[]'::jsonb,
  'job: no LoRAs is an empty list'
);

-- Next claim: the remaining job, then nothing.
select tests.as_service();
select is(
  creditgate.service_claim_generations('worker-b', 5) #>> '{0,generation_id}', :'g1',
  'the next claim takes what is left'
);
select is(
  (select lease_expires_at from tests.generations_full where id = :'g1'),
  now() + interval '120 seconds',
  'lease_seconds defaults to 120'
);
select is(creditgate.service_claim_generations('worker-b', 5), '[]'::jsonb, 'running jobs are not claimed again');
select tests.as_owner();

-- Edit jobs carry their input media.
select tests.media_for(:'u') as init_media \gset
select tests.request_as(:'u', 'edit-test', jsonb_build_object('prompt', 'sepia', 'init_media_id', :'init_media')) as g_edit \gset
select tests.as_service();
create temp table claim2 as select creditgate.service_claim_generations('worker-c', 1) as jobs;
select tests.as_owner();
select is(
  (select jobs #> '{0,init_media}' from claim2),
  (select jsonb_build_object('media_id', m.id, 'storage_key', m.storage_key, 'content_type', m.content_type)
   from creditgate.media as m where m.id = :'init_media'),
  'an edit job names its input image and where it is stored'
);
select is((select jobs #>> '{0,kind}' from claim2), 'edit', 'the edit job');
select is(
  (select jobs #>> '{0,cost}' from claim2)::bigint,
  (select cost::bigint from creditgate.generations where id = :'g_edit'),
  'claimed with the cost request_generation charged'
);

-- Canceled and finished jobs are never claimed.
select tests.request_as(:'u', 'img-test') as g_cancel \gset
select tests.as_user(:'u');
select creditgate.cancel_generation(:'g_cancel');
select tests.as_service();
select is(creditgate.service_claim_generations('worker-d', 10), '[]'::jsonb, 'a canceled job is not claimed');
select tests.as_owner();

-- Argument errors.
select tests.as_service();
select throws_ok($$select creditgate.service_claim_generations(null)$$,
  'PT400', 'invalid_request', 'worker_id is required');
select throws_ok($$select creditgate.service_claim_generations('')$$,
  'PT400', 'invalid_request', 'worker_id cannot be empty');
select throws_ok(format('select creditgate.service_claim_generations(%L)', repeat('w', 101)),
  'PT400', 'invalid_request', 'worker_id is at most 100 characters');
select throws_ok($$select creditgate.service_claim_generations('w', 0)$$,
  'PT400', 'invalid_request', 'max_jobs >= 1');
select throws_ok($$select creditgate.service_claim_generations('w', 101)$$,
  'PT400', 'invalid_request', 'max_jobs <= 100');
select throws_ok($$select creditgate.service_claim_generations('w', 1, 4)$$,
  'PT400', 'invalid_request', 'lease_seconds >= 5');
select throws_ok($$select creditgate.service_claim_generations('w', 1, 3601)$$,
  'PT400', 'invalid_request', 'lease_seconds <= 3600 by default');
select tests.as_owner();
select is(
  tests.error_json($$select creditgate.service_claim_generations('w', 101)$$) -> 'detail',
  '{"field": "max_jobs", "reason": "between 1 and 100"}'::jsonb,
  'DETAIL names the field'
);
insert into creditgate_private.settings (key, value) values ('max_lease_seconds', '600');
select is(
  tests.error_json($$select creditgate.service_claim_generations('w', 1, 601)$$) -> 'detail',
  '{"field": "lease_seconds", "reason": "between 5 and 600"}'::jsonb,
  'the max_lease_seconds setting bounds leases'
);

-- Claiming moved no credits.
select is(
  (select balance::bigint from creditgate.balances where user_id = :'u'),
  :u_before - 100 - 150 - (select cost from creditgate.generations where id = :'g_edit') - 1,
  'claims move no credits (only the charges and the media fixture did)'
);

select * from finish();
rollback;
