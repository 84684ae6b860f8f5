-- creditgate.service_apply_checkout(event_id, user_id, price_id, quantity), service_role.
-- Proves: credits come from creditgate.credit_packs (times quantity) as a purchase lot with
-- the pack's category, priority and expiry; key stripe:<event_id>; a redelivered event
-- replays; the same event with other arguments is PT409; unknown price or user is PT404;
-- bad arguments are PT400; only service_role may call it.

begin;
set local client_min_messages = warning;
select plan(25);

insert into creditgate.credit_packs (id, name, credits, price_cents, stripe_price_id, category,
  priority, expires_after, active)
values
  ('starter', 'Starter', 500, 500, 'price_starter', 'paid', 50, null, true),
  ('promo', 'Promo', 200, 100, 'price_promo', 'promotional', 20, interval '30 days', true),
  ('retired', 'Retired', 300, 300, 'price_retired', 'paid', 50, null, false);
select tests.create_user(p_id => '02000000-0000-4000-8000-000000000001');  -- 1000 signup bonus
select tests.create_user(p_id => '02000000-0000-4000-8000-000000000002');

-- ---------------------------------------------------------------- success
select tests.as_service();
select creditgate.service_apply_checkout('evt_1', '02000000-0000-4000-8000-000000000001', 'price_starter',
  amount_total => 500, currency => 'usd')
  as r1 \gset
select is(
  :'r1'::jsonb - 'entry_id' - 'lot_id',
  '{"entry_type": "purchase", "amount": 500, "credits": 500, "pack_id": "starter", "balance": 1500,
    "replayed": false}'::jsonb,
  'a checkout grants the pack''s credits and says which pack'
);
select results_eq(
  format($$ select l.idempotency_key::text, l.entry_type::text, l.delta, l.reason, l.metadata
     from creditgate.ledger as l where l.id = %s $$, :'r1'::jsonb ->> 'entry_id'),
  $$ values ('stripe:evt_1'::text, 'purchase'::text, 500::bigint, 'stripe checkout'::text,
       '{"event_id": "evt_1", "price_id": "price_starter", "pack_id": "starter", "quantity": 1}'::jsonb) $$,
  'the entry is keyed stripe:<event_id> and records the event, price, pack and quantity'
);
select results_eq(
  format($$ select category::text, priority::integer, expires_at, amount::bigint from creditgate.credit_lots
     where id = %L $$, :'r1'::jsonb ->> 'lot_id'),
  $$ values ('paid'::text, 50, null::timestamptz, 500::bigint) $$,
  'the lot takes the pack''s category, priority and (no) expiry'
);
select is(
  creditgate.service_apply_checkout('evt_2', '02000000-0000-4000-8000-000000000001', 'price_promo', 3,
    amount_total => 300, currency => 'USD') ->> 'credits',
  '600', 'quantity multiplies the pack''s credits'
);
select results_eq(
  $$ select category::text, priority::integer, expires_at, amount::bigint from creditgate.credit_lots
     where source_entry_id = (select id from creditgate.ledger where idempotency_key = 'stripe:evt_2') $$,
  $$ values ('promotional'::text, 20, now() + interval '30 days', 600::bigint) $$,
  'an expiring pack gives a lot expiring expires_after from now'
);
select is(
  creditgate.service_apply_checkout('evt_3', '02000000-0000-4000-8000-000000000002', 'price_retired',
    amount_total => 300, currency => 'usd') ->> 'credits',
  '300', 'a paid checkout of a pack retired since is still honoured'
);

-- ---------------------------------------------------------------- redelivery
select is(
  creditgate.service_apply_checkout('evt_1', '02000000-0000-4000-8000-000000000001', 'price_starter',
    amount_total => 500, currency => 'usd'),
  :'r1'::jsonb || '{"replayed": true}',
  'a redelivered event replays the original result with replayed=true'
);
select tests.as_owner();
update creditgate.credit_packs set credits = 999 where id = 'starter';
select tests.as_service();
select is(
  creditgate.service_apply_checkout('evt_1', '02000000-0000-4000-8000-000000000001', 'price_starter',
    amount_total => 500, currency => 'usd') ->> 'credits',
  '500', 'a redelivery after the pack changed still returns what was granted'
);
select is(
  (select count(*) from creditgate.ledger where idempotency_key = 'stripe:evt_1'),
  1::bigint, 'one entry however often the event arrives'
);
select is(
  (select balance::bigint from creditgate.balances where user_id = '02000000-0000-4000-8000-000000000001'),
  2100::bigint, 'the user got 500 + 600 once each'
);
select throws_ok(
  $$ select creditgate.service_apply_checkout('evt_1', '02000000-0000-4000-8000-000000000001', 'price_promo',
    amount_total => 100, currency => 'usd') $$,
  'PT409', 'idempotency_key_reused', 'the same event for another price is PT409'
);
select throws_ok(
  $$ select creditgate.service_apply_checkout('evt_1', '02000000-0000-4000-8000-000000000001', 'price_starter', 2,
    amount_total => 1000, currency => 'usd') $$,
  'PT409', 'idempotency_key_reused', 'the same event with another quantity is PT409'
);
select is(
  tests.error_json($$ select creditgate.service_apply_checkout('evt_1',
       '02000000-0000-4000-8000-000000000002', 'price_starter', amount_total => 500, currency => 'usd') $$),
  '{"sqlstate": "PT409", "message": "idempotency_key_reused",
    "detail": {"idempotency_key": "stripe:evt_1"}}'::jsonb,
  'the same event for another user is PT409'
);

-- ---------------------------------------------------------------- errors
select is(
  tests.error_json($$ select creditgate.service_apply_checkout('evt_4',
       '02000000-0000-4000-8000-000000000001', 'price_unknown', amount_total => 500, currency => 'usd') $$),
  '{"sqlstate": "PT404", "message": "not_found",
    "detail": {"object": "credit_pack", "price_id": "price_unknown"}}'::jsonb,
  'an unknown price is PT404 naming the price'
);
select throws_ok(
  $$ select creditgate.service_apply_checkout('evt_4', '02000000-0000-4000-8000-000000000001', null, amount_total => 500, currency => 'usd') $$,
  'PT404', 'not_found', 'no price is PT404'
);
select is(
  tests.error_json($$ select creditgate.service_apply_checkout('evt_4',
       '02000000-0000-4000-8000-0000000000ee', 'price_starter', amount_total => 500, currency => 'usd') $$),
  '{"sqlstate": "PT404", "message": "not_found", "detail": {"object": "user"}}'::jsonb,
  'an unknown user is PT404'
);
select is(
  tests.error_json($$ select creditgate.service_apply_checkout('evt_4',
       '02000000-0000-4000-8000-000000000001', 'price_starter', 0) $$) -> 'detail' ->> 'field',
  'quantity', 'quantity 0 is PT400 naming quantity'
);
select throws_ok(
  $$ select creditgate.service_apply_checkout('evt_4', '02000000-0000-4000-8000-000000000001', 'price_starter', 1001) $$,
  'PT400', 'invalid_request', 'quantity 1001 is PT400'
);
select throws_ok(
  $$ select creditgate.service_apply_checkout('evt_4', '02000000-0000-4000-8000-000000000001', 'price_starter', null) $$,
  'PT400', 'invalid_request', 'a null quantity is PT400'
);
select is(
  tests.error_json($$ select creditgate.service_apply_checkout(null,
       '02000000-0000-4000-8000-000000000001', 'price_starter') $$) -> 'detail' ->> 'field',
  'event_id', 'a null event id is PT400 naming event_id'
);
select throws_ok(
  $$ select creditgate.service_apply_checkout('evt 4', '02000000-0000-4000-8000-000000000001', 'price_starter') $$,
  'PT400', 'invalid_request', 'an event id with a space is PT400'
);
select is(
  (select count(*) from creditgate.ledger where idempotency_key = 'stripe:evt_4'),
  0::bigint, 'no refused call posted anything'
);

-- ---------------------------------------------------------------- who may call
select tests.as_user('02000000-0000-4000-8000-000000000001');
select throws_ok(
  $$ select creditgate.service_apply_checkout('evt_5', '02000000-0000-4000-8000-000000000001', 'price_starter') $$,
  '42501', 'permission denied for function service_apply_checkout', 'a user cannot apply a checkout'
);
select tests.as_anon();
select throws_ok(
  $$ select creditgate.service_apply_checkout('evt_5', '02000000-0000-4000-8000-000000000001', 'price_starter') $$,
  '42501', 'permission denied for function service_apply_checkout', 'nor can anon'
);

select tests.as_service();
select is((creditgate.audit() ->> 'ok')::boolean, true, 'the audit is clean');

select * from finish();
rollback;
