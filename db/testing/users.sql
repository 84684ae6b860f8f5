-- Test helpers for auth.users as GoTrue changes it (loaded into test databases only).
--
-- GoTrue connects as supabase_auth_admin, the owner of auth.users, which has no rights on
-- creditgate's tables: every creditgate trigger on auth.users must work for that role.
-- These helpers switch to it (transaction-local) for one statement, then back.

create schema if not exists tests;

-- An anonymous sign-in (auth.users.is_anonymous): no email, as GoTrue creates it.
create or replace function tests.create_anonymous_user(p_id uuid default gen_random_uuid())
returns uuid
language plpgsql
as $$
begin
  perform set_config('role', 'supabase_auth_admin', true);
  insert into auth.users (id, aud, role, raw_app_meta_data, raw_user_meta_data, is_anonymous, created_at, updated_at)
  values (p_id, 'authenticated', 'authenticated', '{}', '{}', true, now(), now());
  perform set_config('role', 'none', true);
  return p_id;
end
$$;

-- The anonymous user links an email (GoTrue's conversion to a permanent user).
create or replace function tests.make_permanent(p_id uuid) returns void
language plpgsql
as $$
begin
  perform set_config('role', 'supabase_auth_admin', true);
  update auth.users
  set is_anonymous = false, email = p_id::text || '@example.test', updated_at = now()
  where id = p_id;
  perform set_config('role', 'none', true);
end
$$;

-- Deletes the user as GoTrue (or the Supabase dashboard) does: as supabase_auth_admin.
create or replace function tests.delete_user(p_id uuid) returns void
language plpgsql
as $$
begin
  perform set_config('role', 'supabase_auth_admin', true);
  delete from auth.users where id = p_id;
  perform set_config('role', 'none', true);
end
$$;
