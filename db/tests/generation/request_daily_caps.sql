-- Plan daily caps in request_generation: credits charged per UTC day, net of refunds,
-- exact at the cap; get_balance reports the same figures.
begin;
select plan(23);

select tests.seed_models();
insert into creditgate.models (id, kind, name, enabled, max_loras, defaults)
values ('one-test', 'image', 'One credit', true, 0, '{}');
insert into creditgate_private.settings (key, value)
values ('plan_daily_caps', '{"free": 100, "pro": null, "blocked": 0}');
select tests.create_user() as u \gset
select tests.create_user() as pro \gset
select tests.create_user() as odd \gset
select tests.create_user() as blocked \gset
select tests.create_user() as night \gset
update creditgate.balances set plan = 'pro' where user_id = :'pro';
update creditgate.balances set plan = 'team' where user_id = :'odd';
update creditgate.balances set plan = 'blocked' where user_id = :'blocked';

select tests.as_user(:'u');
select is(creditgate.get_balance() -> 'daily', '{"used": 0, "cap": 100}'::jsonb, 'nothing used yet today');
select creditgate.request_generation('img-test', '{"prompt": "1"}', 'd-1') as first \gset
select creditgate.request_generation('img-test', '{"prompt": "2"}', 'd-2');
select creditgate.request_generation('img-test', '{"prompt": "3"}', 'd-3');
select is(creditgate.get_balance() -> 'daily', '{"used": 99, "cap": 100}'::jsonb, 'three 33-credit requests use 99');
select throws_ok($$select creditgate.request_generation('img-test', '{"prompt": "4"}', 'd-4')$$,
  'PT429', 'daily_cap_reached', '99 + 33 > 100 is refused');
select is(
  tests.error_detail($$select creditgate.request_generation('img-test', '{"prompt": "4"}', 'd-4')$$),
  jsonb_build_object('cap', 100, 'used', 99,
    'resets_at', date_trunc('day', now() at time zone 'UTC') at time zone 'UTC' + interval '1 day'),
  'DETAIL: cap, used and the next UTC midnight');
select is((select b.balance::bigint from creditgate.balances as b where b.user_id = :'u'), 1000::bigint - 99,
  'a capped request charges nothing');
select is((creditgate.request_generation('one-test', '{"prompt": "x"}', 'd-5') ->> 'cost')::bigint, 1::bigint,
  'a request that brings usage exactly to the cap passes');
select is(creditgate.get_balance() -> 'daily', '{"used": 100, "cap": 100}'::jsonb, 'used = cap');
select throws_ok($$select creditgate.request_generation('one-test', '{"prompt": "y"}', 'd-6')$$,
  'PT429', 'daily_cap_reached', 'one credit over the cap is refused');
select is((creditgate.request_generation('img-test', '{"prompt": "1"}', 'd-1') ->> 'replayed')::boolean, true,
  'a replay is answered at the cap (it charges nothing)');

-- Refunds give the allowance back.
select creditgate.cancel_generation((:'first'::jsonb ->> 'generation_id')::uuid);
select is(creditgate.get_balance() -> 'daily', '{"used": 67, "cap": 100}'::jsonb, 'a canceled generation no longer counts');
select is((creditgate.request_generation('img-test', '{"prompt": "4"}', 'd-4') ->> 'replayed')::boolean, false,
  'after the refund a 33-credit request fits again');
select tests.as_owner();
update creditgate.generations set status = 'failed', finished_at = now()
where user_id = :'u' and idempotency_key = 'd-2';
select creditgate_private.refund_credits(:'u', 'charge:' || g.id, g.cost, 'refund:' || g.id)
from creditgate.generations as g where g.user_id = :'u' and g.idempotency_key = 'd-2';
update creditgate.generations as g
set status = 'succeeded', actual_cost = 3, finished_at = now()
where user_id = :'u' and idempotency_key = 'd-3';
select creditgate_private.refund_credits(:'u', 'charge:' || g.id, 30, 'refund:' || g.id)
from creditgate.generations as g where g.user_id = :'u' and g.idempotency_key = 'd-3';
select tests.as_user(:'u');
select is(creditgate.get_balance() -> 'daily', '{"used": 37, "cap": 100}'::jsonb,
  'failed generations count nothing, succeeded ones their actual cost (1 + 33 + 3)');

-- Days: the counter's date decides (a day passing is simulated by moving that date).
select tests.as_user(:'night');
select creditgate.request_generation('img-test', '{"prompt": "1"}', 'n-1');
select tests.as_owner();
update creditgate.balances set daily_used_on = daily_used_on - 1 where user_id = :'night';
select tests.as_user(:'night');
select is(creditgate.get_balance() -> 'daily', '{"used": 0, "cap": 100}'::jsonb, 'usage resets at UTC midnight');
select is((creditgate.request_generation('img-test', '{"prompt": "2"}', 'n-2') ->> 'cost')::bigint,
  33::bigint, 'a new day starts with the full allowance');
select is(creditgate.get_balance() -> 'daily', '{"used": 33, "cap": 100}'::jsonb,
  'the first charge of the day restarts the count');
-- A transaction that began before midnight and reaches the row after one that began after
-- it (here: the counter already on tomorrow) adds nothing to the newer day.
select tests.as_owner();
update creditgate.balances set daily_used_on = daily_used_on + 1 where user_id = :'night';
select tests.as_user(:'night');
select creditgate.request_generation('img-test', '{"prompt": "3"}', 'n-3');
select tests.as_owner();
select is((select b.daily_used::bigint from creditgate.balances as b where b.user_id = :'night'), 33::bigint,
  'a charge of an earlier day leaves a newer day''s count alone');
-- Back to what today's ledger says (three charges of 33), for the audit at the end.
update creditgate.balances
set daily_used = 99, daily_used_on = (now() at time zone 'UTC')::date
where user_id = :'night';

-- Plans.
select tests.as_user(:'pro');
select is(creditgate.get_balance() -> 'daily', '{"used": 0, "cap": null}'::jsonb, 'a plan mapped to null is uncapped');
select is((creditgate.request_generation('video-test', '{"prompt": "x", "duration_seconds": 10}', 'p-1') ->> 'cost')::bigint,
  603::bigint, 'an uncapped plan may spend past any cap');
select tests.as_user(:'odd');
select is(creditgate.get_balance() -> 'daily', '{"used": 0, "cap": null}'::jsonb, 'a plan missing from the setting is uncapped');
select tests.as_user(:'blocked');
select is(creditgate.get_balance() -> 'daily', '{"used": 0, "cap": 0}'::jsonb, 'a zero cap is reported');
select throws_ok($$select creditgate.request_generation('one-test', '{"prompt": "x"}', 'b-1')$$,
  'PT429', 'daily_cap_reached', 'a zero cap blocks the plan');

-- The default setting: free users get 20000 a day.
select tests.as_owner();
delete from creditgate_private.settings where key = 'plan_daily_caps';
select tests.as_user(:'u');
select is(creditgate.get_balance() -> 'daily', '{"used": 37, "cap": 20000}'::jsonb, 'the default free cap is 20000 credits');

select tests.as_service();
select is((creditgate.audit() ->> 'ok')::boolean, true, 'the audit finds nothing wrong');

select * from finish();
rollback;
