-- Generation test helpers (loaded into test databases only; never part of the migrations).
--
-- tests.seed_models() -> void
--   Enabled models 'img-test' (image), 'edit-test' (edit), 'video-test' (video),
--   'chat-test' (chat); disabled 'img-off' (image); LoRAs 'lora-a' (fits img-test, price 50)
--   and 'lora-b' (fits edit-test, price 25); every model routed to provider 'local' at
--   'http://127.0.0.1:7860'; LoRA sources 'loras/lora-a.safetensors' etc. Removes every
--   rate limit rule (and counter) so tests opt into limits explicitly. Idempotent.
--
--   Prices (credits) are chosen so costs are easy to compute by hand:
--     img-test   base 10 + 10/MP + 1/step       defaults 512x512, 20 steps  -> 33
--     edit-test  base 20 + 10/MP + 1/step       defaults 512x512, 20 steps  -> 43
--     video-test base 100 + 10/MP + 50/second   defaults 512x512, 4 s       -> 303
--     chat-test  base 1 + 2/1k tokens           defaults max_tokens 500     -> ceil(1 + 2*(ceil(chars/4) + 500)/1000), e.g. 3
--     img-off    same as img-test, disabled
--
-- tests.media_for(p_user_id, p_content_type) -> uuid
--   A succeeded img-test generation owned by p_user_id (charged through the real primitive,
--   so the audit stays clean) with one media row; returns the media id. For edit tests
--   (init_media_id) and save/delete tests.
--
-- tests.error_of(p_sql) -> text
--   Runs p_sql as the current role and describes how it failed:
--   '<SQLSTATE> <message> <DETAIL.field>' (field left out when DETAIL has none), or 'ok'.
--   is(tests.error_of($$...$$), 'PT400 invalid_request width') checks code, message and field.

create schema if not exists tests;
grant usage on schema tests to anon, authenticated, service_role;

create or replace function tests.seed_models() returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into creditgate.models (
    id, kind, name, description, enabled,
    price_base, price_per_megapixel, price_per_step, price_per_second, price_per_1k_tokens,
    max_width, max_height, max_pixels, max_steps, max_duration_seconds, max_output_tokens,
    max_prompt_length, max_loras, defaults, sort_order
  ) values
    ('img-test', 'image', 'Image test', 'Deterministic test image model', true,
     10, 10, 1, 0, 0,
     2048, 2048, 2048 * 2048, 100, null, null,
     1000, 2, '{"width": 512, "height": 512, "steps": 20, "cfg_scale": 7}', 10),
    ('edit-test', 'edit', 'Edit test', 'Deterministic test image-edit model', true,
     20, 10, 1, 0, 0,
     2048, 2048, 2048 * 2048, 100, null, null,
     1000, 2, '{"width": 512, "height": 512, "steps": 20, "cfg_scale": 7, "strength": 0.75}', 20),
    ('video-test', 'video', 'Video test', 'Deterministic test video model', true,
     100, 10, 0, 50, 0,
     1280, 1280, 1280 * 720, null, 10, null,
     1000, 0, '{"width": 512, "height": 512, "duration_seconds": 4, "fps": 8}', 30),
    ('chat-test', 'chat', 'Chat test', 'Deterministic test chat model', true,
     1, 0, 0, 0, 2,
     null, null, null, null, null, 4096,
     4000, 0, '{"max_tokens": 500, "temperature": 0.7}', 40),
    ('img-off', 'image', 'Image off', 'Disabled test image model', false,
     10, 10, 1, 0, 0,
     2048, 2048, 2048 * 2048, 100, null, null,
     1000, 2, '{"width": 512, "height": 512, "steps": 20, "cfg_scale": 7}', 50)
  on conflict (id) do update set
    kind = excluded.kind, name = excluded.name, description = excluded.description,
    enabled = excluded.enabled, price_base = excluded.price_base,
    price_per_megapixel = excluded.price_per_megapixel,
    price_per_step = excluded.price_per_step, price_per_second = excluded.price_per_second,
    price_per_1k_tokens = excluded.price_per_1k_tokens, max_width = excluded.max_width,
    max_height = excluded.max_height, max_pixels = excluded.max_pixels,
    max_steps = excluded.max_steps, max_duration_seconds = excluded.max_duration_seconds,
    max_output_tokens = excluded.max_output_tokens,
    max_prompt_length = excluded.max_prompt_length, max_loras = excluded.max_loras,
    defaults = excluded.defaults, sort_order = excluded.sort_order;

  insert into creditgate_private.model_routes (model_id, provider, provider_model, endpoint, options)
  select m.id, 'local', 'local-' || m.id, 'http://127.0.0.1:7860', '{"timeout_seconds": 30}'
  from creditgate.models as m
  where m.id in ('img-test', 'edit-test', 'video-test', 'chat-test', 'img-off')
  on conflict (model_id) do update set
    provider = excluded.provider, provider_model = excluded.provider_model,
    endpoint = excluded.endpoint, options = excluded.options;

  insert into creditgate.loras (id, name, description, model_ids, price, enabled) values
    ('lora-a', 'LoRA A', 'Test LoRA for img-test', array['img-test'], 50, true),
    ('lora-b', 'LoRA B', 'Test LoRA for edit-test', array['edit-test'], 25, true)
  on conflict (id) do update set
    name = excluded.name, description = excluded.description, model_ids = excluded.model_ids,
    price = excluded.price, enabled = excluded.enabled;

  insert into creditgate_private.lora_sources (lora_id, source) values
    ('lora-a', 'loras/lora-a.safetensors'),
    ('lora-b', 'loras/lora-b.safetensors')
  on conflict (lora_id) do update set source = excluded.source;

  delete from creditgate_private.rate_limit_counters;
  delete from creditgate_private.rate_limit_rules;
end
$$;

create or replace function tests.media_for(
  p_user_id uuid,
  p_content_type text default 'image/png'
) returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_generation_id uuid := gen_random_uuid();
  v_media_id uuid := gen_random_uuid();
begin
  perform creditgate_private.spend_credits(
    p_user_id, 1, 'charge:' || v_generation_id, v_generation_id, 'test media'
  );
  insert into creditgate.generations (
    id, user_id, model_id, kind, status, params, cost, actual_cost, idempotency_key,
    attempts, finished_at
  ) values (
    v_generation_id, p_user_id, 'img-test', 'image', 'succeeded',
    '{"prompt": "test media"}', 1, 1, 'test-media:' || v_generation_id, 1, now()
  );
  insert into creditgate.media (
    id, generation_id, user_id, position, storage_key, content_type, bytes, width, height,
    expires_at
  ) values (
    v_media_id, v_generation_id, p_user_id, 0,
    'media/' || v_generation_id || '/0.png', p_content_type, 1234, 512, 512,
    now() + interval '24 hours'
  );
  return v_media_id;
end
$$;

create or replace function tests.error_of(p_sql text) returns text
language plpgsql
as $$
declare
  v_state text;
  v_message text;
  v_detail text;
  v_field text;
begin
  execute p_sql;
  return 'ok';
exception when others then
  get stacked diagnostics v_state = returned_sqlstate, v_message = message_text, v_detail = pg_exception_detail;
  begin
    v_field := v_detail::jsonb ->> 'field';
  exception when others then
    v_field := null;
  end;
  return v_state || ' ' || v_message || coalesce(' ' || v_field, '');
end
$$;

-- DETAIL of the error p_sql raises, as jsonb (null if it succeeds or DETAIL is not JSON).
create or replace function tests.error_detail(p_sql text) returns jsonb
language plpgsql
as $$
declare
  v_detail text;
begin
  execute p_sql;
  return null;
exception when others then
  get stacked diagnostics v_detail = pg_exception_detail;
  begin
    return v_detail::jsonb;
  exception when others then
    return null;
  end;
end
$$;

grant execute on all functions in schema tests to anon, authenticated, service_role;
