-- Rate limits in request_generation: per user and per client IP, fixed windows aligned to
-- the epoch, exact at the limit, rejected requests consume nothing. now() is fixed inside
-- this transaction, so every request falls into one window.
begin;
select plan(33);

select tests.seed_models();
select tests.create_user() as u \gset
select tests.create_user() as u2 \gset
select tests.create_user() as u3 \gset
select tests.create_user() as u4 \gset

insert into creditgate_private.rate_limit_rules (id, scope, kind, window_seconds, max_requests)
values ('t_user', 'user', null, 3600, 3);

-- Per user: the 3rd request passes, the 4th is refused.
select tests.as_user(:'u');
select is((creditgate.request_generation('img-test', '{"prompt": "1"}', 'u-1') ->> 'replayed')::boolean, false, 'user request 1 of 3 passes');
select is((creditgate.request_generation('img-test', '{"prompt": "2"}', 'u-2') ->> 'replayed')::boolean, false, 'user request 2 of 3 passes');
select is((creditgate.request_generation('img-test', '{"prompt": "3"}', 'u-3') ->> 'replayed')::boolean, false, 'user request 3 of 3 passes');
select throws_ok($$select creditgate.request_generation('img-test', '{"prompt": "4"}', 'u-4')$$,
  'PT429', 'rate_limited', 'user request 4 of 3 is rate limited');
select is(tests.error_detail($$select creditgate.request_generation('img-test', '{"prompt": "4"}', 'u-4')$$) ->> 'scope',
  'user', 'the DETAIL names the scope');
select ok((tests.error_detail($$select creditgate.request_generation('img-test', '{"prompt": "4"}', 'u-4')$$) ->> 'retry_after_seconds')::integer
  between 1 and 3600, 'retry_after_seconds is within the window');
select is(
  (tests.error_detail($$select creditgate.request_generation('img-test', '{"prompt": "4"}', 'u-4')$$) ->> 'retry_after_seconds')::integer,
  ceil(extract(epoch from to_timestamp(floor(extract(epoch from now()) / 3600) * 3600 + 3600) - now()))::integer,
  'retry_after_seconds runs to the end of the epoch-aligned window');
select is((select b.balance::bigint from creditgate.balances as b where b.user_id = :'u'), 1000::bigint - 3 * 33,
  'rate-limited requests charge nothing');
select is((select count(*)::integer from creditgate.generations), 3, 'rate-limited requests create nothing');
select is(
  (creditgate.request_generation('img-test', '{"prompt": "2"}', 'u-2') ->> 'replayed')::boolean, true,
  'a replay is answered even at the limit (and is not counted)');

select tests.as_owner();
select is((select c.count from creditgate_private.rate_limit_counters as c where c.rule_id = 't_user' and c.subject = :'u'),
  3, 'refused requests and replays did not consume the window');
select is(
  (select c.window_start from creditgate_private.rate_limit_counters as c where c.rule_id = 't_user' and c.subject = :'u'),
  to_timestamp(floor(extract(epoch from now()) / 3600) * 3600), 'the window is aligned to the epoch');

-- Another user has their own window.
select tests.as_user(:'u2');
select is((creditgate.request_generation('img-test', '{"prompt": "1"}', 'v-1') ->> 'replayed')::boolean, false,
  'the user limit is per user');

-- A later window starts from zero (the limiter takes the clock as a parameter).
select tests.as_owner();
select lives_ok(
  format($$select creditgate_private.take_rate_limits(%L, null, 'image', now() + interval '1 hour')$$, :'u'),
  'the next window accepts the user again');
select is((select count(*)::integer from creditgate_private.rate_limit_counters as c where c.rule_id = 't_user' and c.subject = :'u'),
  1, 'opening a new window drops the user''s spent windows');

-- Raising the limit lets the user continue in the same window; lowering it stops them.
update creditgate_private.rate_limit_rules set max_requests = 4 where id = 't_user';
insert into creditgate_private.rate_limit_counters (rule_id, subject, window_start, count)
values ('t_user', :'u', to_timestamp(floor(extract(epoch from now()) / 3600) * 3600), 3);
select tests.as_user(:'u');
select is((creditgate.request_generation('img-test', '{"prompt": "4"}', 'u-4') ->> 'replayed')::boolean, false,
  'the 4th request passes once the limit is 4');
select throws_ok($$select creditgate.request_generation('img-test', '{"prompt": "5"}', 'u-5')$$,
  'PT429', 'rate_limited', 'and the 5th is refused');

-- A disabled rule does not count.
select tests.as_owner();
update creditgate_private.rate_limit_rules set enabled = false where id = 't_user';
select tests.as_user(:'u');
select is((creditgate.request_generation('img-test', '{"prompt": "5"}', 'u-5') ->> 'replayed')::boolean, false,
  'a disabled rule limits nothing');

-- Per IP, across users: the 2nd passes, the 3rd is refused whoever sends it.
select tests.as_owner();
insert into creditgate_private.rate_limit_rules (id, scope, kind, window_seconds, max_requests)
values ('t_ip', 'ip', null, 60, 2);
select tests.as_user(:'u3', '192.0.2.7');
select is((creditgate.request_generation('img-test', '{"prompt": "1"}', 'w-1') ->> 'replayed')::boolean, false, 'IP request 1 of 2 passes');
select tests.as_user(:'u4', '192.0.2.7');
select is((creditgate.request_generation('img-test', '{"prompt": "1"}', 'x-1') ->> 'replayed')::boolean, false, 'IP request 2 of 2 passes (another user)');
select throws_ok($$select creditgate.request_generation('img-test', '{"prompt": "2"}', 'x-2')$$,
  'PT429', 'rate_limited', 'IP request 3 of 2 is rate limited');
select is(tests.error_detail($$select creditgate.request_generation('img-test', '{"prompt": "2"}', 'x-2')$$) ->> 'scope',
  'ip', 'the DETAIL names the ip scope');
select tests.as_user(:'u3', '192.0.2.7');
select throws_ok($$select creditgate.request_generation('img-test', '{"prompt": "2"}', 'w-2')$$,
  'PT429', 'rate_limited', 'the first user is limited by the shared IP too');
select tests.as_user(:'u3', '192.0.2.8');
select is((creditgate.request_generation('img-test', '{"prompt": "2"}', 'w-2') ->> 'replayed')::boolean, false,
  'another IP has its own window');

-- Where the IP comes from: only the header client_ip_header names (client_ip.sql has the
-- details).
select tests.as_user(:'u3');
select tests.set_headers('{"x-real-ip": "192.0.2.9", "x-forwarded-for": "192.0.2.9", "cf-connecting-ip": "192.0.2.7"}');
select throws_ok($$select creditgate.request_generation('img-test', '{"prompt": "3"}', 'w-3')$$,
  'PT429', 'rate_limited', 'cf-connecting-ip decides, whatever x-real-ip and x-forwarded-for say');
select tests.set_headers('{"cf-connecting-ip": "192.0.2.9"}');
select is((creditgate.request_generation('img-test', '{"prompt": "3"}', 'w-3') ->> 'replayed')::boolean, false,
  'another cf-connecting-ip has its own window');
select tests.set_headers('{}');
select is((creditgate.request_generation('img-test', '{"prompt": "4"}', 'w-4') ->> 'replayed')::boolean, false,
  'without a client IP the request counts in the shared unknown bucket (1 of 2)');
select tests.set_headers('{"cf-connecting-ip": "not-an-ip"}');
select is((creditgate.request_generation('img-test', '{"prompt": "5"}', 'w-5') ->> 'replayed')::boolean, false,
  'a garbage address is not an error: it counts in the unknown bucket too (2 of 2)');
select tests.set_headers('{"x-forwarded-for": "192.0.2.100"}');
select throws_ok($$select creditgate.request_generation('img-test', '{"prompt": "6"}', 'w-6')$$,
  'PT429', 'rate_limited', 'the third unreadable address is limited: no address never means no IP rule');

-- Per kind: a video rule does not limit images.
select tests.as_owner();
update creditgate_private.rate_limit_rules set enabled = false where id = 't_ip';
insert into creditgate_private.rate_limit_rules (id, scope, kind, window_seconds, max_requests)
values ('t_video', 'user', 'video', 86400, 1);
select tests.as_user(:'u2');
select is((creditgate.request_generation('video-test', '{"prompt": "1"}', 'v-video-1') ->> 'replayed')::boolean, false, 'video 1 of 1 passes');
select throws_ok($$select creditgate.request_generation('video-test', '{"prompt": "2"}', 'v-video-2')$$,
  'PT429', 'rate_limited', 'video 2 of 1 is limited');
select is((creditgate.request_generation('img-test', '{"prompt": "2"}', 'v-2') ->> 'replayed')::boolean, false,
  'the video rule does not limit images');

select tests.as_service();
select is((creditgate.audit() ->> 'ok')::boolean, true, 'the audit finds nothing wrong');

select * from finish();
rollback;
