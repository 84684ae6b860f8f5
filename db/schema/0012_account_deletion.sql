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
