-- creditgate_private.uuid_v7(): time-ordered ids for generations.
-- Proves: version 7 and RFC 9562 variant; the first 48 bits are the current Unix time in
-- milliseconds; ids made a millisecond apart sort in time order (also as 'charge:' keys);
-- ids are distinct; request_generation gives generations such ids; no client may call it.

begin;
set local client_min_messages = warning;
select plan(9);

select creditgate_private.uuid_v7() as first \gset
select pg_sleep(0.002);
select creditgate_private.uuid_v7() as second \gset

select is(substr(:'first', 15, 1), '7', 'the version nibble is 7');
select ok(substr(:'first', 20, 1) in ('8', '9', 'a', 'b'), 'the variant is RFC 9562''s (10xx)');
select ok(
  abs(('x' || lpad(replace(left(:'first', 13), '-', ''), 16, '0'))::bit(64)::bigint
      - (extract(epoch from clock_timestamp()) * 1000)::bigint) < 60000,
  'the first 48 bits are the Unix time in milliseconds'
);
select ok(:'first'::uuid < :'second'::uuid, 'an id made later sorts after an earlier one');
select ok(
  ('charge:' || :'first') < ('charge:' || :'second'),
  'so do the charge keys built from them'
);
select is(
  (select count(distinct u) from (select creditgate_private.uuid_v7() as u from generate_series(1, 1000)) as s),
  1000::bigint,
  'a thousand ids made at once are distinct'
);

select tests.seed_models();
select tests.create_user(p_id => 'f7000000-0000-4000-8000-000000000001');
select tests.as_user('f7000000-0000-4000-8000-000000000001');
select creditgate.request_generation('img-test', '{"prompt": "a cat"}', 'v7-1') as g \gset
select tests.as_owner();
select is(substr(:'g'::jsonb ->> 'generation_id', 15, 1), '7', 'request_generation makes version 7 generation ids');

select tests.as_user('f7000000-0000-4000-8000-000000000001');
select throws_ok(
  $$ select creditgate_private.uuid_v7() $$,
  '42501', null, 'authenticated cannot call it'
);
select tests.as_owner();
select tests.as_anon();
select throws_ok(
  $$ select creditgate_private.uuid_v7() $$,
  '42501', null, 'anon cannot call it'
);
select tests.as_owner();

select * from finish();
rollback;
