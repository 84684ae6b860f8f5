-- creditgate.save_media(media_id) / creditgate.delete_media(media_id): owner-only
-- retention flags.
begin;
select plan(21);

select tests.seed_models();
select tests.create_user() as u \gset
select tests.create_user() as other \gset
select tests.media_for(:'u') as m \gset
select tests.media_for(:'u') as m2 \gset
select tests.media_for(:'u') as purged \gset
select tests.media_for(:'u') as expired \gset
update creditgate.media set purged_at = now(), expires_at = now() - interval '1 hour' where id = :'purged';
update creditgate.media set expires_at = now() - interval '1 second' where id = :'expired';

select tests.as_user(:'u');
select is(creditgate.save_media(:'m') - 'id' - 'generation_id',
  '{"saved": true, "expires_at": null, "deleted_at": null}'::jsonb, 'save keeps the media forever');
select is(creditgate.save_media(:'m') ->> 'id', :'m', 'save returns the media id');
select is(creditgate.save_media(:'m') - 'id' - 'generation_id',
  '{"saved": true, "expires_at": null, "deleted_at": null}'::jsonb, 'saving twice is harmless');
select is((select saved from creditgate.media where id = :'m'), true, 'the row is saved');

select is((creditgate.delete_media(:'m') ->> 'saved')::boolean, false, 'delete unsaves');
select ok((select deleted_at is not null and expires_at <= now() and not saved from creditgate.media where id = :'m'),
  'delete marks the row deleted and expired now, so the purge sweep removes the file');
select is(creditgate.delete_media(:'m') ->> 'deleted_at', (select to_jsonb(deleted_at) ->> 0 from creditgate.media where id = :'m'),
  'deleting again returns the same row');
select throws_ok(format('select creditgate.save_media(%L)', :'m'),
  'PT404', 'not_found', 'deleted media cannot be saved');
select throws_ok(format('select creditgate.save_media(%L)', :'purged'),
  'PT404', 'not_found', 'purged media cannot be saved');
select throws_ok(format('select creditgate.save_media(%L)', :'expired'),
  'PT404', 'not_found', 'expired media cannot be saved (the sweep may be removing the file)');
select is((creditgate.delete_media(:'purged') ->> 'deleted_at') is not null, true, 'purged media can still be marked deleted');
select throws_ok(format('select creditgate.save_media(%L)', gen_random_uuid()),
  'PT404', 'not_found', 'unknown media are not found (save)');
select throws_ok(format('select creditgate.delete_media(%L)', gen_random_uuid()),
  'PT404', 'not_found', 'unknown media are not found (delete)');

select tests.as_user(:'other');
select throws_ok(format('select creditgate.save_media(%L)', :'m2'),
  'PT404', 'not_found', 'another user cannot save it');
select throws_ok(format('select creditgate.delete_media(%L)', :'m2'),
  'PT404', 'not_found', 'another user cannot delete it');
select tests.as_owner();
select is((select saved or deleted_at is not null from creditgate.media where id = :'m2'), false,
  'the stranger changed nothing');

select tests.as_anon();
select throws_ok(format('select creditgate.save_media(%L)', :'m2'),
  '42501', 'permission denied for function save_media', 'anon cannot save');
select throws_ok(format('select creditgate.delete_media(%L)', :'m2'),
  '42501', 'permission denied for function delete_media', 'anon cannot delete');
select set_config('role', 'authenticated', true), set_config('request.jwt.claims', '{"role": "authenticated"}', true);
select throws_ok(format('select creditgate.save_media(%L)', :'m2'),
  'PT401', 'not_authenticated', 'save needs a user');
select throws_ok(format('select creditgate.delete_media(%L)', :'m2'),
  'PT401', 'not_authenticated', 'delete needs a user');
select tests.as_user(:'u');
select ok(not (creditgate.save_media(:'m2') ? 'storage_key'), 'the result never includes the storage key');

select * from finish();
rollback;
