-- creditgate.request_generation(model_id text, params jsonb, idempotency_key text) -> jsonb
--   authenticated. {generation_id, status, cost, balance, replayed}
--   One transaction: the key first (a recorded request, same body -> its original result,
--   whatever changed since; another body -> PT409), then maintenance, model, validate,
--   price, rate limits, daily cap, charge, create the queued generation, notify workers
--   ('creditgate_generations', payload = generation id). A replay counts against no limit.
--   Errors: PT401 not_authenticated, PT400 invalid_request, PT503 maintenance,
--   PT404 not_found (model), PT503 model_unavailable, PT409 idempotency_key_reused,
--   PT429 rate_limited {scope, retry_after_seconds}, PT429 daily_cap_reached
--   {cap, used, resets_at}, PT402 insufficient_credits {required, available}.
--
-- creditgate_private.client_ip() -> inet
--   The client address from the one header named by setting client_ip_header, in the
--   request.headers PostgREST sets: 'cf-connecting-ip' (default; Supabase's edge sets it)
--   or 'x-forwarded-for:N' (the Nth entry from the right). Null when absent or not an
--   address. No other header is read, so a client cannot pick its bucket.
-- creditgate_private.ip_bucket(p_ip) -> text
--   The IP rules' subject: the IPv4 address, the IPv6 /64, or 'unknown' (null address).
-- creditgate_private.take_rate_limits(p_user_id, p_ip, p_kind, p_now) -> void   PT429
--   Counts this request against every enabled rule (fixed windows aligned to the epoch).
--   IP rules always apply: an unreadable address counts in the shared 'unknown' bucket.
--   A rule already at its limit is not incremented, and the PT429 rolls back the others,
--   so a rejected request consumes nothing.

create or replace function creditgate_private.client_ip()
returns inet
language plpgsql
stable
set search_path = ''
as $$
declare
  v_raw text := nullif(current_setting('request.headers', true), '');
  v_setting text := creditgate_private.setting('client_ip_header') #>> '{}';
  v_header text;
  v_from_right integer;
  v_value text;
  v_entries text[];
  v_ip inet;
begin
  if v_raw is null or v_setting is null then
    return null;
  end if;
  -- '<header>' (one address) or '<header>:N' (the Nth comma-separated entry from the right:
  -- the entry the Nth trusted proxy, counted from ours, appended; entries further left were
  -- written by the client). setting_problem() keeps the value to that form.
  v_header := split_part(v_setting, ':', 1);
  v_from_right := nullif(split_part(v_setting, ':', 2), '')::integer;
  begin
    v_value := v_raw::jsonb ->> v_header;
  exception when others then
    return null;
  end;
  if v_from_right is not null then
    v_entries := string_to_array(v_value, ',');
    if coalesce(cardinality(v_entries), 0) < v_from_right then
      return null;
    end if;
    v_value := v_entries[cardinality(v_entries) - v_from_right + 1];
  end if;
  v_value := btrim(v_value);
  if v_value is null or v_value = '' or length(v_value) > 45 or v_value !~ '^[0-9A-Fa-f.:]+$' then
    return null;
  end if;
  begin
    v_ip := host(v_value::inet)::inet;
  exception when others then
    return null;
  end;
  -- An IPv4 client seen through an IPv6 socket (::ffff:a.b.c.d) is that IPv4 address.
  if family(v_ip) = 6 and v_ip << '::ffff:0.0.0.0/96'::inet then
    v_ip := '0.0.0.0'::inet + (v_ip - '::ffff:0.0.0.0'::inet);
  end if;
  return v_ip;
end
$$;
comment on function creditgate_private.client_ip() is
'The client address from the header named by setting client_ip_header (Nth entry from the right with :N), or null when unreadable.';

create or replace function creditgate_private.ip_bucket(p_ip inet)
returns text
language sql
immutable
set search_path = ''
as $$
  -- One IPv6 subscriber gets a /64 (billions of addresses to rotate through): the /64 is
  -- the bucket. An unreadable or absent address is never let through unlimited: every such
  -- request shares the bucket 'unknown'.
  select case
    when p_ip is null then 'unknown'
    when family(p_ip) = 6 then network(set_masklen(p_ip, 64))::text
    else host(p_ip)
  end;
$$;
comment on function creditgate_private.ip_bucket(inet) is
'Rate-limit subject of a client address: the IPv4 address, the IPv6 /64, or unknown.';

create or replace function creditgate_private.take_rate_limits(
  p_user_id uuid,
  p_ip inet,
  p_kind text,
  p_now timestamptz default now()
) returns void
language plpgsql
set search_path = ''
as $$
declare
  v_rule creditgate_private.rate_limit_rules;
  v_subject text;
  v_ip_subject text := creditgate_private.ip_bucket(p_ip);
  v_window_start timestamptz;
  v_count integer;
begin
  -- Rules in id order: every transaction takes counter rows in the same order.
  for v_rule in
    select r.* from creditgate_private.rate_limit_rules as r
    where r.enabled and (r.kind is null or r.kind = p_kind)
    order by r.id
  loop
    v_subject := case v_rule.scope when 'user' then p_user_id::text else v_ip_subject end;
    v_window_start := to_timestamp(
      floor(extract(epoch from p_now) / v_rule.window_seconds) * v_rule.window_seconds
    );
    v_count := null;
    insert into creditgate_private.rate_limit_counters as c (rule_id, subject, window_start, count)
    values (v_rule.id, v_subject, v_window_start, 1)
    on conflict (rule_id, subject, window_start) do update
      set count = c.count + 1
      where c.count < v_rule.max_requests
    returning c.count into v_count;
    if v_count is null then
      perform creditgate_private.raise_error('rate_limited', jsonb_build_object(
        'scope', v_rule.scope,
        'retry_after_seconds', greatest(1, ceil(extract(epoch from
          v_window_start + make_interval(secs => v_rule.window_seconds) - p_now)))::integer
      ));
    end if;
    if v_count = 1 then
      -- First request of a new window: older windows of this subject are spent.
      delete from creditgate_private.rate_limit_counters as c
      where c.rule_id = v_rule.id and c.subject = v_subject and c.window_start < v_window_start;
    end if;
  end loop;
end
$$;
comment on function creditgate_private.take_rate_limits(uuid, inet, text, timestamptz) is
'Counts a request against every matching rule atomically; PT429 (nothing consumed) at the limit.';

-- Requests recorded before 0010 hashed the normalized params (registry defaults merged in);
-- 0010 marked those hashes 'legacy:'. A retry of such a request still matches when its body
-- normalizes to what was recorded, so a retry across the upgrade is not refused.
create or replace function creditgate_private.legacy_request_matches(
  p_recorded_hash text,
  p_model_id text,
  p_params jsonb,
  p_user_id uuid
) returns boolean
language plpgsql
stable
set search_path = ''
as $$
declare
  v_model creditgate.models;
begin
  if p_recorded_hash not like 'legacy:%' then
    return false;
  end if;
  select m.* into v_model from creditgate.models as m where m.id = p_model_id;
  if not found then
    return false;
  end if;
  begin
    return p_recorded_hash = 'legacy:' || md5(jsonb_build_object(
      'model_id', v_model.id,
      'params', creditgate_private.validate_params(v_model, p_params, p_user_id)
    )::text);
  exception when others then
    return false;
  end;
end
$$;
comment on function creditgate_private.legacy_request_matches(text, text, jsonb, uuid) is
'Whether a retry matches a request recorded before 0010 (hash of the normalized params).';

create or replace function creditgate.request_generation(
  model_id text,
  params jsonb,
  idempotency_key text
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user_id uuid := creditgate_private.require_user();
  v_model creditgate.models;
  v_params jsonb;
  v_price jsonb;
  v_cost bigint;
  v_hash text;
  v_existing_id uuid;
  v_existing_hash text;
  v_balance creditgate.balances;
  v_daily jsonb;
  v_ip inet;
  v_generation_id uuid;
  v_spend jsonb;
  v_now timestamptz := now();
begin
  perform creditgate_private.check_key(request_generation.idempotency_key);
  -- What the client sent, nothing derived from the registry: a retry of the same body
  -- matches whatever changed since (defaults, prices, limits).
  v_hash := md5(jsonb_build_array(request_generation.model_id, request_generation.params)::text);

  -- The per-user mutex (lock_balance): concurrent calls with one key queue here, and the
  -- first one's generation is visible to the rest once it commits. The row also gives the
  -- plan and today's usage for the daily cap.
  select b.* into v_balance from creditgate.balances as b where b.user_id = v_user_id for update;
  if not found then
    perform creditgate_private.raise_error('not_found', jsonb_build_object('object', 'user'));
  end if;

  -- Replays first (DESIGN §3): a recorded request gets its original answer before any
  -- check that may have changed since (maintenance, model, params, limits, caps).
  select r.generation_id, r.request_hash into v_existing_id, v_existing_hash
  from creditgate_private.generation_requests as r
  where r.user_id = v_user_id and r.idempotency_key = request_generation.idempotency_key;
  if v_existing_id is not null then
    if v_existing_hash <> v_hash
       and not creditgate_private.legacy_request_matches(
         v_existing_hash, request_generation.model_id, request_generation.params, v_user_id
       ) then
      perform creditgate_private.raise_error(
        'idempotency_key_reused',
        jsonb_build_object('idempotency_key', request_generation.idempotency_key)
      );
    end if;
    -- The original answer: the status it was created with and the balance its charge left.
    return (
      select jsonb_build_object(
        'generation_id', v_existing_id,
        'status', 'queued',
        'cost', l.amount,
        'balance', l.balance_after,
        'replayed', true
      )
      from creditgate.ledger as l
      where l.idempotency_key = 'charge:' || v_existing_id::text
    );
  end if;

  if creditgate_private.setting('maintenance_mode') = 'true'::jsonb then
    perform creditgate_private.raise_error('maintenance');
  end if;
  v_model := creditgate_private.find_model(request_generation.model_id);
  v_params := creditgate_private.validate_params(v_model, request_generation.params, v_user_id);
  v_price := creditgate_private.price_params(v_model, v_params, false);
  v_cost := (v_price ->> 'cost')::bigint;
  v_ip := creditgate_private.client_ip();
  v_generation_id := creditgate_private.uuid_v7();

  perform creditgate_private.take_rate_limits(v_user_id, v_ip, v_model.kind, v_now);

  v_daily := creditgate_private.daily_usage(v_balance);
  if jsonb_typeof(v_daily -> 'cap') = 'number'
     and (v_daily ->> 'used')::bigint + v_cost > (v_daily ->> 'cap')::bigint then
    perform creditgate_private.raise_error('daily_cap_reached', jsonb_build_object(
      'cap', v_daily -> 'cap',
      'used', v_daily -> 'used',
      'resets_at', date_trunc('day', v_now at time zone 'UTC') at time zone 'UTC' + interval '1 day'
    ));
  end if;

  v_spend := creditgate_private.spend_credits(
    v_user_id, v_cost, 'charge:' || v_generation_id, v_generation_id, 'generation',
    jsonb_build_object('model_id', v_model.id, 'kind', v_model.kind), v_now
  );
  insert into creditgate.generations (
    id, user_id, model_id, kind, status, params, cost, idempotency_key, max_attempts, prices
  ) values (
    v_generation_id, v_user_id, v_model.id, v_model.kind, 'queued', v_params, v_cost,
    request_generation.idempotency_key,
    coalesce((creditgate_private.setting('max_attempts') #>> '{}')::integer, 3),
    -- The prices charged: a settle that prices usage uses them, never today's.
    jsonb_build_object(
      'price_base', v_model.price_base,
      'price_per_megapixel', v_model.price_per_megapixel,
      'price_per_step', v_model.price_per_step,
      'price_per_second', v_model.price_per_second,
      'price_per_1k_tokens', v_model.price_per_1k_tokens
    )
  );
  insert into creditgate_private.generation_requests (
    user_id, idempotency_key, generation_id, request_hash, client_ip
  ) values (
    v_user_id, request_generation.idempotency_key, v_generation_id, v_hash, v_ip
  );
  -- Wake the workers only if this job is the only one queued. A transaction that notified
  -- takes a database-wide lock at commit and holds it through the WAL flush, so notifying
  -- on every request would make all requests commit one at a time. A job queued behind
  -- others needs no signal: whoever woke for those claims it with them, and a worker
  -- that claimed anything claims again shortly after (so a job that committed just after
  -- that claim is not left waiting for the idle poll).
  if not exists (
    select 1 from creditgate.generations as g
    where g.status = 'queued' and g.id <> v_generation_id
  ) then
    perform pg_notify('creditgate_generations', v_generation_id::text);
  end if;
  return jsonb_build_object(
    'generation_id', v_generation_id,
    'status', 'queued',
    'cost', v_cost,
    'balance', (v_spend ->> 'balance')::bigint,
    'replayed', false
  );
end
$$;
comment on function creditgate.request_generation(text, jsonb, text) is
'Validates, prices, rate-limits, caps, charges and queues a generation in one transaction; replays by key.';

revoke all on function creditgate_private.client_ip() from public, anon, authenticated;
revoke all on function creditgate_private.ip_bucket(inet) from public, anon, authenticated;
revoke all on function creditgate_private.take_rate_limits(uuid, inet, text, timestamptz) from public, anon, authenticated;
revoke all on function creditgate_private.legacy_request_matches(text, text, jsonb, uuid) from public, anon, authenticated;
revoke all on function creditgate.request_generation(text, jsonb, text) from public, anon, authenticated;
grant execute on function creditgate.request_generation(text, jsonb, text) to authenticated;
