-- Prices are fixed at charge time (DESIGN §3, amendments of turn 2; issue 17 item 3). A
-- chat turn is charged for max_tokens at the model's prices; settle prices the tokens
-- actually used with the prices the generation was charged at (generations.prices), so a
-- price change while the turn is in flight neither refunds almost everything (price drop)
-- nor charges for tokens that were not used (price rise).
begin;
set local client_min_messages = warning;
select plan(9);

select tests.worker_models();
select tests.create_user() as u \gset
-- 1 credit per token: 'hello world!' is 3 prompt tokens; max_tokens 100 -> 1 + 103 = 104.
update creditgate.models set price_base = 1, price_per_1k_tokens = 1000 where id = 'chat-test';
create temp table the_user on commit drop as select :'u'::uuid as id;

create function pg_temp.turn(p_key text) returns uuid
language plpgsql as $$
declare
  v_id uuid;
begin
  perform tests.as_user((select t.id from the_user as t));
  v_id := (creditgate.request_generation('chat-test',
    '{"messages": [{"role": "user", "content": "hello world!"}], "max_tokens": 100}', p_key) ->> 'generation_id')::uuid;
  perform tests.as_owner();
  return v_id;
end
$$;
create function pg_temp.run(p_generation uuid, p_completion_tokens integer) returns jsonb
language plpgsql as $$
declare
  v_job jsonb;
  v_result jsonb;
begin
  perform tests.as_service();
  v_job := creditgate.service_claim_generations('w-price', 1) -> 0;
  if v_job ->> 'generation_id' is distinct from p_generation::text then
    raise exception 'claimed % instead of %', v_job ->> 'generation_id', p_generation;
  end if;
  v_result := creditgate.service_settle_generation(p_generation, 'w-price', v_job ->> 'lease_token',
    jsonb_build_object('status', 'succeeded', 'output', jsonb_build_object(
      'text', 'hi', 'usage', jsonb_build_object('completion_tokens', p_completion_tokens))));
  perform tests.as_owner();
  return v_result;
end
$$;

-- ------------------------------------------------------------ the price drops mid-turn
select pg_temp.turn('drop') as g_drop \gset
select is((select g.cost::bigint from creditgate.generations as g where g.id = :'g_drop'), 104::bigint,
  'charged 104 for 100 output tokens at 1 credit a token');
select is(
  (select g.prices from creditgate.generations as g where g.id = :'g_drop'),
  '{"price_base": 1, "price_per_megapixel": 0, "price_per_step": 0, "price_per_second": 0, "price_per_1k_tokens": 1000}'::jsonb,
  'the generation keeps the prices it was charged at');
update creditgate.models set price_per_1k_tokens = 10 where id = 'chat-test';
select pg_temp.run(:'g_drop', 40) as r_drop \gset
select is((:'r_drop'::jsonb ->> 'actual_cost')::bigint, 44::bigint,
  'after a price drop, 40 used tokens still cost 1 + 43 at the charged prices (not 2 at today''s)');
select is((:'r_drop'::jsonb ->> 'refunded')::bigint, 60::bigint, 'only the 60 unused tokens are refunded');

-- ------------------------------------------------------------ the price rises mid-turn
update creditgate.models set price_per_1k_tokens = 1000 where id = 'chat-test';
select pg_temp.turn('rise') as g_rise \gset
update creditgate.models set price_per_1k_tokens = 5000 where id = 'chat-test';
select pg_temp.run(:'g_rise', 40) as r_rise \gset
select is((:'r_rise'::jsonb ->> 'actual_cost')::bigint, 44::bigint,
  'after a price rise, 40 used tokens cost 44 at the charged prices (not the whole charge)');
select is((:'r_rise'::jsonb ->> 'refunded')::bigint, 60::bigint, 'and the 60 unused tokens are refunded');

-- ------------------------------------------------------------ the snapshot is not the client's to set
select is(
  (select (g.prices ->> 'price_per_1k_tokens')::numeric from creditgate.generations as g where g.id = :'g_rise'),
  1000::numeric, 'the second turn kept the price of its own charge');
select tests.as_user(:'u');
select throws_ok(format($$update creditgate.generations set prices = '{}' where id = %L$$, :'g_rise'),
  '42501', 'permission denied for table generations', 'an owner cannot edit the prices of a generation');
select tests.as_service();
select is((creditgate.audit() ->> 'ok')::boolean, true, 'the audit finds nothing wrong');

select * from finish();
rollback;
