-- Deleting a user who owes credits (a dispute took more than they had, with work queued).
-- Proves: the delete succeeds; the queued work's refunds pay what is owed first (clawback
-- entries), and only what is left is forfeited; the debt that remains stays recorded (owed)
-- under the bare user id; audit() is ok, owed credits and deleted-user checks included.

begin;
set local client_min_messages = warning;
select plan(7);

select tests.worker_models();
insert into creditgate_private.settings (key, value) values ('signup_bonus', '0');
insert into creditgate.credit_packs (id, name, credits, price_cents, currency, stripe_price_id, category)
values ('pack-del-500', '500 credits', 500, 500, 'usd', 'price_del_500', 'paid');
select tests.create_user(p_id => '17060000-0000-4000-8000-0000000000c1');

select tests.as_service();
select creditgate.service_apply_checkout('evt_del_buy', '17060000-0000-4000-8000-0000000000c1', 'price_del_500',
  amount_total => 500, currency => 'usd', session_id => 'cs_del_buy');
select tests.as_owner();
select tests.request_as('17060000-0000-4000-8000-0000000000c1', 'video-test') as g_video \gset
select tests.request_as('17060000-0000-4000-8000-0000000000c1', 'img-test') as g_img \gset
-- 500 - 303 - 33 = 164 left; a dispute of 300 takes the 164 and 136 is owed.
select tests.as_service();
select creditgate.service_stripe_dispute('dp_del', '17060000-0000-4000-8000-0000000000c1', 'ch_del', 300);
select tests.as_owner();
select is(
  (select owed::bigint from creditgate.balances where user_id = '17060000-0000-4000-8000-0000000000c1'),
  136::bigint, 'before: 136 credits owed, 336 held by queued work'
);

select lives_ok($$ select tests.delete_user('17060000-0000-4000-8000-0000000000c1') $$,
  'a user who owes credits is deleted');
select results_eq(
  format($$ select status::text from creditgate.generations where id in (%L, %L) $$, :'g_video', :'g_img'),
  $$ values ('canceled'::text), ('canceled') $$,
  'the queued work is canceled'
);
select is(
  (select owed::bigint from creditgate.balances where user_id = '17060000-0000-4000-8000-0000000000c1'),
  0::bigint, 'its refunds (303 + 33) paid the debt first'
);
select results_eq(
  $$ select entry_type::text, amount::bigint from creditgate.ledger
     where user_id = '17060000-0000-4000-8000-0000000000c1' and entry_type = 'forfeit' $$,
  $$ values ('forfeit'::text, 200::bigint) $$,
  'and only the other 200 were forfeited'
);
select is(
  (select balance::bigint from creditgate.balances where user_id = '17060000-0000-4000-8000-0000000000c1'),
  0::bigint, 'the balance is 0'
);

select tests.as_service();
select is((creditgate.audit() ->> 'ok')::boolean, true, 'the audit is clean');
select tests.as_owner();

select * from finish();
rollback;
