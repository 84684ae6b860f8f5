-- The console's admin reads: admin_daily_stats, admin_find_user, admin_list_models,
-- admin_get_settings, admin_run_audit. Admins only (checked inside); figures over a small
-- known dataset.
begin;
select plan(30);

select tests.worker_models();
insert into creditgate.credit_packs (id, name, credits, price_cents, stripe_price_id)
values ('console-pack', 'Console pack', 5000, 500, 'price_console_test');
select tests.create_user('boss@example.test') as admin \gset
select tests.make_admin(:'admin');
select tests.create_user('Alice@Example.test') as u \gset
select tests.create_user() as v \gset

-- g1 image succeeded (100), g2 image failed (100, refunded), g3 chat queued (40).
select tests.make_queued_generation(:'u', 'img-test', 100) as g1 \gset
select tests.make_queued_generation(:'v', 'img-test', 100) as g2 \gset
select tests.as_service();
create temp table jobs as select creditgate.service_claim_generations('w1', 2) as j;
select creditgate.service_settle_generation(:'g1', 'w1', (select x ->> 'lease_token' from jobs, jsonb_array_elements(j) as x where x ->> 'generation_id' = :'g1'),
  jsonb_build_object('status', 'succeeded', 'provider', '{"name": "local", "http_status": 200, "latency_ms": 100}'::jsonb,
    'media', jsonb_build_array(jsonb_build_object('storage_key', 'media/' || :'g1' || '/0.png', 'content_type', 'image/png', 'bytes', 1))));
select creditgate.service_settle_generation(:'g2', 'w1', (select x ->> 'lease_token' from jobs, jsonb_array_elements(j) as x where x ->> 'generation_id' = :'g2'),
  '{"status": "failed", "error": {"code": "server_error"}, "provider": {"name": "local", "http_status": 500, "latency_ms": 300}}');
-- A paid checkout carries its amount and currency (checked against the pack since 0011).
select creditgate.service_apply_checkout('evt_console_1', :'u', 'price_console_test',
  amount_total => 500, currency => 'usd', session_id => 'cs_console_1');
select tests.as_owner();
select tests.make_queued_generation(:'u', 'chat-test', 40, '{"messages": [{"role": "user", "content": "x"}]}') as g3 \gset

-- Who may call them.
select tests.as_user(:'u');
select throws_ok($$select creditgate.admin_daily_stats()$$, 'PT403', 'forbidden', 'daily stats: a user is refused');
select throws_ok($$select creditgate.admin_find_user('boss@example.test')$$, 'PT403', 'forbidden', 'find user: a user is refused');
select throws_ok($$select creditgate.admin_list_models()$$, 'PT403', 'forbidden', 'list models: a user is refused');
select throws_ok($$select creditgate.admin_get_settings()$$, 'PT403', 'forbidden', 'settings: a user is refused');
select throws_ok($$select creditgate.admin_run_audit()$$, 'PT403', 'forbidden', 'audit: a user is refused');
select set_config('request.jwt.claims', '{"role": "authenticated"}', true);
select throws_ok($$select creditgate.admin_find_user('x')$$, 'PT401', 'not_authenticated', 'no user: not_authenticated');
select tests.as_anon();
select throws_ok($$select creditgate.admin_daily_stats()$$, '42501', null, 'anon cannot call it at all');

select tests.as_user(:'admin');
create temp table daily as select creditgate.admin_daily_stats(now() - interval '2 days') as s;
select tests.as_owner();

select is(jsonb_array_length((select s -> 'days' from daily)), 3, 'three UTC days: since to today');
select is((select s #>> '{days,2}' from daily), ((now() at time zone 'UTC')::date)::text, 'the last day is today');
select is(
  (select s -> 'credits' -> 2 from daily) - 'day' - 'sold',
  '{"granted": 3000, "spent": 240, "refunded": 100, "expired": 0, "clawed_back": 0}'::jsonb,
  'today: three signup bonuses, three charges, one refund'
);
select is(
  (select (s -> 'credits' -> 2 ->> 'sold')::bigint from daily),
  5000::bigint,
  'today: the pack sold'
);
select is((select s -> 'credits' -> 0 from daily) - 'day',
  '{"sold": 0, "granted": 0, "spent": 0, "refunded": 0, "expired": 0, "clawed_back": 0}'::jsonb,
  'an empty day is listed with zeros');
select is(
  (select (s -> 'outstanding' -> 2 ->> 'balance')::bigint from daily),
  (select sum(b.balance)::bigint from creditgate.balances as b),
  'outstanding today = every balance summed (the liability)'
);
select is((select (s -> 'outstanding' -> 0 ->> 'balance')::bigint from daily), 0::bigint,
  'outstanding before anyone signed up: 0');
select is(
  (select s -> 'generations_by_status' from daily),
  jsonb_build_array(
    jsonb_build_object('day', (now() at time zone 'UTC')::date, 'status', 'failed', 'count', 1),
    jsonb_build_object('day', (now() at time zone 'UTC')::date, 'status', 'queued', 'count', 1),
    jsonb_build_object('day', (now() at time zone 'UTC')::date, 'status', 'succeeded', 'count', 1)),
  'generations by day and status'
);
select is(
  (select s -> 'generations_by_model' from daily),
  jsonb_build_array(
    jsonb_build_object('day', (now() at time zone 'UTC')::date, 'model_id', 'chat-test', 'count', 1),
    jsonb_build_object('day', (now() at time zone 'UTC')::date, 'model_id', 'img-test', 'count', 2)),
  'generations by day and model'
);
select is(
  (select s -> 'providers' from daily),
  jsonb_build_array(jsonb_build_object('day', (now() at time zone 'UTC')::date, 'calls', 2, 'failures', 1,
    'failure_rate', 0.5, 'p50_latency_ms', 200, 'p95_latency_ms', 290)),
  'provider failure rate, p50 and p95 latency per day'
);

select tests.as_user(:'admin');
select throws_ok($$select creditgate.admin_daily_stats(now() - interval '2 years')$$, 'PT400', 'invalid_request', 'at most a year back');
create temp table found as select creditgate.admin_find_user('alice@example.TEST') as f;
select is((select f #>> '{user,id}' from found), :'u', 'find by email, case-insensitive');
select is(creditgate.admin_find_user(:'u') -> 'user', (select f -> 'user' from found), 'find by id');
select is((select (f #>> '{balance,balance}')::bigint from found), 5860::bigint, 'the balance: 1000 bonus + 5000 pack - 100 - 40 charged');
select is((select jsonb_array_length(f -> 'lots') from found), 2, 'lots: signup bonus and the pack');
select is(
  (select array_agg(e ->> 'entry_type' order by (e ->> 'id')::bigint) from found, jsonb_array_elements(f -> 'ledger') as e),
  array['signup_bonus', 'spend', 'purchase', 'spend'],
  'ledger entries'
);
select is((select jsonb_array_length(f -> 'generations') from found), 2, 'generations');
select throws_ok($$select creditgate.admin_find_user('nobody@example.test')$$, 'PT404', 'not_found', 'unknown user');
select throws_ok($$select creditgate.admin_find_user('  ')$$, 'PT400', 'invalid_request', 'empty query');

select is(
  (select e -> 'enabled' from jsonb_array_elements(creditgate.admin_list_models()) as e where e ->> 'id' = 'img-test'),
  'true'::jsonb, 'models are listed with their switch'
);
select creditgate.admin_set_model_enabled('img-test', false);
select is(
  (select e -> 'enabled' from jsonb_array_elements(creditgate.admin_list_models()) as e where e ->> 'id' = 'img-test'),
  'false'::jsonb, 'a disabled model is still listed'
);
select creditgate.admin_set_setting('maintenance_mode', 'true');
select is(
  (select e - 'updated_at' - 'description' from jsonb_array_elements(creditgate.admin_get_settings()) as e where e ->> 'key' = 'maintenance_mode'),
  '{"key": "maintenance_mode", "value": true, "default": false}'::jsonb,
  'settings: current value and default'
);
select is((creditgate.admin_run_audit() ->> 'ok')::boolean, true, 'the audit runs for an admin and passes');

select * from finish();
rollback;
