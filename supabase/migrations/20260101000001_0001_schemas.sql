-- creditgate generated migration; do not edit. source: schema/0001_schemas.sql sha256: 097d0b9a8bb09f5c98e3a1726f742ff07546c5d799e001df554f3f9d8c9efae5

-- creditgate: the API schema (exposed through the Data API) and the private schema
-- (never exposed). Functions get no implicit EXECUTE for PUBLIC: every function file
-- grants exactly what its callers need.

create schema if not exists creditgate;
comment on schema creditgate is
'creditgate API: client-readable tables (RLS, owner-only) and RPC functions.';

create schema if not exists creditgate_private;
comment on schema creditgate_private is
'creditgate internals: routes, secrets references, settings, admins, limits, logs. Never exposed.';

grant usage on schema creditgate to anon, authenticated, service_role;
revoke all on schema creditgate_private from public, anon, authenticated;

alter default privileges in schema creditgate revoke execute on functions from public;
alter default privileges in schema creditgate_private revoke execute on functions from public;
alter default privileges in schema creditgate revoke all on tables from public;
alter default privileges in schema creditgate_private revoke all on tables from public;
