-- supabase/seed.sql: loads on top of the migrations, twice without harm, and gives a
-- catalog where every kind is priced like a real app, routed to the local runner and
-- runnable end to end (request -> claim -> settle).
begin;
select plan(16);

\ir ../../../supabase/seed.sql
update creditgate.models set enabled = false where id = 'sd15';
\ir ../../../supabase/seed.sql

select is(
  (select array_agg(kind::text order by kind) from (select distinct kind from creditgate.models
    where id in ('sdxl', 'sd15', 'sdxl-edit', 'animatediff', 'local-chat')) as k),
  array['chat', 'edit', 'image', 'video'],
  'a model of every kind'
);
select is((select enabled from creditgate.models where id = 'sd15'), false, 're-seeding keeps an operator''s off switch');
select is(
  (select count(*) from creditgate.models as m
   left join creditgate_private.model_routes as r on r.model_id = m.id
   where r.provider = 'local' and r.endpoint = 'http://127.0.0.1:7860'),
  5::bigint,
  'every seeded model is routed to the local runner'
);
select is(
  (select count(*) from creditgate.loras as l inner join creditgate_private.lora_sources as s on s.lora_id = l.id),
  (select count(*) from creditgate.loras),
  'every LoRA has a server-side source'
);
select is(
  (select array_agg(stripe_price_id order by credits) from creditgate.credit_packs where active),
  array['price_starter', 'price_creator', 'price_studio'],
  'three active credit packs with their Stripe prices'
);

select tests.as_anon();
select is(creditgate.quote('sdxl', '{"prompt": "a fox"}') -> 'cost', '505'::jsonb, 'an SDXL image at 1024x1024, 30 steps: about 500');
select is(creditgate.quote('sdxl', '{"prompt": "a fox", "loras": [{"id": "pixel-art"}]}') -> 'cost', '555'::jsonb, 'a LoRA adds 50');
select is(creditgate.quote('sdxl-edit', jsonb_build_object('prompt', 'a fox', 'init_media_id', gen_random_uuid())) -> 'cost', '990'::jsonb, 'an SDXL edit: about 1000');
select is(creditgate.quote('animatediff', '{"prompt": "a fox"}') -> 'cost', '2263'::jsonb, 'a 3-second clip: 2000-3000');
select is(creditgate.quote('animatediff', '{"prompt": "a fox", "duration_seconds": 5}') -> 'cost', '3263'::jsonb, 'longer clips cost more');
select is(
  creditgate.quote('local-chat', '{"messages": [{"role": "user", "content": "hello there"}]}') -> 'cost', '8'::jsonb,
  'a chat turn: 2 + 10 per 1k tokens (3 in, up to 512 out)'
);
select tests.as_owner();

-- End to end on the seeded catalog.
insert into creditgate_private.settings (key, value) values ('signup_bonus', '5000');
select tests.create_user() as u \gset
select tests.as_user(:'u');
select creditgate.request_generation('sdxl', '{"prompt": "a fox", "loras": [{"id": "watercolor", "weight": 0.8}]}', 'seed-e2e') ->> 'generation_id' as g \gset
select tests.as_service();
select creditgate.service_claim_generations('seed-worker') -> 0 as job \gset
select is(
  (:'job'::jsonb -> 'route') - 'options',
  '{"provider": "local", "provider_model": "sdxl-base", "endpoint": "http://127.0.0.1:7860"}'::jsonb,
  'the job is routed to the runner''s sdxl-base checkpoint'
);
select is(:'job'::jsonb -> 'loras', '[{"id": "watercolor", "weight": 0.8, "source": "watercolor-style-sdxl"}]'::jsonb,
  'with the LoRA resolved to its file');
select is(
  creditgate.service_settle_generation(:'g', 'seed-worker', :'job'::jsonb ->> 'lease_token', jsonb_build_object(
    'status', 'succeeded', 'media', jsonb_build_array(jsonb_build_object(
      'storage_key', 'media/' || :'g' || '/0.png', 'content_type', 'image/png', 'bytes', 123456,
      'width', 1024, 'height', 1024)))) ->> 'status',
  'succeeded',
  'and settles'
);
select tests.as_owner();
select is(tests.balance_of(:'u'), 5000 - 555::bigint, 'the user paid the quoted price');
select is((creditgate.audit() ->> 'ok')::boolean, true, 'the audit is clean');

select * from finish();
rollback;
