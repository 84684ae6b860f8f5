-- Clients cannot pick their rate-limit bucket (DESIGN §3, amendments of turn 2; issue 17
-- item 1). The address comes from the one header named by setting client_ip_header:
-- cf-connecting-ip by default, or x-forwarded-for:N (Nth entry from the right). Spoofed
-- entries, a client-sent cf-connecting-ip under another setting, garbage, IPv6 and an
-- absent header; per-IP rules never skip a request (unreadable addresses share the bucket
-- 'unknown'); users behind one address share its bucket; an IPv6 /64 is one bucket.
begin;
set local client_min_messages = warning;
select plan(35);

select tests.seed_models();
select tests.create_user() as u1 \gset
select tests.create_user() as u2 \gset
select tests.create_user() as u3 \gset
select tests.create_user() as admin \gset
select tests.make_admin(:'admin');

create function pg_temp.ip_for(p_headers jsonb) returns text
language sql as $$
  select set_config('request.headers', p_headers::text, true);
  select coalesce(host(creditgate_private.client_ip()), 'null');
$$;
create function pg_temp.use_header(p_value text) returns void
language sql as $$
  insert into creditgate_private.settings (key, value) values ('client_ip_header', to_jsonb(p_value))
  on conflict (key) do update set value = excluded.value;
$$;

-- ------------------------------------------------------------ default: cf-connecting-ip
select is(creditgate_private.setting('client_ip_header'), '"cf-connecting-ip"'::jsonb,
  'client_ip_header defaults to cf-connecting-ip');
select is(pg_temp.ip_for('{"cf-connecting-ip": "198.51.100.7", "x-forwarded-for": "6.6.6.6, 198.51.100.7"}'),
  '198.51.100.7', 'the default reads cf-connecting-ip');
select is(pg_temp.ip_for('{"x-forwarded-for": "198.51.100.7", "x-real-ip": "198.51.100.7"}'),
  'null', 'by default x-forwarded-for and x-real-ip are never read');
select is(pg_temp.ip_for('{"cf-connecting-ip": "6.6.6.6, 198.51.100.7"}'),
  'null', 'a list where one address belongs is unreadable, not its first entry');

-- ------------------------------------------------------------ x-forwarded-for:N
select pg_temp.use_header('x-forwarded-for:1');
select is(pg_temp.ip_for('{"x-forwarded-for": "6.6.6.6, 198.51.100.7"}'),
  '198.51.100.7', 'x-forwarded-for:1: the entry our proxy appended, not the client''s spoofed first one');
select is(pg_temp.ip_for('{"x-forwarded-for": "198.51.100.7"}'),
  '198.51.100.7', 'x-forwarded-for:1 with one entry');
select is(pg_temp.ip_for('{"x-forwarded-for": "198.51.100.7", "cf-connecting-ip": "203.0.113.99"}'),
  '198.51.100.7', 'a client-sent cf-connecting-ip is ignored when the setting names x-forwarded-for');
select pg_temp.use_header('x-forwarded-for:2');
select is(pg_temp.ip_for('{"x-forwarded-for": "6.6.6.6, 198.51.100.7, 10.0.0.2"}'),
  '198.51.100.7', 'x-forwarded-for:2: second from the right');
select is(pg_temp.ip_for('{"x-forwarded-for": "10.0.0.2"}'),
  'null', 'fewer entries than N: unreadable');

-- ------------------------------------------------------------ garbage, IPv6, absent
select pg_temp.use_header('cf-connecting-ip');
select is(pg_temp.ip_for('{"cf-connecting-ip": "not-an-ip"}'), 'null', 'a name is unreadable');
select is(pg_temp.ip_for('{"cf-connecting-ip": "999.1.1.1"}'), 'null', 'an out-of-range IPv4 is unreadable');
select is(pg_temp.ip_for('{"cf-connecting-ip": "1.2.3.4/0"}'), 'null', 'a network is unreadable');
select is(pg_temp.ip_for('{"cf-connecting-ip": ""}'), 'null', 'an empty value is unreadable');
select is(pg_temp.ip_for('{}'), 'null', 'an absent header is unreadable');
select is(pg_temp.ip_for('{"cf-connecting-ip": " 2001:DB8::1 "}'), '2001:db8::1', 'IPv6 is read and normalized');
select is(pg_temp.ip_for('{"cf-connecting-ip": "::ffff:198.51.100.7"}'), '198.51.100.7',
  'an IPv4-mapped IPv6 address is the IPv4 address');
select is(creditgate_private.ip_bucket(null), 'unknown', 'unreadable addresses share the bucket unknown');
select is(creditgate_private.ip_bucket('2001:db8:1:2:aaaa::1'), '2001:db8:1:2::/64', 'an IPv6 bucket is its /64');
select is(creditgate_private.ip_bucket('198.51.100.7'), '198.51.100.7', 'an IPv4 bucket is the address');

-- ------------------------------------------------------------ the setting is validated
select tests.as_user(:'admin');
select throws_ok($$select creditgate.admin_set_setting('client_ip_header', '"x-forwarded-for:0"')$$,
  'PT400', 'invalid_request', 'x-forwarded-for:0 is refused');
select throws_ok($$select creditgate.admin_set_setting('client_ip_header', '"X-Forwarded-For, evil"')$$,
  'PT400', 'invalid_request', 'anything but a lower-case header name with an optional :N is refused');
select lives_ok($$select creditgate.admin_set_setting('client_ip_header', '"x-forwarded-for:2"')$$,
  'x-forwarded-for:2 is accepted');
select lives_ok($$select creditgate.admin_set_setting('client_ip_header', '"cf-connecting-ip"')$$,
  'and back to cf-connecting-ip');
select tests.as_owner();

-- ------------------------------------------------------------ rate limits per IP
insert into creditgate_private.rate_limit_rules (id, scope, kind, window_seconds, max_requests)
values ('t_ip', 'ip', null, 3600, 2);

-- A client rotating made-up x-forwarded-for entries stays in its one bucket.
select tests.as_user(:'u1', '198.51.100.7');
select tests.set_headers('{"cf-connecting-ip": "198.51.100.7", "x-forwarded-for": "1.1.1.1"}');
select lives_ok($$select creditgate.request_generation('img-test', '{"prompt": "1"}', 'a-1')$$, 'spoofer request 1 of 2');
select tests.set_headers('{"cf-connecting-ip": "198.51.100.7", "x-forwarded-for": "2.2.2.2"}');
select lives_ok($$select creditgate.request_generation('img-test', '{"prompt": "2"}', 'a-2')$$, 'spoofer request 2 of 2');
select tests.set_headers('{"cf-connecting-ip": "198.51.100.7", "x-forwarded-for": "3.3.3.3", "x-real-ip": "4.4.4.4"}');
select throws_ok($$select creditgate.request_generation('img-test', '{"prompt": "3"}', 'a-3')$$,
  'PT429', 'rate_limited', 'a fresh spoofed x-forwarded-for entry does not open a fresh bucket');

-- A victim's address written by the attacker does not land in the victim's bucket.
select tests.as_user(:'u2', '203.0.113.50');
select lives_ok($$select creditgate.request_generation('img-test', '{"prompt": "v1"}', 'v-1')$$,
  'the victim (whose address the spoofer wrote) still has its whole bucket: 1 of 2');
select lives_ok($$select creditgate.request_generation('img-test', '{"prompt": "v2"}', 'v-2')$$,
  'and 2 of 2');

-- Two users behind one address share its bucket.
select tests.as_user(:'u3', '198.51.100.7');
select is(tests.error_detail($$select creditgate.request_generation('img-test', '{"prompt": "s"}', 's-1')$$),
  jsonb_build_object('scope', 'ip', 'retry_after_seconds',
    ceil(extract(epoch from to_timestamp(floor(extract(epoch from now()) / 3600) * 3600 + 3600) - now()))::integer),
  'another user behind the same address is limited by the shared IP bucket');

-- Unreadable addresses never skip the limit: garbage and absent headers share 'unknown'.
select tests.as_user(:'u1');
select tests.set_headers('{"cf-connecting-ip": "not-an-ip"}');
select lives_ok($$select creditgate.request_generation('img-test', '{"prompt": "g1"}', 'g-1')$$, 'garbage address: 1 of 2 (bucket unknown)');
select tests.as_user(:'u2');
select tests.set_headers('{}');
select lives_ok($$select creditgate.request_generation('img-test', '{"prompt": "g2"}', 'g-2')$$, 'absent header: 2 of 2 (the same bucket)');
select tests.as_user(:'u3');
select tests.set_headers('{"cf-connecting-ip": "1.2.3.4.5"}');
select throws_ok($$select creditgate.request_generation('img-test', '{"prompt": "g3"}', 'g-3')$$,
  'PT429', 'rate_limited', 'a third unreadable address is limited: garbage never skips the IP rules');

-- IPv6: one /64 is one bucket.
select tests.as_user(:'u1');
select tests.set_headers('{"cf-connecting-ip": "2001:db8:0:1::1"}');
select lives_ok($$select creditgate.request_generation('img-test', '{"prompt": "6a"}', '6-1')$$, 'IPv6 1 of 2');
select tests.set_headers('{"cf-connecting-ip": "2001:db8:0:1::2"}');
select lives_ok($$select creditgate.request_generation('img-test', '{"prompt": "6b"}', '6-2')$$, 'IPv6 2 of 2 (same /64)');
select tests.set_headers('{"cf-connecting-ip": "2001:db8:0:1:ffff::3"}');
select throws_ok($$select creditgate.request_generation('img-test', '{"prompt": "6c"}', '6-3')$$,
  'PT429', 'rate_limited', 'another address in the same /64 does not open a fresh bucket');

select * from finish();
rollback;
