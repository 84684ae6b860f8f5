-- Deleting a user (DESIGN §3 amendments, issue 17 item 6): trigger
-- creditgate_on_auth_user_deleted on auth.users -> creditgate_private.tg_users__after_delete().
-- GoTrue (and the Supabase dashboard) deletes auth.users rows as supabase_auth_admin, with
-- the user's queued, running, succeeded and failed work and saved media present.
-- Proves: the delete succeeds; queued work is canceled and refunded, then the remainder is
-- forfeited (one forfeit entry, after the refunds); media rows are gone and their files
-- queued for purge; no row anywhere holds the prompt, the output, the error text or the
-- client IP; generation costs and ledger amounts stay under the bare user id; running work
-- settles afterwards (success with media, retryable failure, expired lease) without being
-- re-queued or keeping anything personal, and what it refunds is forfeited too; the deleted
-- user can get no credits and call nothing; a bystander is untouched; audit() stays ok.

begin;
set local client_min_messages = warning;
select plan(52);

select tests.worker_models();

-- Every table of creditgate's two schemas, row by row as text: which ones contain p_text.
create function pg_temp.tables_holding(p_text text) returns text[]
language plpgsql
as $$
declare
  v_table record;
  v_found boolean;
  v_tables text[] := '{}';
begin
  for v_table in
    select n.nspname as schema_name, c.relname as table_name
    from pg_class as c
    inner join pg_namespace as n on c.relnamespace = n.oid
    where n.nspname in ('creditgate', 'creditgate_private') and c.relkind in ('r', 'p')
    order by 1, 2
  loop
    execute format(
      'select exists (select 1 from %I.%I as t where t::text like %L)',
      v_table.schema_name, v_table.table_name, '%' || p_text || '%'
    ) into v_found;
    if v_found then
      v_tables := v_tables || (v_table.schema_name || '.' || v_table.table_name);
    end if;
  end loop;
  return v_tables;
end
$$;

-- A request from the user's address (in every header an address may be read from).
create function pg_temp.request(
  p_user_id uuid, p_model_id text, p_params jsonb, p_ip text default '198.51.100.77'
) returns uuid
language plpgsql
as $$
declare
  v_result jsonb;
begin
  perform tests.as_user(p_user_id, p_ip);
  perform tests.set_headers(jsonb_build_object(
    'x-forwarded-for', p_ip, 'cf-connecting-ip', p_ip, 'x-real-ip', p_ip
  ));
  v_result := creditgate.request_generation(p_model_id, p_params, gen_random_uuid()::text);
  perform tests.as_owner();
  return (v_result ->> 'generation_id')::uuid;
end
$$;

-- Claims the one queued generation; its lease token.
create function pg_temp.claim(p_lease_seconds integer default 120) returns text
language plpgsql
as $$
declare
  v_jobs jsonb;
begin
  perform tests.as_service();
  v_jobs := creditgate.service_claim_generations('w-del', 1, p_lease_seconds);
  perform tests.as_owner();
  if jsonb_array_length(v_jobs) <> 1 then
    raise exception 'expected one job, got %', v_jobs;
  end if;
  return v_jobs -> 0 ->> 'lease_token';
end
$$;

create function pg_temp.settle(p_id uuid, p_lease text, p_outcome jsonb) returns jsonb
language plpgsql
as $$
declare
  v_result jsonb;
begin
  perform tests.as_service();
  v_result := creditgate.service_settle_generation(p_id, 'w-del', p_lease, p_outcome);
  perform tests.as_owner();
  return v_result;
end
$$;

-- ---------------------------------------------------------------- the user and their work
select tests.create_user(p_id => '17060000-0000-4000-8000-000000000001');
select tests.create_user(p_id => '17060000-0000-4000-8000-0000000000b1');
select tests.make_admin('17060000-0000-4000-8000-000000000001');
select creditgate_private.grant_credits(
  '17060000-0000-4000-8000-000000000001', 500, 'purchase', 'stripe:evt_delete_test', 'paid'
);

-- Succeeded, with two media files (one saved) and an output naming the prompt.
select pg_temp.request('17060000-0000-4000-8000-000000000001', 'img-test', '{"prompt": "PRIVATE-PROMPT-7c1e"}') as s \gset
select pg_temp.claim() as s_lease \gset
select pg_temp.settle(:'s', :'s_lease', jsonb_build_object(
  'status', 'succeeded',
  'output', '{"caption": "PRIVATE-PROMPT-7c1e"}'::jsonb,
  'media', jsonb_build_array(
    jsonb_build_object('storage_key', 'media/' || :'s' || '/0.png', 'content_type', 'image/png', 'bytes', 100),
    jsonb_build_object('storage_key', 'media/' || :'s' || '/1.png', 'content_type', 'image/png', 'bytes', 100)
  )
));
select tests.as_user('17060000-0000-4000-8000-000000000001');
select creditgate.save_media((select id from creditgate.media where storage_key = 'media/' || :'s' || '/0.png'));
select tests.as_owner();

-- Failed for good, with a provider error text that echoes the prompt.
select pg_temp.request('17060000-0000-4000-8000-000000000001', 'img-test', '{"prompt": "PRIVATE-PROMPT-7c1e"}') as f \gset
select pg_temp.claim() as f_lease \gset
select pg_temp.settle(:'f', :'f_lease',
  '{"status": "failed", "error": {"code": "provider_refused", "message": "refused PRIVATE-ERROR-5d2a"}}');

-- Three running jobs, and two still queued.
select pg_temp.request('17060000-0000-4000-8000-000000000001', 'img-test', '{"prompt": "PRIVATE-PROMPT-7c1e"}') as r1 \gset
select pg_temp.claim() as r1_lease \gset
select pg_temp.request('17060000-0000-4000-8000-000000000001', 'img-test', '{"prompt": "PRIVATE-PROMPT-7c1e"}') as r2 \gset
select pg_temp.claim() as r2_lease \gset
select pg_temp.request('17060000-0000-4000-8000-000000000001', 'img-test', '{"prompt": "PRIVATE-PROMPT-7c1e"}') as r3 \gset
select pg_temp.claim(5) as r3_lease \gset
-- A bystander with work of their own, which nothing here may touch.
select pg_temp.request('17060000-0000-4000-8000-0000000000b1', 'img-test', '{"prompt": "bystander"}', '192.0.2.55') as b1 \gset
select pg_temp.request('17060000-0000-4000-8000-000000000001', 'img-test', '{"prompt": "PRIVATE-PROMPT-7c1e"}') as q1 \gset
select pg_temp.request('17060000-0000-4000-8000-000000000001', 'img-test', '{"prompt": "PRIVATE-PROMPT-7c1e"}') as q2 \gset

-- 1000 (bonus) + 500 (purchase) - 6 x 33 held or spent (the failed one was refunded).
select is(tests.balance_of('17060000-0000-4000-8000-000000000001'), 1302::bigint,
  'before: 1302 credits, with work in every state');
select ok(
  cardinality(pg_temp.tables_holding('PRIVATE-PROMPT-7c1e')) > 0
  and cardinality(pg_temp.tables_holding('PRIVATE-ERROR-5d2a')) > 0
  and cardinality(pg_temp.tables_holding('198.51.100.77')) > 0,
  'before: the prompt, the error text and the client IP are stored (the scan sees them)'
);
select tests.balance_of('17060000-0000-4000-8000-0000000000b1') as bystander_balance \gset

-- ---------------------------------------------------------------- the delete
select lives_ok(
  $$ select tests.delete_user('17060000-0000-4000-8000-000000000001') $$,
  'deleting the user as supabase_auth_admin succeeds'
);
select is((select count(*) from auth.users where id = '17060000-0000-4000-8000-000000000001'),
  0::bigint, 'the auth.users row is gone');
select is(
  (select count(*) from creditgate_private.deleted_users where user_id = '17060000-0000-4000-8000-000000000001'),
  1::bigint, 'the deletion is recorded (bare user id and time)'
);

-- Queued work: canceled and refunded in full.
select results_eq(
  format($$ select status::text from creditgate.generations where id in (%L, %L) $$, :'q1', :'q2'),
  $$ values ('canceled'::text), ('canceled') $$,
  'both queued generations are canceled'
);
select results_eq(
  format($$ select idempotency_key::text, amount::bigint from creditgate.ledger
            where idempotency_key in ('refund:' || %L, 'refund:' || %L) order by idempotency_key $$,
         least(:'q1', :'q2'), greatest(:'q1', :'q2')),
  format($$ values ('refund:' || %L, 33::bigint), ('refund:' || %L, 33::bigint) $$,
         least(:'q1', :'q2'), greatest(:'q1', :'q2')),
  'and refunded in full under their refund keys'
);

-- Then the remainder is forfeited.
select results_eq(
  $$ select entry_type::text, amount::bigint, idempotency_key::text, balance_after::bigint
     from creditgate.ledger
     where user_id = '17060000-0000-4000-8000-000000000001' and entry_type = 'forfeit' $$,
  $$ values ('forfeit'::text, 1368::bigint, 'forfeit:17060000-0000-4000-8000-000000000001'::text, 0::bigint) $$,
  'one forfeit entry takes the remaining 1368 credits (1302 + the two refunds), keyed forfeit:<user_id>'
);
select ok(
  (select id from creditgate.ledger where idempotency_key = 'forfeit:17060000-0000-4000-8000-000000000001')
  > (select max(id) from creditgate.ledger where idempotency_key in ('refund:' || :'q1', 'refund:' || :'q2')),
  'the forfeit comes after the refunds'
);
select is(tests.balance_of('17060000-0000-4000-8000-000000000001'), 0::bigint, 'the balance is 0');
select is(
  (select sum(remaining)::bigint from creditgate.credit_lots where user_id = '17060000-0000-4000-8000-000000000001'),
  0::bigint, 'every lot is empty, paid and promotional alike'
);

-- The books stay whole under the bare user id.
select is(
  (select count(*) from creditgate.generations where user_id = '17060000-0000-4000-8000-000000000001'),
  7::bigint, 'the generations stay (under the bare user id)'
);
select is(
  (select sum(cost)::bigint from creditgate.generations where user_id = '17060000-0000-4000-8000-000000000001'),
  231::bigint, 'with their costs'
);
select is(
  (select count(*) from creditgate.ledger where user_id = '17060000-0000-4000-8000-000000000001' and entry_type = 'spend'),
  7::bigint, 'and every charge stays in the ledger'
);
select is(
  (select count(*) from pg_constraint
   where confrelid = 'auth.users'::regclass and connamespace in (
     'creditgate'::regnamespace, 'creditgate_private'::regnamespace)),
  0::bigint, 'no creditgate table has a foreign key to auth.users'
);

-- Personal data is erased.
select is(
  (select count(*) from creditgate.media where user_id = '17060000-0000-4000-8000-000000000001'),
  0::bigint, 'the media rows are gone, the saved one too'
);
select tests.as_service();
select is(
  (select count(*) from jsonb_array_elements(creditgate.service_expired_media(1000)) as e
   where e ->> 'storage_key' in ('media/' || :'s' || '/0.png', 'media/' || :'s' || '/1.png')),
  2::bigint, 'both files are queued for the purge sweep (creditgate cleanup)'
);
select tests.as_owner();
select is(
  (select count(*) from creditgate.generations
   where user_id = '17060000-0000-4000-8000-000000000001' and params <> '{}'::jsonb),
  0::bigint, 'no generation keeps its params'
);
select is(
  (select count(*) from creditgate.generations
   where user_id = '17060000-0000-4000-8000-000000000001' and output is not null),
  0::bigint, 'no generation keeps its output'
);
select is(
  (select error from creditgate.generations where id = :'f'),
  '{"code": "provider_refused"}'::jsonb, 'a failed generation keeps its error code, not the text'
);
select is(pg_temp.tables_holding('PRIVATE-PROMPT-7c1e'), '{}'::text[], 'no row holds the prompt');
select is(pg_temp.tables_holding('PRIVATE-ERROR-5d2a'), '{}'::text[], 'no row holds the error text');
select is(pg_temp.tables_holding('198.51.100.77'), '{}'::text[], 'no row holds the client IP');
select is(
  (select count(*) from creditgate_private.admins where user_id = '17060000-0000-4000-8000-000000000001'),
  0::bigint, 'admin rights go with the account'
);

-- The deleted account gets nothing and can do nothing.
select tests.as_service();
select throws_ok(
  $$ select creditgate.service_grant_credits('17060000-0000-4000-8000-000000000001', 10, 'grant', 'after-delete') $$,
  'PT404', 'not_found', 'no credits can be granted to a deleted user'
);
select tests.as_owner();
select tests.as_user('17060000-0000-4000-8000-000000000001');
select throws_ok(
  $$ select creditgate.request_generation('img-test', '{"prompt": "again"}', 'after-delete') $$,
  'PT401', 'not_authenticated', 'the deleted user''s still-valid JWT cannot request'
);
select throws_ok($$ select creditgate.get_balance() $$,
  'PT401', 'not_authenticated', 'nor read a balance');
select throws_ok($$ select creditgate.is_admin() $$,
  'PT401', 'not_authenticated', 'nor ask whether it is an admin');
select tests.as_owner();

-- ---------------------------------------------------------------- running work settles afterwards
-- Succeeded with media and a lower actual cost: the files are queued for purge, nothing
-- is kept, and the refund of the difference is forfeited at once.
select is(
  pg_temp.settle(:'r1', :'r1_lease', jsonb_build_object(
    'status', 'succeeded', 'actual_cost', 10,
    'output', '{"caption": "PRIVATE-PROMPT-7c1e"}'::jsonb,
    'media', jsonb_build_array(
      jsonb_build_object('storage_key', 'media/' || :'r1' || '/0.png', 'content_type', 'image/png', 'bytes', 100)
    )
  )) - 'generation_id',
  '{"status": "succeeded", "refunded": 23, "actual_cost": 10, "media": [], "requeued": false}'::jsonb,
  'a running job settles after the deletion: succeeded, 23 refunded, no media kept'
);
select results_eq(
  format($$ select status::text, actual_cost::bigint, output from creditgate.generations where id = %L $$, :'r1'),
  $$ values ('succeeded'::text, 10::bigint, null::jsonb) $$,
  'its row keeps status and cost, not the output'
);
select results_eq(
  format($$ select entry_type::text, amount::bigint from creditgate.ledger
            where idempotency_key in ('refund:' || %L, 'forfeit:refund:' || %L) order by id $$, :'r1', :'r1'),
  $$ values ('refund'::text, 23::bigint), ('forfeit', 23) $$,
  'the refund is followed by its forfeit'
);
select tests.as_service();
select is(
  (select count(*) from jsonb_array_elements(creditgate.service_expired_media(1000)) as e
   where e ->> 'storage_key' = 'media/' || :'r1' || '/0.png'),
  1::bigint, 'the file it uploaded is queued for purge'
);
select tests.as_owner();
select is((select count(*) from creditgate.media where generation_id = :'r1'), 0::bigint,
  'and gets no media row');

-- A retryable failure is final for a deleted account (its params are gone).
select is(
  pg_temp.settle(:'r2', :'r2_lease',
    '{"status": "failed", "retryable": true, "error": {"code": "provider_timeout", "message": "PRIVATE-ERROR-5d2a"}}'
  ) - 'generation_id',
  '{"status": "failed", "refunded": 33, "actual_cost": 0, "media": [], "requeued": false}'::jsonb,
  'a retryable failure after the deletion fails for good, refunded, not re-queued'
);
select is(
  (select amount::bigint from creditgate.ledger where idempotency_key = 'forfeit:refund:' || :'r2'),
  33::bigint, 'and its refund is forfeited'
);

-- A lease that expires after the deletion: failed and refunded, not re-queued.
select tests.as_service();
select is(
  creditgate.service_reap_expired_leases(now() + interval '1 hour'),
  '{"requeued": 0, "failed": 1, "refunded": 33}'::jsonb,
  'the reaper fails the abandoned job instead of re-queuing it'
);
select tests.as_owner();
select is((select status::text from creditgate.generations where id = :'r3'), 'failed',
  'it is failed');
select is(
  (select amount::bigint from creditgate.ledger where idempotency_key = 'forfeit:refund:' || :'r3'),
  33::bigint, 'and its refund forfeited'
);
select is(
  (select count(*) from creditgate.generations
   where user_id = '17060000-0000-4000-8000-000000000001' and status in ('queued', 'running')),
  0::bigint, 'no work of the deleted user is left to run'
);

select is(tests.balance_of('17060000-0000-4000-8000-000000000001'), 0::bigint,
  'the balance is still 0');
select is(pg_temp.tables_holding('PRIVATE-PROMPT-7c1e'), '{}'::text[],
  'after the settles, still no row holds the prompt');
select is(pg_temp.tables_holding('PRIVATE-ERROR-5d2a'), '{}'::text[],
  'nor the error text');

-- ---------------------------------------------------------------- the purge queue drains
select tests.as_service();
select is(
  creditgate.service_mark_media_purged(array(
    select (e ->> 'media_id')::uuid from jsonb_array_elements(creditgate.service_expired_media(1000)) as e
    where e ->> 'storage_key' like 'media/' || :'s' || '/%' or e ->> 'storage_key' like 'media/' || :'r1' || '/%'
  )) ->> 'purged',
  '3', 'marking the three files purged'
);
select is(
  (select count(*) from jsonb_array_elements(creditgate.service_expired_media(1000)) as e
   where e ->> 'storage_key' like 'media/' || :'s' || '/%' or e ->> 'storage_key' like 'media/' || :'r1' || '/%'),
  0::bigint, 'takes them off the purge list'
);
select tests.as_owner();

-- ---------------------------------------------------------------- others and edge cases
select is(tests.balance_of('17060000-0000-4000-8000-0000000000b1'), :'bystander_balance'::bigint,
  'the bystander''s balance is untouched');
select results_eq(
  format($$ select status::text, params ->> 'prompt' from creditgate.generations where id = %L $$, :'b1'),
  $$ values ('queued'::text, 'bystander'::text) $$,
  'and their queued work too'
);

-- A user from before creditgate (no balance row) and a user with nothing at all.
alter table auth.users disable trigger creditgate_on_auth_user_created;
select tests.create_user(p_id => '17060000-0000-4000-8000-000000000002');
alter table auth.users enable trigger creditgate_on_auth_user_created;
select lives_ok($$ select tests.delete_user('17060000-0000-4000-8000-000000000002') $$,
  'a user without a balance row is deleted');
select tests.create_anonymous_user('17060000-0000-4000-8000-000000000003');
select lives_ok($$ select tests.delete_user('17060000-0000-4000-8000-000000000003') $$,
  'an anonymous user with 0 credits is deleted');
select is(
  (select count(*) from creditgate.ledger where user_id = '17060000-0000-4000-8000-000000000003'),
  0::bigint, 'with no forfeit entry (nothing to forfeit)'
);

select tests.create_user(p_id => '17060000-0000-4000-8000-0000000000ad');
select tests.make_admin('17060000-0000-4000-8000-0000000000ad');
select tests.as_user('17060000-0000-4000-8000-0000000000ad');
select is(
  creditgate.admin_stats() #> '{credits,forfeited}', '1457'::jsonb,
  'admin_stats reports the forfeited credits (1368 at the delete, 23 + 33 + 33 refunded later)'
);
select tests.as_owner();

select tests.as_service();
select is((creditgate.audit() ->> 'ok')::boolean, true, 'the audit is clean');
select is(
  (select c -> 'failures' from jsonb_array_elements(creditgate.audit() -> 'checks') as c
   where c ->> 'name' = 'deleted_users_hold_nothing'),
  '0'::jsonb, 'including its check that deleted users hold nothing'
);
select tests.as_owner();

select * from finish();
rollback;
