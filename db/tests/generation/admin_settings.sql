-- creditgate.admin_set_setting(key, value) and creditgate.admin_set_model_enabled(model_id,
-- enabled): admins only (checked against creditgate_private.admins, never the JWT), known
-- keys, typed values.
begin;

select tests.seed_models();
select tests.create_user() as admin \gset
select tests.create_user() as u \gset
select tests.make_admin(:'admin');

create temp table bad_values (key text, value text) on commit drop;
grant select on bad_values to authenticated;
insert into bad_values values
  ('maintenance_mode', '"true"'), ('maintenance_mode', '1'), ('maintenance_mode', 'null'),
  ('signup_bonus', '-1'), ('signup_bonus', '1.5'), ('signup_bonus', '"1000"'),
  ('signup_bonus_expires_days', '0'), ('signup_bonus_expires_days', '"30"'),
  ('plan_daily_caps', '[]'), ('plan_daily_caps', '{"Free": 10}'), ('plan_daily_caps', '{"free": -1}'),
  ('plan_daily_caps', '{"free": "10"}'), ('plan_daily_caps', '{"free": 1.5}'), ('plan_daily_caps', '20000'),
  ('media_ttl_hours', '0'), ('media_ttl_hours', '8761'), ('media_ttl_hours', '"24"'),
  ('max_prompt_length', '0'), ('max_prompt_length', '100001'),
  ('max_attempts', '0'), ('max_attempts', '11'), ('max_attempts', '2.5'),
  ('lease_seconds', '4'), ('lease_seconds', '86401'), ('max_lease_seconds', 'true');

select plan((select count(*)::integer from bad_values) + 29);

-- Every default is acceptable to its own validator.
select is(
  (select count(*)::integer from creditgate_private.setting_defaults() as d
   where creditgate_private.setting_problem(d.key, d.value) is not null),
  0, 'every default value passes setting_problem');

select tests.as_user(:'u');
select throws_ok($$select creditgate.admin_set_setting('maintenance_mode', 'true')$$,
  'PT403', 'forbidden', 'a user with a forged admin claim is still not an admin');
select throws_ok($$select creditgate.admin_set_model_enabled('img-test', false)$$,
  'PT403', 'forbidden', 'non-admins cannot switch models');
select tests.as_anon();
select throws_ok($$select creditgate.admin_set_setting('maintenance_mode', 'true')$$,
  '42501', 'permission denied for function admin_set_setting', 'anon cannot set settings');
select throws_ok($$select creditgate.admin_set_model_enabled('img-test', false)$$,
  '42501', 'permission denied for function admin_set_model_enabled', 'anon cannot switch models');
select set_config('role', 'authenticated', true), set_config('request.jwt.claims', '{"role": "authenticated"}', true);
select throws_ok($$select creditgate.admin_set_setting('maintenance_mode', 'true')$$,
  'PT401', 'not_authenticated', 'a token without a user is not authenticated');
select tests.as_service();
select throws_ok($$select creditgate.admin_set_setting('maintenance_mode', 'true')$$,
  '42501', 'permission denied for function admin_set_setting', 'service_role uses no admin RPCs');

select tests.as_user(:'admin');
select is(creditgate.admin_set_setting('maintenance_mode', 'true'),
  '{"key": "maintenance_mode", "value": true}'::jsonb, 'an admin switches maintenance on');
select tests.as_owner();
select is((select s.value from creditgate_private.settings as s where s.key = 'maintenance_mode'), 'true'::jsonb,
  'the setting is stored');
select is((select s.updated_by from creditgate_private.settings as s where s.key = 'maintenance_mode'), :'admin'::uuid,
  'with who changed it');
select tests.as_user(:'u');
select throws_ok($$select creditgate.request_generation('img-test', '{"prompt": "x"}', 'k-1')$$,
  'PT503', 'maintenance', 'maintenance takes effect at once');
select tests.as_user(:'admin');
select is(creditgate.admin_set_setting('maintenance_mode', 'false'),
  '{"key": "maintenance_mode", "value": false}'::jsonb, 'and off again (upsert)');
select tests.as_user(:'u');
select is((creditgate.request_generation('img-test', '{"prompt": "x"}', 'k-1') ->> 'cost')::bigint, 33::bigint,
  'requests flow again');

select tests.as_user(:'admin');
select is(creditgate.admin_set_setting('plan_daily_caps', '{"free": 50, "pro": null}') -> 'value',
  '{"free": 50, "pro": null}'::jsonb, 'plan caps are set as an object');
select tests.as_user(:'u');
select is(creditgate.get_balance() -> 'daily', '{"used": 33, "cap": 50}'::jsonb, 'and read by get_balance');
select tests.as_user(:'admin');
select is(creditgate.admin_set_setting('media_ttl_hours', '48') -> 'value', '48'::jsonb, 'media TTL is set');
select is(creditgate.admin_set_setting('signup_bonus_expires_days', 'null') -> 'value', 'null'::jsonb,
  'a nullable setting accepts JSON null');
select is(creditgate.admin_set_setting('max_attempts', '5.0') -> 'value', '5.0'::jsonb, 'a whole 5.0 is an integer');
select tests.as_owner();
select is(creditgate_private.setting('media_ttl_hours'), '48'::jsonb, 'setting() reads the new value');
select tests.as_user(:'admin');

select throws_ok($$select creditgate.admin_set_setting('no_such_key', 'true')$$,
  'PT400', 'invalid_request', 'an unknown key is refused');
select is(tests.error_of($$select creditgate.admin_set_setting('no_such_key', 'true')$$),
  'PT400 invalid_request key', 'naming the key field');
select is(tests.error_of($$select creditgate.admin_set_setting(null, 'true')$$),
  'PT400 invalid_request key', 'a null key is refused');
select is(tests.error_of($$select creditgate.admin_set_setting('maintenance_mode', null)$$),
  'PT400 invalid_request value', 'a SQL null value is refused');
select is(
  tests.error_of(format('select creditgate.admin_set_setting(%L, %L::jsonb)', b.key, b.value)),
  'PT400 invalid_request value',
  format('%s refuses %s', b.key, b.value)
)
from bad_values as b;

-- Models.
select is(creditgate.admin_set_model_enabled('img-test', false), '{"model_id": "img-test", "enabled": false}'::jsonb,
  'an admin switches a model off');
select tests.as_user(:'u');
select throws_ok($$select creditgate.quote('img-test', '{"prompt": "x"}')$$,
  'PT503', 'model_unavailable', 'a switched-off model is unavailable');
select tests.as_user(:'admin');
select is(creditgate.admin_set_model_enabled('img-off', true), '{"model_id": "img-off", "enabled": true}'::jsonb,
  'an admin switches a model on');
select tests.as_user(:'u');
select is((creditgate.quote('img-off', '{"prompt": "x"}') ->> 'cost')::bigint, 33::bigint, 'and it can be quoted');
select tests.as_user(:'admin');
select throws_ok($$select creditgate.admin_set_model_enabled('nope', true)$$,
  'PT404', 'not_found', 'an unknown model is not found');
select is(tests.error_of($$select creditgate.admin_set_model_enabled('img-test', null)$$),
  'PT400 invalid_request enabled', 'enabled must be true or false');

select * from finish();
rollback;
