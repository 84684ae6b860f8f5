-- RLS and privileges for account deletion's private tables: RLS on with no policy, no
-- grants (only creditgate's definer functions read or write them).

alter table creditgate_private.deleted_users enable row level security;
alter table creditgate_private.media_purges enable row level security;

revoke all on table creditgate_private.deleted_users, creditgate_private.media_purges
  from public, anon, authenticated, service_role;
