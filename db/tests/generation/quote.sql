-- creditgate.quote(model_id, params): prices in SQL, breakdown, normalized params, model
-- errors, and that nothing server-only leaks. Validation cases: quote_validation.sql.
begin;
select plan(27);

select tests.seed_models();
insert into creditgate.models (id, kind, name, enabled, max_loras, defaults)
values ('free-test', 'image', 'Free test', true, 0, '{}');
select tests.create_user() as u \gset
select tests.create_user() as other \gset
select tests.media_for(:'u') as own_media \gset

select tests.as_anon();

select is(
  creditgate.quote('img-test', '{"prompt": "  a cat  "}') -> 'cost', '33'::jsonb,
  'img-test defaults: ceil(10 + 10*0.262144 + 1*20) = 33'
);
select is(
  creditgate.quote('img-test', '{"prompt": "  a cat  "}') -> 'params',
  '{"prompt": "a cat", "negative_prompt": "", "width": 512, "height": 512, "steps": 20, "cfg_scale": 7, "loras": []}'::jsonb,
  'params are normalized: prompt trimmed, model defaults filled in, no seed invented'
);
select is(
  creditgate.quote('img-test', '{"prompt": "a cat"}') - 'breakdown' - 'params',
  '{"model_id": "img-test", "kind": "image", "cost": 33}'::jsonb,
  'quote names the model, its kind and the cost'
);
select is(
  (creditgate.quote('img-test', '{"prompt": "a cat"}') -> 'breakdown') ->> 'total', '33',
  'the breakdown totals the cost'
);
select is(
  (creditgate.quote('img-test', '{"prompt": "a cat"}') -> 'breakdown') -> 'megapixels', '0.262144'::jsonb,
  'the breakdown shows the megapixels priced'
);
select is(
  creditgate.quote('img-test', '{"prompt": "a cat", "loras": [{"id": "lora-a"}]}') -> 'cost', '83'::jsonb,
  'a LoRA adds its price (50)'
);
select is(
  creditgate.quote('img-test', '{"prompt": "a cat", "loras": [{"id": "lora-a", "weight": 0.5}]}') #> '{params,loras}',
  '[{"id": "lora-a", "weight": 0.5}]'::jsonb,
  'LoRAs are normalized to {id, weight}'
);
select is(
  creditgate.quote('img-test', '{"prompt": "a cat", "loras": [{"id": "lora-a"}]}') #> '{params,loras,0,weight}',
  '1'::jsonb,
  'a LoRA weight defaults to 1'
);
select is(
  creditgate.quote('img-test', '{"prompt": "a cat", "width": 1024, "height": 1024}') -> 'cost', '41'::jsonb,
  'more pixels cost more: ceil(10 + 10.48576 + 20) = 41'
);
select is(
  creditgate.quote('img-test', '{"prompt": "a cat", "steps": 50}') -> 'cost', '63'::jsonb,
  'more steps cost more: ceil(10 + 2.62144 + 50) = 63'
);
select is(
  creditgate.quote('video-test', '{"prompt": "a cat"}') -> 'cost', '303'::jsonb,
  'video defaults: ceil(100 + 2.62144 + 50*4) = 303'
);
select is(
  creditgate.quote('video-test', '{"prompt": "a cat", "duration_seconds": 8}') -> 'cost', '503'::jsonb,
  'a longer video costs more'
);
select is(
  creditgate.quote('chat-test', '{"messages": [{"role": "user", "content": "hello there"}]}') -> 'cost', '3'::jsonb,
  'chat: ceil(1 + 2*(ceil(11/4) + 500)/1000) = 3'
);
select is(
  creditgate.quote('chat-test', '{"messages": [{"role": "user", "content": "hello there"}], "max_tokens": 1000}') -> 'cost',
  '4'::jsonb,
  'chat: more output tokens cost more'
);
select is(
  creditgate.quote('chat-test', '{"messages": [{"role": "user", "content": "hello there"}]}') -> 'params',
  '{"messages": [{"role": "user", "content": "hello there"}], "max_tokens": 500, "temperature": 0.7}'::jsonb,
  'chat params are normalized with the model defaults'
);
select is(
  creditgate.quote('free-test', '{"prompt": "a cat"}') -> 'cost', '1'::jsonb,
  'a price never drops below 1 credit'
);
select is(
  creditgate.quote('img-test', '{"prompt": "a cat", "cfg_scale": 7.00, "width": 512.0}') -> 'params',
  creditgate.quote('img-test', '{"prompt": "a cat", "cfg_scale": 7, "width": 512}') -> 'params',
  '7.00 and 7 normalize alike (one request, one hash)'
);
select is(
  creditgate.quote('img-test', '{"prompt": "a cat", "seed": 4294967295}') #> '{params,seed}',
  '4294967295'::jsonb,
  'the largest seed is accepted'
);
select is(
  creditgate.quote('edit-test', format('{"prompt": "x", "init_media_id": "%s"}', gen_random_uuid())::jsonb) -> 'cost',
  '43'::jsonb,
  'anon may quote an edit with any well-formed media id'
);
select ok(
  creditgate.quote('img-test', '{"prompt": "a cat", "loras": [{"id": "lora-a"}]}')::text
    !~ '(127\.0\.0\.1|7860|safetensors|local-img-test|endpoint|source)',
  'a quote never reveals the route or LoRA sources'
);

select throws_ok(
  $$select creditgate.quote('no-such-model', '{"prompt": "x"}')$$,
  'PT404', 'not_found', 'an unknown model is not found'
);
select throws_ok(
  $$select creditgate.quote('img-off', '{"prompt": "x"}')$$,
  'PT503', 'model_unavailable', 'a disabled model is unavailable'
);
select throws_ok(
  $$select creditgate.quote(null, '{"prompt": "x"}')$$,
  'PT400', 'invalid_request', 'a missing model id is an invalid request'
);
select throws_ok(
  $$select creditgate.quote('img-test', '{"prompt": ""}')$$,
  'PT400', 'invalid_request', 'bad params are an invalid request'
);

-- A signed-in caller: init_media_id must be one of their own images.
select tests.as_user(:'u');
select is(
  creditgate.quote('edit-test', format('{"prompt": "x", "init_media_id": "%s"}', :'own_media')::jsonb) -> 'cost',
  '43'::jsonb,
  'a user quotes an edit of their own image'
);
select tests.as_user(:'other');
select is(
  tests.error_of(format(
    $q$select creditgate.quote('edit-test', '{"prompt": "x", "init_media_id": "%s"}')$q$, :'own_media'
  )),
  'PT400 invalid_request init_media_id',
  'another user''s media cannot be edited'
);
select is(
  tests.error_of($$select creditgate.quote('edit-test', '{"prompt": "x", "init_media_id": "00000000-0000-4000-8000-000000000000"}')$$),
  'PT400 invalid_request init_media_id',
  'an unknown media id cannot be edited by a user'
);

select * from finish();
rollback;
