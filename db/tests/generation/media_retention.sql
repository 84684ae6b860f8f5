-- creditgate.service_expired_media / service_mark_media_purged: expired temporary media and
-- media their owner deleted are listed for deletion from storage; saved media never are;
-- marking is idempotent and never touches saved media.
begin;
select plan(17);

select tests.worker_models();
select tests.create_user() as u \gset
select tests.create_user() as v \gset

-- m_old: expires in 24 h (fixture). m_new: made by a settle with a 48 h TTL.
-- m_saved: saved by its owner. m_deleted: deleted by its owner.
select tests.media_for(:'u') as m_old \gset
select tests.media_for(:'u') as m_saved \gset
select tests.media_for(:'v') as m_deleted \gset
update creditgate.media set expires_at = now() + interval '23 hours' where id = :'m_old';
insert into creditgate_private.settings (key, value) values ('media_ttl_hours', '48');
select tests.make_queued_generation(:'u', 'img-test', 100) as g \gset
select tests.as_service();
select creditgate.service_claim_generations('w1') #>> '{0,lease_token}' as t \gset
select creditgate.service_settle_generation(:'g', 'w1', :'t', jsonb_build_object('status', 'succeeded',
  'media', jsonb_build_array(jsonb_build_object('storage_key', 'media/' || :'g' || '/0.png', 'content_type', 'image/png', 'bytes', 1))))
  #>> '{media,0,media_id}' as m_new \gset
select tests.as_user(:'u');
select creditgate.save_media(:'m_saved');
select tests.as_user(:'v');
select creditgate.delete_media(:'m_deleted');

select tests.as_service();
create temp table keys as
  select m.id, m.storage_key from creditgate.media as m;
grant select on keys to service_role;
create function pg_temp.listed(p_list jsonb) returns text
language sql as $$
  select coalesce(string_agg(case k.id
    when current_setting('t.m_old')::uuid then 'old'
    when current_setting('t.m_new')::uuid then 'new'
    when current_setting('t.m_saved')::uuid then 'saved'
    when current_setting('t.m_deleted')::uuid then 'deleted'
  end || case when k.storage_key = e ->> 'storage_key' then '' else '(wrong key)' end, ',' order by n), '')
  from jsonb_array_elements(p_list) with ordinality as x (e, n)
  join pg_temp.keys as k on k.id = (e ->> 'media_id')::uuid
$$;
select set_config('t.m_old', :'m_old', true), set_config('t.m_new', :'m_new', true),
  set_config('t.m_saved', :'m_saved', true), set_config('t.m_deleted', :'m_deleted', true);

select is(pg_temp.listed(creditgate.service_expired_media(100)), 'deleted',
  'now: only the media its owner deleted');
select is(pg_temp.listed(creditgate.service_expired_media(100, now() + interval '23 hours')), 'deleted,old',
  'after 23 h the 23-hour media too, in expiry order');
select is(pg_temp.listed(creditgate.service_expired_media(100, now() + interval '48 hours')), 'deleted,old,new',
  'after 48 h the media made with media_ttl_hours = 48');
select is(pg_temp.listed(creditgate.service_expired_media(100, now() + interval '100 years')), 'deleted,old,new',
  'saved media never expire');
select is(pg_temp.listed(creditgate.service_expired_media(2, now() + interval '100 years')), 'deleted,old',
  'max_items bounds the batch');
select is(
  creditgate.service_expired_media(1, now() + interval '1 day') -> 0,
  jsonb_build_object('media_id', :'m_deleted', 'storage_key', (select storage_key from keys where id = :'m_deleted')),
  'each item is {media_id, storage_key}'
);

select is(
  creditgate.service_mark_media_purged(array[:'m_deleted', :'m_old']::uuid[]),
  '{"purged": 2}'::jsonb,
  'marking purged reports how many'
);
select is(
  creditgate.service_mark_media_purged(array[:'m_deleted', :'m_old']::uuid[]),
  '{"purged": 0}'::jsonb,
  'marking again purges nothing twice'
);
select is(pg_temp.listed(creditgate.service_expired_media(100, now() + interval '100 years')), 'new',
  'purged media are not listed again');
select is(
  creditgate.service_mark_media_purged(array[:'m_saved', gen_random_uuid()]::uuid[]),
  '{"purged": 0}'::jsonb,
  'saved media and unknown ids are never marked'
);
select is(creditgate.service_mark_media_purged('{}'::uuid[]), '{"purged": 0}'::jsonb, 'an empty list is fine');

select throws_ok($$select creditgate.service_expired_media(0)$$, 'PT400', 'invalid_request', 'max_items >= 1');
select throws_ok($$select creditgate.service_expired_media(10001)$$, 'PT400', 'invalid_request', 'max_items <= 10000');
select throws_ok($$select creditgate.service_expired_media(10, null)$$, 'PT400', 'invalid_request', 'now is required');
select throws_ok($$select creditgate.service_mark_media_purged(null)$$, 'PT400', 'invalid_request', 'media_ids is required');
select tests.as_owner();

select results_eq(
  format($$select id::text, purged_at is not null from creditgate.media where id in (%L, %L, %L, %L) order by created_at, id$$,
    :'m_old', :'m_saved', :'m_deleted', :'m_new'),
  format($$select id::text, id in (%L, %L) from creditgate.media where id in (%L, %L, %L, %L) order by created_at, id$$,
    :'m_old', :'m_deleted', :'m_old', :'m_saved', :'m_deleted', :'m_new'),
  'purged_at is set exactly on the purged media'
);
select is((select saved and expires_at is null and purged_at is null from creditgate.media where id = :'m_saved'), true,
  'the saved media is untouched');

select * from finish();
rollback;
