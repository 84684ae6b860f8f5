-- A database prepared the way a hosted Supabase project is, for `supabase db push` tests.
--
-- Deliberately independent of db/bootstrap (creditgate's own parity script): what Supabase's
-- image and GoTrue's migrations create, written from their published init scripts. The
-- API roles; schema auth owned by supabase_auth_admin with GoTrue's full auth.users and
-- auth.uid()/role()/jwt(); schema extensions with pgcrypto; the supabase_realtime
-- publication; and the project's "postgres" role, here :"migrator": NOSUPERUSER, CREATEROLE,
-- BYPASSRLS, with the grants a hosted postgres role has on auth. Run as a superuser
-- (psql -v migrator=...). Roles are cluster-wide: created only when missing.

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
      ('supabase_auth_admin', 'nologin noinherit createrole')
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

select set_config('devkit.migrator', :'migrator', false);
do $$
declare
  v_migrator text := current_setting('devkit.migrator');
begin
  begin
    if not exists (select 1 from pg_roles where rolname = v_migrator) then
      execute format('create role %I login nosuperuser createrole bypassrls', v_migrator);
    end if;
  exception when duplicate_object or unique_violation then
    null;
  end;
  execute format('grant anon, authenticated, service_role to %I with admin option', v_migrator);
  -- A hosted project's postgres is a member of supabase_auth_admin (it may act as GoTrue).
  execute format('grant supabase_auth_admin to %I', v_migrator);
  execute format('grant create, temporary on database %I to %I', current_database(), v_migrator);
end
$$;
grant anon, authenticated, service_role to authenticator;

create schema extensions;
create extension pgcrypto with schema extensions;
grant usage on schema extensions to anon, authenticated, service_role;
grant usage on schema public to anon, authenticated, service_role;

create schema auth authorization supabase_auth_admin;
grant usage on schema auth to anon, authenticated, service_role;

set role supabase_auth_admin;
-- GoTrue's auth.users as of its current migrations (every column a hosted project has).
create table auth.users (
  instance_id uuid null,
  id uuid not null,
  aud varchar(255) null,
  "role" varchar(255) null,
  email varchar(255) null,
  encrypted_password varchar(255) null,
  email_confirmed_at timestamptz null,
  invited_at timestamptz null,
  confirmation_token varchar(255) null,
  confirmation_sent_at timestamptz null,
  recovery_token varchar(255) null,
  recovery_sent_at timestamptz null,
  email_change_token_new varchar(255) null,
  email_change varchar(255) null,
  email_change_sent_at timestamptz null,
  last_sign_in_at timestamptz null,
  raw_app_meta_data jsonb null,
  raw_user_meta_data jsonb null,
  is_super_admin bool null,
  created_at timestamptz null,
  updated_at timestamptz null,
  phone text null default null,
  phone_confirmed_at timestamptz null,
  phone_change text null default '',
  phone_change_token varchar(255) null default '',
  phone_change_sent_at timestamptz null,
  confirmed_at timestamptz generated always as (least(email_confirmed_at, phone_confirmed_at)) stored,
  email_change_token_current varchar(255) null default '',
  email_change_confirm_status smallint null default 0,
  banned_until timestamptz null,
  reauthentication_token varchar(255) null default '',
  reauthentication_sent_at timestamptz null,
  is_sso_user boolean not null default false,
  deleted_at timestamptz null,
  is_anonymous boolean not null default false,
  constraint users_pkey primary key (id),
  constraint users_phone_key unique (phone),
  constraint users_email_change_confirm_status_check
    check (email_change_confirm_status >= 0 and email_change_confirm_status <= 2)
);
create index users_instance_id_idx on auth.users using btree (instance_id);
create index users_is_anonymous_idx on auth.users using btree (is_anonymous);
create unique index confirmation_token_idx on auth.users using btree (confirmation_token)
  where confirmation_token !~ '^[0-9 ]*$';
create unique index users_email_partial_key on auth.users (email) where (is_sso_user = false);
comment on table auth.users is 'Auth: Stores user login data within a secure schema.';

create function auth.uid() returns uuid language sql stable as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.sub', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
  )::uuid
$$;
create function auth.role() returns text language sql stable as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.role', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
  )::text
$$;
create function auth.jwt() returns jsonb language sql stable as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim', true), ''),
    nullif(current_setting('request.jwt.claims', true), '')
  )::jsonb
$$;
reset role;

-- What a hosted project's postgres role may do in auth (Supabase's auth permissions script).
select format('grant usage on schema auth to %I', :'migrator') \gexec
select format('grant all on all tables in schema auth to %I', :'migrator') \gexec
select format('grant all on all routines in schema auth to %I', :'migrator') \gexec

create publication supabase_realtime;
select format('alter publication supabase_realtime owner to %I', :'migrator') \gexec
