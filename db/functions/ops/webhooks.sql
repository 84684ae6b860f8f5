-- Webhook endpoints and deliveries (DESIGN §8, Standard Webhooks).
--
-- Operators (creditgate webhooks ..., as the database owner) call the private functions;
-- admins (console) call the admin_* wrappers, admin checked inside. Workers call the
-- service_* pair: claim due deliveries (FOR UPDATE SKIP LOCKED, with a lease, so a worker
-- killed mid-delivery only delays it until the lease expires), then report each attempt.
--
-- creditgate_private.webhook_add(p_url, p_event_types, p_secret, p_description) -> jsonb
--   {endpoint_id, url, event_types, secret}: the secret (whsec_<base64>) is shown once.
--   PT400 invalid_request (url: https only, http only on loopback with webhook_allow_loopback;
--   event_types: known types or '*'; secret: whsec_ + base64 of 24-64 bytes)
-- creditgate_private.webhook_list() -> jsonb [{endpoint_id, url, event_types, enabled, ...}]
-- creditgate_private.webhook_disable(p_endpoint_id, p_reason) -> jsonb   PT404 not_found
--   Pending deliveries to it are canceled.
-- creditgate_private.webhook_redeliver(p_delivery_id) -> jsonb   PT404, PT409 invalid_state
--   Sends a delivery again (same webhook-id) with a fresh retry budget; not while in flight
--   or while its endpoint is disabled.
-- creditgate_private.webhook_deliveries(p_endpoint_id, p_status, p_max_items) -> jsonb
-- creditgate.admin_add_webhook_endpoint / admin_list_webhook_endpoints /
--   admin_disable_webhook_endpoint / admin_redeliver_webhook / admin_webhook_deliveries:
--   the same for admins (PT401, PT403).
-- creditgate.service_claim_webhook_deliveries(worker_id, max_items, lease_seconds) -> jsonb
--   [{delivery_id, lease_token, attempt, url, secret, webhook_id, body, allow_loopback}]
--   Due pending deliveries and deliveries whose lease expired (that attempt is recorded as
--   lease_expired). PT400 invalid_request.
-- creditgate.service_finish_webhook_delivery(delivery_id, worker_id, lease_token, outcome)
--   -> jsonb {delivery_id, status, next_attempt_at}
--   outcome {http_status, latency_ms, error, refused}: 2xx delivered; 410 disables the
--   endpoint; refused (address policy) parks it; anything else is retried after
--   base * 2^(attempt-1) seconds (capped, jitter 50-100%), or parked once the retry budget
--   (webhook_retry_budget_hours since the first try or the last redeliver) is spent.
--   PT400 invalid_request, PT409 lease_lost.

create or replace function creditgate_private.webhook_event_types()
returns text []
language sql
immutable
set search_path = ''
as $$
  select array[
    'balance.low', 'credits.expiring', 'credits.added', 'generation.succeeded',
    'generation.failed', 'clawback.owed', 'audit.failed'
  ]::text [];
$$;
comment on function creditgate_private.webhook_event_types() is
'Every event type an endpoint may subscribe to (plus ''*'' for all).';

create or replace function creditgate_private.webhook_add(
  p_url text,
  p_event_types text [],
  p_secret text default null,
  p_description text default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_host text;
  v_secret text := coalesce(p_secret, 'whsec_' || encode(extensions.gen_random_bytes(32), 'base64'));
  v_id uuid;
begin
  if p_url is null or length(p_url) > 2000 or p_url !~* '^https?://[^/?#@\s]+([/?#][^\s]*)?$' then
    perform creditgate_private.invalid('url', 'an absolute http(s) URL without credentials');
  end if;
  v_host := lower(substring(p_url from '^[A-Za-z]+://(\[[^\]]+\]|[^/:?#]+)'));
  if p_url ~* '^http://' and not (
    coalesce((creditgate_private.setting('webhook_allow_loopback') #>> '{}')::boolean, false)
    and (v_host in ('localhost', '[::1]') or v_host ~ '^127\.\d+\.\d+\.\d+$')
  ) then
    perform creditgate_private.invalid('url', 'https only (http only to loopback when webhook_allow_loopback is on)');
  end if;
  if p_event_types is null or cardinality(p_event_types) = 0 or exists (
    select 1 from unnest(p_event_types) as t (name)
    where t.name is null or not (t.name = '*' or t.name = any(creditgate_private.webhook_event_types()))
  ) then
    perform creditgate_private.invalid('event_types', 'known event types or *');
  end if;
  if v_secret !~ '^whsec_[A-Za-z0-9+/=]{32,90}$' then
    perform creditgate_private.invalid('secret', 'whsec_ followed by base64 of 24 to 64 bytes');
  end if;
  insert into creditgate_private.webhook_endpoints (url, secret, event_types, description)
  values (p_url, v_secret, (select array_agg(distinct t) from unnest(p_event_types) as t), p_description)
  returning id into v_id;
  return jsonb_build_object(
    'endpoint_id', v_id, 'url', p_url,
    'event_types', (select e.event_types from creditgate_private.webhook_endpoints as e where e.id = v_id),
    'secret', v_secret
  );
end
$$;
comment on function creditgate_private.webhook_add(text, text [], text, text) is
'Registers a webhook endpoint; returns its secret once.';

create or replace function creditgate_private.webhook_list()
returns jsonb
language sql
stable
security definer
set search_path = ''
as $$
  select coalesce(jsonb_agg(jsonb_build_object(
    'endpoint_id', e.id, 'url', e.url, 'event_types', e.event_types, 'description', e.description,
    'enabled', e.enabled, 'disabled_reason', e.disabled_reason, 'created_at', e.created_at,
    'pending', (select count(*) from creditgate_private.webhook_deliveries as d
      where d.endpoint_id = e.id and d.status in ('pending', 'delivering')),
    'parked', (select count(*) from creditgate_private.webhook_deliveries as d
      where d.endpoint_id = e.id and d.status = 'parked')
  ) order by e.created_at, e.id), '[]')
  from creditgate_private.webhook_endpoints as e;
$$;
comment on function creditgate_private.webhook_list() is
'Every webhook endpoint with its backlog (secrets are never listed).';

create or replace function creditgate_private.webhook_disable(p_endpoint_id uuid, p_reason text default 'disabled')
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_canceled integer;
begin
  update creditgate_private.webhook_endpoints as e
  set enabled = false, disabled_reason = left(coalesce(p_reason, 'disabled'), 500), updated_at = now()
  where e.id = p_endpoint_id;
  if not found then
    perform creditgate_private.raise_error('not_found', jsonb_build_object('endpoint_id', p_endpoint_id));
  end if;
  update creditgate_private.webhook_deliveries as d
  set status = 'canceled', updated_at = now()
  where d.endpoint_id = p_endpoint_id and d.status = 'pending';
  get diagnostics v_canceled = row_count;
  return jsonb_build_object('endpoint_id', p_endpoint_id, 'enabled', false, 'canceled', v_canceled);
end
$$;
comment on function creditgate_private.webhook_disable(uuid, text) is
'Disables an endpoint and cancels its pending deliveries.';

create or replace function creditgate_private.webhook_redeliver(p_delivery_id bigint)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_delivery creditgate_private.webhook_deliveries;
begin
  select d.* into v_delivery from creditgate_private.webhook_deliveries as d
  where d.id = p_delivery_id for update;
  if not found then
    perform creditgate_private.raise_error('not_found', jsonb_build_object('delivery_id', p_delivery_id));
  end if;
  if v_delivery.status = 'delivering' or not (
    select e.enabled from creditgate_private.webhook_endpoints as e where e.id = v_delivery.endpoint_id
  ) then
    perform creditgate_private.raise_error('invalid_state', jsonb_build_object(
      'delivery_id', p_delivery_id, 'status', v_delivery.status,
      'reason', 'in flight, or its endpoint is disabled'
    ));
  end if;
  update creditgate_private.webhook_deliveries as d
  set status = 'pending', next_attempt_at = now(), budget_started_at = now(), updated_at = now()
  where d.id = p_delivery_id;
  perform pg_notify('creditgate_webhooks', '');
  return jsonb_build_object('delivery_id', p_delivery_id, 'status', 'pending');
end
$$;
comment on function creditgate_private.webhook_redeliver(bigint) is
'Queues a delivery again (same webhook-id) with a fresh retry budget.';

create or replace function creditgate_private.webhook_deliveries(
  p_endpoint_id uuid default null,
  p_status text default null,
  p_max_items integer default 50
) returns jsonb
language sql
stable
security definer
set search_path = ''
as $$
  select coalesce(jsonb_agg(x.j order by x.id desc), '[]')
  from (
    select d.id, jsonb_build_object(
      'delivery_id', d.id, 'endpoint_id', d.endpoint_id, 'event_id', d.event_id,
      'event_type', ev.event_type, 'status', d.status, 'attempts', d.attempts,
      'next_attempt_at', d.next_attempt_at, 'last_http_status', d.last_http_status,
      'last_error', d.last_error, 'created_at', d.created_at, 'delivered_at', d.delivered_at,
      'history', (
        select coalesce(jsonb_agg(jsonb_build_object(
          'attempt', a.attempt, 'started_at', a.started_at, 'outcome', a.outcome,
          'http_status', a.http_status, 'latency_ms', a.latency_ms, 'error', a.error
        ) order by a.id), '[]')
        from creditgate_private.webhook_attempts as a where a.delivery_id = d.id
      )
    ) as j
    from creditgate_private.webhook_deliveries as d
    inner join creditgate_private.events as ev on ev.id = d.event_id
    where (p_endpoint_id is null or d.endpoint_id = p_endpoint_id)
      and (p_status is null or d.status = p_status)
    order by d.id desc
    limit least(greatest(coalesce(p_max_items, 50), 1), 1000)
  ) as x;
$$;
comment on function creditgate_private.webhook_deliveries(uuid, text, integer) is
'Delivery state with every attempt, newest first.';

-- Admin wrappers (console): the admin is checked against creditgate_private.admins.
create or replace function creditgate.admin_add_webhook_endpoint(
  url text,
  event_types text [],
  secret text default null,
  description text default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform creditgate_private.require_admin();
  return creditgate_private.webhook_add(
    admin_add_webhook_endpoint.url, admin_add_webhook_endpoint.event_types,
    admin_add_webhook_endpoint.secret, admin_add_webhook_endpoint.description
  );
end
$$;
comment on function creditgate.admin_add_webhook_endpoint(text, text [], text, text) is
'Admins register a webhook endpoint (URL, event types); the secret is returned once.';

create or replace function creditgate.admin_list_webhook_endpoints()
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform creditgate_private.require_admin();
  return creditgate_private.webhook_list();
end
$$;
comment on function creditgate.admin_list_webhook_endpoints() is
'Admins list webhook endpoints and their backlog (no secrets).';

create or replace function creditgate.admin_disable_webhook_endpoint(endpoint_id uuid)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform creditgate_private.require_admin();
  return creditgate_private.webhook_disable(admin_disable_webhook_endpoint.endpoint_id, 'disabled by an admin');
end
$$;
comment on function creditgate.admin_disable_webhook_endpoint(uuid) is
'Admins disable a webhook endpoint; its pending deliveries are canceled.';

create or replace function creditgate.admin_redeliver_webhook(delivery_id bigint)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform creditgate_private.require_admin();
  return creditgate_private.webhook_redeliver(admin_redeliver_webhook.delivery_id);
end
$$;
comment on function creditgate.admin_redeliver_webhook(bigint) is
'Admins send a delivery again with the same webhook-id.';

create or replace function creditgate.admin_webhook_deliveries(
  endpoint_id uuid default null,
  status text default null,
  max_items integer default 50
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform creditgate_private.require_admin();
  return creditgate_private.webhook_deliveries(
    admin_webhook_deliveries.endpoint_id, admin_webhook_deliveries.status, admin_webhook_deliveries.max_items
  );
end
$$;
comment on function creditgate.admin_webhook_deliveries(uuid, text, integer) is
'Admins read delivery state and every attempt.';

create or replace function creditgate.service_claim_webhook_deliveries(
  worker_id text,
  max_items integer default 10,
  lease_seconds integer default 60
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := now();
  v_claimed jsonb := '[]';
  v_row record;
  v_token uuid;
  v_allow boolean := coalesce((creditgate_private.setting('webhook_allow_loopback') #>> '{}')::boolean, false);
begin
  perform creditgate_private.check_worker_id(service_claim_webhook_deliveries.worker_id);
  if service_claim_webhook_deliveries.max_items is null or service_claim_webhook_deliveries.max_items not between 1 and 100 then
    perform creditgate_private.invalid('max_items', 'between 1 and 100');
  end if;
  if service_claim_webhook_deliveries.lease_seconds is null or service_claim_webhook_deliveries.lease_seconds not between 1 and 3600 then
    perform creditgate_private.invalid('lease_seconds', 'between 1 and 3600');
  end if;
  for v_row in
    select d.id, d.status, d.attempts, d.lease_owner, d.lease_token, d.lease_expires_at,
      e.url, e.secret, ev.id as event_id, ev.event_type, ev.payload, ev.created_at as event_at
    from creditgate_private.webhook_deliveries as d
    inner join creditgate_private.webhook_endpoints as e on e.id = d.endpoint_id
    inner join creditgate_private.events as ev on ev.id = d.event_id
    where e.enabled
      and ((d.status = 'pending' and d.next_attempt_at <= v_now)
        or (d.status = 'delivering' and d.lease_expires_at <= v_now))
    order by coalesce(d.lease_expires_at, d.next_attempt_at), d.id
    limit service_claim_webhook_deliveries.max_items
    for update of d skip locked
  loop
    if v_row.status = 'delivering' then
      -- The worker holding it vanished (killed mid-delivery): record that attempt.
      insert into creditgate_private.webhook_attempts (delivery_id, attempt, worker_id, started_at, outcome, error)
      values (v_row.id, v_row.attempts, v_row.lease_owner, v_row.lease_expires_at, 'lease_expired',
        'the worker stopped before reporting the attempt');
    end if;
    v_token := gen_random_uuid();
    update creditgate_private.webhook_deliveries as d
    set status = 'delivering', attempts = d.attempts + 1,
      lease_owner = service_claim_webhook_deliveries.worker_id, lease_token = v_token,
      lease_expires_at = v_now + make_interval(secs => service_claim_webhook_deliveries.lease_seconds),
      updated_at = v_now
    where d.id = v_row.id;
    v_claimed := v_claimed || jsonb_build_object(
      'delivery_id', v_row.id, 'lease_token', v_token, 'attempt', v_row.attempts + 1,
      'url', v_row.url, 'secret', v_row.secret, 'webhook_id', 'msg_' || replace(v_row.event_id::text, '-', ''),
      'event_type', v_row.event_type, 'allow_loopback', v_allow,
      'body', jsonb_build_object(
        'type', v_row.event_type,
        'timestamp', to_char(v_row.event_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'data', v_row.payload
      )::text
    );
  end loop;
  return v_claimed;
end
$$;
comment on function creditgate.service_claim_webhook_deliveries(text, integer, integer) is
'Workers claim due webhook deliveries (SKIP LOCKED, leased; expired leases are taken over).';

create or replace function creditgate.service_finish_webhook_delivery(
  delivery_id bigint,
  worker_id text,
  lease_token text,
  outcome jsonb
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_delivery creditgate_private.webhook_deliveries;
  v_http integer;
  v_latency integer;
  v_error text;
  v_kind text;
  v_status text;
  v_next timestamptz;
  v_base numeric := coalesce((creditgate_private.setting('webhook_backoff_base_seconds') #>> '{}')::numeric, 5);
  v_max numeric := coalesce((creditgate_private.setting('webhook_backoff_max_seconds') #>> '{}')::numeric, 21600);
  v_budget numeric := coalesce((creditgate_private.setting('webhook_retry_budget_hours') #>> '{}')::numeric, 72);
  v_delay numeric;
begin
  if service_finish_webhook_delivery.outcome is null or jsonb_typeof(service_finish_webhook_delivery.outcome) <> 'object' then
    perform creditgate_private.invalid('outcome', 'an object');
  end if;
  if service_finish_webhook_delivery.lease_token is null
     or service_finish_webhook_delivery.lease_token !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then
    perform creditgate_private.invalid('lease_token', 'a UUID');
  end if;
  select d.* into v_delivery from creditgate_private.webhook_deliveries as d
  where d.id = service_finish_webhook_delivery.delivery_id for update;
  if not found or v_delivery.status <> 'delivering'
     or v_delivery.lease_token <> service_finish_webhook_delivery.lease_token::uuid
     or v_delivery.lease_owner is distinct from service_finish_webhook_delivery.worker_id then
    perform creditgate_private.raise_error('lease_lost', jsonb_build_object('delivery_id', service_finish_webhook_delivery.delivery_id));
  end if;
  v_http := case when jsonb_typeof(service_finish_webhook_delivery.outcome -> 'http_status') = 'number'
    then (service_finish_webhook_delivery.outcome ->> 'http_status')::integer end;
  v_latency := case when jsonb_typeof(service_finish_webhook_delivery.outcome -> 'latency_ms') = 'number'
    then (service_finish_webhook_delivery.outcome ->> 'latency_ms')::numeric::integer end;
  v_error := left(service_finish_webhook_delivery.outcome ->> 'error', 500);
  v_kind := case
    when coalesce((service_finish_webhook_delivery.outcome ->> 'refused')::boolean, false) then 'refused'
    when v_http between 200 and 299 then 'delivered'
    when v_http = 410 then 'gone'
    else 'failed'
  end;
  insert into creditgate_private.webhook_attempts (
    delivery_id, attempt, worker_id, started_at, outcome, http_status, latency_ms, error
  ) values (
    v_delivery.id, v_delivery.attempts, v_delivery.lease_owner,
    clock_timestamp() - make_interval(secs => coalesce(v_latency, 0) / 1000.0),
    v_kind, v_http, v_latency, v_error
  );
  if v_kind = 'delivered' then
    v_status := 'delivered';
  elsif v_kind = 'gone' then
    v_status := 'canceled';
    perform creditgate_private.webhook_disable(v_delivery.endpoint_id, 'the receiver answered 410 Gone');
  elsif v_kind = 'refused' then
    v_status := 'parked';
  else
    v_delay := least(v_base * power(2::numeric, greatest(v_delivery.attempts - 1, 0)), v_max)
      * (0.5 + random()::numeric / 2);
    v_next := now() + make_interval(secs => v_delay::double precision);
    v_status := case
      when v_next > v_delivery.budget_started_at + make_interval(secs => (v_budget * 3600)::double precision)
        then 'parked'
      else 'pending'
    end;
  end if;
  update creditgate_private.webhook_deliveries as d
  set status = v_status,
    next_attempt_at = coalesce(v_next, d.next_attempt_at),
    lease_owner = null, lease_token = null, lease_expires_at = null,
    last_http_status = v_http, last_error = v_error,
    delivered_at = case when v_status = 'delivered' then now() else d.delivered_at end,
    updated_at = now()
  where d.id = v_delivery.id;
  return jsonb_build_object(
    'delivery_id', v_delivery.id, 'status', v_status,
    'next_attempt_at', case when v_status = 'pending' then v_next end
  );
end
$$;
comment on function creditgate.service_finish_webhook_delivery(bigint, text, text, jsonb) is
'Workers report one delivery attempt: delivered, retried with backoff, parked, or endpoint gone.';

revoke all on function creditgate_private.webhook_event_types() from public, anon, authenticated;
revoke all on function creditgate_private.webhook_add(text, text [], text, text) from public, anon, authenticated;
revoke all on function creditgate_private.webhook_list() from public, anon, authenticated;
revoke all on function creditgate_private.webhook_disable(uuid, text) from public, anon, authenticated;
revoke all on function creditgate_private.webhook_redeliver(bigint) from public, anon, authenticated;
revoke all on function creditgate_private.webhook_deliveries(uuid, text, integer) from public, anon, authenticated;
revoke all on function creditgate.admin_add_webhook_endpoint(text, text [], text, text) from public, anon, authenticated;
revoke all on function creditgate.admin_list_webhook_endpoints() from public, anon, authenticated;
revoke all on function creditgate.admin_disable_webhook_endpoint(uuid) from public, anon, authenticated;
revoke all on function creditgate.admin_redeliver_webhook(bigint) from public, anon, authenticated;
revoke all on function creditgate.admin_webhook_deliveries(uuid, text, integer) from public, anon, authenticated;
grant execute on function creditgate.admin_add_webhook_endpoint(text, text [], text, text) to authenticated;
grant execute on function creditgate.admin_list_webhook_endpoints() to authenticated;
grant execute on function creditgate.admin_disable_webhook_endpoint(uuid) to authenticated;
grant execute on function creditgate.admin_redeliver_webhook(bigint) to authenticated;
grant execute on function creditgate.admin_webhook_deliveries(uuid, text, integer) to authenticated;
revoke all on function creditgate.service_claim_webhook_deliveries(text, integer, integer) from public, anon, authenticated;
revoke all on function creditgate.service_finish_webhook_delivery(bigint, text, text, jsonb) from public, anon, authenticated;
grant execute on function creditgate.service_claim_webhook_deliveries(text, integer, integer) to service_role;
grant execute on function creditgate.service_finish_webhook_delivery(bigint, text, text, jsonb) to service_role;
