-- Strict params validation (creditgate_private.validate_params through creditgate.quote):
-- every rejected input names its field. request_generation shares the validator.
begin;

select tests.seed_models();
insert into creditgate.loras (id, name, model_ids, price, enabled)
values ('lora-off', 'Disabled', array['img-test'], 5, false);

create temp table cases (model text, params text, expected text, description text) on commit drop;
grant select on cases to anon;
insert into cases values
  -- shape
  ('img-test', '[]', 'PT400 invalid_request params', 'params must be an object, not an array'),
  ('img-test', '"prompt"', 'PT400 invalid_request params', 'params must be an object, not a string'),
  ('img-test', null, 'PT400 invalid_request params', 'params are required'),
  ('img-test', '{"prompt": "x", "foo": 1}', 'PT400 invalid_request foo', 'unknown keys are refused'),
  ('img-test', '{"prompt": "x", "endpoint": "http://evil"}', 'PT400 invalid_request endpoint', 'no route override'),
  -- prompt
  ('img-test', '{}', 'PT400 invalid_request prompt', 'prompt is required'),
  ('img-test', '{"prompt": "   \n\t "}', 'PT400 invalid_request prompt', 'a blank prompt is empty after trim'),
  ('img-test', '{"prompt": 5}', 'PT400 invalid_request prompt', 'prompt must be a string'),
  ('img-test', '{"prompt": null}', 'PT400 invalid_request prompt', 'prompt must not be null'),
  ('img-test', format('{"prompt": "%s"}', repeat('a', 1001)), 'PT400 invalid_request prompt', 'prompt over max_prompt_length'),
  ('img-test', format('{"prompt": "%s"}', repeat('a', 1000)), 'ok', 'prompt at max_prompt_length passes'),
  ('img-test', format('{"prompt": "x", "negative_prompt": "%s"}', repeat('a', 1001)), 'PT400 invalid_request negative_prompt', 'negative_prompt over the limit'),
  ('img-test', '{"prompt": "x", "negative_prompt": 1}', 'PT400 invalid_request negative_prompt', 'negative_prompt must be a string'),
  -- size
  ('img-test', '{"prompt": "x", "width": 500}', 'PT400 invalid_request width', 'width must be a multiple of 8'),
  ('img-test', '{"prompt": "x", "width": 56}', 'PT400 invalid_request width', 'width at least 64'),
  ('img-test', '{"prompt": "x", "width": 2056}', 'PT400 invalid_request width', 'width at most max_width'),
  ('img-test', '{"prompt": "x", "width": "512"}', 'PT400 invalid_request width', 'width must be a number, not a string'),
  ('img-test', '{"prompt": "x", "width": 512.5}', 'PT400 invalid_request width', 'width must be an integer'),
  ('img-test', '{"prompt": "x", "width": true}', 'PT400 invalid_request width', 'width must be a number, not a boolean'),
  ('img-test', '{"prompt": "x", "width": 1e100}', 'PT400 invalid_request width', 'a huge width is out of range'),
  ('img-test', '{"prompt": "x", "height": 4000}', 'PT400 invalid_request height', 'height must be a multiple of 8'),
  ('img-test', '{"prompt": "x", "width": 2048, "height": 2048}', 'ok', 'the largest image passes'),
  ('video-test', '{"prompt": "x", "width": 1280, "height": 1280}', 'PT400 invalid_request height', 'width*height over max_pixels'),
  ('video-test', '{"prompt": "x", "width": 1280, "height": 720}', 'ok', 'width*height at max_pixels passes'),
  -- steps, seed, cfg_scale
  ('img-test', '{"prompt": "x", "steps": 0}', 'PT400 invalid_request steps', 'steps at least 1'),
  ('img-test', '{"prompt": "x", "steps": 101}', 'PT400 invalid_request steps', 'steps at most max_steps'),
  ('img-test', '{"prompt": "x", "steps": 100}', 'ok', 'steps at max_steps passes'),
  ('img-test', '{"prompt": "x", "steps": 20.5}', 'PT400 invalid_request steps', 'steps must be an integer'),
  ('img-test', '{"prompt": "x", "seed": -1}', 'PT400 invalid_request seed', 'seed at least 0'),
  ('img-test', '{"prompt": "x", "seed": 4294967296}', 'PT400 invalid_request seed', 'seed below 2^32'),
  ('img-test', '{"prompt": "x", "seed": null}', 'PT400 invalid_request seed', 'seed must not be null'),
  ('img-test', '{"prompt": "x", "cfg_scale": 0.5}', 'PT400 invalid_request cfg_scale', 'cfg_scale at least 1'),
  ('img-test', '{"prompt": "x", "cfg_scale": 30.01}', 'PT400 invalid_request cfg_scale', 'cfg_scale at most 30'),
  ('img-test', '{"prompt": "x", "cfg_scale": "7"}', 'PT400 invalid_request cfg_scale', 'cfg_scale must be a number'),
  -- LoRAs
  ('img-test', '{"prompt": "x", "loras": {"id": "lora-a"}}', 'PT400 invalid_request loras', 'loras must be an array'),
  ('img-test', '{"prompt": "x", "loras": null}', 'PT400 invalid_request loras', 'loras must not be null'),
  ('img-test', '{"prompt": "x", "loras": [{"id": "lora-a"}, {"id": "lora-a"}, {"id": "lora-a"}]}', 'PT400 invalid_request loras', 'more LoRAs than max_loras'),
  ('video-test', '{"prompt": "x", "loras": []}', 'PT400 invalid_request loras', 'loras is not a video param'),
  ('img-test', '{"prompt": "x", "loras": ["lora-a"]}', 'PT400 invalid_request loras[0]', 'a LoRA must be an object'),
  ('img-test', '{"prompt": "x", "loras": [{"weight": 1}]}', 'PT400 invalid_request loras[0].id', 'a LoRA needs an id'),
  ('img-test', '{"prompt": "x", "loras": [{"id": 7}]}', 'PT400 invalid_request loras[0].id', 'a LoRA id is a string'),
  ('img-test', '{"prompt": "x", "loras": [{"id": "lora-a", "path": "/x"}]}', 'PT400 invalid_request loras[0].path', 'no other LoRA keys'),
  ('img-test', '{"prompt": "x", "loras": [{"id": "../x"}]}', 'PT400 invalid_request loras[0].id', 'path traversal LoRA id'),
  ('img-test', '{"prompt": "x", "loras": [{"id": "/etc/passwd"}]}', 'PT400 invalid_request loras[0].id', 'absolute path LoRA id'),
  ('img-test', '{"prompt": "x", "loras": [{"id": "http://evil"}]}', 'PT400 invalid_request loras[0].id', 'URL LoRA id'),
  ('img-test', '{"prompt": "x", "loras": [{"id": "LORA"}]}', 'PT400 invalid_request loras[0].id', 'upper-case LoRA id'),
  ('img-test', '{"prompt": "x", "loras": [{"id": "a b"}]}', 'PT400 invalid_request loras[0].id', 'LoRA id with a space'),
  ('img-test', '{"prompt": "x", "loras": [{"id": "a%2f"}]}', 'PT400 invalid_request loras[0].id', 'percent-encoded LoRA id'),
  ('img-test', '{"prompt": "x", "loras": [{"id": "a\\\\b"}]}', 'PT400 invalid_request loras[0].id', 'backslash LoRA id'),
  ('img-test', '{"prompt": "x", "loras": [{"id": "lora-a\n"}]}', 'PT400 invalid_request loras[0].id', 'LoRA id with a newline'),
  ('img-test', '{"prompt": "x", "loras": [{"id": ""}]}', 'PT400 invalid_request loras[0].id', 'empty LoRA id'),
  ('img-test', '{"prompt": "x", "loras": [{"id": "lora-zzz"}]}', 'PT400 invalid_request loras[0].id', 'unknown LoRA'),
  ('img-test', '{"prompt": "x", "loras": [{"id": "lora-b"}]}', 'PT400 invalid_request loras[0].id', 'a LoRA for another model'),
  ('img-test', '{"prompt": "x", "loras": [{"id": "lora-off"}]}', 'PT400 invalid_request loras[0].id', 'a disabled LoRA'),
  ('img-test', '{"prompt": "x", "loras": [{"id": "lora-a"}, {"id": "lora-a"}]}', 'PT400 invalid_request loras[1].id', 'a duplicate LoRA'),
  ('img-test', '{"prompt": "x", "loras": [{"id": "lora-a", "weight": 2.5}]}', 'PT400 invalid_request loras[0].weight', 'LoRA weight at most 2'),
  ('img-test', '{"prompt": "x", "loras": [{"id": "lora-a", "weight": -2.01}]}', 'PT400 invalid_request loras[0].weight', 'LoRA weight at least -2'),
  ('img-test', '{"prompt": "x", "loras": [{"id": "lora-a", "weight": "1"}]}', 'PT400 invalid_request loras[0].weight', 'LoRA weight is a number'),
  ('img-test', '{"prompt": "x", "loras": [{"id": "lora-a", "weight": -2}]}', 'ok', 'LoRA weight -2 passes'),
  -- edit
  ('edit-test', '{"prompt": "x"}', 'PT400 invalid_request init_media_id', 'an edit needs init_media_id'),
  ('edit-test', '{"prompt": "x", "init_media_id": "../../etc/passwd"}', 'PT400 invalid_request init_media_id', 'init_media_id must be a uuid'),
  ('edit-test', '{"prompt": "x", "init_media_id": 5}', 'PT400 invalid_request init_media_id', 'init_media_id must be a string'),
  ('edit-test', '{"prompt": "x", "init_media_id": "00000000-0000-4000-8000-000000000000", "strength": 1.5}', 'PT400 invalid_request strength', 'strength at most 1'),
  ('edit-test', '{"prompt": "x", "init_media_id": "00000000-0000-4000-8000-000000000000", "strength": -0.1}', 'PT400 invalid_request strength', 'strength at least 0'),
  ('edit-test', '{"prompt": "x", "init_media_id": "00000000-0000-4000-8000-000000000000", "loras": [{"id": "lora-a"}]}', 'PT400 invalid_request loras[0].id', 'an image LoRA does not fit the edit model'),
  ('edit-test', '{"prompt": "x", "init_media_id": "00000000-0000-4000-8000-000000000000", "loras": [{"id": "lora-b"}]}', 'ok', 'the edit LoRA fits'),
  -- video
  ('video-test', '{"prompt": "x", "duration_seconds": 0}', 'PT400 invalid_request duration_seconds', 'duration at least 1'),
  ('video-test', '{"prompt": "x", "duration_seconds": 11}', 'PT400 invalid_request duration_seconds', 'duration at most max_duration_seconds'),
  ('video-test', '{"prompt": "x", "duration_seconds": 2.5}', 'PT400 invalid_request duration_seconds', 'duration must be an integer'),
  ('video-test', '{"prompt": "x", "fps": 31}', 'PT400 invalid_request fps', 'fps at most 30'),
  ('video-test', '{"prompt": "x", "fps": 0}', 'PT400 invalid_request fps', 'fps at least 1'),
  ('video-test', '{"prompt": "x", "steps": 20}', 'PT400 invalid_request steps', 'steps is not a video param'),
  -- chat
  ('chat-test', '{}', 'PT400 invalid_request messages', 'chat needs messages'),
  ('chat-test', '{"messages": []}', 'PT400 invalid_request messages', 'at least one message'),
  ('chat-test', '{"messages": "hi"}', 'PT400 invalid_request messages', 'messages is an array'),
  ('chat-test', format('{"messages": %s}', (select jsonb_agg(jsonb_build_object('role', 'user', 'content', 'x')) from generate_series(1, 51))), 'PT400 invalid_request messages', 'at most 50 messages'),
  ('chat-test', format('{"messages": %s}', (select jsonb_agg(jsonb_build_object('role', 'user', 'content', 'x')) from generate_series(1, 50))), 'ok', '50 messages pass'),
  ('chat-test', '{"messages": ["hi"]}', 'PT400 invalid_request messages[0]', 'a message is an object'),
  ('chat-test', '{"messages": [{"role": "tool", "content": "x"}]}', 'PT400 invalid_request messages[0].role', 'role is system, user or assistant'),
  ('chat-test', '{"messages": [{"content": "x"}]}', 'PT400 invalid_request messages[0].role', 'role is required'),
  ('chat-test', '{"messages": [{"role": "user", "content": 5}]}', 'PT400 invalid_request messages[0].content', 'content is a string'),
  ('chat-test', '{"messages": [{"role": "user", "content": "x", "name": "y"}]}', 'PT400 invalid_request messages[0].name', 'no other message keys'),
  ('chat-test', format('{"messages": [{"role": "system", "content": "%s"}, {"role": "user", "content": "%s"}]}', repeat('a', 2000), repeat('b', 2001)), 'PT400 invalid_request messages', 'conversation over max_prompt_length'),
  ('chat-test', '{"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}', 'PT400 invalid_request max_tokens', 'max_tokens at least 1'),
  ('chat-test', '{"messages": [{"role": "user", "content": "x"}], "max_tokens": 4097}', 'PT400 invalid_request max_tokens', 'max_tokens at most max_output_tokens'),
  ('chat-test', '{"messages": [{"role": "user", "content": "x"}], "temperature": 2.1}', 'PT400 invalid_request temperature', 'temperature at most 2'),
  ('chat-test', '{"messages": [{"role": "user", "content": "x"}], "temperature": -1}', 'PT400 invalid_request temperature', 'temperature at least 0'),
  ('chat-test', '{"messages": [{"role": "user", "content": "x"}], "prompt": "x"}', 'PT400 invalid_request prompt', 'prompt is not a chat param');

select plan((select count(*)::integer from cases) + 3);

select tests.as_anon();
select is(
  tests.error_of(format('select creditgate.quote(%L, %L::jsonb)', c.model, c.params)),
  c.expected,
  c.model || ': ' || c.description
)
from cases as c;

-- The app-wide ceiling lowers every model's prompt limit.
select tests.as_owner();
insert into creditgate_private.settings (key, value) values ('max_prompt_length', '10');
select tests.as_anon();
select is(
  tests.error_of($$select creditgate.quote('img-test', '{"prompt": "eleven char"}')$$),
  'PT400 invalid_request prompt',
  'the max_prompt_length setting caps prompts below the model limit'
);
select is(
  tests.error_of($$select creditgate.quote('img-test', '{"prompt": "ten chars!"}')$$),
  'ok',
  'a prompt at the setting''s limit passes'
);
select is(
  tests.error_of($$select creditgate.quote('chat-test', '{"messages": [{"role": "user", "content": "eleven char"}]}')$$),
  'PT400 invalid_request messages',
  'the setting caps chat conversations too'
);

select * from finish();
rollback;
