-- creditgate.service_settle_generation: the money and state effects of each outcome, the
-- attempt log, idempotent replay per lease, and lease_lost without any effect.
-- Outcome validation: worker_settle_validation.sql.
begin;
select plan(59);

select tests.worker_models();
select tests.create_user() as u \gset

create function pg_temp.media_item(p_generation uuid, p_file text) returns jsonb
language sql as $$
  select jsonb_build_object('storage_key', 'media/' || p_generation || '/' || p_file,
    'content_type', 'image/png', 'bytes', 2048, 'width', 1024, 'height', 1024)
$$;
-- Claim exactly this job (older ones are claimed by other tests' flows first) as service.
create function pg_temp.claim(p_generation uuid, p_worker text) returns text
language plpgsql as $$
declare
  v_job jsonb;
begin
  update creditgate.generations set created_at = '2000-01-01' where id = p_generation;
  perform tests.as_service();
  v_job := creditgate.service_claim_generations(p_worker, 1, 60) -> 0;
  perform tests.as_owner();
  if v_job ->> 'generation_id' is distinct from p_generation::text then
    raise exception 'claimed % instead of %', v_job ->> 'generation_id', p_generation;
  end if;
  return v_job ->> 'lease_token';
end
$$;
create function pg_temp.settle(p_generation uuid, p_worker text, p_token text, p_outcome jsonb) returns jsonb
language plpgsql as $$
declare
  v_result jsonb;
begin
  perform tests.as_service();
  v_result := creditgate.service_settle_generation(p_generation, p_worker, p_token, p_outcome);
  perform tests.as_owner();
  return v_result;
end
$$;
create function pg_temp.refunds(p_generation uuid) returns bigint
language sql as $$
  select coalesce(sum(l.amount), 0)::bigint from creditgate.ledger as l
  where l.charge_key = 'charge:' || p_generation::text and l.entry_type = 'refund'
$$;

-- ------------------------------------------------------------------ succeeded image
select tests.balance_of(:'u') as b0 \gset
select tests.request_as(:'u', 'img-test') as g_img \gset
select tests.balance_of(:'u') as b_charged \gset
select pg_temp.claim(:'g_img', 'w1') as t_img \gset
select pg_temp.settle(:'g_img', 'w1', :'t_img', jsonb_build_object(
  'status', 'succeeded',
  'media', jsonb_build_array(pg_temp.media_item(:'g_img', '0.png'), pg_temp.media_item(:'g_img', '1.png')),
  'output', jsonb_build_object('seed', 42),
  'provider', jsonb_build_object('name', 'local', 'http_status', 200, 'latency_ms', 1234)
)) as r_img \gset

select is(
  :'r_img'::jsonb - 'media',
  jsonb_build_object('generation_id', :'g_img', 'status', 'succeeded', 'refunded', 0,
    'actual_cost', (select cost from creditgate.generations where id = :'g_img'), 'requeued', false),
  'succeeded: status, full price, nothing refunded, not requeued'
);
select is(
  :'r_img'::jsonb -> 'media',
  (select jsonb_agg(jsonb_build_object('media_id', m.id, 'storage_key', m.storage_key) order by m.position)
   from creditgate.media as m where m.generation_id = :'g_img'),
  'the result lists the media rows created, in order'
);
select results_eq(
  format($$select user_id, position, storage_key, content_type, bytes, width, height, saved, expires_at
    from creditgate.media where generation_id = %L order by position$$, :'g_img'),
  format($$values (%L::uuid, 0, %L, 'image/png', 2048::bigint, 1024, 1024, false, now() + interval '24 hours'),
                  (%L::uuid, 1, %L, 'image/png', 2048::bigint, 1024, 1024, false, now() + interval '24 hours')$$,
    :'u', 'media/' || :'g_img' || '/0.png', :'u', 'media/' || :'g_img' || '/1.png'),
  'media rows: owner, position, file facts, temporary for media_ttl_hours (default 24)'
);
select is(
  (select row(status, actual_cost = cost, output, error is null, lease_owner is null,
    lease_token is null, lease_expires_at is null, finished_at = now())::text
   from tests.generations_full where id = :'g_img'),
  row('succeeded', true, '{"seed": 42}'::jsonb, true, true, true, true, true)::text,
  'the generation: succeeded at full price, output stored, no error, lease cleared, finished'
);
select is(
  (select settle_result from tests.generations_full where id = :'g_img'), :'r_img'::jsonb,
  'the result is stored with the generation'
);
select is(tests.balance_of(:'u'), :b_charged::bigint, 'succeeded at full price: no refund, the charge stands');
select results_eq(
  format($$select attempt, worker_id, provider, http_status, latency_ms, outcome, error_code, lease_token::text
    from creditgate_private.provider_calls where generation_id = %L$$, :'g_img'),
  format($$values (1, 'w1'::text, 'local'::text, 200, 1234, 'succeeded'::text, null::text, %L::text)$$, :'t_img'),
  'the attempt is logged: provider, status, latency, outcome, worker, lease'
);

-- ------------------------------------------------------------------ replay
select is(
  pg_temp.settle(:'g_img', 'w1', :'t_img', jsonb_build_object(
    'status', 'succeeded', 'media', jsonb_build_array(pg_temp.media_item(:'g_img', '0.png'), pg_temp.media_item(:'g_img', '1.png')),
    'output', jsonb_build_object('seed', 42),
    'provider', jsonb_build_object('name', 'local', 'http_status', 200, 'latency_ms', 1234))),
  :'r_img'::jsonb,
  'the same settle again returns the identical result'
);
select is(
  pg_temp.settle(:'g_img', 'w1', :'t_img', jsonb_build_object('status', 'failed', 'error', jsonb_build_object('code', 'timeout'))),
  :'r_img'::jsonb,
  'a different outcome under the same lease still gets the first result (first settle wins)'
);
select is((select count(*) from creditgate.media where generation_id = :'g_img'), 2::bigint, 'replays add no media');
select is((select count(*) from creditgate_private.provider_calls where generation_id = :'g_img'), 1::bigint,
  'replays log no attempt');
select is(pg_temp.refunds(:'g_img'), 0::bigint, 'replays refund nothing');

-- ------------------------------------------------------------------ media TTL setting
insert into creditgate_private.settings (key, value) values ('media_ttl_hours', '48');
select tests.make_queued_generation(:'u', 'video-test', 300, '{"prompt": "waves"}') as g_vid \gset
select pg_temp.claim(:'g_vid', 'w1') as t_vid \gset
select pg_temp.settle(:'g_vid', 'w1', :'t_vid', jsonb_build_object('status', 'succeeded',
  'media', jsonb_build_array(jsonb_build_object('storage_key', 'media/' || :'g_vid' || '/clip.gif',
    'content_type', 'image/gif', 'bytes', 99999, 'width', 512, 'height', 512, 'duration_seconds', 2.5)))) as r_vid \gset
select is(
  (select row(expires_at, duration_seconds, content_type)::text from creditgate.media where generation_id = :'g_vid'),
  row(now() + interval '48 hours', 2.5::numeric, 'image/gif')::text,
  'media_ttl_hours sets the expiry; a video keeps its duration'
);
delete from creditgate_private.settings where key = 'media_ttl_hours';

-- ------------------------------------------------------------------ chat below its price
select tests.make_queued_generation(:'u', 'chat-test', 40,
  '{"messages": [{"role": "user", "content": "hello"}], "max_tokens": 500}') as g_chat \gset
select tests.balance_of(:'u') as b_chat_charged \gset
select pg_temp.claim(:'g_chat', 'w2') as t_chat \gset
select pg_temp.settle(:'g_chat', 'w2', :'t_chat', jsonb_build_object(
  'status', 'succeeded', 'actual_cost', 13,
  'output', jsonb_build_object('text', 'Hello! How can I help?', 'usage', jsonb_build_object('total_tokens', 600)),
  'provider', jsonb_build_object('name', 'local', 'http_status', 200, 'latency_ms', 80)
)) as r_chat \gset
select is(
  :'r_chat'::jsonb,
  jsonb_build_object('generation_id', :'g_chat', 'status', 'succeeded', 'refunded', 27,
    'actual_cost', 13, 'media', '[]'::jsonb, 'requeued', false),
  'chat at actual_cost 13 of 40: 27 refunded'
);
select is(tests.balance_of(:'u'), :b_chat_charged::bigint + 27, 'the balance gets exactly cost - actual_cost back');
select results_eq(
  format($$select entry_type::text, amount::bigint, idempotency_key::text, generation_id from creditgate.ledger
    where charge_key = %L$$,
    'charge:' || :'g_chat'),
  format($$values ('refund'::text, 27::bigint, %L::text, %L::uuid)$$, 'refund:' || :'g_chat', :'g_chat'),
  'one refund entry, key refund:<generation_id>, against the charge'
);
select is(
  (select row(actual_cost, output ->> 'text', output #>> '{usage,total_tokens}')::text from creditgate.generations where id = :'g_chat'),
  row(13, 'Hello! How can I help?', '600')::text,
  'chat: actual cost and output (text and usage) stored'
);
select is(pg_temp.settle(:'g_chat', 'w2', :'t_chat', jsonb_build_object('status', 'succeeded', 'actual_cost', 13,
  'output', jsonb_build_object('text', 'Hello! How can I help?'))), :'r_chat'::jsonb, 'chat replay: same result');
select is(pg_temp.refunds(:'g_chat'), 27::bigint, 'chat replay: still one refund of 27');

select tests.make_queued_generation(:'u', 'chat-test', 40, '{"messages": [{"role": "user", "content": "x"}]}') as g_chat0 \gset
select pg_temp.claim(:'g_chat0', 'w2') as t_chat0 \gset
select is(
  pg_temp.settle(:'g_chat0', 'w2', :'t_chat0', '{"status": "succeeded", "actual_cost": 0, "output": {"text": "ok"}}') -> 'refunded',
  '40'::jsonb,
  'actual_cost 0: the whole charge comes back'
);

-- Chat without actual_cost: the reported output tokens price the turn, in SQL.
select tests.request_as(:'u', 'chat-test', '{"messages": [{"role": "user", "content": "hello"}], "max_tokens": 1000}') as g_usage \gset
select pg_temp.claim(:'g_usage', 'w2') as t_usage \gset
select is(
  pg_temp.settle(:'g_usage', 'w2', :'t_usage', '{"status": "succeeded", "output": {"text": "hi", "usage": {"prompt_tokens": 9, "completion_tokens": 100, "total_tokens": 109}}}')
    - 'generation_id' - 'media' - 'requeued' - 'status',
  '{"actual_cost": 2, "refunded": 2}'::jsonb,
  'charged ceil(1 + 2*(2 + 1000)/1000) = 4; 100 output tokens cost ceil(1 + 2*(2 + 100)/1000) = 2: 2 back'
);
select tests.make_queued_generation(:'u', 'chat-test', 5, '{"messages": [{"role": "user", "content": "hello"}], "max_tokens": 10}') as g_over \gset
select pg_temp.claim(:'g_over', 'w2') as t_over \gset
select is(
  pg_temp.settle(:'g_over', 'w2', :'t_over', '{"status": "succeeded", "output": {"text": "hi", "usage": {"completion_tokens": 5000000}}}') -> 'actual_cost',
  '2'::jsonb,
  'output tokens beyond max_tokens are billed as max_tokens: ceil(1 + 2*(2 + 10)/1000) = 2, never above the charge'
);

-- ------------------------------------------------------------------ failed, not retryable
select tests.balance_of(:'u') as b_before_fail \gset
select tests.request_as(:'u', 'img-test', '{"prompt": "doomed", "steps": 30}') as g_fail \gset
select isnt(tests.balance_of(:'u'), :b_before_fail::bigint, 'the request charged');
select pg_temp.claim(:'g_fail', 'w3') as t_fail \gset
select pg_temp.settle(:'g_fail', 'w3', :'t_fail', jsonb_build_object(
  'status', 'failed', 'retryable', false,
  'provider', jsonb_build_object('name', 'local', 'http_status', 400, 'latency_ms', 15),
  'error', jsonb_build_object('code', 'bad_request', 'message', 'nope')
)) as r_fail \gset
select is(
  :'r_fail'::jsonb,
  jsonb_build_object('generation_id', :'g_fail', 'status', 'failed',
    'refunded', (select cost from creditgate.generations where id = :'g_fail'),
    'actual_cost', 0, 'media', '[]'::jsonb, 'requeued', false),
  'failed: the full cost is refunded'
);
select is(tests.balance_of(:'u'), :b_before_fail::bigint, 'failed: the balance is exactly what it was before the request');
select is(
  (select row(status, actual_cost, error, finished_at = now(), lease_token is null)::text from tests.generations_full where id = :'g_fail'),
  row('failed', 0, '{"code": "bad_request", "message": "nope"}'::jsonb, true, true)::text,
  'failed: the error is stored, nothing was paid, lease cleared, finished'
);
select results_eq(
  format($$select outcome, http_status, error_code, error_message from creditgate_private.provider_calls where generation_id = %L$$, :'g_fail'),
  $$values ('failed'::text, 400, 'bad_request'::text, 'nope'::text)$$,
  'failed: the attempt is logged with its error'
);
select is(pg_temp.settle(:'g_fail', 'w3', :'t_fail', '{"status": "failed", "error": {"code": "bad_request"}}'),
  :'r_fail'::jsonb, 'failed replay: same result');
select is(
  (select count(*) from creditgate.ledger where charge_key = 'charge:' || :'g_fail'),
  1::bigint, 'failed replay: still one refund'
);

-- ------------------------------------------------------------------ failed, retryable
select tests.make_queued_generation(:'u', 'img-test', 100, p_max_attempts => 2) as g_retry \gset
select tests.balance_of(:'u') as b_retry_charged \gset
select pg_temp.claim(:'g_retry', 'w4') as t_retry1 \gset
select pg_temp.settle(:'g_retry', 'w4', :'t_retry1', jsonb_build_object(
  'status', 'failed', 'retryable', true,
  'provider', jsonb_build_object('name', 'local', 'http_status', 503, 'latency_ms', 30000),
  'error', jsonb_build_object('code', 'server_error', 'message', 'busy')
)) as r_retry1 \gset
select is(
  :'r_retry1'::jsonb,
  jsonb_build_object('generation_id', :'g_retry', 'status', 'queued', 'refunded', 0,
    'actual_cost', null, 'media', '[]'::jsonb, 'requeued', true),
  'failed + retryable with attempts left: back to queued, nothing refunded'
);
select is(
  (select row(status, attempts, lease_owner, lease_token, lease_expires_at, finished_at, actual_cost, error ->> 'code')::text
   from tests.generations_full where id = :'g_retry'),
  row('queued', 1, null::text, null::uuid, null::timestamptz, null::timestamptz, null::bigint, 'server_error')::text,
  're-queued: lease cleared, attempt count kept, last error stored'
);
select is(tests.balance_of(:'u'), :b_retry_charged::bigint, 're-queued: the charge stands');
select is(pg_temp.settle(:'g_retry', 'w4', :'t_retry1', '{"status": "failed", "retryable": true, "error": {"code": "server_error"}}'),
  :'r_retry1'::jsonb, 're-queue replay: same result, no second effect');
select is((select status from creditgate.generations where id = :'g_retry'), 'queued', 're-queue replay: still queued');

select pg_temp.claim(:'g_retry', 'w5') as t_retry2 \gset
select is(
  (select row(status, attempts, lease_owner)::text from tests.generations_full where id = :'g_retry'),
  row('running', 2, 'w5')::text,
  'the re-queued job is claimable again: attempt 2'
);
select isnt(:'t_retry2'::text, :'t_retry1'::text, 'with a new lease token');
select is(
  pg_temp.settle(:'g_retry', 'w4', :'t_retry1', '{"status": "failed", "retryable": true, "error": {"code": "server_error"}}'),
  :'r_retry1'::jsonb,
  'the first lease''s settle replayed after the re-claim: its own stored result, no effect'
);
select pg_temp.settle(:'g_retry', 'w5', :'t_retry2', jsonb_build_object(
  'status', 'failed', 'retryable', true,
  'provider', jsonb_build_object('name', 'local', 'http_status', 503),
  'error', jsonb_build_object('code', 'server_error', 'message', 'still busy')
)) as r_retry2 \gset
select is(
  :'r_retry2'::jsonb,
  jsonb_build_object('generation_id', :'g_retry', 'status', 'failed', 'refunded', 100,
    'actual_cost', 0, 'media', '[]'::jsonb, 'requeued', false),
  'the last attempt failing, even retryable: failed and refunded in full'
);
select is(tests.balance_of(:'u'), :b_retry_charged::bigint + 100, 'last attempt: the whole charge is back');
select is(
  (select string_agg(attempt || ':' || worker_id || ':' || outcome, ',' order by id) from creditgate_private.provider_calls where generation_id = :'g_retry'),
  '1:w4:failed,2:w5:failed',
  'one logged attempt per lease'
);

-- ------------------------------------------------------------------ empty success
select tests.make_queued_generation(:'u', 'img-test', 100) as g_empty \gset
select tests.balance_of(:'u') as b_empty_charged \gset
select pg_temp.claim(:'g_empty', 'w6') as t_empty \gset
select is(
  pg_temp.settle(:'g_empty', 'w6', :'t_empty', '{"status": "succeeded", "media": [], "provider": {"name": "local", "http_status": 200}}'),
  jsonb_build_object('generation_id', :'g_empty', 'status', 'failed', 'refunded', 100,
    'actual_cost', 0, 'media', '[]'::jsonb, 'requeued', false),
  'a success without media is a failure: refunded'
);
select is(
  (select row(status, error ->> 'code')::text from creditgate.generations where id = :'g_empty'),
  row('failed', 'empty_output')::text,
  'stored as failed / empty_output'
);
select is(
  (select outcome || ':' || error_code from creditgate_private.provider_calls where generation_id = :'g_empty'),
  'failed:empty_output', 'logged as a failed attempt'
);
select is(tests.balance_of(:'u'), :b_empty_charged::bigint + 100, 'the user pays nothing for an empty output');

select tests.make_queued_generation(:'u', 'chat-test', 20, '{"messages": [{"role": "user", "content": "x"}]}', 3) as g_empty_chat \gset
select pg_temp.claim(:'g_empty_chat', 'w6') as t_empty_chat \gset
select is(
  pg_temp.settle(:'g_empty_chat', 'w6', :'t_empty_chat', '{"status": "succeeded", "actual_cost": 5, "output": {"text": "   "}}') - 'generation_id',
  '{"status": "failed", "refunded": 20, "actual_cost": 0, "media": [], "requeued": false}'::jsonb,
  'a chat success with blank text is a failure, not retried, refunded in full'
);
select tests.make_queued_generation(:'u', 'chat-test', 20, '{"messages": [{"role": "user", "content": "x"}]}') as g_no_text \gset
select pg_temp.claim(:'g_no_text', 'w6') as t_no_text \gset
select is(
  pg_temp.settle(:'g_no_text', 'w6', :'t_no_text', '{"status": "succeeded", "output": {"usage": {"total_tokens": 3}}}') ->> 'status',
  'failed',
  'a chat success without output.text is a failure'
);

-- ------------------------------------------------------------------ lease_lost has no effect
select tests.make_queued_generation(:'u', 'img-test', 100) as g_stale \gset
select pg_temp.claim(:'g_stale', 'w7') as t_stale \gset
select count(*) as ledger_rows from creditgate.ledger \gset
select tests.balance_of(:'u') as b_stale \gset
select tests.as_service();
select throws_ok(
  format('select creditgate.service_settle_generation(%L, %L, %L, %L)', :'g_stale', 'w7', gen_random_uuid(),
    '{"status": "failed", "error": {"code": "timeout"}}'),
  'PT409', 'lease_lost', 'a token that is not the lease: lease_lost'
);
select throws_ok(
  format('select creditgate.service_settle_generation(%L, %L, %L, %L)', :'g_stale', 'intruder', :'t_stale',
    '{"status": "failed", "error": {"code": "timeout"}}'),
  'PT409', 'lease_lost', 'the token from another worker id: lease_lost'
);
-- The lease expires, the reaper re-queues, another worker claims; the first one reports.
select creditgate.service_reap_expired_leases(now() + interval '61 seconds');
select tests.as_owner();
select pg_temp.claim(:'g_stale', 'w8') as t_stale2 \gset
select tests.as_service();
select throws_ok(
  format('select creditgate.service_settle_generation(%L, %L, %L, %L)', :'g_stale', 'w7', :'t_stale',
    '{"status": "failed", "error": {"code": "timeout"}}'),
  'PT409', 'lease_lost', 'a worker whose expired lease was re-claimed: lease_lost'
);
select throws_ok(
  format('select creditgate.service_settle_generation(%L, %L, %L, %L)', :'g_stale', 'w7', :'t_stale',
    '{"status": "succeeded", "media": [{"storage_key": "media/' || :'g_stale' || '/0.png", "content_type": "image/png", "bytes": 5}]}'),
  'PT409', 'lease_lost', 'even with a success'
);
select tests.as_owner();
select is((select count(*) from creditgate.ledger), :ledger_rows::bigint, 'lease_lost: the ledger is untouched');
select is(tests.balance_of(:'u'), :b_stale::bigint, 'lease_lost: the balance is untouched');
select is(
  (select row(status, attempts, lease_owner, lease_token::text)::text from tests.generations_full where id = :'g_stale'),
  row('running', 2, 'w8', :'t_stale2')::text,
  'lease_lost: the new holder keeps the job'
);
select is((select count(*) from creditgate.media where generation_id = :'g_stale'), 0::bigint, 'lease_lost: no media');

-- An expired lease nobody took back yet still settles.
select tests.make_queued_generation(:'u', 'img-test', 100) as g_late \gset
select pg_temp.claim(:'g_late', 'w9') as t_late \gset
update creditgate_private.generation_leases set lease_expires_at = now() - interval '5 minutes' where generation_id = :'g_late';
select is(
  pg_temp.settle(:'g_late', 'w9', :'t_late', jsonb_build_object('status', 'succeeded',
    'media', jsonb_build_array(pg_temp.media_item(:'g_late', 'a.png')))) ->> 'status',
  'succeeded',
  'a late settle before the reaper ran is accepted'
);

-- ------------------------------------------------------------------ other errors
select tests.as_service();
select throws_ok(
  format('select creditgate.service_settle_generation(%L, %L, %L, %L)', gen_random_uuid(), 'w1', gen_random_uuid(),
    '{"status": "failed", "error": {"code": "timeout"}}'),
  'PT404', 'not_found', 'an unknown generation: not_found'
);
select throws_ok(
  format('select creditgate.service_settle_generation(%L, %L, %L, %L)', :'g_stale', 'w8', 'garbage',
    '{"status": "failed", "error": {"code": "timeout"}}'),
  'PT400', 'invalid_request', 'a malformed lease token: invalid_request'
);
select throws_ok(
  format('select creditgate.service_settle_generation(%L, %L, %L, %L)', :'g_stale', '', :'t_stale2',
    '{"status": "failed", "error": {"code": "timeout"}}'),
  'PT400', 'invalid_request', 'an empty worker id: invalid_request'
);
select tests.as_owner();

select is((creditgate.audit() ->> 'ok')::boolean, true, 'the audit is clean after every settle path');

select * from finish();
rollback;
