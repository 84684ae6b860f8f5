-- The worker side of a generation's life: claim, heartbeat, settle, reap. service_role only.
--
-- creditgate.service_claim_generations(worker_id, max_jobs = 1, lease_seconds = null) -> jsonb
--   Leases up to max_jobs queued generations, oldest first (FOR UPDATE SKIP LOCKED, so
--   concurrent workers never get the same job). Each job carries its server-only route,
--   resolved LoRA sources, the edit input and a fresh lease token.
--   lease_seconds null (not given): setting lease_seconds (default 120).
--   Errors: PT400 invalid_request (worker_id 1-100 chars, max_jobs 1-100, lease_seconds from 5
--   to the max_lease_seconds setting, default 3600).
-- creditgate.service_heartbeat(generation_id, worker_id, lease_token, lease_seconds = null)
--   -> jsonb {generation_id, lease_expires_at}
--   Extends a live lease. Errors: PT400, PT404 not_found, PT409 lease_lost.
-- creditgate.service_settle_generation(generation_id, worker_id, lease_token, outcome) -> jsonb
--   {generation_id, status, refunded, actual_cost, media: [{media_id, storage_key}], requeued}
--   Records the attempt and applies its outcome: succeeded (media, output, refund of
--   cost - actual_cost), failed + retryable with attempts left (back to queued, no refund),
--   failed (full refund). A succeeded outcome with no output is failed/empty_output.
--   actual_cost defaults to the cost; for chat without one, output.usage.completion_tokens
--   prices the turn in SQL (chat_actual_cost) and the unused part is refunded.
--   Idempotent per lease: a replay under the same lease returns the stored result.
--   A job of a deleted account (creditgate_private.deleted_users) settles too, keeping
--   nothing personal: no media rows (its files are queued for purge), no output, no error
--   text; a retryable failure is final (its params are erased); chat usage is not repriced
--   (the priced params are erased: actual_cost or the charge); what is refunded is
--   forfeited at once (forfeit:refund:<generation_id>).
--   Errors: PT400 invalid_request (DETAIL names the outcome field), PT404, PT409 lease_lost.
-- creditgate.service_reap_expired_leases(now = now()) -> jsonb {requeued, failed, refunded}
--   Jobs whose worker stopped renewing its lease: re-queued while attempts are left, else
--   failed and refunded in full. A deleted account's job is never re-queued: failed,
--   refunded, and the refund forfeited. Errors: PT400.
--
-- Locking: money-moving paths (settle, reap) lock the user's balance row first
-- (lock_balance), then the generation row; the reaper locks users in user_id order. Claim
-- and heartbeat touch only generation rows and never wait on a balance.

create or replace function creditgate_private.check_lease_args(
  p_generation_id uuid,
  p_worker_id text,
  p_lease_token text
) returns uuid
language plpgsql
immutable
set search_path = ''
as $$
begin
  if p_generation_id is null then
    perform creditgate_private.invalid('generation_id', 'required');
  end if;
  perform creditgate_private.check_worker_id(p_worker_id);
  if p_lease_token is null
     or p_lease_token !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then
    perform creditgate_private.invalid('lease_token', 'the lease token service_claim_generations returned');
  end if;
  return p_lease_token::uuid;
end
$$;
comment on function creditgate_private.check_lease_args(uuid, text, text) is
'Validates the (generation, worker, lease token) triple of heartbeat and settle; PT400.';

create or replace function creditgate_private.check_worker_id(p_worker_id text)
returns void
language plpgsql
immutable
set search_path = ''
as $$
begin
  if p_worker_id is null or length(p_worker_id) not between 1 and 100 or p_worker_id ~ '[[:cntrl:]]' then
    perform creditgate_private.invalid('worker_id', '1-100 characters, no control characters');
  end if;
end
$$;
comment on function creditgate_private.check_worker_id(text) is
'Worker ids name the lease holder in logs and provider_calls: 1-100 printable characters.';

create or replace function creditgate_private.default_lease_seconds()
returns integer
language plpgsql
stable
set search_path = ''
as $$
declare
  v_value jsonb := creditgate_private.setting('lease_seconds');
begin
  if creditgate_private.json_is_int(v_value, 5, 86400) then
    return (v_value #>> '{}')::integer;
  end if;
  return 120;
end
$$;
comment on function creditgate_private.default_lease_seconds() is
'The lease a claim or heartbeat gets when the worker names none: setting lease_seconds (default 120).';

create or replace function creditgate_private.check_lease_seconds(p_lease_seconds integer)
returns void
language plpgsql
stable
set search_path = ''
as $$
declare
  v_max jsonb := creditgate_private.setting('max_lease_seconds');
  v_max_seconds integer := 3600;
begin
  if creditgate_private.json_is_int(v_max, 5, 86400) then
    v_max_seconds := (v_max #>> '{}')::integer;
  end if;
  if p_lease_seconds is null or p_lease_seconds not between 5 and v_max_seconds then
    perform creditgate_private.invalid('lease_seconds', format('between 5 and %s', v_max_seconds));
  end if;
end
$$;
comment on function creditgate_private.check_lease_seconds(integer) is
'Leases last 5 s to max_lease_seconds (default 1 h): long enough to heartbeat, short enough to recover a dead worker.';

-- What a worker needs to run one claimed generation. Server-only: routes, LoRA sources and
-- storage keys never reach a client response.
create or replace function creditgate_private.job_json(p_generation creditgate.generations)
returns jsonb
language sql
stable
set search_path = ''
as $$
  select jsonb_build_object(
    'generation_id', p_generation.id,
    'user_id', p_generation.user_id,
    'kind', p_generation.kind,
    'model_id', p_generation.model_id,
    'params', p_generation.params,
    'attempt', p_generation.attempts,
    'max_attempts', p_generation.max_attempts,
    'lease_token', l.lease_token,
    'lease_expires_at', l.lease_expires_at,
    'cost', p_generation.cost,
    'route', (
      select jsonb_build_object(
        'provider', r.provider,
        'provider_model', r.provider_model,
        'endpoint', r.endpoint,
        'options', r.options
      )
      from creditgate_private.model_routes as r
      where r.model_id = p_generation.model_id
    ),
    -- params.loras was validated at request time: [{id, weight}] (a bare id means weight 1).
    'loras', coalesce((
      select jsonb_agg(
        jsonb_build_object('id', l.id, 'weight', l.weight, 'source', s.source) order by l.n
      )
      from (
        select
          case jsonb_typeof(e.item) when 'string' then e.item #>> '{}' else e.item ->> 'id' end as id,
          case jsonb_typeof(e.item -> 'weight') when 'number' then e.item -> 'weight' else '1'::jsonb end
            as weight,
          e.n
        from jsonb_array_elements(
          case jsonb_typeof(p_generation.params -> 'loras')
            when 'array' then p_generation.params -> 'loras'
            else '[]'::jsonb
          end
        ) with ordinality as e (item, n)
      ) as l
      left join creditgate_private.lora_sources as s on s.lora_id = l.id
    ), '[]'::jsonb),
    'init_media', case when p_generation.kind = 'edit' then (
      select jsonb_build_object(
        'media_id', m.id, 'storage_key', m.storage_key, 'content_type', m.content_type
      )
      from creditgate.media as m
      where p_generation.params ->> 'init_media_id'
          ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
        and m.id = (p_generation.params ->> 'init_media_id')::uuid
        and m.user_id = p_generation.user_id
        and m.purged_at is null
    ) end
  )
  from creditgate_private.generation_leases as l
  where l.generation_id = p_generation.id;
$$;
comment on function creditgate_private.job_json(creditgate.generations) is
'A claimed job for the worker: params, lease, route, resolved LoRA sources, edit input media.';

create or replace function creditgate.service_claim_generations(
  worker_id text,
  max_jobs integer default 1,
  lease_seconds integer default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_ids uuid[];
  v_lease_seconds integer := coalesce(
    service_claim_generations.lease_seconds, creditgate_private.default_lease_seconds()
  );
begin
  perform creditgate_private.check_worker_id(service_claim_generations.worker_id);
  if service_claim_generations.max_jobs is null
     or service_claim_generations.max_jobs not between 1 and 100 then
    perform creditgate_private.invalid('max_jobs', 'between 1 and 100');
  end if;
  perform creditgate_private.check_lease_seconds(v_lease_seconds);

  with picked as (
    select g.id
    from creditgate.generations as g
    where g.status = 'queued'
    order by g.created_at, g.id
    limit service_claim_generations.max_jobs
    for update skip locked
  ),
  claimed as (
    update creditgate.generations as g
    set status = 'running',
      attempts = g.attempts + 1,
      started_at = now(),
      updated_at = now()
    from picked as p
    where g.id = p.id
    returning g.id
  ),
  -- One lease row per generation, reused by each attempt (a replayed settle of an earlier
  -- attempt still finds its result: settled_lease_token is kept).
  leased as (
    insert into creditgate_private.generation_leases as l (
      generation_id, lease_owner, lease_token, lease_expires_at
    )
    select
      c.id,
      service_claim_generations.worker_id,
      gen_random_uuid(),
      now() + make_interval(secs => v_lease_seconds)
    from claimed as c
    on conflict (generation_id) do update
      set lease_owner = excluded.lease_owner,
        lease_token = excluded.lease_token,
        lease_expires_at = excluded.lease_expires_at
    returning l.generation_id
  )
  select array_agg(l.generation_id) into v_ids from leased as l;

  return coalesce((
    select jsonb_agg(creditgate_private.job_json(g) order by g.created_at, g.id)
    from creditgate.generations as g
    where g.id = any(v_ids)
  ), '[]'::jsonb);
end
$$;
comment on function creditgate.service_claim_generations(text, integer, integer) is
'Leases up to max_jobs queued generations (oldest first, SKIP LOCKED) with route and lease token.';
revoke all on function creditgate.service_claim_generations(text, integer, integer) from public, anon, authenticated;
grant execute on function creditgate.service_claim_generations(text, integer, integer) to service_role;

create or replace function creditgate.service_heartbeat(
  generation_id uuid,
  worker_id text,
  lease_token text,
  lease_seconds integer default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_token uuid;
  v_generation creditgate.generations;
  v_lease creditgate_private.generation_leases;
  v_expires_at timestamptz;
  v_lease_seconds integer := coalesce(
    service_heartbeat.lease_seconds, creditgate_private.default_lease_seconds()
  );
begin
  v_token := creditgate_private.check_lease_args(
    service_heartbeat.generation_id, service_heartbeat.worker_id, service_heartbeat.lease_token
  );
  perform creditgate_private.check_lease_seconds(v_lease_seconds);

  -- The generation row's lock guards its lease row (every writer of a lease holds it).
  select g.* into v_generation
  from creditgate.generations as g
  where g.id = service_heartbeat.generation_id
  for update;
  if not found then
    perform creditgate_private.raise_error('not_found', jsonb_build_object('object', 'generation'));
  end if;
  select l.* into v_lease
  from creditgate_private.generation_leases as l
  where l.generation_id = v_generation.id;
  -- An expired lease is lost even before the reaper runs: the job may be re-queued any time.
  if v_generation.status <> 'running'
     or v_lease.lease_owner is distinct from service_heartbeat.worker_id
     or v_lease.lease_token is distinct from v_token
     or v_lease.lease_expires_at <= now() then
    perform creditgate_private.raise_error(
      'lease_lost',
      jsonb_build_object('generation_id', v_generation.id, 'status', v_generation.status)
    );
  end if;

  update creditgate_private.generation_leases as l
  set lease_expires_at = now() + make_interval(secs => v_lease_seconds)
  where l.generation_id = v_generation.id
  returning l.lease_expires_at into v_expires_at;
  return jsonb_build_object('generation_id', v_generation.id, 'lease_expires_at', v_expires_at);
end
$$;
comment on function creditgate.service_heartbeat(uuid, text, text, integer) is
'Extends the caller''s live lease on a running generation; PT409 lease_lost once it is not theirs.';
revoke all on function creditgate.service_heartbeat(uuid, text, text, integer) from public, anon, authenticated;
grant execute on function creditgate.service_heartbeat(uuid, text, text, integer) to service_role;

-- Outcome validation helpers: each names the offending field in PT400's DETAIL.
create or replace function creditgate_private.outcome_integer(
  p_value jsonb,
  p_field text,
  p_min bigint,
  p_max bigint
) returns bigint
language plpgsql
immutable
set search_path = ''
as $$
begin
  if p_value is null or jsonb_typeof(p_value) = 'null' then
    return null;
  end if;
  -- The same rules as request params (one implementation, one set of messages).
  return creditgate_private.param_int(jsonb_build_object(p_field, p_value), p_field, p_min, p_max);
end
$$;
comment on function creditgate_private.outcome_integer(jsonb, text, bigint, bigint) is
'A JSON integer within bounds (null when absent), else PT400 naming the field.';

create or replace function creditgate_private.outcome_text(
  p_value jsonb,
  p_field text,
  p_max_length integer
) returns text
language plpgsql
immutable
set search_path = ''
as $$
begin
  if p_value is null or jsonb_typeof(p_value) = 'null' then
    return null;
  end if;
  return creditgate_private.param_text(
    jsonb_build_object(p_field, p_value), p_field, 1, p_max_length, false
  );
end
$$;
comment on function creditgate_private.outcome_text(jsonb, text, integer) is
'A non-empty JSON string up to a length (null when absent), else PT400 naming the field.';

create or replace function creditgate_private.outcome_object(
  p_value jsonb,
  p_field text,
  p_keys text[]
) returns jsonb
language plpgsql
immutable
set search_path = ''
as $$
declare
  v_key text;
begin
  if p_value is null or jsonb_typeof(p_value) = 'null' then
    return null;
  end if;
  if jsonb_typeof(p_value) <> 'object' then
    perform creditgate_private.invalid(p_field, 'must be a JSON object');
  end if;
  if p_keys is not null then
    select k into v_key from jsonb_object_keys(p_value) as k where k <> all(p_keys) order by k limit 1;
    if v_key is not null then
      perform creditgate_private.invalid(p_field || '.' || v_key, 'unknown field');
    end if;
  end if;
  return p_value;
end
$$;
comment on function creditgate_private.outcome_object(jsonb, text, text[]) is
'A JSON object with only the listed keys (any keys when null; null when absent), else PT400.';

-- The strict reading of a settle outcome for one generation, normalized:
-- {status, retryable, actual_cost, media: [...], output, provider: {name, http_status,
-- latency_ms}, error: {code, message}}. A succeeded outcome without output comes back as
-- failed / not retryable / empty_output. The input's error.detail (string) is checked and
-- left out: only provider_calls keeps it.
create or replace function creditgate_private.settle_outcome(
  p_generation creditgate.generations,
  p_outcome jsonb
) returns jsonb
language plpgsql
stable
set search_path = ''
as $$
declare
  v_outcome jsonb;
  v_status text;
  v_retryable boolean := false;
  v_actual_cost bigint;
  v_media jsonb := '[]'::jsonb;
  v_media_in jsonb;
  v_item jsonb;
  v_index integer := 0;
  v_field text;
  v_key_pattern text;
  v_storage_key text;
  v_content_type text;
  v_duration numeric;
  v_output jsonb;
  v_provider jsonb;
  v_error jsonb;
  v_error_code text;
  v_error_message text;
  v_text text;
begin
  v_outcome := creditgate_private.outcome_object(
    p_outcome, 'outcome',
    array['status', 'retryable', 'actual_cost', 'media', 'output', 'provider', 'error']
  );
  if v_outcome is null then
    perform creditgate_private.invalid('outcome', 'required');
  end if;

  v_status := v_outcome ->> 'status';
  if jsonb_typeof(v_outcome -> 'status') is distinct from 'string'
     or v_status not in ('succeeded', 'failed') then
    perform creditgate_private.invalid('outcome.status', 'succeeded or failed');
  end if;

  if jsonb_typeof(v_outcome -> 'retryable') = 'boolean' then
    v_retryable := (v_outcome ->> 'retryable')::boolean;
  elsif coalesce(jsonb_typeof(v_outcome -> 'retryable'), 'null') <> 'null' then
    perform creditgate_private.invalid('outcome.retryable', 'must be a boolean');
  end if;
  if v_retryable and v_status = 'succeeded' then
    perform creditgate_private.invalid('outcome.retryable', 'only for a failed outcome');
  end if;

  v_actual_cost := creditgate_private.outcome_integer(
    v_outcome -> 'actual_cost', 'outcome.actual_cost', 0, p_generation.cost
  );
  if v_actual_cost is not null and v_status <> 'succeeded' then
    perform creditgate_private.invalid('outcome.actual_cost', 'only for a succeeded outcome');
  end if;

  -- Media: files the worker already uploaded under media/<generation_id>/. Absent and
  -- JSON null both mean none (as for every other optional field).
  if coalesce(jsonb_typeof(v_outcome -> 'media'), 'null') not in ('array', 'null') then
    perform creditgate_private.invalid('outcome.media', 'must be an array');
  end if;
  v_media_in := case jsonb_typeof(v_outcome -> 'media') when 'array' then v_outcome -> 'media' else '[]'::jsonb end;
  if jsonb_array_length(v_media_in) > 0 then
    if v_status <> 'succeeded' then
      perform creditgate_private.invalid('outcome.media', 'only for a succeeded outcome');
    end if;
    if p_generation.kind = 'chat' then
      perform creditgate_private.invalid('outcome.media', 'chat generations produce no media');
    end if;
    if jsonb_array_length(v_media_in) > 16 then
      perform creditgate_private.invalid('outcome.media', 'at most 16 items');
    end if;
  end if;
  -- As media_storage_key_check, and the file name may not start with a dot ('..', '.env').
  v_key_pattern := '^media/' || p_generation.id::text || '/[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}$';
  for v_item in select e from jsonb_array_elements(v_media_in) as e loop
    v_field := format('outcome.media[%s]', v_index);
    perform creditgate_private.outcome_object(
      v_item, v_field,
      array['storage_key', 'content_type', 'bytes', 'width', 'height', 'duration_seconds']
    );
    if jsonb_typeof(v_item) is distinct from 'object' then
      perform creditgate_private.invalid(v_field, 'must be a JSON object');
    end if;
    v_storage_key := creditgate_private.outcome_text(v_item -> 'storage_key', v_field || '.storage_key', 200);
    if v_storage_key is null or v_storage_key !~ v_key_pattern then
      perform creditgate_private.invalid(
        v_field || '.storage_key', 'media/<generation_id>/<file name: [A-Za-z0-9._-], not starting with a dot>'
      );
    end if;
    v_content_type := creditgate_private.outcome_text(v_item -> 'content_type', v_field || '.content_type', 100);
    if v_content_type is null or v_content_type !~ '^[a-z]+/[a-z0-9][a-z0-9.+-]*$' then
      perform creditgate_private.invalid(v_field || '.content_type', 'a MIME type such as image/png');
    end if;
    if creditgate_private.outcome_integer(v_item -> 'bytes', v_field || '.bytes', 1, 1099511627776) is null then
      perform creditgate_private.invalid(v_field || '.bytes', 'required');
    end if;
    perform creditgate_private.outcome_integer(v_item -> 'width', v_field || '.width', 1, 65535);
    perform creditgate_private.outcome_integer(v_item -> 'height', v_field || '.height', 1, 65535);
    if coalesce(jsonb_typeof(v_item -> 'duration_seconds'), 'null') <> 'null' then
      v_duration := case jsonb_typeof(v_item -> 'duration_seconds')
        when 'number' then (v_item ->> 'duration_seconds')::numeric
      end;
      if v_duration is null or v_duration not between 0 and 86400 then
        perform creditgate_private.invalid(v_field || '.duration_seconds', 'a number from 0 to 86400');
      end if;
    end if;
    v_media := v_media || jsonb_build_array(v_item);
    v_index := v_index + 1;
  end loop;
  if (select count(distinct e ->> 'storage_key') from jsonb_array_elements(v_media) as e)
     <> jsonb_array_length(v_media) then
    perform creditgate_private.invalid('outcome.media', 'each storage_key once');
  end if;

  v_output := creditgate_private.outcome_object(v_outcome -> 'output', 'outcome.output', null);
  if v_output is not null and length(v_output::text) > 1000000 then
    perform creditgate_private.invalid('outcome.output', 'at most 1 MB of JSON');
  end if;
  -- Chat usage prices the turn when the worker sends no actual_cost (see chat_actual_cost).
  if p_generation.kind = 'chat' and v_output ? 'usage' then
    perform creditgate_private.outcome_object(v_output -> 'usage', 'outcome.output.usage', null);
    perform creditgate_private.outcome_integer(
      v_output #> '{usage,completion_tokens}', 'outcome.output.usage.completion_tokens', 0, 1000000000
    );
  end if;

  v_provider := coalesce(creditgate_private.outcome_object(
    v_outcome -> 'provider', 'outcome.provider', array['name', 'http_status', 'latency_ms']
  ), '{}'::jsonb);
  v_provider := jsonb_build_object(
    'name', creditgate_private.outcome_text(v_provider -> 'name', 'outcome.provider.name', 50),
    'http_status', creditgate_private.outcome_integer(
      v_provider -> 'http_status', 'outcome.provider.http_status', 100, 599
    ),
    'latency_ms', creditgate_private.outcome_integer(
      v_provider -> 'latency_ms', 'outcome.provider.latency_ms', 0, 86400000
    )
  );

  -- error.detail: the provider's own text, redacted by the worker; provider_calls keeps
  -- it (service_settle_generation), the normalized outcome (and so the generation) does not.
  v_error := creditgate_private.outcome_object(
    v_outcome -> 'error', 'outcome.error', array['code', 'message', 'detail']
  );
  if coalesce(jsonb_typeof(v_error -> 'detail'), 'null') not in ('null', 'string') then
    perform creditgate_private.invalid('outcome.error.detail', 'must be a string');
  end if;
  if v_error is not null then
    if v_status = 'succeeded' then
      perform creditgate_private.invalid('outcome.error', 'only for a failed outcome');
    end if;
    v_error_code := creditgate_private.outcome_text(v_error -> 'code', 'outcome.error.code', 100);
    if jsonb_typeof(v_error -> 'message') = 'string' then
      v_error_message := left(v_error ->> 'message', 2000);
    elsif coalesce(jsonb_typeof(v_error -> 'message'), 'null') <> 'null' then
      perform creditgate_private.invalid('outcome.error.message', 'must be a string');
    end if;
  end if;
  if v_status = 'failed' and v_error_code is null then
    perform creditgate_private.invalid('outcome.error.code', 'required for a failed outcome');
  end if;

  -- An empty success is a failure the user never pays for (DESIGN §3).
  if v_status = 'succeeded' then
    if p_generation.kind = 'chat' then
      v_text := case jsonb_typeof(v_output -> 'text') when 'string' then v_output ->> 'text' end;
      if v_text is null or btrim(v_text) = '' then
        v_status := 'failed';
      end if;
    elsif jsonb_array_length(v_media) = 0 then
      v_status := 'failed';
    end if;
    if v_status = 'failed' then
      v_retryable := false;
      v_actual_cost := null;
      v_error_code := 'empty_output';
      v_error_message := 'the provider reported success but returned no output';
    end if;
  end if;

  return jsonb_build_object(
    'status', v_status,
    'retryable', v_retryable,
    'actual_cost', v_actual_cost,
    'media', case when v_status = 'succeeded' then v_media else '[]'::jsonb end,
    'output', case when v_status = 'succeeded' then v_output end,
    'provider', v_provider,
    'error', case when v_error_code is not null then
      jsonb_build_object('code', v_error_code, 'message', v_error_message)
    end
  );
end
$$;
comment on function creditgate_private.settle_outcome(creditgate.generations, jsonb) is
'Validates a worker''s outcome strictly (PT400 naming the field) and normalizes it.';

-- What a chat turn cost: the request's own price with max_tokens replaced by the output
-- tokens the provider reported, at the prices it was charged at (generations.prices, not
-- the registry's current ones), so the prompt is priced exactly as it was charged. Never
-- more than the charge. Pricing stays in SQL (price_params); the worker only reports usage.
create or replace function creditgate_private.chat_actual_cost(
  p_generation creditgate.generations,
  p_completion_tokens bigint
) returns bigint
language plpgsql
stable
set search_path = ''
as $$
declare
  v_model creditgate.models;
  v_params jsonb;
begin
  select m.* into v_model from creditgate.models as m where m.id = p_generation.model_id;
  if v_model.id is null or p_completion_tokens is null then
    return p_generation.cost;
  end if;
  if jsonb_typeof(p_generation.prices) = 'object' then
    v_model := jsonb_populate_record(v_model, p_generation.prices);
  end if;
  v_params := p_generation.params || jsonb_build_object(
    'max_tokens', least(p_completion_tokens, coalesce((p_generation.params ->> 'max_tokens')::bigint, p_completion_tokens))
  );
  return least(
    p_generation.cost,
    (creditgate_private.price_params(v_model, v_params, false) ->> 'cost')::bigint
  );
end
$$;
comment on function creditgate_private.chat_actual_cost(creditgate.generations, bigint) is
'Price of a chat turn with its real output tokens (capped at the charge); unused tokens are refunded.';

-- Media TTL in hours from the media_ttl_hours setting (a positive number; default 24).
create or replace function creditgate_private.media_ttl()
returns interval
language plpgsql
stable
set search_path = ''
as $$
declare
  v_value jsonb := creditgate_private.setting('media_ttl_hours');
begin
  if jsonb_typeof(v_value) = 'number' and (v_value #>> '{}')::numeric > 0 then
    return make_interval(secs => ((v_value #>> '{}')::numeric * 3600)::double precision);
  end if;
  return interval '24 hours';
end
$$;
comment on function creditgate_private.media_ttl() is
'How long unsaved media live: setting media_ttl_hours (positive number), 24 hours if unset.';

create or replace function creditgate.service_settle_generation(
  generation_id uuid,
  worker_id text,
  lease_token text,
  outcome jsonb
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_token uuid;
  v_generation creditgate.generations;
  v_lease creditgate_private.generation_leases;
  v_charge_key text;
  v_outcome jsonb;
  v_status text;
  v_actual_cost bigint;
  v_refunded bigint := 0::bigint;
  v_requeued boolean := false;
  v_media jsonb := '[]'::jsonb;
  v_result jsonb;
  v_ttl interval;
  v_deleted boolean;
begin
  v_token := creditgate_private.check_lease_args(
    service_settle_generation.generation_id,
    service_settle_generation.worker_id,
    service_settle_generation.lease_token
  );
  -- kind, cost and user never change: read them unlocked to validate before taking locks.
  select g.* into v_generation
  from creditgate.generations as g
  where g.id = service_settle_generation.generation_id;
  if not found then
    perform creditgate_private.raise_error('not_found', jsonb_build_object('object', 'generation'));
  end if;
  v_outcome := creditgate_private.settle_outcome(v_generation, service_settle_generation.outcome);

  perform creditgate_private.lock_balance(v_generation.user_id);
  select g.* into v_generation
  from creditgate.generations as g
  where g.id = service_settle_generation.generation_id
  for update;
  select l.* into v_lease
  from creditgate_private.generation_leases as l
  where l.generation_id = v_generation.id;

  -- Replay of a settle that already took effect under this lease: first settle wins.
  if v_lease.settled_lease_token = v_token then
    return v_lease.settle_result;
  end if;
  if v_generation.status <> 'running'
     or v_lease.lease_owner is distinct from service_settle_generation.worker_id
     or v_lease.lease_token is distinct from v_token then
    perform creditgate_private.raise_error(
      'lease_lost',
      jsonb_build_object('generation_id', v_generation.id, 'status', v_generation.status)
    );
  end if;
  -- An expired lease the reaper has not taken back yet is still this worker's: its result
  -- is as good as any, and taking it spares the user a retry.

  -- Read under the balance lock, which the account's deletion holds until it commits.
  v_deleted := creditgate_private.user_deleted(v_generation.user_id);
  v_status := v_outcome ->> 'status';
  v_charge_key := 'charge:' || v_generation.id::text;
  insert into creditgate_private.provider_calls (
    generation_id, attempt, worker_id, provider, http_status, latency_ms, outcome,
    error_code, error_message, lease_token
  ) values (
    v_generation.id,
    v_generation.attempts,
    service_settle_generation.worker_id,
    coalesce(
      v_outcome #>> '{provider,name}',
      (select r.provider from creditgate_private.model_routes as r where r.model_id = v_generation.model_id)
    ),
    (v_outcome #>> '{provider,http_status}')::integer,
    (v_outcome #>> '{provider,latency_ms}')::integer,
    v_status,
    v_outcome #>> '{error,code}',
    -- error.detail, the provider's redacted text, is for operators only (settle_outcome).
    case when not v_deleted then
      left(coalesce(service_settle_generation.outcome #>> '{error,detail}', v_outcome #>> '{error,message}'), 4000)
    end,
    v_token
  );

  if v_status = 'succeeded' then
    v_actual_cost := (v_outcome ->> 'actual_cost')::bigint;
    if v_actual_cost is null and v_generation.kind = 'chat' and not v_deleted
       and jsonb_typeof(v_outcome #> '{output,usage,completion_tokens}') = 'number' then
      v_actual_cost := creditgate_private.chat_actual_cost(
        v_generation, (v_outcome #>> '{output,usage,completion_tokens}')::numeric::bigint
      );
    end if;
    v_actual_cost := coalesce(v_actual_cost, v_generation.cost);
    v_ttl := creditgate_private.media_ttl();
    -- A deleted account gets no media rows: the uploaded files go straight to the purge.
    insert into creditgate_private.media_purges (media_id, storage_key)
    select gen_random_uuid(), e.item ->> 'storage_key'
    from jsonb_array_elements(v_outcome -> 'media') as e (item)
    where v_deleted
    on conflict do nothing;
    with inserted as (
      insert into creditgate.media (
        generation_id, user_id, position, storage_key, content_type, bytes, width, height,
        duration_seconds, expires_at
      )
      select
        v_generation.id,
        v_generation.user_id,
        (e.n - 1)::integer,
        e.item ->> 'storage_key',
        e.item ->> 'content_type',
        -- Validated whole numbers, which JSON may spell 2048.0: through numeric.
        (e.item ->> 'bytes')::numeric::bigint,
        (e.item ->> 'width')::numeric::integer,
        (e.item ->> 'height')::numeric::integer,
        (e.item ->> 'duration_seconds')::numeric,
        now() + v_ttl
      from jsonb_array_elements(v_outcome -> 'media') with ordinality as e (item, n)
      where not v_deleted
      returning id, position, storage_key
    )
    select coalesce(
      jsonb_agg(jsonb_build_object('media_id', i.id, 'storage_key', i.storage_key) order by i.position),
      '[]'::jsonb
    ) into v_media
    from inserted as i;
    if v_actual_cost < v_generation.cost then
      v_refunded := (creditgate_private.refund_credits(
        v_generation.user_id, v_charge_key, v_generation.cost - v_actual_cost,
        'refund:' || v_generation.id::text, 'generation cost less than charged',
        jsonb_build_object('generation_id', v_generation.id, 'actual_cost', v_actual_cost)
      ) ->> 'refunded')::bigint;
    end if;
  elsif (v_outcome ->> 'retryable')::boolean and v_generation.attempts < v_generation.max_attempts
        and not v_deleted then
    v_status := 'queued';
    v_requeued := true;
  else
    v_actual_cost := 0;
    v_refunded := (creditgate_private.refund_credits(
      v_generation.user_id, v_charge_key, v_generation.cost,
      'refund:' || v_generation.id::text, 'generation failed',
      -- The code only: the ledger is append-only, so no provider text (which may echo the
      -- prompt) may go there; it could never be erased.
      jsonb_build_object('generation_id', v_generation.id, 'error', jsonb_build_object(
        'code', v_outcome #> '{error,code}'
      ))
    ) ->> 'refunded')::bigint;
  end if;
  if v_deleted and v_refunded > 0 then
    perform creditgate_private.forfeit_credits(
      v_generation.user_id, 'forfeit:refund:' || v_generation.id::text, 'account deleted',
      jsonb_build_object('generation_id', v_generation.id)
    );
  end if;

  v_result := jsonb_build_object(
    'generation_id', v_generation.id,
    'status', v_status,
    'refunded', v_refunded,
    'actual_cost', v_actual_cost,
    'media', v_media,
    'requeued', v_requeued
  );
  update creditgate.generations as g
  set status = v_status,
    actual_cost = v_actual_cost,
    output = case when not v_deleted then nullif(v_outcome -> 'output', 'null'::jsonb) end,
    error = case
      when not v_deleted then nullif(v_outcome -> 'error', 'null'::jsonb)
      when v_outcome ? 'error' then jsonb_build_object('code', v_outcome #> '{error,code}')
    end,
    finished_at = case when v_requeued then null else now() end,
    updated_at = now()
  where g.id = v_generation.id;
  update creditgate_private.generation_leases as l
  set lease_owner = null,
    lease_token = null,
    lease_expires_at = null,
    settle_result = v_result,
    settled_lease_token = v_token
  where l.generation_id = v_generation.id;
  if v_requeued then
    perform pg_notify('creditgate_generations', v_generation.id::text);
  else
    -- Wakes HTTP requests waiting for this generation (a channel workers do not listen on).
    perform pg_notify('creditgate_generation_settled', v_generation.id::text);
  end if;
  return v_result;
end
$$;
comment on function creditgate.service_settle_generation(uuid, text, text, jsonb) is
'Applies a worker''s outcome once per lease: media and partial refund, re-queue, or full refund.';
revoke all on function creditgate.service_settle_generation(uuid, text, text, jsonb) from public, anon, authenticated;
grant execute on function creditgate.service_settle_generation(uuid, text, text, jsonb) to service_role;

create or replace function creditgate.service_reap_expired_leases(now timestamptz default now())
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_candidate record;
  v_user_id uuid;
  v_generation creditgate.generations;
  v_lease creditgate_private.generation_leases;
  v_error jsonb;
  v_requeued integer := 0;
  v_failed integer := 0;
  v_refunded bigint := 0::bigint;
  v_refund bigint;
  v_deleted boolean;
begin
  if service_reap_expired_leases.now is null then
    perform creditgate_private.invalid('now', 'required');
  end if;
  for v_candidate in
    select g.id, g.user_id
    from creditgate_private.generation_leases as l
    join creditgate.generations as g on g.id = l.generation_id
    where l.lease_expires_at <= service_reap_expired_leases.now and g.status = 'running'
    order by g.user_id, g.id
  loop
    if v_user_id is distinct from v_candidate.user_id then
      perform creditgate_private.lock_balance(v_candidate.user_id);
      v_user_id := v_candidate.user_id;
    end if;
    -- Re-read under the locks: the worker may have settled or heartbeaten meanwhile.
    select g.* into v_generation
    from creditgate.generations as g
    where g.id = v_candidate.id
    for update;
    select l.* into v_lease
    from creditgate_private.generation_leases as l
    where l.generation_id = v_generation.id;
    continue when v_generation.status <> 'running'
      or v_lease.lease_expires_at > service_reap_expired_leases.now;

    v_error := jsonb_build_object(
      'code', 'lease_expired',
      'message', 'the worker stopped renewing its lease'
    );
    insert into creditgate_private.provider_calls (
      generation_id, attempt, worker_id, provider, outcome, error_code, error_message, lease_token
    ) values (
      v_generation.id,
      v_generation.attempts,
      v_lease.lease_owner,
      (select r.provider from creditgate_private.model_routes as r where r.model_id = v_generation.model_id),
      'lease_expired',
      v_error ->> 'code',
      v_error ->> 'message',
      v_lease.lease_token
    );
    update creditgate_private.generation_leases as l
    set lease_owner = null, lease_token = null, lease_expires_at = null
    where l.generation_id = v_generation.id;
    -- A deleted account's job never runs again (its params are erased).
    v_deleted := creditgate_private.user_deleted(v_generation.user_id);
    if v_generation.attempts < v_generation.max_attempts and not v_deleted then
      update creditgate.generations as g
      set status = 'queued',
        error = v_error,
        updated_at = pg_catalog.now()
      where g.id = v_generation.id;
      perform pg_notify('creditgate_generations', v_generation.id::text);
      v_requeued := v_requeued + 1;
    else
      update creditgate.generations as g
      set status = 'failed',
        actual_cost = 0,
        error = v_error,
        finished_at = pg_catalog.now(),
        updated_at = pg_catalog.now()
      where g.id = v_generation.id;
      perform pg_notify('creditgate_generation_settled', v_generation.id::text);
      v_refund := (creditgate_private.refund_credits(
        v_generation.user_id, 'charge:' || v_generation.id::text, v_generation.cost,
        'refund:' || v_generation.id::text, 'generation failed: worker lease expired',
        jsonb_build_object('generation_id', v_generation.id, 'error', v_error)
      ) ->> 'refunded')::bigint;
      if v_deleted and v_refund > 0 then
        perform creditgate_private.forfeit_credits(
          v_generation.user_id, 'forfeit:refund:' || v_generation.id::text, 'account deleted',
          jsonb_build_object('generation_id', v_generation.id)
        );
      end if;
      v_refunded := v_refunded + v_refund;
      v_failed := v_failed + 1;
    end if;
  end loop;
  return jsonb_build_object('requeued', v_requeued, 'failed', v_failed, 'refunded', v_refunded);
end
$$;
comment on function creditgate.service_reap_expired_leases(timestamptz) is
'Takes back jobs whose worker vanished: re-queued while attempts are left, else failed and refunded.';
revoke all on function creditgate.service_reap_expired_leases(timestamptz) from public, anon, authenticated;
grant execute on function creditgate.service_reap_expired_leases(timestamptz) to service_role;

revoke all on function creditgate_private.check_lease_args(uuid, text, text) from public, anon, authenticated;
revoke all on function creditgate_private.check_worker_id(text) from public, anon, authenticated;
revoke all on function creditgate_private.check_lease_seconds(integer) from public, anon, authenticated;
revoke all on function creditgate_private.default_lease_seconds() from public, anon, authenticated;
revoke all on function creditgate_private.job_json(creditgate.generations) from public, anon, authenticated;
revoke all on function creditgate_private.outcome_integer(jsonb, text, bigint, bigint) from public, anon, authenticated;
revoke all on function creditgate_private.outcome_text(jsonb, text, integer) from public, anon, authenticated;
revoke all on function creditgate_private.outcome_object(jsonb, text, text[]) from public, anon, authenticated;
revoke all on function creditgate_private.settle_outcome(creditgate.generations, jsonb) from public, anon, authenticated;
revoke all on function creditgate_private.media_ttl() from public, anon, authenticated;
revoke all on function creditgate_private.chat_actual_cost(creditgate.generations, bigint) from public, anon, authenticated;
