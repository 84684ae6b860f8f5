-- creditgate generated migration; do not edit. source: schema/0010_generation_internals.sql sha256: 0ac5915bbea5d644804d2c4b9b59b40f77d9ab6eff2b3c5cbc00897c71c6e289

-- Owners see their generations, not the machinery (DESIGN §3, amendments of turn 2).
--
-- An owner's `select *` on creditgate.generations (and the supabase_realtime stream of it)
-- returned the worker's lease (owner, token, expiry), the settle result and its lease, the
-- request hash, the client address and the charge key. They move to two private tables,
-- split by when they are written so that a request pays for one narrow insert only:
--
-- * generation_requests, written by request_generation: the idempotency record. Hashes
--   recorded before this migration covered the normalized params; they are kept, marked
--   'legacy:', so that a retry across the upgrade still matches (legacy_request_matches). Its primary
--   key (user_id, idempotency_key) replaces the unique index generations had on the same
--   pair, so a request still maintains the same number of index entries; the generation row
--   is narrower, and loses two CHECK constraints that every insert and update re-planned.
-- * generation_leases, written by the claim (one row per generation, reused by each
--   attempt): the lease and the settle result replayed under it. The request path never
--   touches it.
--
-- charge_key was 'charge:' || id by construction (0006): every reader now derives it.
-- Neither table has a foreign key (each would cost the request a lookup and a row lock on
-- the row it has just written). A lease row is written only under its generation row's
-- lock; audit() (stuck_leases) reports a running generation without a live lease, which
-- the dropped generations_lease_check used to refuse.
--
-- The granting admin's user id leaves the owner-readable ledger.metadata for
-- admin_grants, keyed by the ledger entry (existing entries are moved, once, here).

create table creditgate_private.generation_requests (
  user_id uuid not null,
  idempotency_key text not null,
  generation_id uuid not null,
  request_hash text not null,
  client_ip inet,
  constraint generation_requests_pkey primary key (user_id, idempotency_key)
);
comment on table creditgate_private.generation_requests is
'Server-only idempotency record of each request: the hash of what the client sent and its address.';

create table creditgate_private.generation_leases (
  generation_id uuid primary key,
  lease_owner text,
  lease_token uuid,
  lease_expires_at timestamptz,
  settle_result jsonb,
  settled_lease_token uuid,
  constraint generation_leases_lease_check check (
    (lease_token is null) = (lease_owner is null)
    and (lease_token is null) = (lease_expires_at is null)
  )
);
comment on table creditgate_private.generation_leases is
'Server-only lease of a running generation and the settle result replayed under its lease.';
comment on column creditgate_private.generation_leases.settled_lease_token is
'Lease token of the settle that wrote settle_result: replays under it get the stored result.';
comment on column creditgate_private.generation_leases.lease_token is
'The current attempt''s lease (null between attempts); heartbeat and settle must present it.';
create index generation_leases_lease_expires_at_idx on creditgate_private.generation_leases
  (lease_expires_at) where lease_expires_at is not null;

create table creditgate_private.admin_grants (
  ledger_id bigint primary key,
  admin_id uuid not null,
  created_at timestamptz not null default now()
);
comment on table creditgate_private.admin_grants is
'Which admin posted each admin_recharge entry (kept out of the owner-readable ledger).';

insert into creditgate_private.generation_requests (
  user_id, idempotency_key, generation_id, request_hash, client_ip
)
select g.user_id, g.idempotency_key, g.id, 'legacy:' || g.request_hash, g.client_ip
from creditgate.generations as g;

insert into creditgate_private.generation_leases (
  generation_id, lease_owner, lease_token, lease_expires_at, settle_result, settled_lease_token
)
select g.id, g.lease_owner, g.lease_token, g.lease_expires_at, g.settle_result, g.settled_lease_token
from creditgate.generations as g
where g.lease_token is not null or g.settled_lease_token is not null;

alter table creditgate.generations
  drop constraint generations_lease_check,
  drop constraint generations_charge_key_check,
  drop constraint generations_user_id_idempotency_key_key,
  drop column lease_owner,
  drop column lease_token,
  drop column lease_expires_at,
  drop column request_hash,
  drop column settle_result,
  drop column settled_lease_token,
  drop column client_ip,
  drop column charge_key;

-- Prices are fixed at charge time (DESIGN §3): each generation keeps the model's prices it
-- was charged at, and a settle that prices usage (chat tokens) uses them. Work still queued
-- or running takes today's prices, the best record there is of what it was charged at.
alter table creditgate.generations add column prices jsonb;
comment on column creditgate.generations.prices is
'The model''s prices this generation was charged at (price_base, price_per_*): settle prices usage with them.';
update creditgate.generations as g
set prices = jsonb_build_object(
  'price_base', m.price_base,
  'price_per_megapixel', m.price_per_megapixel,
  'price_per_step', m.price_per_step,
  'price_per_second', m.price_per_second,
  'price_per_1k_tokens', m.price_per_1k_tokens
)
from creditgate.models as m
where m.id = g.model_id and g.status in ('queued', 'running');

insert into creditgate_private.admin_grants (ledger_id, admin_id, created_at)
select l.id, (l.metadata ->> 'admin_id')::uuid, l.created_at
from creditgate.ledger as l
where l.entry_type = 'admin_recharge' and l.metadata ? 'admin_id';

-- The ledger refuses updates (trigger); this one-off move of a key out of metadata is the
-- only exception, made by the table's owner inside this migration's transaction.
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
  set metadata = l.metadata - 'admin_id'
  where l.entry_type = 'admin_recharge' and l.metadata ? 'admin_id';
  if v_guarded then
    alter table creditgate.ledger enable trigger ledger_refuse_update_delete;
  end if;
end
$$;
