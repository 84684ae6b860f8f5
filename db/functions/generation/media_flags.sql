-- creditgate.save_media(media_id uuid) -> jsonb                                  authenticated
-- creditgate.delete_media(media_id uuid) -> jsonb                                authenticated
--   Both return {id, generation_id, saved, expires_at, deleted_at}.
--   save: keep the media (saved, no expiry). Only live media: deleted, purged or already
--   expired media (the purge sweep may be removing the file) are gone.
--   delete: deleted_at = now, not saved, expires_at = now so the purge sweep removes the
--   file soon. Deleting again returns the row unchanged.
--   Errors: PT401 not_authenticated, PT404 not_found (unknown, not the caller's, or gone).

create or replace function creditgate_private.media_json(p_media creditgate.media)
returns jsonb
language sql
immutable
set search_path = ''
as $$
  select jsonb_build_object(
    'id', p_media.id,
    'generation_id', p_media.generation_id,
    'saved', p_media.saved,
    'expires_at', p_media.expires_at,
    'deleted_at', p_media.deleted_at
  );
$$;
comment on function creditgate_private.media_json(creditgate.media) is
'What save_media and delete_media return about a media row (no storage key).';

create or replace function creditgate.save_media(media_id uuid)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user_id uuid := creditgate_private.require_user();
  v_media creditgate.media;
begin
  update creditgate.media as m
  set saved = true, expires_at = null
  where m.id = save_media.media_id
    and m.user_id = v_user_id
    and m.deleted_at is null
    and m.purged_at is null
    and (m.expires_at is null or m.expires_at > now())
  returning m.* into v_media;
  if v_media.id is null then
    perform creditgate_private.raise_error('not_found', jsonb_build_object('object', 'media'));
  end if;
  return creditgate_private.media_json(v_media);
end
$$;
comment on function creditgate.save_media(uuid) is
'The owner keeps a media item: saved, never expires. Gone (deleted, purged, expired) media are not found.';

create or replace function creditgate.delete_media(media_id uuid)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user_id uuid := creditgate_private.require_user();
  v_media creditgate.media;
begin
  select m.* into v_media
  from creditgate.media as m
  where m.id = delete_media.media_id and m.user_id = v_user_id
  for update;
  if v_media.id is null then
    perform creditgate_private.raise_error('not_found', jsonb_build_object('object', 'media'));
  end if;
  if v_media.deleted_at is null then
    update creditgate.media as m
    set deleted_at = now(),
        saved = false,
        -- Expire now so the purge sweep removes the file; a purged file keeps its record.
        expires_at = case when m.purged_at is null then now() else m.expires_at end
    where m.id = v_media.id
    returning m.* into v_media;
  end if;
  return creditgate_private.media_json(v_media);
end
$$;
comment on function creditgate.delete_media(uuid) is
'The owner deletes a media item: hidden as deleted and expired now, so the purge sweep removes the file.';

revoke all on function creditgate_private.media_json(creditgate.media) from public, anon, authenticated;
revoke all on function creditgate.save_media(uuid) from public, anon, authenticated;
revoke all on function creditgate.delete_media(uuid) from public, anon, authenticated;
grant execute on function creditgate.save_media(uuid) to authenticated;
grant execute on function creditgate.delete_media(uuid) to authenticated;
