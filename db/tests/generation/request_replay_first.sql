-- Replays come first (DESIGN §3, amendments of turn 2; issue 17 item 4). A retry of a
-- recorded request (same key, same body) returns the original result whatever changed
-- since: maintenance, the model switched off, its defaults, its prices, rate limits, the
-- daily cap. The hash covers what the client sent (not registry defaults), and a replay
-- counts against no limit.
begin;
set local client_min_messages = warning;
select plan(18);

select tests.seed_models();
select tests.create_user() as u \gset
select tests.create_user() as admin \gset
select tests.make_admin(:'admin');

select tests.as_user(:'u');
select creditgate.request_generation('img-test', '{"prompt": "a cat", "steps": 20}', 'k-1') as first \gset
select tests.as_owner();

create function pg_temp.replay() returns jsonb
language plpgsql as $$
begin
  perform tests.as_user((select f.user_id from first_result as f));
  return creditgate.request_generation('img-test', '{"steps": 20, "prompt": "a cat"}', 'k-1');
end
$$;
create temp table first_result on commit drop as select :'first'::jsonb as r, :'u'::uuid as user_id;
grant select on first_result to authenticated;
create function pg_temp.original() returns jsonb
language sql as $$
  select jsonb_set(f.r, '{replayed}', 'true') from first_result as f
$$;

select is((:'first'::jsonb ->> 'replayed')::boolean, false, 'the original request is recorded');
select is(pg_temp.replay(), pg_temp.original(), 'a retry (keys in another order: the same JSON) replays');

-- Maintenance switched on since.
select tests.as_user(:'admin');
select creditgate.admin_set_setting('maintenance_mode', 'true');
select is(pg_temp.replay(), pg_temp.original(), 'under maintenance, a retry still gets the original result');
select tests.as_user(:'u');
select throws_ok($$select creditgate.request_generation('img-test', '{"prompt": "new"}', 'k-2')$$,
  'PT503', 'maintenance', 'while a new request gets PT503 maintenance');
select throws_ok($$select creditgate.request_generation('img-test', '{"prompt": "other"}', 'k-1')$$,
  'PT409', 'idempotency_key_reused', 'and the key with another body is PT409 even under maintenance');
select tests.as_user(:'admin');
select creditgate.admin_set_setting('maintenance_mode', 'false');

-- The model switched off since.
select creditgate.admin_set_model_enabled('img-test', false);
select is(pg_temp.replay(), pg_temp.original(), 'with the model disabled, a retry still gets the original result');
select tests.as_user(:'u');
select throws_ok($$select creditgate.request_generation('img-test', '{"prompt": "new"}', 'k-3')$$,
  'PT503', 'model_unavailable', 'while a new request gets PT503 model_unavailable');
select tests.as_user(:'admin');
select creditgate.admin_set_model_enabled('img-test', true);

-- Defaults and prices changed since.
select tests.as_owner();
update creditgate.models set defaults = defaults || '{"cfg_scale": 9, "width": 640}', price_base = 500
where id = 'img-test';
select is(pg_temp.replay(), pg_temp.original(), 'after the model''s defaults and prices changed, a retry replays (no PT409)');
select is((pg_temp.replay() ->> 'cost')::bigint, 33::bigint, 'at the price it was charged');

-- The hash covers what the client sent: spelling out a default is another request.
select tests.as_user(:'u');
select throws_ok($$select creditgate.request_generation('img-test', '{"prompt": "a cat", "steps": 20, "width": 640}', 'k-1')$$,
  'PT409', 'idempotency_key_reused', 'a body that adds a field (even the default''s value) is another request');
select throws_ok($$select creditgate.request_generation('img-test', '{"prompt": "a cat"}', 'k-1')$$,
  'PT409', 'idempotency_key_reused', 'a body that drops a field is another request');

-- Rate limits and caps: a replay is answered at the limit and counts nothing.
select tests.as_owner();
insert into creditgate_private.rate_limit_rules (id, scope, kind, window_seconds, max_requests)
values ('t_user', 'user', null, 3600, 1), ('t_ip', 'ip', null, 3600, 1);
insert into creditgate_private.rate_limit_counters (rule_id, subject, window_start, count)
values ('t_user', :'u', to_timestamp(floor(extract(epoch from now()) / 3600) * 3600), 1),
  ('t_ip', '203.0.113.10', to_timestamp(floor(extract(epoch from now()) / 3600) * 3600), 1);
select is(pg_temp.replay(), pg_temp.original(), 'at the rate limit, a retry replays');
select tests.as_owner();
select is((select sum(c.count)::integer from creditgate_private.rate_limit_counters as c), 2,
  'and the replay took nothing from either window');
select tests.as_user(:'u');
select throws_ok($$select creditgate.request_generation('img-test', '{"prompt": "new"}', 'k-4')$$,
  'PT429', 'rate_limited', 'while a new request is limited');
select tests.as_owner();
delete from creditgate_private.rate_limit_counters;
delete from creditgate_private.rate_limit_rules;
insert into creditgate_private.settings (key, value) values ('plan_daily_caps', '{"free": 0}')
on conflict (key) do update set value = excluded.value;
select is(pg_temp.replay(), pg_temp.original(), 'over the daily cap, a retry replays');
select tests.as_user(:'u');
select throws_ok($$select creditgate.request_generation('img-test', '{"prompt": "new"}', 'k-5')$$,
  'PT429', 'daily_cap_reached', 'while a new request is capped');
select tests.as_owner();
delete from creditgate_private.settings where key = 'plan_daily_caps';

-- A request recorded before 0010 (hash of the normalized params, marked legacy:) still
-- matches its retry.
update creditgate.models set defaults = defaults - 'cfg_scale' - 'width', price_base = 10 where id = 'img-test';
update creditgate_private.generation_requests as r
set request_hash = 'legacy:' || md5(jsonb_build_object('model_id', g.model_id, 'params', g.params)::text)
from creditgate.generations as g
where g.id = r.generation_id and r.idempotency_key = 'k-1';
select is(pg_temp.replay(), pg_temp.original(), 'a retry of a request recorded before the upgrade replays');
select tests.as_user(:'u');
select throws_ok($$select creditgate.request_generation('img-test', '{"prompt": "a dog"}', 'k-1')$$,
  'PT409', 'idempotency_key_reused', 'and another body under that key is still PT409');

select * from finish();
rollback;
