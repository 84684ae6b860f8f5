-- Media retention: the cleanup command lists files to delete from storage, deletes them,
-- then marks them purged. service_role only.
--
-- creditgate.service_expired_media(max_items, now = now()) -> jsonb [{media_id, storage_key}]
--   Unpurged media whose TTL ran out (expires_at <= now; saved media carry no expiry and
--   never appear) or that their owner deleted, and the files of erased media rows (deleted
--   accounts, creditgate_private.media_purges). Oldest first.
--   Errors: PT400 invalid_request (max_items 1-10000, now required).
-- creditgate.service_mark_media_purged(media_ids uuid[]) -> jsonb {purged}
--   Sets purged_at on listed media that are temporary or deleted; already purged ones and
--   saved, undeleted ones are left alone, so a replay purges nothing twice. Listed files of
--   erased media rows leave the purge queue.
--   Errors: PT400 invalid_request (media_ids required, at most 10000).

create or replace function creditgate.service_expired_media(
  max_items integer default 1000,
  now timestamptz default now()
) returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  if service_expired_media.max_items is null or service_expired_media.max_items not between 1 and 10000 then
    perform creditgate_private.invalid('max_items', 'between 1 and 10000');
  end if;
  if service_expired_media.now is null then
    perform creditgate_private.invalid('now', 'required');
  end if;
  return coalesce((
    select jsonb_agg(jsonb_build_object('media_id', d.id, 'storage_key', d.storage_key) order by d.due, d.id)
    from (
      select m.id, m.storage_key, least(m.expires_at, m.deleted_at) as due
      from (
        -- Two index-backed halves: expired temporaries, and media their owner deleted.
        select x.id, x.storage_key, x.expires_at, x.deleted_at
        from creditgate.media as x
        where x.purged_at is null
          and x.expires_at <= service_expired_media.now
          and not x.saved
        union
        select x.id, x.storage_key, x.expires_at, x.deleted_at
        from creditgate.media as x
        where x.purged_at is null
          and x.deleted_at <= service_expired_media.now
        union all
        -- Files whose media rows were erased with their account.
        select p.media_id, p.storage_key, p.queued_at, null
        from creditgate_private.media_purges as p
        where p.queued_at <= service_expired_media.now
      ) as m
      order by least(m.expires_at, m.deleted_at), m.id
      limit service_expired_media.max_items
    ) as d
  ), '[]'::jsonb);
end
$$;
comment on function creditgate.service_expired_media(integer, timestamptz) is
'Media files due for deletion from storage: expired temporaries and owner-deleted media.';
revoke all on function creditgate.service_expired_media(integer, timestamptz) from public, anon, authenticated;
grant execute on function creditgate.service_expired_media(integer, timestamptz) to service_role;

create or replace function creditgate.service_mark_media_purged(media_ids uuid[])
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_purged integer;
  v_erased integer;
begin
  if service_mark_media_purged.media_ids is null then
    perform creditgate_private.invalid('media_ids', 'required');
  end if;
  if cardinality(service_mark_media_purged.media_ids) > 10000 then
    perform creditgate_private.invalid('media_ids', 'at most 10000 ids');
  end if;
  update creditgate.media as m
  set purged_at = now()
  where m.id = any(service_mark_media_purged.media_ids)
    and m.purged_at is null
    -- A saved, live file is never marked gone, whatever the caller lists.
    and (m.deleted_at is not null or (m.expires_at is not null and not m.saved));
  get diagnostics v_purged = row_count;
  delete from creditgate_private.media_purges as p
  where p.media_id = any(service_mark_media_purged.media_ids);
  get diagnostics v_erased = row_count;
  return jsonb_build_object('purged', v_purged + v_erased);
end
$$;
comment on function creditgate.service_mark_media_purged(uuid[]) is
'Records that media files were deleted from storage (idempotent; never marks saved media).';
revoke all on function creditgate.service_mark_media_purged(uuid[]) from public, anon, authenticated;
grant execute on function creditgate.service_mark_media_purged(uuid[]) to service_role;
