-- creditgate_private.find_model(p_model_id) -> creditgate.models
--   PT400 invalid_request (field model_id), PT404 not_found, PT503 model_unavailable
-- creditgate_private.check_loras(p_model, p_loras) -> jsonb  normalized [{id, weight}]
--   PT400 invalid_request naming loras, loras[i], loras[i].id or loras[i].weight
--
-- The public registry as the request path sees it. Routes and LoRA sources are never read
-- here: nothing a client can call learns an endpoint, provider model or file path, and an
-- unknown, disabled or ill-fitting LoRA gets one and the same answer.

create or replace function creditgate_private.find_model(p_model_id text)
returns creditgate.models
language plpgsql
stable
set search_path = ''
as $$
declare
  v_model creditgate.models;
begin
  if p_model_id is null then
    perform creditgate_private.invalid('model_id', 'required');
  end if;
  select m.* into v_model from creditgate.models as m where m.id = p_model_id;
  if v_model.id is null then
    perform creditgate_private.raise_error('not_found', jsonb_build_object('object', 'model'));
  end if;
  if not v_model.enabled then
    perform creditgate_private.raise_error(
      'model_unavailable', jsonb_build_object('model_id', v_model.id)
    );
  end if;
  return v_model;
end
$$;
comment on function creditgate_private.find_model(text) is
'The enabled model a request names: PT404 if unknown, PT503 model_unavailable if switched off.';

create or replace function creditgate_private.check_loras(p_model creditgate.models, p_loras jsonb)
returns jsonb
language plpgsql
stable
set search_path = ''
as $$
declare
  v_out jsonb := '[]'::jsonb;
  v_item jsonb;
  v_index integer := 0;
  v_field text;
  v_key text;
  v_id text;
  v_weight numeric;
  v_seen text[] := '{}'::text[];
begin
  if p_loras is null or jsonb_typeof(p_loras) <> 'array' then
    perform creditgate_private.invalid('loras', 'must be an array of {id, weight}');
  end if;
  if jsonb_array_length(p_loras) > p_model.max_loras then
    perform creditgate_private.invalid(
      'loras', format('at most %s LoRAs for this model', p_model.max_loras)
    );
  end if;
  if p_loras = '[]'::jsonb then
    return v_out;  -- the common case: no query
  end if;
  for v_item in select e.value from jsonb_array_elements(p_loras) as e loop
    v_field := format('loras[%s]', v_index);
    if jsonb_typeof(v_item) <> 'object' then
      perform creditgate_private.invalid(v_field, 'must be an object {id, weight}');
    end if;
    for v_key in select k.key from jsonb_object_keys(v_item) as k (key) loop
      if v_key not in ('id', 'weight') then
        perform creditgate_private.invalid(v_field || '.' || left(v_key, 64), 'unknown key');
      end if;
    end loop;
    if jsonb_typeof(v_item -> 'id') is distinct from 'string' then
      perform creditgate_private.invalid(v_field || '.id', 'required string');
    end if;
    v_id := v_item ->> 'id';
    -- The registry's own id pattern: nothing path-, URL- or escape-like ever gets further.
    if v_id !~ '^[a-z0-9][a-z0-9_-]{0,63}$' then
      perform creditgate_private.invalid(v_field || '.id', 'not a LoRA id');
    end if;
    if v_id = any (v_seen) then
      perform creditgate_private.invalid(v_field || '.id', 'duplicate LoRA');
    end if;
    if not exists (
      select 1 from creditgate.loras as l
      where l.id = v_id and l.enabled and p_model.id = any (l.model_ids)
    ) then
      perform creditgate_private.invalid(v_field || '.id', 'unknown LoRA for this model');
    end if;
    v_weight := 1;
    if v_item ? 'weight' then
      if jsonb_typeof(v_item -> 'weight') <> 'number' then
        perform creditgate_private.invalid(v_field || '.weight', 'must be a number');
      end if;
      v_weight := (v_item ->> 'weight')::numeric;
      if v_weight not between -2 and 2 then
        perform creditgate_private.invalid(v_field || '.weight', 'must be between -2 and 2');
      end if;
    end if;
    v_seen := v_seen || v_id;
    v_out := v_out || jsonb_build_array(
      jsonb_build_object('id', v_id, 'weight', trim_scale(v_weight))
    );
    v_index := v_index + 1;
  end loop;
  return v_out;
end
$$;
comment on function creditgate_private.check_loras(creditgate.models, jsonb) is
'Validates requested LoRAs against the public registry; unknown, disabled and ill-fitting look alike.';

revoke all on function creditgate_private.find_model(text) from public, anon, authenticated;
revoke all on function creditgate_private.check_loras(creditgate.models, jsonb) from public, anon, authenticated;
