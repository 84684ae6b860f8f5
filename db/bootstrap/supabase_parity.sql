-- Supabase parity for a plain PostgreSQL (local development, tests, CI).
--
-- Creates what a Supabase project already provides: the API roles with Supabase's
-- attributes, schema auth with auth.users and auth.uid()/auth.role()/auth.jwt() defined as
-- Supabase defines them (reading request.jwt.claims), schema extensions with pgcrypto, and
-- the supabase_realtime publication. Run as a superuser. Idempotent. Never part of the
-- Supabase migrations: a hosted project already has all of this.

-- Roles are cluster-wide; two databases bootstrapping at once must not fail.
do $$
declare
  v_role record;
begin
  for v_role in
    select * from (values
      ('anon', 'nologin noinherit'),
      ('authenticated', 'nologin noinherit'),
      ('service_role', 'nologin noinherit bypassrls'),
      ('authenticator', 'login noinherit'),
      ('supabase_auth_admin', 'nologin noinherit createrole'),
      ('supabase_realtime_admin', 'nologin noinherit'),
      -- Stands in for a hosted project's "postgres" role: migrations and pgTAP tests run as
      -- it, so they prove they need no superuser.
      ('creditgate_deployer', 'login nosuperuser createrole bypassrls')
    ) as r (name, attrs)
  loop
    begin
      if not exists (select 1 from pg_roles where rolname = v_role.name) then
        execute format('create role %I %s', v_role.name, v_role.attrs);
      end if;
    exception when duplicate_object or unique_violation then
      null;
    end;
  end loop;
end
$$;

do $$
begin
  grant anon, authenticated, service_role to authenticator;
  grant anon, authenticated, service_role, authenticator to creditgate_deployer with admin option;
  -- As on a hosted project, where postgres is a member of supabase_auth_admin (so it can
  -- manage triggers on auth.users); tests delete users as that role, as GoTrue does.
  grant supabase_auth_admin to creditgate_deployer;
end
$$;

do $$
begin
  execute format('grant create, temporary on database %I to creditgate_deployer', current_database());
end
$$;

create schema if not exists extensions;
create extension if not exists pgcrypto with schema extensions;
grant usage on schema extensions to anon, authenticated, service_role;

create schema if not exists auth authorization supabase_auth_admin;
grant usage on schema auth to anon, authenticated, service_role;

-- The columns of a hosted project's auth.users (GoTrue's schema).
create table if not exists auth.users (
  instance_id uuid,
  id uuid not null primary key,
  aud varchar(255),
  role varchar(255),
  email varchar(255),
  encrypted_password varchar(255),
  email_confirmed_at timestamptz,
  invited_at timestamptz,
  confirmation_token varchar(255),
  confirmation_sent_at timestamptz,
  recovery_token varchar(255),
  recovery_sent_at timestamptz,
  email_change_token_new varchar(255),
  email_change varchar(255),
  email_change_sent_at timestamptz,
  last_sign_in_at timestamptz,
  raw_app_meta_data jsonb,
  raw_user_meta_data jsonb,
  is_super_admin boolean,
  created_at timestamptz,
  updated_at timestamptz,
  phone text unique default null,
  phone_confirmed_at timestamptz,
  phone_change text default '',
  phone_change_token varchar(255) default '',
  phone_change_sent_at timestamptz,
  confirmed_at timestamptz generated always as (least(email_confirmed_at, phone_confirmed_at)) stored,
  email_change_token_current varchar(255) default '',
  email_change_confirm_status smallint default 0
    check (email_change_confirm_status >= 0 and email_change_confirm_status <= 2),
  banned_until timestamptz,
  reauthentication_token varchar(255) default '',
  reauthentication_sent_at timestamptz,
  is_sso_user boolean not null default false,
  deleted_at timestamptz,
  is_anonymous boolean not null default false
);
alter table auth.users owner to supabase_auth_admin;
grant all on table auth.users to creditgate_deployer;
grant select on table auth.users to service_role;
create index if not exists users_instance_id_idx on auth.users (instance_id);
create index if not exists users_is_anonymous_idx on auth.users (is_anonymous);
comment on table auth.users is 'Auth: Stores user login data within a secure schema.';

create or replace function auth.uid() returns uuid
language sql stable
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.sub', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
  )::uuid
$$;

create or replace function auth.role() returns text
language sql stable
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.role', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
  )::text
$$;

create or replace function auth.jwt() returns jsonb
language sql stable
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim', true), ''),
    nullif(current_setting('request.jwt.claims', true), '')
  )::jsonb
$$;

alter function auth.uid() owner to supabase_auth_admin;
alter function auth.role() owner to supabase_auth_admin;
alter function auth.jwt() owner to supabase_auth_admin;
grant execute on function auth.uid(), auth.role(), auth.jwt() to public;

do $$
begin
  if not exists (select 1 from pg_publication where pubname = 'supabase_realtime') then
    create publication supabase_realtime;
  end if;
  alter publication supabase_realtime owner to creditgate_deployer;
end
$$;
