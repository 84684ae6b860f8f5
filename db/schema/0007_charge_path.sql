-- A cheaper charge path (measured with `creditgate bench`, see docs/benchmarks.md).
--
-- Single-column rules become domains instead of table CHECK constraints.
--
-- PostgreSQL re-reads and re-plans every CHECK constraint of a table from its stored text at
-- the start of each INSERT or UPDATE statement, and checks all of them on every UPDATE, even
-- of columns the statement does not touch. A charge inserts a ledger row and a lot movement
-- and updates a lot and a balance, so that was about 15 constraints re-planned per charge:
-- a quarter of its cost. A domain's rule is planned once per session (type cache) and is
-- checked only where a value of that column is written. The rules are unchanged; a
-- violation is still SQLSTATE 23514. The ledger's two-column rules (delta = ±amount, a
-- refund and only a refund names its charge) move into its BEFORE INSERT trigger, which
-- sets delta anyway; a lot's `remaining <= amount` is checked by audit() (a refund returns
-- no more to a lot than the charge took from it, so only a bug could break it).
--
-- Also, on the charge path:
-- * lot_movements loses its foreign keys and its lot_id index. Each foreign key cost every
--   charge a lookup and a row lock (a WAL record) on the entry and the lot it had just
--   written; the index cost a random-page write. Movements are written only by the money
--   primitives and never changed, and audit() checks that each names an existing entry and
--   a lot of the same user (which the foreign keys never checked). The expiry sweep now finds
--   a lot's next expire key through the ledger's key index.
-- * generations lose their foreign key to models (and its index). Its check share-locked the
--   model's row in every request for that model: concurrent requests for one model queued
--   on that row's lock and grew a multixact on it. Models are never deleted (they are
--   switched off), and audit() checks that every generation names an existing model.
-- * the expiry index no longer filters on `remaining`. A column in an index predicate
--   counts as indexed, so every spend from a lot was a non-HOT update writing four index
--   entries; now it is a HOT update. The expiry sweep filters `remaining > 0` on the heap.

create domain creditgate.credits as bigint
  constraint credits_check check (value > 0);
comment on domain creditgate.credits is 'A positive number of credits.';

create domain creditgate.credit_balance as bigint
  constraint credit_balance_check check (value >= 0);
comment on domain creditgate.credit_balance is 'A number of credits that can be zero, never negative.';

create domain creditgate.entry_type as text
  constraint entry_type_check check (value in (
    'signup_bonus', 'purchase', 'grant', 'admin_recharge', 'refund',
    'spend', 'expire', 'clawback'
  ));
comment on domain creditgate.entry_type is
'Ledger entry types: credits signup_bonus, purchase, grant, admin_recharge, refund; debits spend, expire, clawback.';

create domain creditgate.ledger_key as text
  constraint ledger_key_check check (length(value) between 1 and 255);
comment on domain creditgate.ledger_key is 'A ledger idempotency key: 1 to 255 characters.';

create domain creditgate.credit_delta as bigint
  constraint credit_delta_check check (value <> 0);
comment on domain creditgate.credit_delta is 'A signed, non-zero change in credits.';

create domain creditgate.lot_category as text
  constraint lot_category_check check (value in ('paid', 'promotional'));
comment on domain creditgate.lot_category is 'paid (bought) or promotional (granted) credits.';

create domain creditgate.lot_priority as smallint
  constraint lot_priority_check check (value between 0 and 100);
comment on domain creditgate.lot_priority is 'Burn priority of a lot: 0-100, lower is used first.';

create domain creditgate.plan_name as text
  constraint plan_name_check check (value ~ '^[a-z][a-z0-9_]{0,31}$');
comment on domain creditgate.plan_name is 'A plan name: lowercase letter, then up to 31 of [a-z0-9_].';

create domain creditgate.model_kind as text
  constraint model_kind_check check (value in ('image', 'edit', 'video', 'chat'));
comment on domain creditgate.model_kind is 'What a model generates: image, edit, video or chat.';

create domain creditgate.generation_status as text
  constraint generation_status_check check (
    value in ('queued', 'running', 'succeeded', 'failed', 'canceled')
  );
comment on domain creditgate.generation_status is
'queued, running (leased by a worker), succeeded, failed or canceled.';

alter table creditgate.balances
  drop constraint balances_balance_check,
  drop constraint balances_plan_check,
  alter column balance type creditgate.credit_balance,
  alter column plan type creditgate.plan_name;

alter table creditgate.credit_lots
  drop constraint credit_lots_category_check,
  drop constraint credit_lots_priority_check,
  drop constraint credit_lots_amount_check,
  alter column category type creditgate.lot_category,
  alter column priority type creditgate.lot_priority,
  drop constraint credit_lots_remaining_check,
  alter column amount type creditgate.credits,
  alter column remaining type creditgate.credit_balance;

alter table creditgate.ledger
  drop constraint ledger_entry_type_check,
  drop constraint ledger_amount_check,
  drop constraint ledger_balance_after_check,
  drop constraint ledger_idempotency_key_check,
  drop constraint ledger_delta_check,
  drop constraint ledger_refund_charge_check,
  alter column entry_type type creditgate.entry_type,
  alter column amount type creditgate.credits,
  alter column balance_after type creditgate.credit_balance,
  alter column idempotency_key type creditgate.ledger_key;

alter table creditgate_private.lot_movements
  drop constraint lot_movements_amount_check,
  alter column amount type creditgate.credit_delta;

alter table creditgate.generations
  drop constraint generations_status_check,
  drop constraint generations_kind_check,
  drop constraint generations_cost_check,
  alter column status type creditgate.generation_status,
  alter column kind type creditgate.model_kind,
  alter column cost type creditgate.credits;

alter table creditgate.models
  drop constraint models_kind_check,
  alter column kind type creditgate.model_kind;

alter table creditgate_private.lot_movements
  drop constraint lot_movements_ledger_id_fkey,
  drop constraint lot_movements_lot_id_fkey;
drop index creditgate_private.lot_movements_lot_id_idx;

alter table creditgate.generations drop constraint generations_model_id_fkey;
drop index creditgate.generations_model_id_idx;

drop index creditgate.credit_lots_expiry_idx;
create index credit_lots_expiry_idx on creditgate.credit_lots (expires_at)
  where expires_at is not null;
