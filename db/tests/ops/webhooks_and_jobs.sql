-- Webhook endpoint management, delivery claims and results, periodic jobs and the status
-- function: validation, privileges, admin checks, state changes.
begin;
select plan(36);

select tests.create_user() as admin \gset
select tests.create_user() as u \gset
select tests.make_admin(:'admin');

-- ------------------------------------------------------------------ webhook_add validation
select is(tests.error_of($$select creditgate_private.webhook_add('ftp://example.com/x', array['*'])$$),
  'PT400 invalid_request url', 'only http(s) URLs');
select is(tests.error_of($$select creditgate_private.webhook_add('https://user:pw@example.com/x', array['*'])$$),
  'PT400 invalid_request url', 'no credentials in the URL');
select is(tests.error_of($$select creditgate_private.webhook_add('http://example.com/x', array['*'])$$),
  'PT400 invalid_request url', 'plain http is refused');
select is(tests.error_of($$select creditgate_private.webhook_add('http://127.0.0.1:9/x', array['*'])$$),
  'PT400 invalid_request url', 'even to loopback, unless webhook_allow_loopback is on');
insert into creditgate_private.settings (key, value) values ('webhook_allow_loopback', 'true');
select is(tests.error_of($$select creditgate_private.webhook_add('http://127.0.0.1:9/x', array['*'])$$),
  'ok', 'http to loopback with the development setting');
select is(tests.error_of($$select creditgate_private.webhook_add('http://10.0.0.1/x', array['*'])$$),
  'PT400 invalid_request url', 'the setting never opens http to the private network');
select is(tests.error_of($$select creditgate_private.webhook_add('https://example.com/x', array['credits.gone'])$$),
  'PT400 invalid_request event_types', 'unknown event types are refused');
select is(tests.error_of($$select creditgate_private.webhook_add('https://example.com/x', array[]::text[])$$),
  'PT400 invalid_request event_types', 'at least one event type');
select is(tests.error_of($$select creditgate_private.webhook_add('https://example.com/x', array['*'], 'hunter2')$$),
  'PT400 invalid_request secret', 'secrets are whsec_ + base64');
select matches(
  creditgate_private.webhook_add('https://example.com/x', array['balance.low', 'balance.low']) ->> 'secret',
  '^whsec_[A-Za-z0-9+/]{43}=$', 'a generated secret is 32 random bytes');
select is(
  (select event_types from creditgate_private.webhook_endpoints where url = 'https://example.com/x'),
  array['balance.low']::text [], 'event types are stored once each');
select is(creditgate_private.webhook_list() -> 0 ? 'secret', false, 'list never shows secrets');

-- ---------------------------------------------------------------------- admin wrappers
select tests.as_user(:'u');
select throws_ok($$select creditgate.admin_add_webhook_endpoint('https://example.com/y', array['*'])$$,
  'PT403', 'forbidden', 'non-admins cannot add endpoints');
select throws_ok($$select creditgate.admin_webhook_deliveries()$$,
  'PT403', 'forbidden', 'non-admins cannot read deliveries');
select tests.as_anon();
select throws_ok($$select creditgate.admin_list_webhook_endpoints()$$,
  '42501', 'permission denied for function admin_list_webhook_endpoints', 'anon cannot list endpoints');
select tests.as_service();
select throws_ok($$select creditgate.admin_redeliver_webhook(1)$$,
  '42501', 'permission denied for function admin_redeliver_webhook', 'service_role uses no admin RPCs');
select tests.as_user(:'admin');
select ok(creditgate.admin_add_webhook_endpoint('https://example.com/y', array['*']) ? 'secret',
  'an admin adds an endpoint and gets its secret');
select is(jsonb_array_length(creditgate.admin_list_webhook_endpoints()), 3, 'and lists all three');
select tests.as_user(:'u');
select throws_ok($$select creditgate.service_claim_webhook_deliveries('w')$$,
  '42501', 'permission denied for function service_claim_webhook_deliveries', 'users cannot claim deliveries');

-- ------------------------------------------------------------- claim and report attempts
select tests.as_owner();
update creditgate_private.webhook_endpoints set enabled = false where url <> 'https://example.com/y';
select creditgate_private.emit_event('audit.failed', null, '{"failures": 1}') as event_id \gset
select is((select count(*)::integer from creditgate_private.webhook_deliveries), 1,
  'one delivery for the one enabled endpoint');
select tests.as_service();
select creditgate.service_claim_webhook_deliveries('w-1', 10, 30) -> 0 as claimed \gset
select is((:'claimed'::jsonb) ->> 'webhook_id', 'msg_' || replace(:'event_id', '-', ''),
  'the webhook-id is the event''s');
select is(((:'claimed'::jsonb) ->> 'body')::jsonb - 'timestamp',
  '{"type": "audit.failed", "data": {"failures": 1}}'::jsonb, 'the body is {type, timestamp, data}');
select is(jsonb_array_length(creditgate.service_claim_webhook_deliveries('w-2', 10, 30)), 0,
  'a leased delivery is not claimed twice');
select is(tests.error_of(format(
  $$select creditgate.service_finish_webhook_delivery(%s, 'w-2', %L, '{"http_status": 200}')$$,
  (:'claimed'::jsonb) ->> 'delivery_id', (:'claimed'::jsonb) ->> 'lease_token')),
  'PT409 lease_lost', 'only the lease holder reports');
select is(creditgate.service_finish_webhook_delivery(((:'claimed'::jsonb) ->> 'delivery_id')::bigint, 'w-1',
  (:'claimed'::jsonb) ->> 'lease_token', '{"http_status": 503, "latency_ms": 12}') ->> 'status',
  'pending', 'a 503 is retried');
select tests.as_owner();
select ok((select next_attempt_at > now() + interval '2 seconds' and next_attempt_at <= now() + interval '5 seconds'
  from creditgate_private.webhook_deliveries), 'after base 5 s scaled by 50-100 % jitter');
select is((select array[outcome, http_status::text, latency_ms::text] from creditgate_private.webhook_attempts),
  array['failed', '503', '12'], 'the attempt is recorded');

-- --------------------------------------------------------------------------------- jobs
select is(tests.error_of($$select creditgate_private.run_job('nope')$$), 'PT404 not_found',
  'unknown jobs are refused');
select tests.as_service();
select is(jsonb_array_length(creditgate.service_run_due_jobs('w-1') -> 'ran'), 5,
  'every job is due the first time');
select is(jsonb_array_length(creditgate.service_run_due_jobs('w-1') -> 'ran'), 0,
  'none again within its period');
select is(jsonb_array_length(creditgate.service_run_due_jobs('w-1', now() + interval '61 seconds') -> 'ran'), 1,
  'a minute later only the reaper is due');
select is(creditgate.service_ops_status() -> 'attention', '[]'::jsonb,
  'nothing needs attention after every job ran cleanly');

select tests.as_owner();
select is((creditgate_private.setting_catalog() -> 'low_balance_threshold' ->> 'value')::bigint, 100::bigint,
  'the balance trigger''s built-in default (100) is the catalog''s');

select matches(pg_get_triggerdef((select oid from pg_trigger where tgname = 'balances_after_update_event')),
  '< 100\) AND .*>= 100\)\)\)', 'by default the balances trigger fires only across 100');
insert into creditgate_private.settings (key, value) values ('plan_low_balance_thresholds', '{"pro": 2000, "trial": 50}');
select matches(pg_get_triggerdef((select oid from pg_trigger where tgname = 'balances_after_update_event')),
  '< 2000\) AND .*>= 50\)\)\)', 'its bounds follow the per-plan thresholds');
delete from creditgate_private.settings where key = 'plan_low_balance_thresholds';
select matches(pg_get_triggerdef((select oid from pg_trigger where tgname = 'balances_after_update_event')),
  '< 100\) AND .*>= 100\)\)\)', 'and go back when they are removed');

select * from finish();
rollback;
