-- creditgate generated migration; do not edit. source: schema/0008_daily_usage.sql sha256: 81e7ebc752db24cbb0900329ca6a93890eeed54edd220e6ad701d76297bb9166

-- Daily usage as a counter on the user's balance row.
--
-- A plan's daily cap compares the credits a user's generations charged today (UTC), net of
-- their refunds, with the cap. That figure used to be summed from today's generations on
-- every request_generation and get_balance, so a request cost a row read for each
-- generation the user had already made that day: the more a user generated, the slower each
-- new request became (about 0.1 ms at ten a day on the benchmark machine, linear after that).
--
-- Now the ledger's BEFORE INSERT trigger keeps the figure next to the balance it already
-- moves, under the same row lock:
-- * a spend that names a generation (its charge) adds its amount to today's usage;
-- * a refund of a charge posted today takes its amount back off;
-- * the first such entry of a new UTC day starts the count again from zero.
-- "Today" is the UTC date of the transaction's start (now()), the same instant the
-- generation's created_at records. audit() re-derives the figure from the ledger.

alter table creditgate.balances
  add column daily_used creditgate.credit_balance not null default 0,
  add column daily_used_on date;

comment on column creditgate.balances.daily_used is
'Credits charged for generations on daily_used_on (UTC), net of their refunds. Kept by the ledger trigger.';
comment on column creditgate.balances.daily_used_on is
'The UTC date daily_used counts; an older date means nothing was charged today yet.';

-- Today's figure for every user who was charged today, from the ledger (the definition
-- the trigger follows from now on).
with today as (
  select (now() at time zone 'UTC')::date as day
),
charges as (
  select l.user_id, l.idempotency_key, l.amount
  from creditgate.ledger as l, today as t
  where l.entry_type = 'spend'
    and l.generation_id is not null
    and (l.created_at at time zone 'UTC')::date = t.day
),
used as (
  select c.user_id,
    sum(c.amount) - coalesce(sum((
      select sum(r.amount) from creditgate.ledger as r where r.charge_key = c.idempotency_key
    )), 0) as used
  from charges as c
  group by c.user_id
)
update creditgate.balances as b
set daily_used = u.used, daily_used_on = t.day
from used as u, today as t
where b.user_id = u.user_id;
