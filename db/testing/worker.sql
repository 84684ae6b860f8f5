-- Test helpers for the worker side (loaded into test databases only).
--
-- tests.worker_models()                      tests.seed_models() unless already loaded
-- tests.make_queued_generation(...) -> uuid  a charged, queued generation, made as
--                                            request_generation makes one but with a cost of
--                                            the test's choosing and a distinct created_at
-- tests.request_as(user, model, params, key) -> uuid
--                                            the real request_generation, as the user
-- tests.balance_of(user) -> bigint           the cached balance

create schema if not exists tests;

create or replace function tests.worker_models() returns void
language plpgsql
as $$
begin
  -- The request side's fixture (db/testing/generation.sql): img-test, edit-test, video-test,
  -- chat-test routed to provider local, LoRAs lora-a and lora-b. Loaded once per test.
  if not exists (select 1 from creditgate.models as m where m.id = 'img-test') then
    perform tests.seed_models();
  end if;
end
$$;

-- Charged with key charge:<id> and inserted in one go, as request_generation does; cost is
-- the caller's so tests can reason about exact amounts. created_at defaults to the wall
-- clock so generations made in one transaction still have a claim order.
create or replace function tests.make_queued_generation(
  p_user_id uuid,
  p_model_id text default 'img-test',
  p_cost bigint default 100,
  p_params jsonb default '{"prompt": "a lighthouse at dusk"}',
  p_max_attempts integer default 3,
  p_created_at timestamptz default clock_timestamp()
) returns uuid
language plpgsql
as $$
declare
  v_id uuid := gen_random_uuid();
  v_kind text;
begin
  perform tests.worker_models();
  select m.kind into strict v_kind from creditgate.models as m where m.id = p_model_id;
  perform creditgate_private.spend_credits(
    p_user_id, p_cost, 'charge:' || v_id::text, v_id, 'generation',
    jsonb_build_object('model_id', p_model_id)
  );
  insert into creditgate.generations (
    id, user_id, model_id, kind, status, params, cost, idempotency_key,
    max_attempts, created_at, updated_at
  ) values (
    v_id, p_user_id, p_model_id, v_kind, 'queued', p_params, p_cost, 'test:' || v_id::text,
    p_max_attempts, p_created_at, p_created_at
  );
  insert into creditgate_private.generation_requests (user_id, idempotency_key, generation_id, request_hash)
  values (p_user_id, 'test:' || v_id::text, v_id, md5(jsonb_build_array(p_model_id, p_params)::text));
  return v_id;
end
$$;

create or replace function tests.request_as(
  p_user_id uuid,
  p_model_id text default 'img-test',
  p_params jsonb default '{"prompt": "a lighthouse at dusk"}',
  p_key text default null
) returns uuid
language plpgsql
as $$
declare
  v_result jsonb;
begin
  perform tests.worker_models();
  perform tests.as_user(p_user_id);
  v_result := creditgate.request_generation(
    p_model_id, p_params, coalesce(p_key, gen_random_uuid()::text)
  );
  perform tests.as_owner();
  return (v_result ->> 'generation_id')::uuid;
end
$$;

create or replace function tests.balance_of(p_user_id uuid) returns bigint
language sql
as $$
  select b.balance from creditgate.balances as b where b.user_id = p_user_id;
$$;

grant execute on all functions in schema tests to anon, authenticated, service_role;

-- A generation with its server-only bookkeeping, as one row (tests read the machinery
-- here; owners cannot: it lives in creditgate_private since 0010).
create or replace view tests.generations_full as
select g.*,
  r.request_hash,
  r.client_ip,
  l.lease_owner,
  l.lease_token,
  l.lease_expires_at,
  l.settle_result,
  l.settled_lease_token,
  'charge:' || g.id::text as charge_key
from creditgate.generations as g
left join creditgate_private.generation_requests as r
  on r.user_id = g.user_id and r.idempotency_key = g.idempotency_key
left join creditgate_private.generation_leases as l on l.generation_id = g.id;
grant select on tests.generations_full to service_role;
