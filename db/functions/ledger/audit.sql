-- creditgate.audit(since) -> jsonb {ok, checks: [{name, failures, samples}]}   service_role
--
-- Re-derives every money invariant (DESIGN §3) from the raw rows. `since` limits the
-- per-user checks to users with ledger activity since then (null = everyone).
-- Checks live in creditgate_private.audit_checks(); each returns a failure count and up to
-- five sample rows so an operator can see what broke.

create or replace function creditgate_private.audit_checks(p_since timestamptz)
returns table (name text, failures bigint, samples jsonb)
language plpgsql
stable
set search_path = ''
as $$
begin
  -- Invariant 1: balance = sum(ledger.delta) = sum(lots.remaining) >= 0, per user.
  return query
  with users as (
    select b.user_id, b.balance
    from creditgate.balances as b
    where p_since is null or exists (
      select 1 from creditgate.ledger as l where l.user_id = b.user_id and l.created_at >= p_since
    )
  ),
  sums as (
    select
      u.user_id,
      u.balance,
      coalesce((select sum(l.delta) from creditgate.ledger as l where l.user_id = u.user_id), 0) as ledger_sum,
      coalesce((select sum(c.remaining) from creditgate.credit_lots as c where c.user_id = u.user_id), 0) as lots_sum
    from users as u
  ),
  bad as (
    select * from sums as s
    where s.balance <> s.ledger_sum or s.balance <> s.lots_sum or s.balance < 0
  )
  select 'balance_matches_ledger_and_lots'::text, count(*),
    coalesce(jsonb_agg(to_jsonb(b) - 'rn') filter (where b.rn <= 5), '[]')
  from (select bad.*, row_number() over () as rn from bad) as b;

  -- balance_after on each entry continues the running sum of that user's deltas.
  return query
  with chain as (
    select l.id, l.user_id, l.balance_after,
      sum(l.delta) over (partition by l.user_id order by l.id) as running
    from creditgate.ledger as l
    where p_since is null or l.user_id in (
      select x.user_id from creditgate.ledger as x where x.created_at >= p_since
    )
  ),
  bad as (select c.* from chain as c where c.balance_after <> c.running)
  select 'balance_after_chain'::text, count(*),
    coalesce(jsonb_agg(to_jsonb(b) - 'rn') filter (where b.rn <= 5), '[]')
  from (select bad.*, row_number() over (order by bad.id) as rn from bad) as b;

  -- Each entry's lot movements add up to its delta; each lot's movements to its remaining,
  -- which is never more than the lot's amount.
  return query
  with bad as (
    select l.id as entry_id, l.delta, coalesce(sum(m.amount), 0) as moved
    from creditgate.ledger as l
    left join creditgate_private.lot_movements as m on m.ledger_id = l.id
    where p_since is null or l.created_at >= p_since
    group by l.id, l.delta
    having coalesce(sum(m.amount), 0) <> l.delta
  )
  select 'entry_lot_movements_match_delta'::text, count(*),
    coalesce(jsonb_agg(to_jsonb(b) - 'rn') filter (where b.rn <= 5), '[]')
  from (select bad.*, row_number() over (order by bad.entry_id) as rn from bad) as b;

  return query
  with bad as (
    select c.id as lot_id, c.remaining, coalesce(sum(m.amount), 0) as moved
    from creditgate.credit_lots as c
    left join creditgate_private.lot_movements as m on m.lot_id = c.id
    group by c.id, c.remaining, c.amount
    having coalesce(sum(m.amount), 0) <> c.remaining or c.remaining > c.amount
  )
  select 'lot_remaining_matches_movements'::text, count(*),
    coalesce(jsonb_agg(to_jsonb(b) - 'rn') filter (where b.rn <= 5), '[]')
  from (select bad.*, row_number() over (order by bad.lot_id) as rn from bad) as b;

  -- Every lot movement names an existing entry and an existing lot of that entry's user
  -- (checked here rather than by foreign keys, which cost the charge path two lookups and two
  -- row locks; movements are written only by the money primitives).
  return query
  with bad as (
    select m.ledger_id, m.lot_id, m.amount, e.user_id as entry_user_id, c.user_id as lot_user_id
    from creditgate_private.lot_movements as m
    left join creditgate.ledger as e on e.id = m.ledger_id
    left join creditgate.credit_lots as c on c.id = m.lot_id
    where e.id is null or c.id is null or c.user_id <> e.user_id
  )
  select 'lot_movements_reference_entries_and_lots'::text, count(*),
    coalesce(jsonb_agg(to_jsonb(b) - 'rn') filter (where b.rn <= 5), '[]')
  from (select bad.*, row_number() over (order by bad.ledger_id, bad.lot_id) as rn from bad) as b;

  -- Invariant 4: no ledger key applied twice (also holds if the unique index were dropped).
  return query
  with bad as (
    select l.idempotency_key, count(*) as entries
    from creditgate.ledger as l
    group by l.idempotency_key
    having count(*) > 1
  )
  select 'idempotency_keys_unique'::text, count(*),
    coalesce(jsonb_agg(to_jsonb(b) - 'rn') filter (where b.rn <= 5), '[]')
  from (select bad.*, row_number() over () as rn from bad) as b;

  -- Invariant 3 (ledger side): every refund returns part of a spend of the same user, and
  -- the refunds of a charge never exceed it.
  return query
  with refunded as (
    select r.charge_key, r.user_id, sum(r.amount) as refunded
    from creditgate.ledger as r
    where r.entry_type = 'refund'
    group by r.charge_key, r.user_id
  ),
  bad as (
    select f.charge_key, f.user_id, s.amount as charged, f.refunded
    from refunded as f
    left join creditgate.ledger as s
      on s.idempotency_key = f.charge_key and s.entry_type = 'spend' and s.user_id = f.user_id
    where s.id is null or f.refunded > s.amount
  )
  select 'refunds_within_charge'::text, count(*),
    coalesce(jsonb_agg(to_jsonb(b) - 'rn') filter (where b.rn <= 5), '[]')
  from (select bad.*, row_number() over () as rn from bad) as b;

  -- Clawback records agree with their ledger entries.
  return query
  with bad as (
    select c.idempotency_key, c.taken, l.amount as posted
    from creditgate_private.clawbacks as c
    left join creditgate.ledger as l on l.id = c.ledger_id
    where (c.taken > 0) <> (l.id is not null)
       or (l.id is not null
           and (l.amount <> c.taken or l.entry_type <> 'clawback' or l.user_id <> c.user_id))
  )
  select 'clawbacks_match_ledger'::text, count(*),
    coalesce(jsonb_agg(to_jsonb(b) - 'rn') filter (where b.rn <= 5), '[]')
  from (select bad.*, row_number() over () as rn from bad) as b;

  -- Owed credits (DESIGN §3, turn 2): per user, owed >= 0 and owed = what clawbacks could
  -- not take, less what later credits paid (the ledger's collection entries), less what won
  -- disputes forgave.
  return query
  with collections as (
    select l.user_id, l.metadata ->> 'clawback_key' as clawback_key, sum(l.amount) as collected
    from creditgate.ledger as l
    where l.entry_type = 'clawback' and l.metadata ? 'paid_from_entry_id'
    group by l.user_id, l.metadata ->> 'clawback_key'
  ),
  per_user as (
    select c.user_id,
      sum(c.requested - c.taken) as shortfalls,
      sum(c.cancelled) as cancelled,
      coalesce(sum(k.collected), 0) as collected,
      count(*) filter (where coalesce(k.collected, 0) + c.cancelled > c.requested - c.taken) as overpaid
    from creditgate_private.clawbacks as c
    left join collections as k on k.clawback_key = c.idempotency_key and k.user_id = c.user_id
    group by c.user_id
  ),
  bad as (
    select b.user_id, b.owed::bigint as owed, p.shortfalls, p.collected, p.cancelled, p.overpaid
    from creditgate.balances as b
    left join per_user as p on p.user_id = b.user_id
    where b.owed < 0
       or b.owed <> coalesce(p.shortfalls - p.collected - p.cancelled, 0)
       or coalesce(p.overpaid, 0) > 0
  )
  select 'owed_matches_shortfalls'::text, count(*),
    coalesce(jsonb_agg(to_jsonb(b) - 'rn') filter (where b.rn <= 5), '[]')
  from (select bad.*, row_number() over (order by bad.user_id) as rn from bad) as b;

  -- Each clawback's collected figure is the sum of the collection entries tied to it, and
  -- every collection entry names a clawback of its user.
  return query
  with collections as (
    select l.user_id, l.metadata ->> 'clawback_key' as clawback_key, sum(l.amount) as collected
    from creditgate.ledger as l
    where l.entry_type = 'clawback' and l.metadata ? 'paid_from_entry_id'
    group by l.user_id, l.metadata ->> 'clawback_key'
  ),
  bad as (
    select coalesce(c.idempotency_key, k.clawback_key) as clawback_key,
      c.collected as recorded, k.collected as posted
    from creditgate_private.clawbacks as c
    full join collections as k on k.clawback_key = c.idempotency_key and k.user_id = c.user_id
    where c.idempotency_key is null or c.collected <> coalesce(k.collected, 0)
  )
  select 'owed_collections_match_ledger'::text, count(*),
    coalesce(jsonb_agg(to_jsonb(b) - 'rn') filter (where b.rn <= 5), '[]')
  from (select bad.*, row_number() over (order by bad.clawback_key) as rn from bad) as b;

  -- Paid checkouts held because amount or currency did not match the pack: each needs an
  -- operator's decision (grant by hand or refund), then resolved_at.
  return query
  with bad as (
    select h.idempotency_key, h.user_id, h.price_id, h.quantity, h.reason, h.expected_amount,
      h.expected_currency, h.amount_total, h.currency, h.created_at
    from creditgate_private.checkout_holds as h
    where h.resolved_at is null
  )
  select 'checkout_holds_unresolved'::text, count(*),
    coalesce(jsonb_agg(to_jsonb(b) - 'rn') filter (where b.rn <= 5), '[]')
  from (select bad.*, row_number() over (order by bad.created_at) as rn from bad) as b;

  -- Settings sanity: only known keys, each of its default's JSON type (null = any).
  return query
  with bad as (
    select s.key, s.value, d.value as default_value
    from creditgate_private.settings as s
    left join creditgate_private.setting_defaults() as d on d.key = s.key
    where d.key is null
       or (jsonb_typeof(d.value) <> 'null' and jsonb_typeof(s.value) <> jsonb_typeof(d.value))
  )
  select 'settings_known_and_typed'::text, count(*),
    coalesce(jsonb_agg(to_jsonb(b) - 'rn') filter (where b.rn <= 5), '[]')
  from (select bad.*, row_number() over () as rn from bad) as b;

  -- Generations in scope: created, changed or refunded since p_since (null = all).
  -- Invariant 2: each generation has exactly one spend, keyed by its charge key, for its
  -- cost, from its owner (and no other spend names it).
  return query
  with gens as (
    select g.*, 'charge:' || g.id::text as charge_key from creditgate.generations as g
    where p_since is null or g.updated_at >= p_since or exists (
      select 1 from creditgate.ledger as x where x.generation_id = g.id and x.created_at >= p_since
    )
  ),
  bad as (
    select g.id as generation_id, g.cost, g.charge_key, s.entry_type, s.amount, s.user_id,
      (select count(*) from creditgate.ledger as o
        where o.entry_type = 'spend' and o.generation_id = g.id
          and o.idempotency_key <> g.charge_key) as other_spends
    from gens as g
    left join creditgate.ledger as s on s.idempotency_key = g.charge_key
    where s.id is null
       or s.entry_type <> 'spend'
       or s.amount <> g.cost
       or s.user_id <> g.user_id
       or exists (
         select 1 from creditgate.ledger as o
         where o.entry_type = 'spend' and o.generation_id = g.id and o.idempotency_key <> g.charge_key
       )
  )
  select 'generation_charged_once'::text, count(*),
    coalesce(jsonb_agg(to_jsonb(b) - 'rn') filter (where b.rn <= 5), '[]')
  from (select bad.*, row_number() over (order by bad.generation_id) as rn from bad) as b;

  -- Invariant 3: refunds follow the outcome. Never more than the charge; failed and
  -- canceled refunded in full by exactly one entry; succeeded refunded cost - actual_cost
  -- (by at most one entry); queued and running not refunded at all.
  return query
  with gens as (
    select g.*, 'charge:' || g.id::text as charge_key from creditgate.generations as g
    where p_since is null or g.updated_at >= p_since or exists (
      select 1 from creditgate.ledger as x where x.generation_id = g.id and x.created_at >= p_since
    )
  ),
  refunds as (
    select g.id as generation_id, g.status, g.cost, g.actual_cost,
      coalesce(sum(r.amount), 0) as refunded, count(r.id) as entries
    from gens as g
    left join creditgate.ledger as r on r.charge_key = g.charge_key and r.entry_type = 'refund'
    group by g.id, g.status, g.cost, g.actual_cost
  ),
  bad as (
    select f.* from refunds as f
    where f.refunded > f.cost
       or (f.status in ('failed', 'canceled') and (f.refunded <> f.cost or f.entries <> 1))
       or (f.status = 'succeeded' and (
         f.actual_cost is null or f.refunded <> f.cost - f.actual_cost or f.entries > 1
       ))
       or (f.status in ('queued', 'running') and f.entries > 0)
  )
  select 'generation_refunds_match_outcome'::text, count(*),
    coalesce(jsonb_agg(to_jsonb(b) - 'rn') filter (where b.rn <= 5), '[]')
  from (select bad.*, row_number() over (order by bad.generation_id) as rn from bad) as b;

  -- Ops: running jobs whose lease ran out over 10 minutes ago (is the reaper running?), or
  -- that hold no lease at all (the lease lives in a private table, without a foreign key).
  return query
  with bad as (
    select g.id as generation_id, l.lease_owner, l.lease_expires_at, g.attempts
    from creditgate.generations as g
    left join creditgate_private.generation_leases as l on l.generation_id = g.id
    where g.status = 'running'
      and (l.lease_expires_at is null or l.lease_expires_at < now() - interval '10 minutes')
  )
  select 'stuck_leases'::text, count(*),
    coalesce(jsonb_agg(to_jsonb(b) - 'rn') filter (where b.rn <= 5), '[]')
  from (select bad.*, row_number() over (order by bad.lease_expires_at) as rn from bad) as b;

  -- Generations name an existing model (checked here rather than by a foreign key, whose
  -- check share-locked the model's row in every request for that model).
  return query
  with bad as (
    select g.id as generation_id, g.model_id, g.kind
    from creditgate.generations as g
    where (p_since is null or g.updated_at >= p_since)
      and not exists (select 1 from creditgate.models as m where m.id = g.model_id)
  )
  select 'generations_reference_models'::text, count(*),
    coalesce(jsonb_agg(to_jsonb(b) - 'rn') filter (where b.rn <= 5), '[]')
  from (select bad.*, row_number() over (order by bad.generation_id) as rn from bad) as b;

  -- Media belong to an existing generation of the same user.
  return query
  with bad as (
    select m.id as media_id, m.user_id, m.generation_id, g.user_id as generation_user_id
    from creditgate.media as m
    left join creditgate.generations as g on g.id = m.generation_id
    where (p_since is null or m.created_at >= p_since)
      and (g.id is null or g.user_id <> m.user_id)
  )
  select 'media_owned_like_generation'::text, count(*),
    coalesce(jsonb_agg(to_jsonb(b) - 'rn') filter (where b.rn <= 5), '[]')
  from (select bad.*, row_number() over (order by bad.media_id) as rn from bad) as b;

  -- Today's usage on each balance row (what daily caps read) equals today's generation
  -- charges in the ledger less their refunds.
  return query
  with today as (
    select (now() at time zone 'UTC')::date as day
  ),
  charged as (
    select l.user_id, l.amount - coalesce((
      select sum(r.amount) from creditgate.ledger as r where r.charge_key = l.idempotency_key
    ), 0) as net
    from creditgate.ledger as l, today as t
    where l.entry_type = 'spend'
      and l.generation_id is not null
      and l.created_at >= t.day::timestamp at time zone 'UTC'
      and (l.created_at at time zone 'UTC')::date = t.day
  ),
  derived as (
    select c.user_id, sum(c.net)::bigint as used from charged as c group by c.user_id
  ),
  bad as (
    select b.user_id,
      case when b.daily_used_on = t.day then b.daily_used::bigint else 0 end as daily_used,
      coalesce(d.used, 0) as ledger_used
    from creditgate.balances as b
    cross join today as t
    left join derived as d on d.user_id = b.user_id
    where (b.daily_used_on = t.day or d.user_id is not null)
      and (case when b.daily_used_on = t.day then b.daily_used::bigint else 0 end)
          <> coalesce(d.used, 0)
  )
  select 'daily_usage_matches_ledger'::text, count(*),
    coalesce(jsonb_agg(to_jsonb(b) - 'rn') filter (where b.rn <= 5), '[]')
  from (select bad.*, row_number() over (order by bad.user_id) as rn from bad) as b;

  -- Deleted accounts hold nothing: no credits, no media rows, no work waiting to run, no
  -- personal data on their generations (running work may still settle; it keeps nothing).
  return query
  with deleted as (
    select d.user_id,
      coalesce((select b.balance::bigint from creditgate.balances as b where b.user_id = d.user_id), 0)
        as balance,
      (select count(*) from creditgate.media as m where m.user_id = d.user_id) as media,
      (select count(*) from creditgate.generations as g
       where g.user_id = d.user_id
         and (g.status = 'queued' or g.params <> '{}'::jsonb or g.output is not null))
      + (select count(*) from creditgate_private.generation_requests as r
         where r.user_id = d.user_id and r.client_ip is not null) as generations
    from creditgate_private.deleted_users as d
    where p_since is null or d.deleted_at >= p_since
  ),
  bad as (
    select x.* from deleted as x
    where x.balance <> 0 or x.media > 0 or x.generations > 0
  )
  select 'deleted_users_hold_nothing'::text, count(*),
    coalesce(jsonb_agg(to_jsonb(b) - 'rn') filter (where b.rn <= 5), '[]')
  from (select bad.*, row_number() over (order by bad.user_id) as rn from bad) as b;
end
$$;
comment on function creditgate_private.audit_checks(timestamptz) is
'Every audit check: name, number of failures, up to five samples.';
revoke all on function creditgate_private.audit_checks(timestamptz) from public, anon, authenticated;

create or replace function creditgate.audit(since timestamptz default null)
returns jsonb
language sql
stable
security definer
set search_path = ''
as $$
  select jsonb_build_object(
    'ok', coalesce(bool_and(c.failures = 0), true),
    'checks', coalesce(jsonb_agg(jsonb_build_object(
      'name', c.name, 'failures', c.failures, 'samples', c.samples
    )), '[]')
  )
  from creditgate_private.audit_checks(since) as c;
$$;
comment on function creditgate.audit(timestamptz) is
'Checks every money invariant; {ok, checks: [{name, failures, samples}]}. For operators and tests.';
revoke all on function creditgate.audit(timestamptz) from public, anon, authenticated;
grant execute on function creditgate.audit(timestamptz) to service_role;
