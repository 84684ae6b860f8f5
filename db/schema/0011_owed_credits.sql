-- Owed credits and Stripe payments.
--
-- * balances.owed: credits a clawback could not take (the user had spent or reserved them).
--   Every credit that reaches the user later pays it first (creditgate_private.collect_owed),
--   so credits held by queued work at the time of a dispute never come back spendable.
-- * clawbacks know what they were for (kind, the Stripe payment), what of their shortfall
--   was collected since, and how a won dispute ended them (returned, cancelled). A refund
--   whose share rounds to nothing is recorded too (requested 0), so a redelivery replays it.
-- * checkout_holds: paid checkouts whose amount or currency did not match the pack's price
--   times quantity. Nothing is granted for them; an operator decides (audit reports them).

alter table creditgate.balances
  add column owed creditgate.credit_balance not null default 0;
comment on column creditgate.balances.owed is
'Credits clawed back (Stripe refund or dispute) that the user did not have: paid first from any credit that arrives.';

alter table creditgate_private.clawbacks
  drop constraint clawbacks_requested_check,
  add constraint clawbacks_requested_check check (requested >= 0),
  add column kind text not null default 'clawback',
  add column payment_id text,
  add column payment_amount bigint,
  add column payment_credits bigint,
  add column amount_refunded bigint,
  add column collected bigint not null default 0,
  add column cancelled bigint not null default 0,
  add column returned bigint not null default 0,
  add column resolution text,
  add column resolved_at timestamptz,
  add constraint clawbacks_kind_check check (kind in ('clawback', 'refund', 'dispute')),
  add constraint clawbacks_owed_check check (
    collected >= 0 and cancelled >= 0 and collected + cancelled <= requested - taken
  ),
  add constraint clawbacks_returned_check check (returned >= 0),
  add constraint clawbacks_resolution_check check (
    (resolution is null) = (resolved_at is null) and (resolution is null or resolution = 'won')
  );
comment on column creditgate_private.clawbacks.collected is
'Of the shortfall, what later credits paid (clawback entries whose metadata names this key).';
comment on column creditgate_private.clawbacks.cancelled is
'Of the shortfall, what a won dispute forgave before it was collected.';
comment on column creditgate_private.clawbacks.returned is
'What a won dispute gave back: everything this clawback and its collections took.';
comment on column creditgate_private.clawbacks.payment_id is
'The Stripe charge (ch_, py_...) or payment intent (pi_) the refund or dispute is about.';
create index clawbacks_payment_id_idx on creditgate_private.clawbacks (payment_id)
  where payment_id is not null;
-- The open shortfalls of a user, oldest first: what collect_owed pays.
create index clawbacks_owed_idx on creditgate_private.clawbacks (user_id, created_at)
  where collected + cancelled < requested - taken;

create table creditgate_private.checkout_holds (
  idempotency_key text primary key,
  event_id text not null,
  session_id text,
  user_id uuid not null,
  price_id text not null,
  quantity integer not null,
  expected_amount bigint not null,
  expected_currency text not null,
  amount_total bigint,
  amount_tax bigint,
  currency text,
  reason text not null,
  created_at timestamptz not null default now(),
  resolved_at timestamptz,
  resolution text,
  constraint checkout_holds_reason_check check (reason in ('amount_mismatch', 'currency_mismatch'))
);
comment on table creditgate_private.checkout_holds is
'Paid Stripe checkouts not granted because amount or currency differ from the pack''s price times quantity.';
create index checkout_holds_open_idx on creditgate_private.checkout_holds (created_at)
  where resolved_at is null;
