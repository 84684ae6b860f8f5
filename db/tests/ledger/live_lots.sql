-- credit_lots.live (remaining > 0, generated) and the indexes that list only live lots.
-- Proves: live follows remaining through spends, refunds and expiry; a spend reads the
-- live lot only, however many spent-out lots the user has; a spend that leaves credits in
-- its lot is still a HOT update; the expiry sweep still finds lapsed lots.
-- With the users' history committed and vacuumed, tests/db/test_live_lots.py shows that a
-- spend reads a single index entry however many spent-out lots there are.

begin;
select plan(8);
-- The tables here are tiny and would be read sequentially: with that off, the planner
-- shows the index it takes on a real table.
set local enable_seqscan = off;

select tests.create_user() as u \gset
create function pg_temp.lot_live(p_key text) returns boolean
language sql as $$
  select l.live from creditgate.credit_lots as l
  join creditgate.ledger as e on e.id = l.source_entry_id
  where e.idempotency_key = p_key;
$$;
create function pg_temp.index_stat(p_index text, p_column text) returns bigint
language sql as $$
  select case p_column
    when 'scan' then pg_stat_get_xact_numscans(('creditgate.' || p_index)::regclass)
    when 'read' then pg_stat_get_xact_tuples_returned(('creditgate.' || p_index)::regclass)
  end;
$$;

-- Forty purchases spent out one after the other, then one more that is still full. The
-- signup bonus (promotional) is spent first.
select creditgate_private.spend_credits(:'u', 1000, 'bonus-out');
select creditgate_private.grant_credits(:'u', 10, 'purchase', 'buy-' || n, 'paid')
from generate_series(1, 40) as n;
select creditgate_private.spend_credits(:'u', 10, 'out-' || n)
from generate_series(1, 40) as n;
select creditgate_private.grant_credits(:'u', 100, 'purchase', 'buy-last', 'paid');

select is(pg_temp.lot_live('buy-1'), false, 'a spent-out lot is not live');
select is(pg_temp.lot_live('buy-last'), true, 'a lot with credits left is live');

create temp table before as
select pg_temp.index_stat('credit_lots_live_burn_order_idx', 'scan') as live_scans,
       pg_temp.index_stat('credit_lots_burn_order_idx', 'scan') as all_scans,
       (select n_tup_hot_upd from pg_stat_xact_user_tables
        where schemaname = 'creditgate' and relname = 'credit_lots') as hot,
       (select n_tup_upd from pg_stat_xact_user_tables
        where schemaname = 'creditgate' and relname = 'credit_lots') as upd;
select is((creditgate_private.spend_credits(:'u', 7, 'partial') ->> 'balance')::bigint, 93::bigint,
  'the spend is paid by the live lot');
select is(pg_temp.index_stat('credit_lots_live_burn_order_idx', 'scan') - (select live_scans from before),
  1::bigint, 'it looks the lot up in the index of live lots');
-- (Inside one transaction the index still points at the lots' versions from before they
-- were spent out; tests/db/test_live_lots.py shows one entry read once those are gone.)
select is(pg_temp.index_stat('credit_lots_burn_order_idx', 'scan') - (select all_scans from before),
  0::bigint, 'the index of all lots is not scanned');
select is(
  (select n_tup_hot_upd from pg_stat_xact_user_tables
   where schemaname = 'creditgate' and relname = 'credit_lots') - (select hot from before),
  (select n_tup_upd from pg_stat_xact_user_tables
   where schemaname = 'creditgate' and relname = 'credit_lots') - (select upd from before),
  'the lot update that leaves credits in the lot is HOT'
);

-- A refund refills a spent-out lot: live again.
select m.lot_id as refilled from creditgate_private.lot_movements as m
inner join creditgate.ledger as e on e.id = m.ledger_id where e.idempotency_key = 'out-40' \gset
select creditgate_private.refund_credits(:'u', 'out-40', 10, 'refund-out-40');
select is((select l.live from creditgate.credit_lots as l where l.id = :'refilled'), true,
  'a refund makes the lot it refills live again');

-- Expiry: a lapsed live lot is found by the sweep (through the index of live lots).
select creditgate_private.grant_credits(:'u', 5, 'grant', 'short', 'promotional', now() + interval '1 hour');
select is(
  (creditgate.service_expire_credits(now() + interval '2 hours') ->> 'credits')::bigint, 5::bigint,
  'the sweep expires the lapsed lot'
);

select * from finish();
rollback;
