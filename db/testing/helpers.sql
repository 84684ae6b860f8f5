-- Test helpers (loaded into test databases only; never part of the migrations).
--
-- They impersonate callers exactly as PostgREST does inside its transaction:
-- set_config('role', ...), set_config('request.jwt.claims', ...) and
-- set_config('request.headers', ...), all transaction-local.

create schema if not exists tests;
grant usage on schema tests to anon, authenticated, service_role;

-- A new auth user (fires creditgate's signup trigger). Call before impersonating.
create or replace function tests.create_user(
  p_email text default null,
  p_id uuid default gen_random_uuid()
) returns uuid
language plpgsql
as $$
begin
  insert into auth.users (id, aud, role, email, raw_app_meta_data, raw_user_meta_data, created_at, updated_at)
  values (
    p_id, 'authenticated', 'authenticated',
    coalesce(p_email, p_id::text || '@example.test'),
    '{"provider": "email"}', '{}', now(), now()
  );
  return p_id;
end
$$;

create or replace function tests.set_headers(p_headers jsonb) returns void
language sql
as $$
  select set_config('request.headers', p_headers::text, true);
$$;

create or replace function tests.as_anon(p_ip text default '203.0.113.10') returns void
language plpgsql
as $$
begin
  perform set_config('request.jwt.claims', '{"role": "anon"}', true);
  -- As behind Supabase's edge: cf-connecting-ip holds the client (the default
  -- client_ip_header); x-forwarded-for also carries it.
  perform set_config(
    'request.headers', json_build_object('x-forwarded-for', p_ip, 'cf-connecting-ip', p_ip)::text, true
  );
  perform set_config('role', 'anon', true);
end
$$;

create or replace function tests.as_user(p_user_id uuid, p_ip text default '203.0.113.10')
returns void
language plpgsql
as $$
begin
  perform set_config(
    'request.jwt.claims',
    json_build_object(
      'sub', p_user_id, 'role', 'authenticated', 'aud', 'authenticated',
      'email', p_user_id::text || '@example.test',
      -- A forged admin flag in user-editable metadata must never matter.
      'user_metadata', json_build_object('is_admin', true, 'role', 'admin')
    )::text,
    true
  );
  -- As behind Supabase's edge: cf-connecting-ip holds the client (the default
  -- client_ip_header); x-forwarded-for also carries it.
  perform set_config(
    'request.headers', json_build_object('x-forwarded-for', p_ip, 'cf-connecting-ip', p_ip)::text, true
  );
  perform set_config('role', 'authenticated', true);
end
$$;

create or replace function tests.as_service() returns void
language plpgsql
as $$
begin
  perform set_config('request.jwt.claims', '{"role": "service_role"}', true);
  perform set_config('role', 'service_role', true);
end
$$;

-- Back to the test owner (the deployer role), claims cleared.
create or replace function tests.as_owner() returns void
language plpgsql
as $$
begin
  perform set_config('role', 'none', true);
  perform set_config('request.jwt.claims', '', true);
  perform set_config('request.headers', '', true);
end
$$;

-- Make p_user_id an admin (as the owner).
create or replace function tests.make_admin(p_user_id uuid) returns void
language sql
as $$
  insert into creditgate_private.admins (user_id) values (p_user_id) on conflict do nothing;
$$;

-- The error p_sql raises, as {sqlstate, message, detail}; null if it succeeds. Runs p_sql as
-- the current role (security invoker), so it works while impersonating anon, authenticated
-- or service_role. DETAIL becomes jsonb when it is a JSON object or array, else a JSON
-- string. (Not tests.error_of in generation.sql, which returns a text summary.)
create or replace function tests.error_json(p_sql text) returns jsonb
language plpgsql
as $$
declare
  v_state text;
  v_message text;
  v_detail text;
begin
  execute p_sql;
  return null;
exception when others then
  get stacked diagnostics v_state = returned_sqlstate, v_message = message_text,
    v_detail = pg_exception_detail;
  return jsonb_build_object(
    'sqlstate', v_state, 'message', v_message,
    'detail', case when v_detail ~ '^\s*[\[{]' then v_detail::jsonb else to_jsonb(v_detail) end
  );
end
$$;

grant execute on all functions in schema tests to anon, authenticated, service_role;
