-- creditgate.generations: the row rules no function may break, tried as the owner (the
-- most privileged role the app has). Each is a CHECK constraint or a domain: SQLSTATE 23514
-- naming the rule.
-- Proves: actual_cost within [0, cost]; attempts within [0, max_attempts]; the charge key
-- is 'charge:' || id; a lease exactly while running; status, kind and cost domains.

begin;
select plan(12);

create function pg_temp.violation(p_sql text) returns text
language plpgsql as $$
declare
  v_state text;
  v_constraint text;
  v_message text;
begin
  execute p_sql;
  return 'no error';
exception when others then
  get stacked diagnostics v_state = returned_sqlstate, v_constraint = constraint_name,
    v_message = message_text;
  return v_state || ' ' || coalesce(nullif(v_constraint, ''), v_message);
end
$$;

select tests.create_user() as u \gset
select tests.make_queued_generation(:'u', 'img-test', 100) as g \gset

select is(pg_temp.violation(format(
  'update creditgate.generations set actual_cost = 101 where id = %L', :'g')),
  '23514 generations_actual_cost_check', 'actual_cost above the cost is refused');
select is(pg_temp.violation(format(
  'update creditgate.generations set actual_cost = -1 where id = %L', :'g')),
  '23514 generations_actual_cost_check', 'a negative actual_cost is refused');
select is(pg_temp.violation(format(
  'update creditgate.generations set actual_cost = 100 where id = %L', :'g')),
  'no error', 'actual_cost equal to the cost is allowed');

select is(pg_temp.violation(format(
  'update creditgate.generations set attempts = max_attempts + 1 where id = %L', :'g')),
  '23514 generations_attempts_check', 'more attempts than max_attempts are refused');
select is(pg_temp.violation(format(
  'update creditgate.generations set attempts = -1 where id = %L', :'g')),
  '23514 generations_attempts_check', 'negative attempts are refused');

select hasnt_column('creditgate', 'generations', 'charge_key',
  'no charge_key column: the charge key is charge:<id> by construction, derived where needed');

-- The lease lives in creditgate_private.generation_leases (0010): all of it or none of it.
select is(pg_temp.violation(format(
  'insert into creditgate_private.generation_leases (generation_id, lease_owner) values (%L, %L)', :'g', 'w')),
  '23514 generation_leases_lease_check', 'a lease owner without a token and an expiry is refused');
select is(pg_temp.violation(format(
  'insert into creditgate_private.generation_leases (generation_id, lease_token, lease_owner) values (%L, gen_random_uuid(), %L)', :'g', 'w')),
  '23514 generation_leases_lease_check', 'a lease without an expiry is refused');
select is(pg_temp.violation(format(
  'insert into creditgate_private.generation_leases (generation_id, lease_owner, lease_token, lease_expires_at)'
  ' values (%L, %L, gen_random_uuid(), now() + interval %L)', :'g', 'w', '1 minute')),
  'no error', 'a full lease is allowed');

select is(pg_temp.violation(format(
  'update creditgate.generations set status = %L where id = %L', 'paused', :'g')),
  '23514 generation_status_check', 'an unknown status is refused (domain)');
select is(pg_temp.violation(format(
  'update creditgate.generations set kind = %L where id = %L', 'audio', :'g')),
  '23514 model_kind_check', 'an unknown kind is refused (domain)');
select is(pg_temp.violation(format(
  'update creditgate.generations set cost = 0 where id = %L', :'g')),
  '23514 credits_check', 'a cost of zero is refused (domain)');

select * from finish();
rollback;
