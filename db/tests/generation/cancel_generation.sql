-- creditgate.cancel_generation(generation_id): owner only, queued only, full refund.
begin;
select plan(20);

select tests.seed_models();
select tests.create_user() as u \gset
select tests.create_user() as other \gset

select tests.as_user(:'u');
select (creditgate.get_balance() ->> 'balance')::bigint as before \gset
select creditgate.request_generation('img-test', '{"prompt": "x", "loras": [{"id": "lora-a"}]}', 'c-1') ->> 'generation_id' as g \gset
select creditgate.request_generation('img-test', '{"prompt": "y"}', 'c-2') ->> 'generation_id' as g2 \gset
select creditgate.request_generation('img-test', '{"prompt": "z"}', 'c-3') ->> 'generation_id' as g3 \gset
select is((creditgate.get_balance() ->> 'balance')::bigint, (:before - 83 - 33 - 33)::bigint, 'three requests charged');

select tests.as_user(:'other');
select throws_ok(format('select creditgate.cancel_generation(%L)', :'g'),
  'PT404', 'not_found', 'another user cannot cancel it (and cannot tell it exists)');
select tests.as_user(:'u');
select throws_ok(format('select creditgate.cancel_generation(%L)', gen_random_uuid()),
  'PT404', 'not_found', 'an unknown generation is not found');

select is(creditgate.cancel_generation(:'g') - 'generation_id',
  '{"status": "canceled", "refunded": 83, "balance": 934}'::jsonb,
  'cancel returns the full refund and the new balance');
select is((select g.status from creditgate.generations as g where g.id = :'g'), 'canceled', 'the generation is canceled');
select isnt((select g.finished_at from creditgate.generations as g where g.id = :'g'), null, 'and finished');
select is(
  (select count(*)::integer from creditgate.ledger as l
   where l.idempotency_key = 'refund:' || :'g' and l.entry_type = 'refund' and l.amount = 83
     and l.charge_key = 'charge:' || :'g'),
  1, 'one refund entry under refund:<id> against the charge');
select throws_ok(format('select creditgate.cancel_generation(%L)', :'g'),
  'PT409', 'invalid_state', 'canceling twice is an invalid state');
select is(tests.error_detail(format('select creditgate.cancel_generation(%L)', :'g')) ->> 'status', 'canceled',
  'the DETAIL says the current status');
select is((select count(*)::integer from creditgate.ledger as l where l.idempotency_key = 'refund:' || :'g'), 1,
  'still exactly one refund');
select is(
  (creditgate.request_generation('img-test', '{"prompt": "x", "loras": [{"id": "lora-a"}]}', 'c-1') ->> 'replayed')::boolean,
  true, 'the key stays taken: a retry replays the canceled request without charging');
select is((creditgate.get_balance() ->> 'balance')::bigint, (:before - 33 - 33)::bigint, 'the cancel restored the balance exactly');

-- Only queued generations can be canceled.
select tests.as_owner();
update creditgate.generations
set status = 'running', attempts = 1, started_at = now()
where id = :'g2';
insert into creditgate_private.generation_leases (generation_id, lease_owner, lease_token, lease_expires_at)
values (:'g2', 'w1', gen_random_uuid(), now() + interval '1 minute');
update creditgate.generations set status = 'succeeded', actual_cost = 33, finished_at = now() where id = :'g3';
select tests.as_user(:'u');
select throws_ok(format('select creditgate.cancel_generation(%L)', :'g2'),
  'PT409', 'invalid_state', 'a running generation cannot be canceled');
select throws_ok(format('select creditgate.cancel_generation(%L)', :'g3'),
  'PT409', 'invalid_state', 'a succeeded generation cannot be canceled');
select is((creditgate.get_balance() ->> 'balance')::bigint, (:before - 33 - 33)::bigint, 'refused cancels refund nothing');

-- Who may call.
select tests.as_anon();
select throws_ok(format('select creditgate.cancel_generation(%L)', :'g2'),
  '42501', 'permission denied for function cancel_generation', 'anon cannot cancel');
select set_config('role', 'authenticated', true), set_config('request.jwt.claims', '{"role": "authenticated"}', true);
select throws_ok(format('select creditgate.cancel_generation(%L)', :'g2'),
  'PT401', 'not_authenticated', 'a token without a user is not authenticated');
select tests.as_service();
select throws_ok(format('select creditgate.cancel_generation(%L)', :'g2'),
  '42501', 'permission denied for function cancel_generation', 'service_role does not cancel for users');

-- A request, then a cancel: the user is exactly where they started.
select tests.as_user(:'other');
select (creditgate.get_balance() ->> 'balance')::bigint as other_before \gset
select creditgate.cancel_generation((creditgate.request_generation('video-test', '{"prompt": "x"}', 'o-1') ->> 'generation_id')::uuid);
select is((creditgate.get_balance() ->> 'balance')::bigint, :other_before::bigint, 'request + cancel leaves the balance untouched');

select tests.as_service();
select is((creditgate.audit() ->> 'ok')::boolean, true, 'the audit finds nothing wrong');

select * from finish();
rollback;
