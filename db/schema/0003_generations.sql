-- The generation lifecycle: model and LoRA registry (public), routes and LoRA sources
-- (private), generations and their media, rate limits, provider call log.

create table creditgate.models (
  id text primary key,
  kind text not null,
  name text not null,
  description text not null default '',
  enabled boolean not null default true,
  -- Pricing inputs (credits). Price = base + per_megapixel*MP + per_step*steps
  --   + per_second*duration + per_1k_tokens*(tokens/1000) + LoRA add-ons, rounded up, >= 1.
  price_base bigint not null default 0,
  price_per_megapixel numeric(12, 4) not null default 0,
  price_per_step numeric(12, 4) not null default 0,
  price_per_second numeric(12, 4) not null default 0,
  price_per_1k_tokens numeric(12, 4) not null default 0,
  -- Limits.
  max_width integer,
  max_height integer,
  max_pixels bigint,
  max_steps integer,
  max_duration_seconds integer,
  max_output_tokens integer,
  max_prompt_length integer not null default 2000,
  max_loras integer not null default 0,
  defaults jsonb not null default '{}',
  sort_order integer not null default 100,
  created_at timestamptz not null default now(),
  constraint models_id_check check (id ~ '^[a-z0-9][a-z0-9._-]{0,63}$'),
  constraint models_kind_check check (kind in ('image', 'edit', 'video', 'chat')),
  constraint models_price_base_check check (price_base >= 0),
  constraint models_prices_check check (
    price_per_megapixel >= 0 and price_per_step >= 0 and price_per_second >= 0
    and price_per_1k_tokens >= 0
  ),
  constraint models_max_loras_check check (max_loras between 0 and 10)
);
comment on table creditgate.models is
'Public model registry: kind, pricing inputs, limits. Routes to providers live in creditgate_private.';

create table creditgate.loras (
  id text primary key,
  name text not null,
  description text not null default '',
  model_ids text[] not null,
  price bigint not null default 0,
  enabled boolean not null default true,
  created_at timestamptz not null default now(),
  constraint loras_id_check check (id ~ '^[a-z0-9][a-z0-9_-]{0,63}$'),
  constraint loras_price_check check (price >= 0)
);
comment on table creditgate.loras is
'Public LoRA registry: which models each fits and its add-on price. Sources are private.';

create table creditgate_private.model_routes (
  model_id text primary key references creditgate.models (id),
  provider text not null,
  provider_model text not null,
  endpoint text not null,
  options jsonb not null default '{}',
  constraint model_routes_provider_check check (
    provider in ('local', 'openai', 'huggingface', 'fal', 'wavespeed', 'gradio')
  )
);
comment on table creditgate_private.model_routes is
'Server-only: provider, provider model, endpoint, options (timeouts, api_key_ref) per model.';

create table creditgate_private.lora_sources (
  lora_id text primary key references creditgate.loras (id),
  source text not null
);
comment on table creditgate_private.lora_sources is
'Server-only LoRA file names, paths or provider references.';

create table creditgate.generations (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null references creditgate.balances (user_id),
  model_id text not null references creditgate.models (id),
  kind text not null,
  status text not null default 'queued',
  params jsonb not null,
  cost bigint not null,
  actual_cost bigint,
  idempotency_key text not null,
  request_hash text not null,
  charge_key text not null,
  attempts integer not null default 0,
  max_attempts integer not null default 3,
  lease_owner text,
  lease_token uuid,
  lease_expires_at timestamptz,
  output jsonb,
  error jsonb,
  settle_result jsonb,
  client_ip inet,
  created_at timestamptz not null default now(),
  started_at timestamptz,
  finished_at timestamptz,
  updated_at timestamptz not null default now(),
  constraint generations_status_check check (
    status in ('queued', 'running', 'succeeded', 'failed', 'canceled')
  ),
  constraint generations_kind_check check (kind in ('image', 'edit', 'video', 'chat')),
  constraint generations_cost_check check (cost > 0),
  constraint generations_actual_cost_check check (actual_cost is null or (actual_cost >= 0 and actual_cost <= cost)),
  constraint generations_attempts_check check (attempts >= 0 and attempts <= max_attempts),
  constraint generations_charge_key_key unique (charge_key),
  constraint generations_user_id_idempotency_key_key unique (user_id, idempotency_key),
  constraint generations_lease_check check (
    (status = 'running') = (lease_token is not null and lease_owner is not null and lease_expires_at is not null)
  )
);
comment on table creditgate.generations is
'One row per paid request: charged in the same transaction that created it, settled by a worker.';
create index generations_user_id_created_at_idx on creditgate.generations (user_id, created_at desc);
create index generations_queued_idx on creditgate.generations (created_at) where status = 'queued';
create index generations_lease_expires_at_idx on creditgate.generations (lease_expires_at)
  where status = 'running';
create index generations_model_id_idx on creditgate.generations (model_id);

create table creditgate.media (
  id uuid primary key default gen_random_uuid(),
  generation_id uuid not null references creditgate.generations (id),
  user_id uuid not null references creditgate.balances (user_id),
  position integer not null default 0,
  storage_key text not null,
  content_type text not null,
  bytes bigint not null,
  width integer,
  height integer,
  duration_seconds numeric,
  saved boolean not null default false,
  expires_at timestamptz,
  deleted_at timestamptz,
  purged_at timestamptz,
  created_at timestamptz not null default now(),
  constraint media_storage_key_key unique (storage_key),
  constraint media_storage_key_check check (storage_key ~ '^media/[0-9a-f-]{36}/[A-Za-z0-9._-]{1,100}$'),
  constraint media_bytes_check check (bytes > 0),
  constraint media_generation_id_position_key unique (generation_id, position)
);
comment on table creditgate.media is
'Stored outputs. Temporary media expire (TTL setting) unless saved; clients get signed URLs only.';
create index media_user_id_created_at_idx on creditgate.media (user_id, created_at desc);
create index media_expires_at_idx on creditgate.media (expires_at)
  where purged_at is null and expires_at is not null;

create table creditgate_private.rate_limit_rules (
  id text primary key,
  scope text not null,
  kind text,
  window_seconds integer not null,
  max_requests integer not null,
  enabled boolean not null default true,
  constraint rate_limit_rules_scope_check check (scope in ('user', 'ip')),
  constraint rate_limit_rules_kind_check check (kind is null or kind in ('image', 'edit', 'video', 'chat')),
  constraint rate_limit_rules_window_seconds_check check (window_seconds between 1 and 86400),
  constraint rate_limit_rules_max_requests_check check (max_requests >= 1)
);
comment on table creditgate_private.rate_limit_rules is
'Request limits per user or per client IP over fixed windows (optionally per model kind).';

create table creditgate_private.rate_limit_counters (
  rule_id text not null references creditgate_private.rate_limit_rules (id),
  subject text not null,
  window_start timestamptz not null,
  count integer not null,
  primary key (rule_id, subject, window_start)
);
comment on table creditgate_private.rate_limit_counters is
'Requests counted per rule, subject (user id or IP) and window.';
create index rate_limit_counters_window_start_idx on creditgate_private.rate_limit_counters (window_start);

create table creditgate_private.provider_calls (
  id bigint generated always as identity primary key,
  generation_id uuid not null references creditgate.generations (id),
  attempt integer not null,
  worker_id text,
  provider text,
  http_status integer,
  latency_ms integer,
  outcome text not null,
  error_code text,
  error_message text,
  created_at timestamptz not null default now(),
  constraint provider_calls_outcome_check check (outcome in ('succeeded', 'failed', 'lease_expired'))
);
comment on table creditgate_private.provider_calls is
'Every provider attempt, success or failure, with HTTP status and latency.';
create index provider_calls_generation_id_idx on creditgate_private.provider_calls (generation_id);
create index provider_calls_created_at_idx on creditgate_private.provider_calls (created_at);
