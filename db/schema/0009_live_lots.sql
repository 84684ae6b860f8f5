-- Spends read only lots that still hold credits.
--
-- Every spend finds the first lot in burn order with something left. The burn-order index
-- holds every lot a user ever had, and exhausted lots come first in that order (older, or
-- sooner to expire), so each spend stepped over all of the user's spent-out lots: one heap
-- read per earlier purchase, forever. The expiry sweep likewise re-read every lot that had
-- ever expired. Filtering those indexes on `remaining > 0` would fix the reads but make
-- every spend's lot update non-HOT (a column in an index predicate counts as indexed: a
-- new tuple and an entry in every index, as before 0007).
--
-- `live` is `remaining > 0`, stored. Indexes filter on it, so they list only lots that can
-- still pay; a spend that leaves credits in the lot does not change `live` and stays a HOT
-- update. Only the update that empties a lot (or a refund that refills one) changes it.

alter table creditgate.credit_lots
  add column live boolean generated always as (remaining > 0) stored;
comment on column creditgate.credit_lots.live is
'remaining > 0 (generated): the lot can still pay. Spend and expiry indexes list only live lots.';

create index credit_lots_live_burn_order_idx on creditgate.credit_lots
  (user_id, priority, expires_at nulls last, category desc, created_at, id)
  where live;

drop index creditgate.credit_lots_expiry_idx;
create index credit_lots_expiry_idx on creditgate.credit_lots (expires_at)
  where expires_at is not null and live;
