-- RLS and privileges for the operations tables (jobs, runs, audit results, outbox,
-- webhooks, purge queue): all private. RLS on with no policy, no grants; everything goes
-- through definer functions.

alter table creditgate_private.jobs enable row level security;
alter table creditgate_private.job_runs enable row level security;
alter table creditgate_private.audit_runs enable row level security;
alter table creditgate_private.events enable row level security;
alter table creditgate_private.webhook_endpoints enable row level security;
alter table creditgate_private.webhook_deliveries enable row level security;
alter table creditgate_private.webhook_attempts enable row level security;
alter table creditgate_private.media_purge_queue enable row level security;

revoke all on table creditgate_private.jobs, creditgate_private.job_runs,
  creditgate_private.audit_runs, creditgate_private.events,
  creditgate_private.webhook_endpoints, creditgate_private.webhook_deliveries,
  creditgate_private.webhook_attempts, creditgate_private.media_purge_queue
  from public, anon, authenticated, service_role;
revoke all on sequence creditgate_private.job_runs_id_seq, creditgate_private.audit_runs_id_seq,
  creditgate_private.webhook_deliveries_id_seq, creditgate_private.webhook_attempts_id_seq
  from public, anon, authenticated, service_role;

-- The balance.low trigger on creditgate.balances, with the current threshold bounds
-- (db/functions/ops/outbox.sql); here because policies run after every function exists.
select creditgate_private.install_balance_low_trigger();
