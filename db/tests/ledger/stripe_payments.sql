-- Stripe money flows: service_stripe_refund, service_stripe_dispute,
-- service_stripe_dispute_won, and service_apply_checkout's amount check and session key.
-- Proves: partial refunds claw back in proportion, rounded down once for the payment's
-- total, keyed per refund id, never past the pack, in any delivery order; a refund and a
-- dispute of one payment never take the credits twice; a won dispute returns what its
-- clawback took (and collected since) to the lots it came from and cancels what is still
-- owed, exactly once, also when it arrives before the dispute; a checkout whose amount or
-- currency differs from the pack is held, not granted, and audit reports it; two events of
-- one Checkout Session grant once; only service_role may call any of it.

begin;
set local client_min_messages = warning;
select plan(60);

insert into creditgate_private.settings (key, value) values ('signup_bonus', '0');
insert into creditgate.credit_packs (id, name, credits, price_cents, currency, stripe_price_id, category)
values ('pack-100', '100 credits', 100, 300, 'usd', 'price_100', 'paid'),
       ('pack-yen', '100 credits', 100000, 1000, 'jpy', 'price_yen', 'paid');
select tests.create_user(p_id => '0f000000-0000-4000-8000-000000000001');
select tests.create_user(p_id => '0f000000-0000-4000-8000-000000000002');
select tests.create_user(p_id => '0f000000-0000-4000-8000-000000000003');
select tests.create_user(p_id => '0f000000-0000-4000-8000-000000000004');

create function pg_temp.buy(p_user uuid, p_session text) returns jsonb
language plpgsql as $$
declare
  v jsonb;
begin
  perform tests.as_service();
  v := creditgate.service_apply_checkout('evt_' || p_session, p_user, 'price_100', 1,
    amount_total => 300, currency => 'usd', session_id => p_session);
  perform tests.as_owner();
  return v;
end
$$;
create function pg_temp.refund(p_user uuid, p_refund text, p_payment text, p_refunded bigint) returns jsonb
language plpgsql as $$
declare
  v jsonb;
begin
  perform tests.as_service();
  v := creditgate.service_stripe_refund(p_refund, p_user, p_payment, 100, 300, p_refunded);
  perform tests.as_owner();
  return v;
end
$$;
create function pg_temp.dispute(p_user uuid, p_dispute text, p_payment text) returns jsonb
language plpgsql as $$
declare
  v jsonb;
begin
  perform tests.as_service();
  v := creditgate.service_stripe_dispute(p_dispute, p_user, p_payment, 100);
  perform tests.as_owner();
  return v;
end
$$;
create function pg_temp.won(p_user uuid, p_dispute text, p_payment text) returns jsonb
language plpgsql as $$
declare
  v jsonb;
begin
  perform tests.as_service();
  v := creditgate.service_stripe_dispute_won(p_dispute, p_user, p_payment);
  perform tests.as_owner();
  return v;
end
$$;
create function pg_temp.figures(p_user uuid) returns text
language sql as $$
  select b.balance || '/' || b.owed from creditgate.balances as b where b.user_id = p_user
$$;

-- ---------------------------------------------------------------- partial refunds
-- A pack of 100 credits paid 300 cents; refunded 100 cents at a time.
select pg_temp.buy('0f000000-0000-4000-8000-000000000001', 'cs_1');
select is(pg_temp.refund('0f000000-0000-4000-8000-000000000001', 're_1', 'ch_1', 100) - 'entry_id',
  '{"requested": 33, "taken": 33, "shortfall": 0, "balance": 67, "replayed": false}'::jsonb,
  'a refund of a third of the payment claws back a third of the pack, rounded down');
select is(pg_temp.refund('0f000000-0000-4000-8000-000000000001', 're_2', 'ch_1', 200) ->> 'taken',
  '33', 'the second third: 66 in total');
select is(pg_temp.refund('0f000000-0000-4000-8000-000000000001', 're_1', 'ch_1', 200) ->> 'replayed',
  'true', 'refund re_1 listed again by a later event replays (same refund id)');
select is(pg_temp.refund('0f000000-0000-4000-8000-000000000001', 're_3', 'ch_1', 300) ->> 'taken',
  '34', 'the last third takes the rest: rounding down is done once for the total');
select is(pg_temp.figures('0f000000-0000-4000-8000-000000000001'), '0/0',
  'three partial refunds add up to the whole pack');
select is(pg_temp.refund('0f000000-0000-4000-8000-000000000001', 're_4', 'ch_1', 900) - 'entry_id',
  '{"requested": 0, "taken": 0, "shortfall": 0, "balance": 0, "replayed": false}'::jsonb,
  'a refund past the payment (or a bogus total) takes nothing: never more than the pack');
select is(
  (select sum(amount)::bigint from creditgate.ledger
   where user_id = '0f000000-0000-4000-8000-000000000001' and entry_type = 'clawback'),
  100::bigint, 'clawed back 100 in all');
select results_eq(
  $$ select idempotency_key, kind, payment_id, requested from creditgate_private.clawbacks
     where user_id = '0f000000-0000-4000-8000-000000000001' order by created_at, idempotency_key $$,
  $$ values ('stripe:refund:re_1'::text, 'refund'::text, 'ch_1'::text, 33::bigint),
            ('stripe:refund:re_2', 'refund', 'ch_1', 33), ('stripe:refund:re_3', 'refund', 'ch_1', 34),
            ('stripe:refund:re_4', 'refund', 'ch_1', 0) $$,
  'one record per Stripe refund id, each naming the payment'
);

-- Out of order: the event with the larger total arrives first.
select pg_temp.buy('0f000000-0000-4000-8000-000000000002', 'cs_2');
select is(pg_temp.refund('0f000000-0000-4000-8000-000000000002', 're_b2', 'py_2', 200) ->> 'taken',
  '66', 'the later refund first: two thirds');
select is(pg_temp.refund('0f000000-0000-4000-8000-000000000002', 're_b1', 'py_2', 100) ->> 'taken',
  '0', 'the earlier refund after it takes nothing more');
select is(pg_temp.refund('0f000000-0000-4000-8000-000000000002', 're_b2', 'py_2', 200) ->> 'replayed',
  'true', 'redelivered: replayed');
select is(pg_temp.figures('0f000000-0000-4000-8000-000000000002'), '34/0',
  'two thirds refunded, two thirds of the pack clawed back, in either order');

-- ---------------------------------------------------------------- refund and dispute
-- A dispute after a partial refund asks only for what the refund did not take.
select is(pg_temp.dispute('0f000000-0000-4000-8000-000000000002', 'dp_2', 'py_2') ->> 'requested',
  '34', 'a dispute of the same payment asks for the rest only');
select is(pg_temp.refund('0f000000-0000-4000-8000-000000000002', 're_b3', 'py_2', 300) ->> 'requested',
  '0', 'a refund after the dispute takes nothing twice');
select is(pg_temp.figures('0f000000-0000-4000-8000-000000000002'), '0/0', 'nothing left, nothing owed');
select is(pg_temp.dispute('0f000000-0000-4000-8000-000000000002', 'dp_2', 'py_2') ->> 'replayed',
  'true', 'the dispute redelivered replays');

-- ---------------------------------------------------------------- won disputes
-- User 3: bought 100, spent 30, disputed: 70 taken, 30 owed; a grant of 10 pays 10 of it.
select pg_temp.buy('0f000000-0000-4000-8000-000000000003', 'cs_3') ->> 'lot_id' as lot3 \gset
select creditgate_private.spend_credits('0f000000-0000-4000-8000-000000000003', 30, 'charge:s3');
select is(pg_temp.dispute('0f000000-0000-4000-8000-000000000003', 'dp_3', 'pi_3') - 'entry_id',
  '{"requested": 100, "taken": 70, "shortfall": 30, "balance": 0, "replayed": false}'::jsonb,
  'the dispute takes the 70 left and records 30 owed');
select is(creditgate_private.grant_credits('0f000000-0000-4000-8000-000000000003', 10, 'grant', 'g3')
  ->> 'owed_paid', '10', 'a grant pays 10 of the debt');
select is(pg_temp.won('0f000000-0000-4000-8000-000000000003', 'dp_3', 'pi_3') - 'entry_id',
  '{"returned": 80, "cancelled": 20, "balance": 80, "replayed": false}'::jsonb,
  'won: the 70 taken and the 10 collected come back, the 20 still owed is cancelled');
select is(pg_temp.figures('0f000000-0000-4000-8000-000000000003'), '80/0', 'balance 80, nothing owed');
select is(
  (select remaining::bigint from creditgate.credit_lots where id = :'lot3'), 70::bigint,
  'the pack''s lot has its 70 back (it had paid the 30 spent)');
select results_eq(
  $$ select entry_type::text, amount::bigint, reason from creditgate.ledger
     where idempotency_key = 'stripe:dispute-won:dp_3' $$,
  $$ values ('purchase'::text, 80::bigint, 'stripe dispute won'::text) $$,
  'one entry under stripe:dispute-won:<id> gives the credits back'
);
select is(pg_temp.won('0f000000-0000-4000-8000-000000000003', 'dp_3', 'pi_3') - 'entry_id',
  '{"returned": 80, "cancelled": 20, "balance": 80, "replayed": true}'::jsonb,
  'the won event redelivered replays and gives nothing twice');
select is(pg_temp.dispute('0f000000-0000-4000-8000-000000000003', 'dp_3', 'pi_3') ->> 'replayed',
  'true', 'and a late redelivery of the dispute itself takes nothing again');
select is(pg_temp.figures('0f000000-0000-4000-8000-000000000003'), '80/0', 'still 80, nothing owed');
select results_eq(
  $$ select taken, collected, cancelled, returned, resolution from creditgate_private.clawbacks
     where idempotency_key = 'stripe:dispute:dp_3' $$,
  $$ values (70::bigint, 10::bigint, 20::bigint, 80::bigint, 'won'::text) $$,
  'the dispute''s record says how it ended'
);
-- After the dispute was won, a refund of the payment claws back its share again.
select is(pg_temp.refund('0f000000-0000-4000-8000-000000000003', 're_3w', 'pi_3', 150) ->> 'taken',
  '50', 'a refund after a won dispute takes its share (the won dispute no longer counts)');

-- Won before the dispute arrived: recorded as won, the dispute replays it.
select pg_temp.buy('0f000000-0000-4000-8000-000000000004', 'cs_4');
select is(pg_temp.won('0f000000-0000-4000-8000-000000000004', 'dp_4', 'ch_4') - 'entry_id',
  '{"returned": 0, "cancelled": 0, "balance": 100, "replayed": false}'::jsonb,
  'won before the dispute was seen: nothing to return');
select is(pg_temp.dispute('0f000000-0000-4000-8000-000000000004', 'dp_4', 'ch_4') - 'entry_id',
  '{"requested": 0, "taken": 0, "shortfall": 0, "balance": 100, "replayed": true}'::jsonb,
  'the dispute arriving late takes nothing');
select is(pg_temp.figures('0f000000-0000-4000-8000-000000000004'), '100/0', 'the user keeps the pack');

-- Returned credits pay another dispute's debt first.
select pg_temp.buy('0f000000-0000-4000-8000-000000000004', 'cs_4b');
select creditgate_private.spend_credits('0f000000-0000-4000-8000-000000000004', 150, 'charge:s4');
select is(pg_temp.dispute('0f000000-0000-4000-8000-000000000004', 'dp_5', 'ch_5') ->> 'shortfall',
  '50', 'dispute 5 takes 50 and leaves 50 owed');
select is(pg_temp.dispute('0f000000-0000-4000-8000-000000000004', 'dp_6', 'ch_6') ->> 'shortfall',
  '100', 'dispute 6 takes nothing: 100 more owed');
select is(pg_temp.won('0f000000-0000-4000-8000-000000000004', 'dp_5', 'ch_5') - 'entry_id',
  '{"returned": 50, "cancelled": 50, "balance": 0, "replayed": false}'::jsonb,
  'dispute 5 won: its 50 come back and go straight to dispute 6''s debt');
select is(pg_temp.figures('0f000000-0000-4000-8000-000000000004'), '0/50', 'owed 50 for dispute 6');

-- Delivered out of order: the dispute, then a refund made before it, then the win.
select tests.create_user(p_id => '0f000000-0000-4000-8000-000000000005');
select pg_temp.buy('0f000000-0000-4000-8000-000000000005', 'cs_5');
select is(pg_temp.dispute('0f000000-0000-4000-8000-000000000005', 'dp_7', 'ch_7') ->> 'taken',
  '100', 'the dispute takes the pack');
select is(pg_temp.refund('0f000000-0000-4000-8000-000000000005', 're_7', 'ch_7', 150) ->> 'taken',
  '0', 'the refund reported after it takes nothing twice');
select is(pg_temp.won('0f000000-0000-4000-8000-000000000005', 'dp_7', 'ch_7') - 'entry_id',
  '{"returned": 100, "cancelled": 0, "balance": 50, "replayed": false}'::jsonb,
  'won: the pack comes back less the refund''s half, which the refund now takes');
select is(pg_temp.won('0f000000-0000-4000-8000-000000000005', 'dp_7', 'ch_7') ->> 'balance',
  '50', 'replayed, nothing moves');
select is(pg_temp.refund('0f000000-0000-4000-8000-000000000005', 're_7', 'ch_7', 150) ->> 'replayed',
  'true', 'the refund redelivered replays');
select is(pg_temp.figures('0f000000-0000-4000-8000-000000000005'), '50/0',
  'half refunded, half the pack kept');

select tests.as_service();
select is((creditgate.audit() ->> 'ok')::boolean, true, 'the audit is clean after refunds and disputes');

-- ---------------------------------------------------------------- checkout amount check
select is(
  creditgate.service_apply_checkout('evt_cheap', '0f000000-0000-4000-8000-000000000001', 'price_yen', 1,
    amount_total => 1, currency => 'jpy', session_id => 'cs_cheap'),
  '{"held": true, "reason": "amount_mismatch", "pack_id": "pack-yen", "credits": 0,
    "expected_amount": 1000, "expected_currency": "jpy", "amount": 1, "currency": "jpy",
    "replayed": false}'::jsonb,
  'a session that paid 1 yen for the 100,000-credit pack grants nothing and says why'
);
select is(
  creditgate.service_apply_checkout('evt_cheap', '0f000000-0000-4000-8000-000000000001', 'price_yen', 1,
    amount_total => 1, currency => 'jpy', session_id => 'cs_cheap') ->> 'replayed',
  'true', 'redelivered: still held, recorded once'
);
select is(
  creditgate.service_apply_checkout('evt_eur', '0f000000-0000-4000-8000-000000000001', 'price_100', 1,
    amount_total => 300, currency => 'eur', session_id => 'cs_eur') ->> 'reason',
  'currency_mismatch', 'the right amount in another currency is held too'
);
select is(
  creditgate.service_apply_checkout('evt_qty', '0f000000-0000-4000-8000-000000000001', 'price_100', 3,
    amount_total => 300, currency => 'usd', session_id => 'cs_qty') ->> 'reason',
  'amount_mismatch', 'quantity 3 paid at the price of 1 is held'
);
select tests.as_owner();
select is(pg_temp.figures('0f000000-0000-4000-8000-000000000001'), '0/0', 'held checkouts granted nothing');
select results_eq(
  $$ select idempotency_key, user_id, price_id, quantity, expected_amount, expected_currency,
       amount_total, currency, reason from creditgate_private.checkout_holds order by idempotency_key $$,
  $$ values
       ('stripe:checkout:cs_cheap'::text, '0f000000-0000-4000-8000-000000000001'::uuid, 'price_yen'::text,
        1, 1000::bigint, 'jpy'::text, 1::bigint, 'jpy'::text, 'amount_mismatch'::text),
       ('stripe:checkout:cs_eur', '0f000000-0000-4000-8000-000000000001', 'price_100', 1, 300, 'usd', 300,
        'eur', 'currency_mismatch'),
       ('stripe:checkout:cs_qty', '0f000000-0000-4000-8000-000000000001', 'price_100', 3, 900, 'usd', 300,
        'usd', 'amount_mismatch') $$,
  'each held checkout is on record for an operator'
);
select tests.as_service();
select is(
  (select (c ->> 'failures')::integer from jsonb_array_elements(creditgate.audit() -> 'checks') as c
   where c ->> 'name' = 'checkout_holds_unresolved'),
  3, 'audit reports the unresolved holds'
);
select tests.as_owner();
update creditgate_private.checkout_holds set resolved_at = now(), resolution = 'refunded by operator';
select tests.as_service();
select is((creditgate.audit() ->> 'ok')::boolean, true, 'resolved holds no longer fail the audit');

select is(
  creditgate.service_apply_checkout('evt_tax', '0f000000-0000-4000-8000-000000000001', 'price_100', 2,
    amount_total => 660, currency => 'USD', session_id => 'cs_tax', amount_tax => 60) ->> 'credits',
  '200', 'tax on top of the price is fine: what counts is the amount before tax'
);

-- ---------------------------------------------------------------- one grant per session
select is(
  creditgate.service_apply_checkout('evt_async_a', '0f000000-0000-4000-8000-000000000002', 'price_100', 1,
    amount_total => 300, currency => 'usd', session_id => 'cs_async') ->> 'replayed',
  'false', 'checkout.session.completed grants'
);
select is(
  creditgate.service_apply_checkout('evt_async_b', '0f000000-0000-4000-8000-000000000002', 'price_100', 1,
    amount_total => 300, currency => 'usd', session_id => 'cs_async') ->> 'replayed',
  'true', 'async_payment_succeeded of the same session (another event id) replays'
);
select tests.as_owner();
select results_eq(
  $$ select idempotency_key::text, amount::bigint from creditgate.ledger
     where metadata ->> 'session_id' = 'cs_async' $$,
  $$ values ('stripe:checkout:cs_async'::text, 100::bigint) $$,
  'one purchase, keyed stripe:checkout:<session id>'
);

-- ---------------------------------------------------------------- errors and callers
select tests.as_service();
select is(
  tests.error_json($$ select creditgate.service_stripe_refund('re_x', '0f000000-0000-4000-8000-000000000001',
    'ch_x', 100, 0, 10) $$) -> 'detail' ->> 'field',
  'payment_amount', 'a payment amount of 0 is PT400 naming payment_amount');
select is(
  tests.error_json($$ select creditgate.service_stripe_dispute('dp_x', '0f000000-0000-4000-8000-000000000001',
    null, 100) $$) -> 'detail' ->> 'field',
  'payment_id', 'a dispute without a payment is PT400 naming payment_id');
select is(
  tests.error_json($$ select creditgate.service_apply_checkout('evt_n', '0f000000-0000-4000-8000-000000000001',
    'price_100') $$) -> 'detail' ->> 'field',
  'amount_total', 'a checkout without the amount paid is PT400 naming amount_total');
select throws_ok(
  $$ select creditgate.service_stripe_dispute('dp_3', '0f000000-0000-4000-8000-000000000001', 'pi_3', 100) $$,
  'PT409', 'idempotency_key_reused', 'a dispute id recorded for another user is PT409'
);
select throws_ok(
  $$ select creditgate.service_stripe_refund('re_1', '0f000000-0000-4000-8000-000000000001', 'ch_other',
    100, 300, 100) $$,
  'PT409', 'idempotency_key_reused', 'a refund id recorded for another payment is PT409'
);
select tests.as_user('0f000000-0000-4000-8000-000000000001');
select throws_ok(
  $$ select creditgate.service_stripe_dispute_won('dp_2', '0f000000-0000-4000-8000-000000000001', 'py_2') $$,
  '42501', 'permission denied for function service_stripe_dispute_won', 'a user cannot win a dispute'
);
select throws_ok(
  $$ select creditgate.service_stripe_refund('re_y', '0f000000-0000-4000-8000-000000000001', 'ch_y',
    100, 300, 100) $$,
  '42501', 'permission denied for function service_stripe_refund', 'nor record a refund'
);

select * from finish();
rollback;
