-- creditgate generated migration; do not edit. source: schema/0014_ops.sql sha256: 7bdd6aa1cde9becacc2fe09036a1f1aa6680ebe750f718a2a8a2430b513cc838

-- Running unattended (DESIGN §8): scheduled jobs and their runs, stored audit results, the
-- transactional outbox, webhook endpoints, deliveries and delivery attempts, and the queue
-- of expired media marked for purge. Nothing here needs pg_cron: the jobs are plain
-- functions that pg_cron or `creditgate worker` calls (db/functions/ops/jobs.sql).

create table creditgate_private.jobs (
  name text primary key,
  cron_schedule text not null,
  interval_seconds integer not null,
  description text not null,
  on_pg_cron boolean not null default false,
  last_started_at timestamptz,
  last_finished_at timestamptz,
  last_ok boolean,
  last_result jsonb,
  constraint jobs_name_check check (name ~ '^[a-z][a-z0-9-]{0,40}$'),
  constraint jobs_interval_seconds_check check (interval_seconds between 1 and 604800)
);
comment on table creditgate_private.jobs is
'Periodic jobs: pg_cron schedule, the same cadence for workers, whether pg_cron runs it, last run.';

insert into creditgate_private.jobs (name, cron_schedule, interval_seconds, description)
values
  ('expire-credits', '*/5 * * * *', 300,
    'post expire entries for lapsed lots; raise credits.expiring for lots about to lapse'),
  ('reap-leases', '* * * * *', 60, 're-queue or fail-and-refund generations whose worker vanished'),
  ('prune-rate-limits', '*/15 * * * *', 900, 'delete rate-limit counters of windows that ended'),
  ('mark-media', '*/10 * * * *', 600, 'queue expired temporary media for purge from storage'),
  ('audit', '17 3 * * *', 86400, 'run audit() and store the result in audit_runs')
on conflict (name) do nothing;

create table creditgate_private.job_runs (
  id bigint generated always as identity primary key,
  job text not null references creditgate_private.jobs (name),
  runner text not null,
  started_at timestamptz not null,
  finished_at timestamptz not null,
  ok boolean not null,
  result jsonb not null
);
comment on table creditgate_private.job_runs is
'Every run of a periodic job, by pg_cron or a worker: when, how long, outcome.';
create index job_runs_job_started_at_idx on creditgate_private.job_runs (job, started_at desc);

create table creditgate_private.audit_runs (
  id bigint generated always as identity primary key,
  started_at timestamptz not null,
  finished_at timestamptz not null,
  ok boolean not null,
  failures bigint not null,
  result jsonb not null
);
comment on table creditgate_private.audit_runs is
'Stored results of scheduled audit() runs; a failed one also raises audit.failed.';
create index audit_runs_started_at_idx on creditgate_private.audit_runs (started_at desc);

-- The outbox: written in the transaction of its cause, so a rolled-back cause leaves none.
create table creditgate_private.events (
  id uuid primary key default gen_random_uuid(),
  event_type text not null,
  user_id uuid,
  dedupe_key text,
  payload jsonb not null,
  created_at timestamptz not null default now(),
  constraint events_event_type_check check (event_type in (
    'balance.low', 'credits.expiring', 'credits.added', 'generation.succeeded',
    'generation.failed', 'clawback.owed', 'audit.failed'
  )),
  constraint events_dedupe_key_key unique (dedupe_key)
);
comment on table creditgate_private.events is
'Transactional outbox of money and lifecycle events (ids, amounts, timestamps; no prompts).';
create index events_created_at_idx on creditgate_private.events (created_at);
create index events_user_id_idx on creditgate_private.events (user_id) where user_id is not null;

create table creditgate_private.webhook_endpoints (
  id uuid primary key default gen_random_uuid(),
  url text not null,
  secret text not null,
  event_types text [] not null,
  description text,
  enabled boolean not null default true,
  disabled_reason text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint webhook_endpoints_url_check check (url ~ '^https?://' and length(url) <= 2000),
  constraint webhook_endpoints_event_types_check check (cardinality(event_types) >= 1)
);
comment on table creditgate_private.webhook_endpoints is
'Operator-registered webhook receivers: URL, Standard Webhooks secret, event types.';

create table creditgate_private.webhook_deliveries (
  id bigint generated always as identity primary key,
  event_id uuid not null references creditgate_private.events (id),
  endpoint_id uuid not null references creditgate_private.webhook_endpoints (id),
  status text not null default 'pending',
  attempts integer not null default 0,
  next_attempt_at timestamptz not null default now(),
  budget_started_at timestamptz not null default now(),
  lease_owner text,
  lease_token uuid,
  lease_expires_at timestamptz,
  last_http_status integer,
  last_error text,
  created_at timestamptz not null default now(),
  delivered_at timestamptz,
  updated_at timestamptz not null default now(),
  constraint webhook_deliveries_status_check check (
    status in ('pending', 'delivering', 'delivered', 'parked', 'canceled')
  ),
  constraint webhook_deliveries_lease_check check (
    (status = 'delivering') = (lease_token is not null and lease_expires_at is not null)
  ),
  constraint webhook_deliveries_event_id_endpoint_id_key unique (event_id, endpoint_id)
);
comment on table creditgate_private.webhook_deliveries is
'One event to one endpoint: at-least-once, retried with backoff, parked after the budget.';
create index webhook_deliveries_due_idx on creditgate_private.webhook_deliveries (next_attempt_at)
  where status = 'pending';
create index webhook_deliveries_lease_idx on creditgate_private.webhook_deliveries (lease_expires_at)
  where status = 'delivering';
create index webhook_deliveries_parked_idx on creditgate_private.webhook_deliveries (updated_at)
  where status = 'parked';
create index webhook_deliveries_endpoint_id_idx on creditgate_private.webhook_deliveries (endpoint_id);

create table creditgate_private.webhook_attempts (
  id bigint generated always as identity primary key,
  delivery_id bigint not null references creditgate_private.webhook_deliveries (id),
  attempt integer not null,
  worker_id text,
  started_at timestamptz not null,
  outcome text not null,
  http_status integer,
  latency_ms integer,
  error text,
  constraint webhook_attempts_outcome_check check (
    outcome in ('delivered', 'failed', 'gone', 'refused', 'lease_expired')
  )
);
comment on table creditgate_private.webhook_attempts is
'Every delivery attempt: HTTP status, latency, error.';
create index webhook_attempts_delivery_id_idx on creditgate_private.webhook_attempts (delivery_id);

-- No foreign key to media: erasing a user's media rows must never be blocked by this queue.
create table creditgate_private.media_purge_queue (
  media_id uuid primary key,
  storage_key text not null,
  due_at timestamptz not null,
  queued_at timestamptz not null default now()
);
comment on table creditgate_private.media_purge_queue is
'Expired temporary media marked by the mark-media job for `creditgate cleanup` to purge.';
