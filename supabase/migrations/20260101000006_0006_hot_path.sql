-- creditgate generated migration; do not edit. source: schema/0006_hot_path.sql sha256: 15f3faf7230de82abf5e5a15ce0241d48e6f2828d8b187ecb9ad180c6d279121

-- Cheaper writes on the charge path (measured with `creditgate bench`).
--
-- * credit_lots: the burn-order index no longer filters on `remaining`, so spending from a
--   lot (which only changes `remaining`) is a HOT update: no new index entries per spend.
--   Lots keep free space on their pages for those updates (fillfactor).
-- * balances: free space per page for its one-update-per-charge HOT updates.
-- * lot_movements: keyed by (ledger_id, lot_id) (an entry moves a lot once), which also
--   serves refunds' "which lots paid for this charge" lookup: one index fewer per movement.
-- * Time-range scans (admin_stats, audit since) use BRIN indexes on the append-only
--   ledger and generations: almost free to maintain, unlike a B-tree on every insert.
-- * generations.charge_key is 'charge:' || id by construction: the primary key already
--   makes it unique, and the ledger's unique idempotency key makes the charge single.

drop index creditgate.credit_lots_burn_order_idx;
create index credit_lots_burn_order_idx on creditgate.credit_lots
  (user_id, priority, expires_at nulls last, category desc, created_at, id);
alter table creditgate.credit_lots set (fillfactor = 80);
alter table creditgate.balances set (fillfactor = 80);

alter table creditgate_private.lot_movements drop constraint lot_movements_pkey;
alter table creditgate_private.lot_movements drop column id;
alter table creditgate_private.lot_movements
  add constraint lot_movements_pkey primary key (ledger_id, lot_id);
drop index creditgate_private.lot_movements_ledger_id_idx;

drop index creditgate.ledger_created_at_idx;
create index ledger_created_at_brin on creditgate.ledger using brin (created_at);
drop index creditgate.generations_created_at_idx;
create index generations_created_at_brin on creditgate.generations using brin (created_at);

alter table creditgate.generations drop constraint generations_charge_key_key;
alter table creditgate.generations
  add constraint generations_charge_key_check check (charge_key = 'charge:' || id::text);
