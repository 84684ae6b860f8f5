-- Owed credits (DESIGN §3, turn 2): a clawback takes what the user has now and records the
-- rest as owed; every credit that reaches the user afterwards pays it first.
-- Proves, on the story from the outside review: a user buys a pack, queues work holding
-- most of it, disputes the payment; canceling and failing the work refunds into the debt,
-- not back to the user; grants, admin credits and purchases pay what is owed first, as
-- clawback entries tied to the dispute; get_balance reports owed; audit checks it.

begin;
set local client_min_messages = warning;
select plan(36);

select tests.worker_models();
insert into creditgate_private.settings (key, value) values ('signup_bonus', '0');
insert into creditgate.credit_packs (id, name, credits, price_cents, currency, stripe_price_id, category)
values ('pack-500', '500 credits', 500, 500, 'usd', 'price_500', 'paid');
select tests.create_user(p_id => '0e000000-0000-4000-8000-000000000001');
select tests.create_user(p_id => '0e000000-0000-4000-8000-000000000002');
select tests.make_admin('0e000000-0000-4000-8000-000000000002');

create function pg_temp.claim(p_generation uuid) returns text
language plpgsql as $$
declare
  v_job jsonb;
begin
  update creditgate.generations set created_at = '2000-01-01' where id = p_generation;
  perform tests.as_service();
  v_job := creditgate.service_claim_generations('w1', 1, 60) -> 0;
  perform tests.as_owner();
  if v_job ->> 'generation_id' is distinct from p_generation::text then
    raise exception 'claimed % instead of %', v_job ->> 'generation_id', p_generation;
  end if;
  return v_job ->> 'lease_token';
end
$$;
create function pg_temp.owed() returns bigint
language sql as $$
  select owed::bigint from creditgate.balances where user_id = '0e000000-0000-4000-8000-000000000001'
$$;
create function pg_temp.figures() returns jsonb
language plpgsql as $$
declare
  v jsonb;
begin
  perform tests.as_user('0e000000-0000-4000-8000-000000000001');
  v := creditgate.get_balance() - 'daily' - 'expiring' - 'plan';
  perform tests.as_owner();
  return v;
end
$$;

-- ---------------------------------------------------------------- buy, queue, dispute
select tests.as_service();
select creditgate.service_apply_checkout('evt_buy', '0e000000-0000-4000-8000-000000000001', 'price_500',
  amount_total => 500, currency => 'usd', session_id => 'cs_buy');
select tests.as_owner();
select tests.request_as('0e000000-0000-4000-8000-000000000001', 'video-test') as g_video \gset
select tests.request_as('0e000000-0000-4000-8000-000000000001', 'img-test') as g_img1 \gset
select tests.request_as('0e000000-0000-4000-8000-000000000001', 'img-test') as g_img2 \gset
select tests.request_as('0e000000-0000-4000-8000-000000000001', 'img-test') as g_img3 \gset
select is(pg_temp.figures(), '{"balance": 98, "available": 98, "owed": 0}'::jsonb,
  'bought 500, queued work holds 303 + 3 x 33: 98 left');

select tests.as_service();
select is(
  creditgate.service_stripe_dispute('dp_story', '0e000000-0000-4000-8000-000000000001', 'ch_story', 500)
    - 'entry_id',
  '{"requested": 500, "taken": 98, "shortfall": 402, "balance": 0, "replayed": false}'::jsonb,
  'the dispute takes the 98 the user has and records the rest'
);
select tests.as_owner();
select is(pg_temp.figures(), '{"balance": 0, "available": 0, "owed": 402}'::jsonb,
  'get_balance reports 402 owed');

-- ---------------------------------------------------------------- cancel: into the debt
select tests.as_user('0e000000-0000-4000-8000-000000000001');
select is(creditgate.cancel_generation(:'g_video') - 'generation_id',
  '{"status": "canceled", "refunded": 303, "balance": 0}'::jsonb,
  'canceling the video refunds its 303 in full, and the balance stays 0');
select tests.as_owner();
select is(pg_temp.figures(), '{"balance": 0, "available": 0, "owed": 99}'::jsonb,
  'the refund paid 303 of the debt: nothing came back spendable');
select results_eq(
  format($$ select entry_type::text, amount::bigint, idempotency_key::text, metadata from creditgate.ledger
     where user_id = '0e000000-0000-4000-8000-000000000001'
       and id > (select id from creditgate.ledger where idempotency_key = %L)
     order by id $$, 'refund:' || :'g_video'),
  format($$ values ('clawback'::text, 303::bigint, %L::text, %L::jsonb) $$,
    'owed:' || (select id from creditgate.ledger where idempotency_key = 'refund:' || :'g_video')
      || ':stripe:dispute:dp_story',
    jsonb_build_object('clawback_key', 'stripe:dispute:dp_story', 'paid_from_entry_id',
      (select id from creditgate.ledger where idempotency_key = 'refund:' || :'g_video'))),
  'right after the refund, one clawback entry tied to the dispute and to the refund'
);
select is(
  (select count(*)::integer from creditgate.ledger where idempotency_key = 'refund:' || :'g_video'
     and entry_type = 'refund' and amount = 303),
  1, 'the refund itself is whole (a canceled generation is refunded in full)'
);
select tests.as_user('0e000000-0000-4000-8000-000000000001');
select throws_ok(
  $$ select creditgate.request_generation('img-test', '{"prompt": "again"}', 'after-dispute') $$,
  'PT402', 'insufficient_credits', 'the user cannot spend the disputed credits again'
);
select tests.as_owner();

-- ---------------------------------------------------------------- fail: into the debt
select pg_temp.claim(:'g_img1') as t1 \gset
select tests.as_service();
select is(
  (creditgate.service_settle_generation(:'g_img1', 'w1', :'t1', jsonb_build_object(
    'status', 'failed', 'retryable', false,
    'error', jsonb_build_object('code', 'provider_error', 'message', 'boom'))) ->> 'refunded')::bigint,
  33::bigint, 'a failed job is refunded in full'
);
select tests.as_owner();
select is(pg_temp.figures(), '{"balance": 0, "available": 0, "owed": 66}'::jsonb,
  'and its refund paid the debt too');

-- A job that succeeds gives nothing back.
select pg_temp.claim(:'g_img2') as t2 \gset
select tests.as_service();
select is(
  (creditgate.service_settle_generation(:'g_img2', 'w1', :'t2', jsonb_build_object(
    'status', 'succeeded', 'media', jsonb_build_array(jsonb_build_object(
      'storage_key', 'media/' || :'g_img2' || '/0.png', 'content_type', 'image/png', 'bytes', 10,
      'width', 512, 'height', 512)))) ->> 'refunded')::bigint,
  0::bigint, 'a succeeded job costs its price'
);
select tests.as_owner();
select is(pg_temp.owed(), 66::bigint, 'owed unchanged by a success');

-- ---------------------------------------------------------------- grants pay first
select tests.as_user('0e000000-0000-4000-8000-000000000002');
select is(
  creditgate.admin_add_credits('0e000000-0000-4000-8000-000000000001', 50, 'goodwill', 'gw-1')
    - 'entry_id' - 'lot_id',
  '{"entry_type": "admin_recharge", "amount": 50, "balance": 0, "owed_paid": 50, "replayed": false}'::jsonb,
  'admin credits pay what is owed first: the result says how much and the balance left'
);
select is(
  creditgate.admin_add_credits('0e000000-0000-4000-8000-000000000001', 50, 'goodwill', 'gw-1')
    - 'entry_id' - 'lot_id',
  '{"entry_type": "admin_recharge", "amount": 50, "balance": 0, "owed_paid": 50, "replayed": true}'::jsonb,
  'a replay returns the same figures'
);
select tests.as_owner();
select is(pg_temp.owed(), 16::bigint, 'owed 16');
select tests.as_service();
select is(
  creditgate.service_grant_credits('0e000000-0000-4000-8000-000000000001', 10, 'grant', 'promo-1')
    ->> 'owed_paid',
  '10', 'a service grant pays first too'
);
select is(
  creditgate.service_apply_checkout('evt_buy2', '0e000000-0000-4000-8000-000000000001', 'price_500',
    amount_total => 500, currency => 'usd', session_id => 'cs_buy2') - 'entry_id' - 'lot_id',
  '{"entry_type": "purchase", "amount": 500, "credits": 500, "pack_id": "pack-500", "balance": 494,
    "owed_paid": 6, "replayed": false}'::jsonb,
  'a purchase pays the last 6 owed; the rest is spendable'
);
select tests.as_owner();
select is(pg_temp.figures(), '{"balance": 494, "available": 494, "owed": 0}'::jsonb,
  'nothing owed any more; the new purchase is spendable');

-- Once owed is paid, refunds come back spendable again.
select tests.as_user('0e000000-0000-4000-8000-000000000001');
select is((creditgate.cancel_generation(:'g_img3') ->> 'balance')::bigint, 527::bigint,
  'a refund after the debt is paid is the user''s again');
select tests.as_owner();

-- ---------------------------------------------------------------- what the books say
select results_eq(
  $$ select requested, taken, shortfall, collected, cancelled from creditgate_private.clawbacks
     where idempotency_key = 'stripe:dispute:dp_story' $$,
  $$ values (500::bigint, 98::bigint, 402::bigint, 402::bigint, 0::bigint) $$,
  'the dispute''s record: 98 taken at once, the 402 shortfall collected since'
);
select is(
  (select sum(amount)::bigint from creditgate.ledger
   where user_id = '0e000000-0000-4000-8000-000000000001' and entry_type = 'clawback'),
  500::bigint, 'clawback entries add up to the disputed pack'
);
select is(
  (select count(*)::integer from creditgate.ledger
   where user_id = '0e000000-0000-4000-8000-000000000001' and entry_type = 'clawback'
     and metadata ->> 'clawback_key' = 'stripe:dispute:dp_story'),
  5, 'four collections (cancel, failure, admin, grant) and the purchase''s, all tied to the dispute'
);
select tests.as_service();
select is((creditgate.audit() ->> 'ok')::boolean, true, 'the audit is clean');
select tests.as_owner();

-- ---------------------------------------------------------------- two disputes, oldest first
select tests.create_user(p_id => '0e000000-0000-4000-8000-000000000003');
select creditgate_private.grant_credits('0e000000-0000-4000-8000-000000000003', 10, 'purchase', 'three-a',
  'paid');
select tests.as_service();
select is(creditgate.service_clawback('cb_a', '0e000000-0000-4000-8000-000000000003', 30, 'dispute') ->> 'shortfall',
  '20', 'the generic clawback records a shortfall as owed too');
select is(creditgate.service_clawback('cb_b', '0e000000-0000-4000-8000-000000000003', 15, 'dispute') ->> 'shortfall',
  '15', 'a second one adds to it');
select tests.as_owner();
select is((select owed::bigint from creditgate.balances where user_id = '0e000000-0000-4000-8000-000000000003'),
  35::bigint, 'owed is the sum of both shortfalls');
select is(
  creditgate_private.grant_credits('0e000000-0000-4000-8000-000000000003', 25, 'grant', 'three-b')
    ->> 'owed_paid', '25', 'a grant of 25 goes to the debt');
select results_eq(
  $$ select idempotency_key, collected from creditgate_private.clawbacks
     where user_id = '0e000000-0000-4000-8000-000000000003' order by created_at, idempotency_key $$,
  $$ values ('stripe:cb_a'::text, 20::bigint), ('stripe:cb_b'::text, 5::bigint) $$,
  'the older shortfall is paid first, then the next'
);
select is((select owed::bigint from creditgate.balances where user_id = '0e000000-0000-4000-8000-000000000003'),
  10::bigint, '10 still owed');

-- Any credit pays, whatever its kind or expiry; only what is owed is taken.
select is(
  creditgate_private.grant_credits('0e000000-0000-4000-8000-000000000003', 4, 'grant', 'three-c',
    'promotional', now() + interval '1 hour') ->> 'owed_paid',
  '4', 'an expiring grant pays the debt as well');
select is(
  creditgate_private.grant_credits('0e000000-0000-4000-8000-000000000003', 100, 'grant', 'three-d')
    - 'entry_id' - 'lot_id',
  '{"entry_type": "grant", "amount": 100, "balance": 94, "owed_paid": 6, "replayed": false}'::jsonb,
  'only what is owed is taken from a larger grant'
);
select is(
  creditgate_private.grant_credits('0e000000-0000-4000-8000-000000000003', 7, 'grant', 'three-e')
    - 'entry_id' - 'lot_id',
  '{"entry_type": "grant", "amount": 7, "balance": 101, "replayed": false}'::jsonb,
  'with nothing owed a grant''s result is as it always was'
);

-- ---------------------------------------------------------------- the audit catches drift
select tests.as_service();
select is((creditgate.audit() ->> 'ok')::boolean, true, 'the audit is clean');
select tests.as_owner();
update creditgate.balances set owed = owed + 3 where user_id = '0e000000-0000-4000-8000-000000000003';
select tests.as_service();
select is(
  (select (c ->> 'failures')::integer from jsonb_array_elements(creditgate.audit() -> 'checks') as c
   where c ->> 'name' = 'owed_matches_shortfalls'),
  1, 'an owed figure that disagrees with the clawbacks is reported'
);
select tests.as_owner();
update creditgate.balances set owed = owed - 3 where user_id = '0e000000-0000-4000-8000-000000000003';
update creditgate_private.clawbacks set collected = collected - 1 where idempotency_key = 'stripe:cb_b';
select tests.as_service();
select is(
  (select (c ->> 'failures')::integer from jsonb_array_elements(creditgate.audit() -> 'checks') as c
   where c ->> 'name' = 'owed_collections_match_ledger'),
  1, 'a collected figure that disagrees with the ledger is reported'
);
select tests.as_owner();
update creditgate_private.clawbacks set collected = collected + 1 where idempotency_key = 'stripe:cb_b';
select tests.as_service();
select is((creditgate.audit() ->> 'ok')::boolean, true, 'clean again');

select * from finish();
rollback;
