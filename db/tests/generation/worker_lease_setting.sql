-- The lease_seconds setting (issue 17): a claim or heartbeat that names no lease gets the
-- setting's length (default 120 s); a worker's explicit lease_seconds wins.
begin;
set local client_min_messages = warning;
select plan(6);

select tests.worker_models();
select tests.create_user() as u \gset
select tests.create_user() as admin \gset
select tests.make_admin(:'admin');
select tests.make_queued_generation(:'u') as g1 \gset
select tests.make_queued_generation(:'u', p_created_at => clock_timestamp() + interval '1 second') as g2 \gset
select tests.make_queued_generation(:'u', p_created_at => clock_timestamp() + interval '2 seconds') as g3 \gset

select tests.as_service();
select is((creditgate.service_claim_generations('w1') #>> '{0,lease_expires_at}')::timestamptz,
  now() + interval '120 seconds', 'without the setting a claim that names no lease gets 120 s');

select tests.as_user(:'admin');
select creditgate.admin_set_setting('lease_seconds', '300');
select tests.as_service();
select creditgate.service_claim_generations('w2') -> 0 as job2 \gset
select is((:'job2'::jsonb ->> 'lease_expires_at')::timestamptz, now() + interval '300 seconds',
  'with lease_seconds = 300 a claim that names no lease gets 300 s');
select is((creditgate.service_claim_generations('w3', 1, 60) #>> '{0,lease_expires_at}')::timestamptz,
  now() + interval '60 seconds', 'an explicit lease_seconds wins over the setting');
select is((creditgate.service_heartbeat(:'g2', 'w2', :'job2'::jsonb ->> 'lease_token') ->> 'lease_expires_at')::timestamptz,
  now() + interval '300 seconds', 'a heartbeat that names no lease extends it by the setting');
select is((creditgate.service_heartbeat(:'g2', 'w2', :'job2'::jsonb ->> 'lease_token', 30) ->> 'lease_expires_at')::timestamptz,
  now() + interval '30 seconds', 'and an explicit one wins');
select tests.as_owner();
select is((select l.lease_expires_at from creditgate_private.generation_leases as l where l.generation_id = :'g2'),
  now() + interval '30 seconds', 'the lease stored is the one returned');

select * from finish();
rollback;
