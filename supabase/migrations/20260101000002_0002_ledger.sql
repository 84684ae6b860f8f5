-- creditgate generated migration; do not edit. source: schema/0002_ledger.sql sha256: 0f51d6e031fc9df1d3c77412c6a3cc93112e16a81e54b83d12e16db6629ef9e1

-- The money core: balances (a cache), credit lots, the append-only ledger, lot movements,
-- credit packs, and the private settings, admins and clawback records.

create table creditgate.balances (
  user_id uuid primary key references auth.users (id),
  balance bigint not null default 0,
  plan text not null default 'free',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint balances_balance_check check (balance >= 0),
  constraint balances_plan_check check (plan ~ '^[a-z][a-z0-9_]{0,31}$')
);
comment on table creditgate.balances is
'One row per user: the cached sum of the ledger. Locked first by every money operation.';

create table creditgate.credit_lots (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null references creditgate.balances (user_id),
  category text not null,
  priority smallint not null default 50,
  amount bigint not null,
  remaining bigint not null,
  expires_at timestamptz,
  source_entry_id bigint not null,
  created_at timestamptz not null default now(),
  constraint credit_lots_category_check check (category in ('paid', 'promotional')),
  constraint credit_lots_priority_check check (priority between 0 and 100),
  constraint credit_lots_amount_check check (amount > 0),
  constraint credit_lots_remaining_check check (remaining >= 0 and remaining <= amount)
);
comment on table creditgate.credit_lots is
'Credits as they arrived: spends burn lots by priority, soonest expiry, promotional first, oldest.';
-- Burn order index; only lots with something left are ever scanned.
create index credit_lots_burn_order_idx on creditgate.credit_lots
  (user_id, priority, expires_at nulls last, category desc, created_at, id)
  where remaining > 0;
create index credit_lots_expiry_idx on creditgate.credit_lots (expires_at)
  where remaining > 0 and expires_at is not null;

create table creditgate.ledger (
  id bigint generated always as identity primary key,
  user_id uuid not null references creditgate.balances (user_id),
  entry_type text not null,
  amount bigint not null,
  delta bigint not null,
  balance_after bigint not null,
  idempotency_key text not null,
  request_hash text not null,
  charge_key text,
  generation_id uuid,
  reason text,
  metadata jsonb not null default '{}',
  created_at timestamptz not null default now(),
  constraint ledger_entry_type_check check (entry_type in (
    'signup_bonus', 'purchase', 'grant', 'admin_recharge', 'refund',
    'spend', 'expire', 'clawback'
  )),
  constraint ledger_amount_check check (amount > 0),
  constraint ledger_delta_check check (delta <> 0 and abs(delta) = amount),
  constraint ledger_balance_after_check check (balance_after >= 0),
  constraint ledger_idempotency_key_key unique (idempotency_key),
  constraint ledger_idempotency_key_check check (length(idempotency_key) between 1 and 255),
  constraint ledger_refund_charge_check check ((entry_type = 'refund') = (charge_key is not null))
);
comment on table creditgate.ledger is
'Append-only record of every credit movement; the truth that balances cache. Never updated.';
create index ledger_user_id_created_at_idx on creditgate.ledger (user_id, created_at desc, id desc);
create index ledger_charge_key_idx on creditgate.ledger (charge_key) where charge_key is not null;
create index ledger_generation_id_idx on creditgate.ledger (generation_id)
  where generation_id is not null;
create index ledger_created_at_idx on creditgate.ledger (created_at);

-- Which lots a ledger entry moved: negative = taken from the lot, positive = returned.
create table creditgate_private.lot_movements (
  id bigint generated always as identity primary key,
  ledger_id bigint not null references creditgate.ledger (id),
  lot_id uuid not null references creditgate.credit_lots (id),
  amount bigint not null,
  constraint lot_movements_amount_check check (amount <> 0)
);
comment on table creditgate_private.lot_movements is
'Per-lot effect of each ledger entry, so refunds return credits to the lots that paid.';
create index lot_movements_ledger_id_idx on creditgate_private.lot_movements (ledger_id);
create index lot_movements_lot_id_idx on creditgate_private.lot_movements (lot_id);

create table creditgate.credit_packs (
  id text primary key,
  name text not null,
  credits bigint not null,
  price_cents integer not null,
  currency text not null default 'usd',
  stripe_price_id text not null,
  category text not null default 'paid',
  priority smallint not null default 50,
  expires_after interval,
  active boolean not null default true,
  created_at timestamptz not null default now(),
  constraint credit_packs_credits_check check (credits > 0),
  constraint credit_packs_price_cents_check check (price_cents >= 0),
  constraint credit_packs_stripe_price_id_key unique (stripe_price_id),
  constraint credit_packs_category_check check (category in ('paid', 'promotional')),
  constraint credit_packs_priority_check check (priority between 0 and 100),
  constraint credit_packs_expires_after_check check (expires_after is null or expires_after > interval '0')
);
comment on table creditgate.credit_packs is
'What a Stripe price buys. Active packs are public; credits come from here, never the client.';

create table creditgate_private.settings (
  key text primary key,
  value jsonb not null,
  updated_at timestamptz not null default now(),
  updated_by uuid
);
comment on table creditgate_private.settings is
'App-wide switches and limits (maintenance, signup bonus, plan caps, media TTL...).';

create table creditgate_private.admins (
  user_id uuid primary key references auth.users (id),
  granted_at timestamptz not null default now(),
  note text
);
comment on table creditgate_private.admins is
'Who may call admin_* functions. The only source of admin rights (never JWT metadata).';

-- Every clawback request, including those that found nothing left to take.
create table creditgate_private.clawbacks (
  idempotency_key text primary key,
  user_id uuid not null references creditgate.balances (user_id),
  requested bigint not null,
  taken bigint not null,
  shortfall bigint generated always as (requested - taken) stored,
  ledger_id bigint references creditgate.ledger (id),
  reason text,
  created_at timestamptz not null default now(),
  constraint clawbacks_requested_check check (requested > 0),
  constraint clawbacks_taken_check check (taken >= 0 and taken <= requested)
);
comment on table creditgate_private.clawbacks is
'Stripe refunds and disputes: what was asked back, what could be taken, the shortfall.';
create index clawbacks_user_id_idx on creditgate_private.clawbacks (user_id);
create index clawbacks_ledger_id_idx on creditgate_private.clawbacks (ledger_id);
create index credit_lots_source_entry_id_idx on creditgate.credit_lots (source_entry_id);

alter table creditgate.credit_lots
  add constraint credit_lots_source_entry_id_fkey
  foreign key (source_entry_id) references creditgate.ledger (id);
