-- creditgate.service_settle_generation: the outcome is read strictly. Each bad outcome is
-- PT400 invalid_request whose DETAIL names the field, and has no effect at all.
begin;
select plan(50);

select tests.worker_models();
select tests.create_user() as u \gset
select tests.make_queued_generation(:'u', 'img-test', 100) as g \gset
select tests.make_queued_generation(:'u', 'chat-test', 30, '{"messages": [{"role": "user", "content": "x"}]}') as g_chat \gset
update creditgate.generations set created_at = '2000-01-01' where id = :'g';
update creditgate.generations set created_at = '2000-01-02' where id = :'g_chat';
select tests.as_service();
select creditgate.service_claim_generations('w1', 1) #>> '{0,lease_token}' as t \gset
select creditgate.service_claim_generations('w1', 1) #>> '{0,lease_token}' as t_chat \gset
select tests.as_owner();

-- A well-formed image media item, to break one field at a time.
create temp table cases (n serial, generation text, outcome jsonb, field text, why text);
grant all on cases to service_role;
\set good_item '{"storage_key": "media/' :g '/0.png", "content_type": "image/png", "bytes": 10}'
insert into cases (generation, outcome, field, why) values
  ('img', null, 'outcome', 'an outcome is required'),
  ('img', '[]', 'outcome', 'an outcome is an object'),
  ('img', '{"status": "failed", "error": {"code": "x"}, "extra": 1}', 'outcome.extra', 'unknown outcome fields are refused'),
  ('img', '{}', 'outcome.status', 'status is required'),
  ('img', '{"status": "done"}', 'outcome.status', 'status is succeeded or failed'),
  ('img', '{"status": 1}', 'outcome.status', 'status is a string'),
  ('img', '{"status": "failed", "retryable": "yes", "error": {"code": "x"}}', 'outcome.retryable', 'retryable is a boolean'),
  ('img', '{"status": "succeeded", "retryable": true}', 'outcome.retryable', 'a success is not retryable'),
  ('img', '{"status": "succeeded", "actual_cost": 101}', 'outcome.actual_cost', 'actual_cost at most the cost'),
  ('img', '{"status": "succeeded", "actual_cost": -1}', 'outcome.actual_cost', 'actual_cost not negative'),
  ('img', '{"status": "succeeded", "actual_cost": 1.5}', 'outcome.actual_cost', 'actual_cost is whole credits'),
  ('img', '{"status": "succeeded", "actual_cost": "5"}', 'outcome.actual_cost', 'actual_cost is a number'),
  ('img', '{"status": "failed", "actual_cost": 0, "error": {"code": "x"}}', 'outcome.actual_cost', 'actual_cost only on success'),
  ('img', '{"status": "succeeded", "media": {}}', 'outcome.media', 'media is an array'),
  ('img', jsonb_build_object('status', 'failed', 'error', '{"code": "x"}'::jsonb, 'media', jsonb_build_array(:'good_item'::jsonb)),
    'outcome.media', 'media only on success'),
  ('chat', jsonb_build_object('status', 'succeeded', 'output', '{"text": "hi"}'::jsonb,
    'media', jsonb_build_array(jsonb_build_object('storage_key', 'media/' || :'g_chat' || '/0.png', 'content_type', 'image/png', 'bytes', 1))),
    'outcome.media', 'chat has no media'),
  ('img', jsonb_build_object('status', 'succeeded', 'media', (select jsonb_agg(jsonb_build_object(
      'storage_key', 'media/' || :'g' || '/' || i || '.png', 'content_type', 'image/png', 'bytes', 1)) from generate_series(1, 17) as i)),
    'outcome.media', 'at most 16 media'),
  ('img', '{"status": "succeeded", "media": ["x"]}', 'outcome.media[0]', 'a media item is an object'),
  ('img', jsonb_build_object('status', 'succeeded', 'media', jsonb_build_array(:'good_item'::jsonb || '{"url": "http://x"}')),
    'outcome.media[0].url', 'unknown media fields are refused'),
  ('img', jsonb_build_object('status', 'succeeded', 'media', jsonb_build_array(:'good_item'::jsonb - 'storage_key')),
    'outcome.media[0].storage_key', 'storage_key is required'),
  ('img', jsonb_build_object('status', 'succeeded', 'media', jsonb_build_array(:'good_item'::jsonb
      || jsonb_build_object('storage_key', 'media/' || :'g_chat' || '/0.png'))),
    'outcome.media[0].storage_key', 'storage_key is under this generation'),
  ('img', jsonb_build_object('status', 'succeeded', 'media', jsonb_build_array(:'good_item'::jsonb
      || jsonb_build_object('storage_key', 'media/' || :'g' || '/../x.png'))),
    'outcome.media[0].storage_key', 'storage_key has no path tricks'),
  ('img', jsonb_build_object('status', 'succeeded', 'media', jsonb_build_array(:'good_item'::jsonb
      || jsonb_build_object('storage_key', 'media/' || :'g' || '/..'))),
    'outcome.media[0].storage_key', 'a file name does not start with a dot'),
  ('img', jsonb_build_object('status', 'succeeded', 'media', jsonb_build_array(:'good_item'::jsonb
      || jsonb_build_object('storage_key', 'uploads/' || :'g' || '/0.png'))),
    'outcome.media[0].storage_key', 'storage_key starts with media/'),
  ('img', jsonb_build_object('status', 'succeeded', 'media', jsonb_build_array(:'good_item'::jsonb, :'good_item'::jsonb)),
    'outcome.media', 'each storage_key once'),
  ('img', jsonb_build_object('status', 'succeeded', 'media', jsonb_build_array(:'good_item'::jsonb || '{"content_type": "png"}')),
    'outcome.media[0].content_type', 'content_type is a MIME type'),
  ('img', jsonb_build_object('status', 'succeeded', 'media', jsonb_build_array(:'good_item'::jsonb - 'bytes')),
    'outcome.media[0].bytes', 'bytes is required'),
  ('img', jsonb_build_object('status', 'succeeded', 'media', jsonb_build_array(:'good_item'::jsonb || '{"bytes": 0}')),
    'outcome.media[0].bytes', 'bytes > 0'),
  ('img', jsonb_build_object('status', 'succeeded', 'media', jsonb_build_array(:'good_item'::jsonb || '{"width": 0}')),
    'outcome.media[0].width', 'width > 0'),
  ('img', jsonb_build_object('status', 'succeeded', 'media', jsonb_build_array(:'good_item'::jsonb || '{"height": "512"}')),
    'outcome.media[0].height', 'height is a number'),
  ('img', jsonb_build_object('status', 'succeeded', 'media', jsonb_build_array(:'good_item'::jsonb || '{"duration_seconds": -1}')),
    'outcome.media[0].duration_seconds', 'duration_seconds not negative'),
  ('img', '{"status": "succeeded", "output": "text"}', 'outcome.output', 'output is an object'),
  ('img', jsonb_build_object('status', 'succeeded', 'output', jsonb_build_object('text', repeat('x', 1000001))),
    'outcome.output', 'output at most 1 MB'),
  ('chat', '{"status": "succeeded", "output": {"text": "hi", "usage": {"completion_tokens": -1}}}', 'outcome.output.usage.completion_tokens', 'chat usage tokens are counts'),
  ('chat', '{"status": "succeeded", "output": {"text": "hi", "usage": 12}}', 'outcome.output.usage', 'chat usage is an object'),
  ('img', '{"status": "failed", "error": {"code": "x"}, "provider": "local"}', 'outcome.provider', 'provider is an object'),
  ('img', '{"status": "failed", "error": {"code": "x"}, "provider": {"name": "local", "key": "sk-1"}}', 'outcome.provider.key', 'unknown provider fields are refused'),
  ('img', '{"status": "failed", "error": {"code": "x"}, "provider": {"name": ""}}', 'outcome.provider.name', 'provider name not empty'),
  ('img', '{"status": "failed", "error": {"code": "x"}, "provider": {"http_status": 99}}', 'outcome.provider.http_status', 'http_status 100-599'),
  ('img', '{"status": "failed", "error": {"code": "x"}, "provider": {"latency_ms": -5}}', 'outcome.provider.latency_ms', 'latency_ms not negative'),
  ('img', '{"status": "failed"}', 'outcome.error.code', 'a failure names its error code'),
  ('img', '{"status": "failed", "error": {"message": "boom"}}', 'outcome.error.code', 'error.code is required'),
  ('img', '{"status": "failed", "error": "boom"}', 'outcome.error', 'error is an object'),
  ('img', '{"status": "failed", "error": {"code": "x", "stack": "..."}}', 'outcome.error.stack', 'unknown error fields are refused'),
  ('img', '{"status": "failed", "error": {"code": "x", "message": 5}}', 'outcome.error.message', 'error.message is a string'),
  ('img', jsonb_build_object('status', 'succeeded', 'media', jsonb_build_array(:'good_item'::jsonb), 'error', '{"code": "x"}'::jsonb),
    'outcome.error', 'a success has no error');

-- One assertion per case, so a failure names the rule.
select tests.as_service();
select is(
  jsonb_build_object('sqlstate', e.err ->> 'sqlstate', 'message', e.err ->> 'message',
    'field', e.err #>> '{detail,field}'),
  jsonb_build_object('sqlstate', 'PT400', 'message', 'invalid_request', 'field', c.field),
  c.why
)
from cases as c
cross join lateral (
  select tests.error_json(format(
    'select creditgate.service_settle_generation(%L, %L, %L, %L::jsonb)',
    case c.generation when 'img' then :'g' else :'g_chat' end, 'w1',
    case c.generation when 'img' then :'t' else :'t_chat' end, c.outcome
  )) as err
) as e
order by c.n;
select tests.as_owner();

select is((select count(*) from creditgate_private.provider_calls), 0::bigint, 'no rejected outcome logged an attempt');
select is(
  (select count(*) from creditgate.generations where id in (:'g', :'g_chat') and status = 'running' and attempts = 1),
  2::bigint,
  'no rejected outcome changed the jobs'
);
select is((select count(*) from creditgate.ledger where entry_type = 'refund'), 0::bigint, 'no rejected outcome refunded');

-- The same outcome, well formed, goes through.
select tests.as_service();
select is(
  creditgate.service_settle_generation(:'g', 'w1', :'t', jsonb_build_object('status', 'succeeded',
    'media', jsonb_build_array(:'good_item'::jsonb || '{"width": 64, "height": 64, "duration_seconds": 0}'))) ->> 'status',
  'succeeded',
  'a valid outcome is accepted'
);
select tests.as_owner();

select * from finish();
rollback;
