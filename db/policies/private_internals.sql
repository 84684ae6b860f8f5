-- RLS and privileges for the server-only bookkeeping of generations and admin grants
-- (0010): idempotency records, leases and settle results, who granted what. RLS on with
-- no policy, no grants: only creditgate's definer functions read or write them.

alter table creditgate_private.generation_requests enable row level security;
alter table creditgate_private.generation_leases enable row level security;
alter table creditgate_private.admin_grants enable row level security;

revoke all on table creditgate_private.generation_requests, creditgate_private.generation_leases,
  creditgate_private.admin_grants
  from public, anon, authenticated, service_role;
