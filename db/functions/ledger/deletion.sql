-- Account deletion (DESIGN §3 amendments). GoTrue, and the Supabase dashboard through it,
-- deletes a user's auth.users row as supabase_auth_admin; that delete must always succeed.
--
-- creditgate_private.user_deleted(p_user_id) -> boolean
--   Whether the user's auth.users row was deleted (creditgate_private.deleted_users).
-- creditgate_private.forfeit_credits(p_user_id, p_key, p_reason, p_metadata) -> bigint
--   Posts a `forfeit` entry for the user's whole balance, taking every lot with credits
--   left (expired or not); returns the amount (0: nothing to forfeit, no entry). The
--   caller holds the balance lock. Never fails on its key: a key already taken (a user id
--   deleted twice) gets a unique suffix, so a delete is never refused.
-- creditgate_private.erase_generations(p_user_id, p_generation_id) -> void
--   Erases what is personal from the user's generations (all of them, or one): params,
--   output, error texts (the code stays); the client address and request hash of their
--   request records; the media list of their settle results; the provider's error texts
--   in provider_calls. Status, costs and keys stay.
-- creditgate_private.tg_users__after_delete(): AFTER DELETE on auth.users.
--   In the deleting transaction, under the user's balance lock: records the deletion,
--   drops admin rights and the user's rate-limit counters, cancels and refunds queued work
--   (refund:<generation_id>), forfeits the rest (forfeit:<user_id>), queues the user's media
--   files for purge and deletes their media rows, erases personal data from generations.
--   Work already running settles later (service_settle_generation, the reaper): it is never
--   re-queued, keeps nothing personal, and what it refunds is forfeited at once.
--   Raises nothing on purpose: a failure here would fail GoTrue's delete.

create or replace function creditgate_private.user_deleted(p_user_id uuid)
returns boolean
language plpgsql
stable
set search_path = ''
as $$
begin
  return exists (select 1 from creditgate_private.deleted_users as d where d.user_id = p_user_id);
end
$$;
comment on function creditgate_private.user_deleted(uuid) is
'Whether the user''s account (auth.users row) was deleted.';

create or replace function creditgate_private.forfeit_credits(
  p_user_id uuid,
  p_key text,
  p_reason text,
  p_metadata jsonb default '{}'
) returns bigint
language plpgsql
set search_path = ''
as $$
declare
  v_balance bigint;
  v_key text := p_key;
  v_hash text;
  v_entry creditgate.ledger;
  v_moved bigint;
begin
  select b.balance into v_balance from creditgate.balances as b where b.user_id = p_user_id;
  if coalesce(v_balance, 0) = 0 then
    return 0;
  end if;
  v_hash := md5(jsonb_build_array('forfeit', p_user_id, v_balance)::text);
  perform pg_catalog.pg_advisory_xact_lock(1667720057, pg_catalog.hashtext(v_key));
  if exists (select 1 from creditgate.ledger as l where l.idempotency_key = v_key) then
    v_key := left(p_key, 200) || ':' || gen_random_uuid()::text;
  end if;
  v_entry := creditgate_private.post_entry(
    p_user_id, 'forfeit', v_balance, v_key, v_hash, null, null, p_reason, p_metadata
  );
  -- Every lot with credits left, expired ones included: the balance counts them until the
  -- expiry sweep runs, and the account keeps nothing.
  with lots as (
    select l.id, l.remaining
    from creditgate.credit_lots as l
    where l.user_id = p_user_id and l.live
    for update
  ),
  emptied as (
    update creditgate.credit_lots as l
    set remaining = 0
    from lots as o
    where l.id = o.id
    returning l.id, o.remaining as taken
  ),
  recorded as (
    insert into creditgate_private.lot_movements (ledger_id, lot_id, amount)
    select v_entry.id, e.id, -e.taken from emptied as e
    returning amount
  )
  select coalesce(-sum(r.amount), 0) into v_moved from recorded as r;
  if v_moved <> v_balance then
    raise exception 'lots of user % hold % of a balance of %', p_user_id, v_moved, v_balance;
  end if;
  return v_balance;
end
$$;
comment on function creditgate_private.forfeit_credits(uuid, text, text, jsonb) is
'Forfeits the user''s whole balance (a closed account keeps nothing): one forfeit entry emptying every lot.';

create or replace function creditgate_private.erase_generations(
  p_user_id uuid,
  p_generation_id uuid default null
) returns void
language plpgsql
set search_path = ''
as $$
begin
  update creditgate.generations as g
  set params = '{}'::jsonb,
    output = null,
    error = nullif(jsonb_strip_nulls(jsonb_build_object('code', g.error -> 'code')), '{}'::jsonb)
  where g.user_id = p_user_id
    and (p_generation_id is null or g.id = p_generation_id);
  -- The request record: the client's address, and the hash of what it sent (a hash of the
  -- prompt would confirm a guess of it). The key stays, so the record still names the row.
  update creditgate_private.generation_requests as r
  set client_ip = null, request_hash = 'erased'
  where r.user_id = p_user_id
    and (p_generation_id is null or r.generation_id = p_generation_id);
  update creditgate_private.generation_leases as l
  set settle_result = jsonb_set(l.settle_result, '{media}', '[]'::jsonb)
  where l.settle_result ? 'media'
    and l.generation_id in (
      select g.id from creditgate.generations as g
      where g.user_id = p_user_id and (p_generation_id is null or g.id = p_generation_id)
    );
  update creditgate_private.provider_calls as c
  set error_message = null
  where c.error_message is not null
    and c.generation_id in (
      select g.id from creditgate.generations as g
      where g.user_id = p_user_id and (p_generation_id is null or g.id = p_generation_id)
    );
end
$$;
comment on function creditgate_private.erase_generations(uuid, uuid) is
'Erases the personal data of a deleted user''s generations (params, output, error texts); costs and status stay.';

create or replace function creditgate_private.tg_users__after_delete()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_generation creditgate.generations;
begin
  insert into creditgate_private.deleted_users (user_id) values (old.id)
  on conflict (user_id) do update set deleted_at = excluded.deleted_at;
  delete from creditgate_private.admins as a where a.user_id = old.id;
  delete from creditgate_private.rate_limit_counters as c where c.subject = old.id::text;

  -- The user's balance lock, as every money operation takes it first: a settle, a cancel
  -- or a request of this user waits for this transaction, then sees the account deleted.
  perform 1 from creditgate.balances as b where b.user_id = old.id for update;
  if not found then
    -- Never had a balance row (signed up before creditgate): no money, no work.
    return null;
  end if;

  for v_generation in
    select g.* from creditgate.generations as g
    where g.user_id = old.id and g.status = 'queued'
    order by g.id
    for update
  loop
    update creditgate.generations as g
    set status = 'canceled', finished_at = now(), updated_at = now(),
      error = jsonb_build_object('code', 'account_deleted')
    where g.id = v_generation.id;
    perform pg_notify('creditgate_generation_settled', v_generation.id::text);
    perform creditgate_private.refund_credits(
      old.id, 'charge:' || v_generation.id::text, v_generation.cost, 'refund:' || v_generation.id::text,
      'canceled: account deleted', jsonb_build_object('generation_id', v_generation.id)
    );
  end loop;
  perform creditgate_private.forfeit_credits(old.id, 'forfeit:' || old.id::text, 'account deleted');

  -- Files go through the purge sweep; their rows go now (saved ones too).
  insert into creditgate_private.media_purges (media_id, storage_key)
  select m.id, m.storage_key
  from creditgate.media as m
  where m.user_id = old.id and m.purged_at is null
  on conflict do nothing;
  delete from creditgate.media as m where m.user_id = old.id;

  perform creditgate_private.erase_generations(old.id);
  return null;
end
$$;
comment on function creditgate_private.tg_users__after_delete() is
'A deleted auth user: queued work refunded, credits forfeited, personal data erased, files queued for purge.';

revoke all on function creditgate_private.user_deleted(uuid) from public, anon, authenticated;
revoke all on function creditgate_private.forfeit_credits(uuid, text, text, jsonb) from public, anon, authenticated;
revoke all on function creditgate_private.erase_generations(uuid, uuid) from public, anon, authenticated;
revoke all on function creditgate_private.tg_users__after_delete() from public, anon, authenticated;

create or replace trigger creditgate_on_auth_user_deleted
after delete on auth.users
for each row execute function creditgate_private.tg_users__after_delete();
