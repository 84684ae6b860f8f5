-- The daily usage counter on balances (what plan daily caps read), kept by the ledger's
-- BEFORE INSERT trigger. Entries are written directly as the owner so that their
-- created_at can be put on another day; the trigger is what is under test.
-- Proves: a generation's charge adds its amount on its own UTC day; a refund takes back
-- only what a charge of the same day added; other entries count nothing; the first counted
-- entry of a new day restarts the count; an entry of an earlier day than the counter's
-- leaves it alone.

begin;
select plan(10);

select tests.create_user() as u \gset
create function pg_temp.entry(
  p_type text, p_amount bigint, p_key text, p_generation uuid default null,
  p_charge_key text default null, p_days_ago integer default 0
) returns void
language sql as $$
  insert into creditgate.ledger (user_id, entry_type, amount, delta, balance_after,
    idempotency_key, request_hash, charge_key, generation_id, created_at)
  values (current_setting('test.user')::uuid, p_type, p_amount, 0, 0, p_key, 'x',
    p_charge_key, p_generation, now() - make_interval(days => p_days_ago));
$$;
select set_config('test.user', :'u', true);
create function pg_temp.counter() returns jsonb
language sql as $$
  select jsonb_build_object('used', b.daily_used,
    'days_ago', (now() at time zone 'UTC')::date - b.daily_used_on)
  from creditgate.balances as b where b.user_id = current_setting('test.user')::uuid;
$$;

select is(pg_temp.counter(), '{"used": 0, "days_ago": null}'::jsonb,
  'a new user has counted nothing (the signup bonus is not usage)');

select pg_temp.entry('spend', 40, 'plain-spend');
select is(pg_temp.counter(), '{"used": 0, "days_ago": null}'::jsonb,
  'a spend that names no generation is not generation usage');

select pg_temp.entry('spend', 30, 'charge:old', gen_random_uuid(), null, 1);
select is(pg_temp.counter(), '{"used": 30, "days_ago": 1}'::jsonb,
  'a generation charge counts on its own UTC day');

select pg_temp.entry('spend', 25, 'charge:a', gen_random_uuid());
select is(pg_temp.counter(), '{"used": 25, "days_ago": 0}'::jsonb,
  'the first charge of a new day restarts the count');

select pg_temp.entry('spend', 15, 'charge:b', gen_random_uuid());
select is(pg_temp.counter(), '{"used": 40, "days_ago": 0}'::jsonb, 'charges of one day add up');

select pg_temp.entry('refund', 10, 'refund:b', (select generation_id from creditgate.ledger
  where idempotency_key = 'charge:b'), 'charge:b');
select is(pg_temp.counter(), '{"used": 30, "days_ago": 0}'::jsonb,
  'a refund of a charge made today gives its amount back to today');

select pg_temp.entry('refund', 30, 'refund:old', (select generation_id from creditgate.ledger
  where idempotency_key = 'charge:old'), 'charge:old');
select is(pg_temp.counter(), '{"used": 30, "days_ago": 0}'::jsonb,
  'a refund today of yesterday''s charge gives nothing back to today');

select pg_temp.entry('spend', 5, 'charge:late', gen_random_uuid(), null, 1);
select is(pg_temp.counter(), '{"used": 30, "days_ago": 0}'::jsonb,
  'a charge dated before the counter''s day (a transaction begun before midnight) leaves it alone');

select pg_temp.entry('grant', 100, 'grant:1');
select is(pg_temp.counter(), '{"used": 30, "days_ago": 0}'::jsonb, 'grants count nothing');

select is(
  (select b.balance::bigint from creditgate.balances as b where b.user_id = :'u'),
  1000::bigint - 40 - 30 - 25 - 15 + 10 + 30 - 5 + 100,
  'the balance moved by every entry as before'
);

select * from finish();
rollback;
