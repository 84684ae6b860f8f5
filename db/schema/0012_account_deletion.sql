-- Accounts can be deleted (DESIGN §3, amendments: issue 17 item 6).
--
-- GoTrue deletes a user's auth.users row as supabase_auth_admin (the Supabase dashboard
-- does the same). balances and admins referenced auth.users, so every delete failed
-- ("Database error deleting user"). Now:
-- * no creditgate table references auth.users: the books (ledger amounts, generation costs)
--   stay under the bare user id, and the balance row stays as the ledger's per-user anchor;
-- * the delete trigger (db/functions/ledger/deletion.sql) cancels and refunds queued work,
--   forfeits what is left (entry type `forfeit`, a debit), erases personal data and records
--   the deletion in creditgate_private.deleted_users;
-- * media rows are erased, so their files wait for the purge sweep in
--   creditgate_private.media_purges (service_expired_media lists them, the cleanup command
--   deletes them, service_mark_media_purged takes them off).

alter table creditgate.balances drop constraint balances_user_id_fkey;
alter table creditgate_private.admins drop constraint admins_user_id_fkey;

alter domain creditgate.entry_type drop constraint entry_type_check;
alter domain creditgate.entry_type add constraint entry_type_check check (value in (
  'signup_bonus', 'purchase', 'grant', 'admin_recharge', 'refund',
  'spend', 'expire', 'clawback', 'forfeit'
));
comment on domain creditgate.entry_type is
'Ledger entry types: credits signup_bonus, purchase, grant, admin_recharge, refund; debits spend, expire, clawback, forfeit.';

create table creditgate_private.deleted_users (
  user_id uuid primary key,
  deleted_at timestamptz not null default now()
);
comment on table creditgate_private.deleted_users is
'Users whose auth.users row was deleted: bare id and time only. Their books stay; they can get and do nothing.';

create table creditgate_private.media_purges (
  media_id uuid primary key,
  storage_key text not null,
  queued_at timestamptz not null default now(),
  constraint media_purges_storage_key_key unique (storage_key)
);
comment on table creditgate_private.media_purges is
'Files of erased media rows (deleted accounts), waiting for the purge sweep to delete them from storage.';
create index media_purges_queued_at_idx on creditgate_private.media_purges (queued_at, media_id);

-- Refunds of failed generations stored the provider's error in ledger.metadata, message
-- included; a message may echo the prompt, and the append-only ledger could never erase it
-- when the account is deleted. From now on only the error code is stored there
-- (service_settle_generation); existing entries lose the message, once, here. The ledger
-- refuses updates (trigger): this one-off change is made by the table's owner inside this
-- migration's transaction, as 0010 did for the granting admin's id.
do $$
declare
  v_guarded boolean := exists (
    select 1 from pg_catalog.pg_trigger
    where tgrelid = 'creditgate.ledger'::regclass and tgname = 'ledger_refuse_update_delete'
  );
begin
  if v_guarded then
    alter table creditgate.ledger disable trigger ledger_refuse_update_delete;
  end if;
  update creditgate.ledger as l
  set metadata = l.metadata #- '{error,message}'
  where l.entry_type = 'refund' and l.metadata -> 'error' ? 'message';
  if v_guarded then
    alter table creditgate.ledger enable trigger ledger_refuse_update_delete;
  end if;
end
$$;
