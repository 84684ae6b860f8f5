-- creditgate.quote(model_id text, params jsonb) -> jsonb            anon, authenticated
--   {model_id, kind, cost, breakdown, params}: the price request_generation would charge.
--   Errors: PT400 invalid_request (DETAIL {field, reason}), PT404 not_found (model),
--   PT503 model_unavailable.
--
-- Private helpers shared with request_generation, so a quote and a charge can never disagree:
-- creditgate_private.param_int(p_params, p_field, p_min, p_max) -> bigint       PT400
-- creditgate_private.param_number(p_params, p_field, p_min, p_max) -> numeric   PT400
-- creditgate_private.param_text(p_params, p_field, p_min, p_max, p_trim) -> text PT400
-- creditgate_private.validate_params(p_model, p_params, p_user_id) -> jsonb      PT400
--   Strict: a JSON object, known keys only, exact JSON types, ranges; returns the
--   normalized params (model defaults filled in, numbers in canonical form) that are
--   hashed for idempotency, priced, stored on the generation and sent to the worker.
--   With p_user_id, an edit's init_media_id must be that user's live image.
-- creditgate_private.price_params(p_model, p_params, p_breakdown = true) -> jsonb {cost, breakdown}
--   ceil(base + per_megapixel*MP + per_step*steps + per_second*seconds
--        + per_1k_tokens*tokens/1000 + LoRA prices), at least 1. Monotonic in every input.

create or replace function creditgate_private.param_int(
  p_params jsonb,
  p_field text,
  p_min bigint,
  p_max bigint
) returns bigint
language plpgsql
immutable
set search_path = ''
as $$
declare
  v_value jsonb := p_params -> p_field;
  v_number numeric;
begin
  if v_value is null then
    return null;
  end if;
  if jsonb_typeof(v_value) <> 'number' then
    perform creditgate_private.invalid(p_field, 'must be an integer');
  end if;
  v_number := (v_value #>> '{}')::numeric;
  if v_number <> trunc(v_number) then
    perform creditgate_private.invalid(p_field, 'must be an integer');
  end if;
  if v_number not between p_min and p_max then
    perform creditgate_private.invalid(p_field, format('must be between %s and %s', p_min, p_max));
  end if;
  return v_number::bigint;
end
$$;
comment on function creditgate_private.param_int(jsonb, text, bigint, bigint) is
'A whole-number param within a range (null if absent), else PT400 naming the field.';

create or replace function creditgate_private.param_number(
  p_params jsonb,
  p_field text,
  p_min numeric,
  p_max numeric
) returns numeric
language plpgsql
immutable
set search_path = ''
as $$
declare
  v_value jsonb := p_params -> p_field;
  v_number numeric;
begin
  if v_value is null then
    return null;
  end if;
  if jsonb_typeof(v_value) <> 'number' then
    perform creditgate_private.invalid(p_field, 'must be a number');
  end if;
  v_number := (v_value #>> '{}')::numeric;
  if v_number not between p_min and p_max then
    perform creditgate_private.invalid(p_field, format('must be between %s and %s', p_min, p_max));
  end if;
  -- 7, 7.0 and 7.00 are one request: canonical scale so they hash alike.
  return trim_scale(v_number);
end
$$;
comment on function creditgate_private.param_number(jsonb, text, numeric, numeric) is
'A numeric param within a range in canonical scale (null if absent), else PT400 naming the field.';

create or replace function creditgate_private.param_text(
  p_params jsonb,
  p_field text,
  p_min integer,
  p_max integer,
  p_trim boolean default true
) returns text
language plpgsql
immutable
set search_path = ''
as $$
declare
  v_value jsonb := p_params -> p_field;
  v_text text;
begin
  if v_value is null then
    if p_min > 0 then
      perform creditgate_private.invalid(p_field, 'required');
    end if;
    return null;
  end if;
  if jsonb_typeof(v_value) <> 'string' then
    perform creditgate_private.invalid(p_field, 'must be a string');
  end if;
  v_text := v_value #>> '{}';
  if p_trim then
    v_text := btrim(v_text, E' \t\r\n');
  end if;
  if length(v_text) < p_min then
    perform creditgate_private.invalid(p_field, 'must not be empty');
  end if;
  if length(v_text) > p_max then
    perform creditgate_private.invalid(p_field, format('at most %s characters', p_max));
  end if;
  return v_text;
end
$$;
comment on function creditgate_private.param_text(jsonb, text, integer, integer, boolean) is
'A string param (trimmed) within length limits (null if absent and optional), else PT400.';

create or replace function creditgate_private.validate_params(
  p_model creditgate.models,
  p_params jsonb,
  p_user_id uuid default null
) returns jsonb
language plpgsql
stable
set search_path = ''
as $$
declare
  v_allowed text[];
  v_key text;
  v_params jsonb;
  v_out jsonb;
  v_text_max integer;
  v_setting jsonb;
  v_max_side integer;
  v_width bigint;
  v_height bigint;
  v_media_text text;
  v_media_id uuid;
  v_message jsonb;
  v_index integer := 0;
  v_chars bigint := 0::bigint;
  v_messages jsonb := '[]'::jsonb;
begin
  if p_params is null or jsonb_typeof(p_params) <> 'object' then
    perform creditgate_private.invalid('params', 'must be a JSON object');
  end if;
  v_allowed := case p_model.kind
    when 'image' then array['prompt', 'negative_prompt', 'width', 'height', 'steps', 'seed',
                            'cfg_scale', 'loras']
    when 'edit' then array['prompt', 'negative_prompt', 'init_media_id', 'strength', 'width',
                           'height', 'steps', 'seed', 'cfg_scale', 'loras']
    when 'video' then array['prompt', 'negative_prompt', 'width', 'height', 'duration_seconds',
                            'fps', 'seed']
    when 'chat' then array['messages', 'max_tokens', 'temperature']
  end;
  -- Unknown keys: an operator on the common path, a query only to name the first one.
  if p_params - v_allowed <> '{}'::jsonb then
    select k.key into v_key from jsonb_object_keys(p_params - v_allowed) as k (key)
    order by k.key limit 1;
    perform creditgate_private.invalid(left(v_key, 64), 'unknown key');
  end if;

  -- Built-in defaults, under the model's defaults, under the client's values; then
  -- everything is validated alike, defaults included. A model's defaults never supply the
  -- request's subject (prompt, messages, input image, LoRAs); keys its kind does not know
  -- are never read below (the result is built key by key).
  v_params := case p_model.kind
    when 'chat' then jsonb_build_object(
      'max_tokens', least(512, coalesce(p_model.max_output_tokens, 4096)), 'temperature', 0.7)
    when 'video' then '{"negative_prompt": "", "width": 512, "height": 512, "duration_seconds": 4, "fps": 8}'::jsonb
    when 'edit' then '{"negative_prompt": "", "width": 512, "height": 512, "steps": 20, "cfg_scale": 7, "strength": 0.75, "loras": []}'::jsonb
    else '{"negative_prompt": "", "width": 512, "height": 512, "steps": 20, "cfg_scale": 7, "loras": []}'::jsonb
  end;
  v_params := v_params
    || (p_model.defaults - array['prompt', 'messages', 'init_media_id', 'loras'])
    || p_params;

  v_text_max := p_model.max_prompt_length;
  v_setting := creditgate_private.setting('max_prompt_length');
  if creditgate_private.json_is_int(v_setting, 1, 100000) then
    v_text_max := least(v_text_max, (v_setting #>> '{}')::integer);
  end if;

  if p_model.kind = 'chat' then
    if jsonb_typeof(v_params -> 'messages') is distinct from 'array' then
      perform creditgate_private.invalid('messages', 'required: an array of {role, content}');
    end if;
    if jsonb_array_length(v_params -> 'messages') not between 1 and 50 then
      perform creditgate_private.invalid('messages', 'between 1 and 50 messages');
    end if;
    for v_message in select e.value from jsonb_array_elements(v_params -> 'messages') as e loop
      if jsonb_typeof(v_message) <> 'object' then
        perform creditgate_private.invalid(format('messages[%s]', v_index), 'must be an object {role, content}');
      end if;
      for v_key in select k.key from jsonb_object_keys(v_message) as k (key) order by k.key loop
        if v_key not in ('role', 'content') then
          perform creditgate_private.invalid(format('messages[%s].%s', v_index, left(v_key, 64)), 'unknown key');
        end if;
      end loop;
      if jsonb_typeof(v_message -> 'role') is distinct from 'string'
         or v_message ->> 'role' not in ('system', 'user', 'assistant') then
        perform creditgate_private.invalid(format('messages[%s].role', v_index), 'one of system, user, assistant');
      end if;
      if jsonb_typeof(v_message -> 'content') is distinct from 'string' then
        perform creditgate_private.invalid(format('messages[%s].content', v_index), 'must be a string');
      end if;
      v_chars := v_chars + length(v_message ->> 'content');
      if v_chars > v_text_max then
        perform creditgate_private.invalid(
          'messages', format('at most %s characters of content in all', v_text_max)
        );
      end if;
      v_messages := v_messages || jsonb_build_array(v_message);
      v_index := v_index + 1;
    end loop;
    if not exists (
      select 1 from jsonb_array_elements(v_messages) as e where length(trim(e.value ->> 'content')) > 0
    ) then
      perform creditgate_private.invalid('messages', 'at least one message needs non-blank content');
    end if;
    return jsonb_build_object(
      'messages', v_messages,
      'max_tokens', creditgate_private.param_int(v_params, 'max_tokens', 1, coalesce(p_model.max_output_tokens, 4096)),
      'temperature', creditgate_private.param_number(v_params, 'temperature', 0, 2)
    );
  end if;

  -- image, edit, video
  v_out := jsonb_build_object(
    'prompt', creditgate_private.param_text(v_params, 'prompt', 1, v_text_max),
    'negative_prompt', creditgate_private.param_text(v_params, 'negative_prompt', 0, v_text_max)
  );

  v_max_side := case when p_model.kind = 'video' then 1920 else 2048 end;
  v_width := creditgate_private.param_int(v_params, 'width', 64, coalesce(p_model.max_width, v_max_side));
  if v_width % 8 <> 0 then
    perform creditgate_private.invalid('width', 'must be a multiple of 8');
  end if;
  v_height := creditgate_private.param_int(v_params, 'height', 64, coalesce(p_model.max_height, v_max_side));
  if v_height % 8 <> 0 then
    perform creditgate_private.invalid('height', 'must be a multiple of 8');
  end if;
  if p_model.max_pixels is not null and v_width * v_height > p_model.max_pixels then
    perform creditgate_private.invalid(
      'height', format('width*height must be at most %s pixels', p_model.max_pixels)
    );
  end if;
  v_out := v_out || jsonb_build_object('width', v_width, 'height', v_height);
  if v_params ? 'seed' then
    -- No seed means the worker picks one; a random default here would break idempotency.
    v_out := v_out || jsonb_build_object('seed', creditgate_private.param_int(v_params, 'seed', 0, 4294967295));
  end if;

  if p_model.kind = 'video' then
    return v_out || jsonb_build_object(
      'duration_seconds', creditgate_private.param_int(
        v_params, 'duration_seconds', 1, coalesce(p_model.max_duration_seconds, 10)),
      'fps', creditgate_private.param_int(v_params, 'fps', 1, 30)
    );
  end if;

  v_out := v_out || jsonb_build_object(
    'steps', creditgate_private.param_int(v_params, 'steps', 1, coalesce(p_model.max_steps, 150)),
    'cfg_scale', creditgate_private.param_number(v_params, 'cfg_scale', 1, 30),
    'loras', creditgate_private.check_loras(p_model, v_params -> 'loras')
  );

  if p_model.kind = 'edit' then
    v_media_text := creditgate_private.param_text(v_params, 'init_media_id', 1, 36, false);
    if v_media_text !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then
      perform creditgate_private.invalid('init_media_id', 'must be a uuid');
    end if;
    v_media_id := v_media_text::uuid;
    if p_user_id is not null and not exists (
      select 1 from creditgate.media as m
      where m.id = v_media_id
        and m.user_id = p_user_id
        and m.deleted_at is null
        and m.purged_at is null
        and (m.expires_at is null or m.expires_at > now())
        and m.content_type like 'image/%'
    ) then
      perform creditgate_private.invalid('init_media_id', 'not one of your images');
    end if;
    v_out := v_out || jsonb_build_object(
      'init_media_id', v_media_id,
      'strength', creditgate_private.param_number(v_params, 'strength', 0, 1)
    );
  end if;
  return v_out;
end
$$;
comment on function creditgate_private.validate_params(creditgate.models, jsonb, uuid) is
'Strict per-kind params validation shared by quote and request_generation; returns normalized params.';

drop function if exists creditgate_private.price_params(creditgate.models, jsonb);
create or replace function creditgate_private.price_params(
  p_model creditgate.models,
  p_params jsonb,
  p_breakdown boolean default true
) returns jsonb
language plpgsql
stable
set search_path = ''
as $$
declare
  v_megapixels numeric := 0::numeric;
  v_steps bigint := 0::bigint;
  v_seconds bigint := 0::bigint;
  v_prompt_tokens bigint := 0::bigint;
  v_output_tokens bigint := 0::bigint;
  v_loras jsonb := '[]'::jsonb;
  v_lora_cost bigint := 0::bigint;
  v_subtotal numeric;
  v_cost bigint;
begin
  if p_params ? 'width' then
    v_megapixels := (p_params ->> 'width')::numeric * (p_params ->> 'height')::numeric / 1000000;
  end if;
  v_steps := coalesce((p_params ->> 'steps')::bigint, 0);
  v_seconds := coalesce((p_params ->> 'duration_seconds')::bigint, 0);
  if p_model.kind = 'chat' then
    -- About four characters a token; the output is priced at its ceiling (max_tokens) and
    -- the unused part refunded at settle time.
    select ceil(coalesce(sum(length(e.value ->> 'content')), 0) / 4.0)::bigint into v_prompt_tokens
    from jsonb_array_elements(p_params -> 'messages') as e;
    v_output_tokens := (p_params ->> 'max_tokens')::bigint;
  end if;
  if jsonb_typeof(p_params -> 'loras') = 'array' and p_params -> 'loras' <> '[]'::jsonb then
    select
      coalesce(jsonb_agg(jsonb_build_object('id', l.id, 'price', l.price) order by r.ord), '[]'::jsonb),
      coalesce(sum(l.price), 0)::bigint
    into v_loras, v_lora_cost
    from jsonb_array_elements(p_params -> 'loras') with ordinality as r (value, ord)
    join creditgate.loras as l on l.id = r.value ->> 'id';
  end if;

  v_subtotal := p_model.price_base
    + p_model.price_per_megapixel * v_megapixels
    + p_model.price_per_step * v_steps
    + p_model.price_per_second * v_seconds
    + p_model.price_per_1k_tokens * (v_prompt_tokens + v_output_tokens) / 1000
    + v_lora_cost;
  v_cost := greatest(1, ceil(v_subtotal))::bigint;
  if not p_breakdown then
    return jsonb_build_object('cost', v_cost);  -- the charge path needs no breakdown
  end if;
  return jsonb_build_object(
    'cost', v_cost,
    'breakdown', jsonb_build_object(
      'base', p_model.price_base,
      'megapixels', trim_scale(round(v_megapixels, 6)),
      'megapixel_cost', trim_scale(round(p_model.price_per_megapixel * v_megapixels, 4)),
      'steps', v_steps,
      'step_cost', trim_scale(round(p_model.price_per_step * v_steps, 4)),
      'seconds', v_seconds,
      'second_cost', trim_scale(round(p_model.price_per_second * v_seconds, 4)),
      'prompt_tokens', v_prompt_tokens,
      'output_tokens', v_output_tokens,
      'token_cost', trim_scale(round(p_model.price_per_1k_tokens * (v_prompt_tokens + v_output_tokens) / 1000, 4)),
      'loras', v_loras,
      'lora_cost', v_lora_cost,
      'subtotal', trim_scale(round(v_subtotal, 4)),
      'total', v_cost
    )
  );
end
$$;
comment on function creditgate_private.price_params(creditgate.models, jsonb, boolean) is
'Integer credit price of normalized params (rounded up, at least 1) with its breakdown.';

create or replace function creditgate.quote(model_id text, params jsonb)
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_model creditgate.models := creditgate_private.find_model(quote.model_id);
  v_params jsonb;
  v_price jsonb;
begin
  -- auth.uid() is null for anon: an edit's init_media_id is then only checked for shape.
  v_params := creditgate_private.validate_params(v_model, quote.params, auth.uid());
  v_price := creditgate_private.price_params(v_model, v_params);
  return jsonb_build_object(
    'model_id', v_model.id,
    'kind', v_model.kind,
    'cost', v_price -> 'cost',
    'breakdown', v_price -> 'breakdown',
    'params', v_params
  );
end
$$;
comment on function creditgate.quote(text, jsonb) is
'Price of a generation request with its breakdown and normalized params; validates exactly as request_generation.';

revoke all on function creditgate_private.param_int(jsonb, text, bigint, bigint) from public, anon, authenticated;
revoke all on function creditgate_private.param_number(jsonb, text, numeric, numeric) from public, anon, authenticated;
revoke all on function creditgate_private.param_text(jsonb, text, integer, integer, boolean) from public, anon, authenticated;
revoke all on function creditgate_private.validate_params(creditgate.models, jsonb, uuid) from public, anon, authenticated;
revoke all on function creditgate_private.price_params(creditgate.models, jsonb, boolean) from public, anon, authenticated;
revoke all on function creditgate.quote(text, jsonb) from public, anon, authenticated;
grant execute on function creditgate.quote(text, jsonb) to anon, authenticated;
