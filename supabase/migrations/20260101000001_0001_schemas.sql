-- creditgate generated migration; do not edit. source: schema/0001_schemas.sql sha256: 3df76621dd7043444512b51ab9121d52be74240e4dcecd2933bb8c86fa8f164c

-- creditgate: the API schema (exposed through the Data API) and the private schema
-- (never exposed). PostgreSQL grants EXECUTE on new functions to PUBLIC, and per-schema
-- default privileges cannot take that away (only a role-wide rule could, which would
-- reach into the host project's other schemas): so every function file revokes from
-- public, anon and authenticated and grants exactly what its callers need, and
-- db/tests/00_invariants.sql fails on any function that forgets.

create schema if not exists creditgate;
comment on schema creditgate is
'creditgate API: client-readable tables (RLS, owner-only) and RPC functions.';

create schema if not exists creditgate_private;
comment on schema creditgate_private is
'creditgate internals: routes, secrets references, settings, admins, limits, logs. Never exposed.';

grant usage on schema creditgate to anon, authenticated, service_role;
revoke all on schema creditgate_private from public, anon, authenticated;

