-- Private money primitives. Every credit movement in creditgate goes through these.
--
-- Locking: the caller's balances row is locked first (lock_balance) and held to commit;
-- every other row a primitive touches belongs to that user, so per-user work serializes
-- on one row and multi-user work (the expiry sweep) locks users in user_id order. Then
-- find_entry locks the idempotency key (a transaction advisory lock), so two users' calls
-- with one key take turns too; nothing waits for a balance while holding a key.
--
-- require_user() -> uuid                         PT401 not_authenticated (also a deleted account)
-- require_admin() -> uuid                        PT401, PT403 forbidden
-- check_key(p_key)                               PT400 invalid_request
-- lock_balance(p_user_id, p_create) -> bigint    PT404 not_found
-- find_entry(p_key, p_request_hash) -> ledger    PT409 idempotency_key_reused
-- post_entry(...) -> ledger                      (caller holds the balance lock, key is free)
-- move_lots(p_entry_id, p_user_id, p_amount, p_now, p_paid_first) -> bigint
-- available_credits(p_user_id, p_now) -> bigint
-- grant_credits(...) -> jsonb                    PT400, PT404, PT409
-- spend_credits(...) -> jsonb                    PT400, PT402, PT404, PT409
-- refund_credits(...) -> jsonb                   PT400, PT404, PT409
-- collect_owed(p_user_id, p_source_id, p_amount, p_now) -> bigint
--                                                (caller holds the balance lock)
-- owed_paid(p_entry) -> jsonb                     what collect_owed took after an entry
-- take_clawback(...) -> jsonb                     (caller holds the balance and key locks)

create or replace function creditgate_private.require_user()
returns uuid
language plpgsql
stable
set search_path = ''
as $$
declare
  v_user_id uuid := auth.uid();
begin
  if v_user_id is null then
    perform creditgate_private.raise_error('not_authenticated');
  end if;
  -- A deleted account's JWT stays valid until it expires; it may do nothing. (The lookup
  -- is written out, not a call of user_deleted(): one function call less per request.)
  if exists (select 1 from creditgate_private.deleted_users as d where d.user_id = v_user_id) then
    perform creditgate_private.raise_error(
      'not_authenticated', jsonb_build_object('reason', 'account_deleted')
    );
  end if;
  return v_user_id;
end
$$;
comment on function creditgate_private.require_user() is
'The calling user from the verified JWT (auth.uid()), or PT401 (none, or a deleted account).';

create or replace function creditgate_private.require_admin()
returns uuid
language plpgsql
stable
set search_path = ''
as $$
declare
  v_user_id uuid := creditgate_private.require_user();
begin
  if not exists (select 1 from creditgate_private.admins as a where a.user_id = v_user_id) then
    perform creditgate_private.raise_error('forbidden', jsonb_build_object('requires', 'admin'));
  end if;
  return v_user_id;
end
$$;
comment on function creditgate_private.require_admin() is
'The caller if listed in creditgate_private.admins, else PT403. JWT metadata is never read.';

create or replace function creditgate_private.check_key(p_key text, p_field text default 'idempotency_key')
returns void
language plpgsql
immutable
set search_path = ''
as $$
begin
  if p_key is null or length(p_key) not between 1 and 200 or p_key !~ '^[\x21-\x7e]+$' then
    perform creditgate_private.invalid(p_field, '1-200 printable ASCII characters, no spaces');
  end if;
end
$$;
comment on function creditgate_private.check_key(text, text) is
'Idempotency keys: 1-200 printable ASCII characters.';

create or replace function creditgate_private.lock_balance(p_user_id uuid, p_create boolean default false)
returns bigint
language plpgsql
set search_path = ''
as $$
declare
  v_balance bigint;
begin
  select b.balance into v_balance
  from creditgate.balances as b
  where b.user_id = p_user_id
  for update;
  if found then
    return v_balance;
  end if;
  if not p_create or not exists (select 1 from auth.users as u where u.id = p_user_id) then
    perform creditgate_private.raise_error('not_found', jsonb_build_object('object', 'user'));
  end if;
  insert into creditgate.balances (user_id) values (p_user_id) on conflict (user_id) do nothing;
  select b.balance into v_balance
  from creditgate.balances as b
  where b.user_id = p_user_id
  for update;
  return v_balance;
end
$$;
comment on function creditgate_private.lock_balance(uuid, boolean) is
'Locks the user''s balance row (creating it for known users when asked): the per-user mutex.';

create or replace function creditgate_private.find_entry(p_key text, p_request_hash text)
returns creditgate.ledger
language plpgsql
set search_path = ''
as $$
declare
  v_entry creditgate.ledger;
begin
  -- The key's own lock, held to commit. Calls for one user already take turns on the
  -- balance lock; calls of two users with one key hold different balance locks, so they
  -- take turns here instead, and the later one finds the earlier one's entry below (a new
  -- statement: a new snapshot) and gets PT409, not the ledger's unique violation.
  -- Advisory locks of class 1667720057 ('cgky') are creditgate's: key hashes may collide,
  -- which only makes two unrelated keys wait for each other.
  perform pg_catalog.pg_advisory_xact_lock(1667720057, pg_catalog.hashtext(p_key));
  select l.* into v_entry from creditgate.ledger as l where l.idempotency_key = p_key;
  if found and v_entry.request_hash <> p_request_hash then
    perform creditgate_private.raise_error(
      'idempotency_key_reused', jsonb_build_object('idempotency_key', p_key)
    );
  end if;
  return v_entry;
end
$$;
comment on function creditgate_private.find_entry(text, text) is
'Locks the key to commit; the entry already posted under it (replay), PT409 if posted for another request.';

create or replace function creditgate_private.available_credits(p_user_id uuid, p_now timestamptz)
returns bigint
language plpgsql
stable
set search_path = ''
as $$
declare
  v_available bigint;
begin
  -- plpgsql rather than sql throughout this file: plpgsql caches its plans per session,
  -- a non-inlined sql function is parsed and planned again on every call.
  select coalesce(sum(l.remaining), 0)::bigint into v_available
  from creditgate.credit_lots as l
  where l.user_id = p_user_id
    and l.live
    and (l.expires_at is null or l.expires_at > p_now);
  return v_available;
end
$$;
comment on function creditgate_private.available_credits(uuid, timestamptz) is
'Spendable credits: lots with something left that have not expired at p_now.';

create or replace function creditgate_private.post_entry(
  p_user_id uuid,
  p_entry_type text,
  p_amount bigint,
  p_key text,
  p_request_hash text,
  p_charge_key text default null,
  p_generation_id uuid default null,
  p_reason text default null,
  p_metadata jsonb default '{}'
) returns creditgate.ledger
language plpgsql
set search_path = ''
as $$
declare
  v_entry creditgate.ledger;
begin
  -- delta and balance_after are set, and the balance moved, by the ledger's BEFORE INSERT
  -- trigger. The caller holds the balance lock and has found the key free (find_entry,
  -- which also holds the key's lock, or the expiry sweep's own keys).
  insert into creditgate.ledger (
    user_id, entry_type, amount, delta, balance_after, idempotency_key, request_hash,
    charge_key, generation_id, reason, metadata
  ) values (
    p_user_id, p_entry_type, p_amount, 0, 0, p_key, p_request_hash,
    p_charge_key, p_generation_id, p_reason, coalesce(p_metadata, '{}')
  )
  returning * into v_entry;
  return v_entry;
end
$$;
comment on function creditgate_private.post_entry(uuid, text, bigint, text, text, text, uuid, text, jsonb) is
'Appends one ledger entry (its trigger moves the cached balance). Caller holds the balance lock.';

create or replace function creditgate_private.move_lots(
  p_entry_id bigint,
  p_user_id uuid,
  p_amount bigint,
  p_now timestamptz,
  p_paid_first boolean default false
) returns bigint
language plpgsql
set search_path = ''
as $$
declare
  v_moved bigint;
begin
  -- Burn order (DESIGN §3): priority, soonest expiry (never-expiring last), promotional
  -- before paid, oldest first. Clawbacks take paid credits first.
  with ordered as (
    select
      l.id,
      l.remaining,
      sum(l.remaining) over (
        order by
          case when p_paid_first then l.category = 'paid' end desc nulls last,
          l.priority, l.expires_at nulls last, l.category desc, l.created_at, l.id
      ) as running
    from creditgate.credit_lots as l
    where l.user_id = p_user_id
      and l.live
      and (l.expires_at is null or l.expires_at > p_now)
  ),
  taken as (
    select o.id, least(o.remaining, p_amount - (o.running - o.remaining)) as n
    from ordered as o
    where o.running - o.remaining < p_amount
  ),
  updated as (
    update creditgate.credit_lots as l
    set remaining = l.remaining - t.n
    from taken as t
    where l.id = t.id
    returning l.id, t.n
  ),
  recorded as (
    insert into creditgate_private.lot_movements (ledger_id, lot_id, amount)
    select p_entry_id, u.id, -u.n from updated as u
    returning amount
  )
  select coalesce(-sum(r.amount), 0) into v_moved from recorded as r;
  if v_moved <> p_amount then
    raise exception 'lots of user % cover % of %', p_user_id, v_moved, p_amount;
  end if;
  return v_moved;
end
$$;
comment on function creditgate_private.move_lots(bigint, uuid, bigint, timestamptz, boolean) is
'Takes p_amount from the user''s unexpired lots in burn order and records the movements.';

create or replace function creditgate_private.entry_json(p_entry creditgate.ledger, p_replayed boolean)
returns jsonb
language plpgsql
immutable
set search_path = ''
as $$
begin
  return jsonb_build_object(
    'entry_id', p_entry.id,
    'entry_type', p_entry.entry_type,
    'amount', p_entry.amount,
    'balance', p_entry.balance_after,
    'replayed', p_replayed
  );
end
$$;
comment on function creditgate_private.entry_json(creditgate.ledger, boolean) is
'The result returned for a posted (or replayed) entry: the original figures.';

create or replace function creditgate_private.grant_credits(
  p_user_id uuid,
  p_amount bigint,
  p_entry_type text,
  p_key text,
  p_category text default 'promotional',
  p_expires_at timestamptz default null,
  p_priority integer default 50,
  p_reason text default null,
  p_metadata jsonb default '{}',
  p_request_hash text default null,
  p_now timestamptz default now()
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_hash text;
  v_entry creditgate.ledger;
  v_lot_id uuid;
begin
  if p_user_id is null then
    perform creditgate_private.invalid('user_id', 'required');
  end if;
  if p_amount is null or p_amount <= 0 then
    perform creditgate_private.invalid('amount', 'must be a positive integer');
  end if;
  if p_entry_type is null
     or p_entry_type not in ('signup_bonus', 'purchase', 'grant', 'admin_recharge') then
    perform creditgate_private.invalid(
      'entry_type', 'one of signup_bonus, purchase, grant, admin_recharge'
    );
  end if;
  if p_category is null or p_category not in ('paid', 'promotional') then
    perform creditgate_private.invalid('category', 'paid or promotional');
  end if;
  if p_priority is null or p_priority not between 0 and 100 then
    perform creditgate_private.invalid('priority', 'between 0 and 100');
  end if;
  perform creditgate_private.check_key(p_key);
  v_hash := coalesce(p_request_hash, md5(jsonb_build_array(
    'grant', p_user_id, p_amount, p_entry_type, p_category, p_expires_at, p_priority
  )::text));

  perform creditgate_private.lock_balance(p_user_id, true);
  v_entry := creditgate_private.find_entry(p_key, v_hash);
  if v_entry.id is null then
    -- A deleted account keeps nothing (its balance was forfeited): no new credits either.
    if creditgate_private.user_deleted(p_user_id) then
      perform creditgate_private.raise_error('not_found', jsonb_build_object('object', 'user'));
    end if;
    if p_expires_at is not null and p_expires_at <= p_now then
      perform creditgate_private.invalid('expires_at', 'must be in the future');
    end if;
    v_entry := creditgate_private.post_entry(
      p_user_id, p_entry_type, p_amount, p_key, v_hash, null, null, p_reason, p_metadata
    );
    insert into creditgate.credit_lots (
      user_id, category, priority, amount, remaining, expires_at, source_entry_id
    ) values (
      p_user_id, p_category, p_priority, p_amount, p_amount, p_expires_at, v_entry.id
    )
    returning id into v_lot_id;
    insert into creditgate_private.lot_movements (ledger_id, lot_id, amount)
    values (v_entry.id, v_lot_id, p_amount);
    -- Credits owed after a clawback are paid first (DESIGN §3, turn 2).
    if creditgate_private.collect_owed(p_user_id, v_entry.id, p_amount, p_now) > 0 then
      return creditgate_private.entry_json(v_entry, false) || jsonb_build_object('lot_id', v_lot_id)
        || creditgate_private.owed_paid(v_entry);
    end if;
    return creditgate_private.entry_json(v_entry, false) || jsonb_build_object('lot_id', v_lot_id);
  end if;
  select l.id into v_lot_id from creditgate.credit_lots as l where l.source_entry_id = v_entry.id;
  return creditgate_private.entry_json(v_entry, true) || jsonb_build_object('lot_id', v_lot_id)
    || creditgate_private.owed_paid(v_entry);
end
$$;
comment on function creditgate_private.grant_credits(uuid, bigint, text, text, text, timestamptz, integer, text, jsonb, text, timestamptz) is
'Posts a credit entry and the lot it creates; a replayed key returns the original result.';

create or replace function creditgate_private.spend_credits(
  p_user_id uuid,
  p_amount bigint,
  p_key text,
  p_generation_id uuid default null,
  p_reason text default null,
  p_metadata jsonb default '{}',
  p_now timestamptz default now()
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_hash text;
  v_entry creditgate.ledger;
  v_available bigint;
  v_lot_id uuid;
  v_remaining bigint;
begin
  -- The charge path of every generation (docs/benchmarks.md).
  if p_amount is null or p_amount <= 0 then
    perform creditgate_private.invalid('amount', 'must be a positive integer');
  end if;
  perform creditgate_private.check_key(p_key);
  v_hash := md5(jsonb_build_array('spend', p_user_id, p_amount, p_generation_id)::text);

  perform creditgate_private.lock_balance(p_user_id);
  v_entry := creditgate_private.find_entry(p_key, v_hash);
  if v_entry.id is not null then
    return creditgate_private.entry_json(v_entry, true);
  end if;

  -- Most charges fit in the first lot in burn order: take it with simple statements.
  -- (live = remaining > 0: the index behind this lists only lots that can still pay.)
  select l.id, l.remaining into v_lot_id, v_remaining
  from creditgate.credit_lots as l
  where l.user_id = p_user_id
    and l.live
    and (l.expires_at is null or l.expires_at > p_now)
  order by l.priority, l.expires_at nulls last, l.category desc, l.created_at, l.id
  limit 1;
  if v_remaining >= p_amount then
    update creditgate.credit_lots as l set remaining = l.remaining - p_amount where l.id = v_lot_id;
    v_entry := creditgate_private.post_entry(
      p_user_id, 'spend', p_amount, p_key, v_hash, null, p_generation_id, p_reason, p_metadata
    );
    insert into creditgate_private.lot_movements (ledger_id, lot_id, amount)
    values (v_entry.id, v_lot_id, -p_amount);
    return creditgate_private.entry_json(v_entry, false);
  end if;

  -- Otherwise the lots in burn order (move_lots), once unexpired ones are known to cover it.
  v_available := creditgate_private.available_credits(p_user_id, p_now);
  if v_available < p_amount then
    perform creditgate_private.raise_error(
      'insufficient_credits',
      jsonb_build_object('required', p_amount, 'available', v_available)
    );
  end if;
  v_entry := creditgate_private.post_entry(
    p_user_id, 'spend', p_amount, p_key, v_hash, null, p_generation_id, p_reason, p_metadata
  );
  perform creditgate_private.move_lots(v_entry.id, p_user_id, p_amount, p_now);
  return creditgate_private.entry_json(v_entry, false);
end
$$;
comment on function creditgate_private.spend_credits(uuid, bigint, text, uuid, text, jsonb, timestamptz) is
'Charges p_amount under key p_key (the charge key), burning lots in order. PT402 if short.';

create or replace function creditgate_private.refund_credits(
  p_user_id uuid,
  p_charge_key text,
  p_amount bigint,
  p_key text,
  p_reason text default null,
  p_metadata jsonb default '{}'
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_hash text;
  v_entry creditgate.ledger;
  v_charge creditgate.ledger;
  v_refunded bigint;
  v_amount bigint;
  v_returned bigint;
begin
  if p_amount is null or p_amount <= 0 then
    perform creditgate_private.invalid('amount', 'must be a positive integer');
  end if;
  perform creditgate_private.check_key(p_key);
  perform creditgate_private.check_key(p_charge_key, 'charge_key');
  v_hash := md5(jsonb_build_array('refund', p_user_id, p_charge_key, p_amount)::text);

  perform creditgate_private.lock_balance(p_user_id);
  v_entry := creditgate_private.find_entry(p_key, v_hash);
  if v_entry.id is not null then
    return creditgate_private.entry_json(v_entry, true) || jsonb_build_object('refunded', v_entry.amount)
      || creditgate_private.owed_paid(v_entry);
  end if;

  select l.* into v_charge from creditgate.ledger as l where l.idempotency_key = p_charge_key;
  if v_charge.id is null or v_charge.entry_type <> 'spend' or v_charge.user_id <> p_user_id then
    perform creditgate_private.raise_error('not_found', jsonb_build_object('object', 'charge'));
  end if;
  select coalesce(sum(l.amount), 0) into v_refunded
  from creditgate.ledger as l
  where l.charge_key = p_charge_key;
  v_amount := least(p_amount, v_charge.amount - v_refunded);
  if v_amount <= 0 then
    -- Nothing left to refund on this charge: no entry, nothing moves.
    return jsonb_build_object(
      'entry_id', null, 'entry_type', 'refund', 'amount', 0, 'refunded', 0,
      'balance', (select b.balance from creditgate.balances as b where b.user_id = p_user_id),
      'replayed', false
    );
  end if;

  v_entry := creditgate_private.post_entry(
    p_user_id, 'refund', v_amount, p_key, v_hash, p_charge_key, v_charge.generation_id,
    p_reason, p_metadata
  );
  -- Return credits to the lots that paid, last-burned first (the reverse burn order),
  -- never more to a lot than this charge still holds of it. Expired lots get theirs back
  -- too; the expiry sweep then expires them, as it would have without the charge.
  with open_per_lot as (
    select m.lot_id, -sum(m.amount) as open
    from creditgate_private.lot_movements as m
    join creditgate.ledger as e on e.id = m.ledger_id
    where e.id = v_charge.id or e.charge_key = p_charge_key
    group by m.lot_id
    having -sum(m.amount) > 0
  ),
  ordered as (
    select
      o.lot_id,
      o.open,
      sum(o.open) over (
        order by l.priority desc, l.expires_at desc nulls first, l.category, l.created_at desc, l.id desc
      ) as running
    from open_per_lot as o
    join creditgate.credit_lots as l on l.id = o.lot_id
  ),
  given as (
    select o.lot_id, least(o.open, v_amount - (o.running - o.open)) as n
    from ordered as o
    where o.running - o.open < v_amount
  ),
  updated as (
    update creditgate.credit_lots as l
    set remaining = l.remaining + g.n
    from given as g
    where l.id = g.lot_id
    returning l.id, g.n
  ),
  recorded as (
    insert into creditgate_private.lot_movements (ledger_id, lot_id, amount)
    select v_entry.id, u.id, u.n from updated as u
    returning amount
  )
  select coalesce(sum(r.amount), 0) into v_returned from recorded as r;
  if v_returned <> v_amount then
    raise exception 'refund % of charge % returned % to lots', v_amount, p_charge_key, v_returned;
  end if;
  -- A refund of work charged before a clawback pays what is owed first: credits that work
  -- held when the dispute came never come back spendable.
  if creditgate_private.collect_owed(p_user_id, v_entry.id, v_amount, now()) > 0 then
    return creditgate_private.entry_json(v_entry, false) || jsonb_build_object('refunded', v_amount)
      || creditgate_private.owed_paid(v_entry);
  end if;
  return creditgate_private.entry_json(v_entry, false) || jsonb_build_object('refunded', v_amount);
end
$$;
comment on function creditgate_private.refund_credits(uuid, text, bigint, text, text, jsonb) is
'Refunds up to what charge p_charge_key still holds, once per key, back into its lots.';

create or replace function creditgate_private.collect_owed(
  p_user_id uuid,
  p_source_id bigint,
  p_amount bigint,
  p_now timestamptz
) returns bigint
language plpgsql
set search_path = ''
as $$
declare
  v_owed bigint;
  v_left bigint;
  v_open record;
  v_take bigint;
  v_entry creditgate.ledger;
  v_paid bigint := 0;
begin
  -- Called by every primitive that credits the user (grants, purchases, refunds, a won
  -- dispute's return), after its entry is posted, with the balance lock held. While the
  -- user owes credits nothing else is spendable (a clawback took all of it, and each
  -- collection takes all that arrived or all that is owed), so what is spendable now is
  -- what just arrived: it pays the oldest open shortfalls first, one clawback entry per
  -- dispute, each tied to it by its key and metadata.
  select b.owed into v_owed from creditgate.balances as b where b.user_id = p_user_id;
  if coalesce(v_owed, 0) = 0 then
    return 0;
  end if;
  v_left := least(v_owed, p_amount, creditgate_private.available_credits(p_user_id, p_now));
  for v_open in
    select c.idempotency_key, c.requested - c.taken - c.collected - c.cancelled as open
    from creditgate_private.clawbacks as c
    where c.user_id = p_user_id
      and c.collected + c.cancelled < c.requested - c.taken
    order by c.created_at, c.idempotency_key
    for update
  loop
    exit when v_left <= 0;
    v_take := least(v_left, v_open.open);
    v_entry := creditgate_private.post_entry(
      p_user_id, 'clawback', v_take,
      'owed:' || p_source_id::text || ':' || v_open.idempotency_key,
      md5(jsonb_build_array('owed', p_user_id, p_source_id, v_open.idempotency_key, v_take)::text),
      null, null, 'owed after a clawback',
      jsonb_build_object('clawback_key', v_open.idempotency_key, 'paid_from_entry_id', p_source_id)
    );
    perform creditgate_private.move_lots(v_entry.id, p_user_id, v_take, p_now, true);
    update creditgate_private.clawbacks as c
    set collected = c.collected + v_take
    where c.idempotency_key = v_open.idempotency_key;
    v_left := v_left - v_take;
    v_paid := v_paid + v_take;
  end loop;
  if v_paid > 0 then
    update creditgate.balances as b set owed = b.owed - v_paid where b.user_id = p_user_id;
  end if;
  return v_paid;
end
$$;
comment on function creditgate_private.collect_owed(uuid, bigint, bigint, timestamptz) is
'Pays what the user owes after clawbacks from credits that just arrived (entry p_source_id), oldest shortfall first.';

create or replace function creditgate_private.owed_paid(p_entry creditgate.ledger)
returns jsonb
language plpgsql
stable
set search_path = ''
as $$
declare
  v_paid bigint;
  v_balance bigint;
begin
  -- Collections are posted in the credit's own transaction, so they share its created_at
  -- (the ledger's per-user index finds them). Nothing collected: no keys added, so results
  -- stay as they were before owed credits existed.
  select sum(l.amount), (array_agg(l.balance_after order by l.id desc))[1]
  into v_paid, v_balance
  from creditgate.ledger as l
  where l.user_id = p_entry.user_id
    and l.created_at = p_entry.created_at
    and l.id > p_entry.id
    and l.entry_type = 'clawback'
    and l.metadata ->> 'paid_from_entry_id' = p_entry.id::text;
  if v_paid is null then
    return '{}'::jsonb;
  end if;
  return jsonb_build_object('owed_paid', v_paid, 'balance', v_balance);
end
$$;
comment on function creditgate_private.owed_paid(creditgate.ledger) is
'What collect_owed took after a credit entry and the balance it left ({} if nothing): part of the entry''s result, replays too.';

create or replace function creditgate_private.take_clawback(
  p_user_id uuid,
  p_key text,
  p_hash text,
  p_amount bigint,
  p_reason text,
  p_metadata jsonb,
  p_kind text default 'clawback',
  p_payment_id text default null,
  p_payment_amount bigint default null,
  p_amount_refunded bigint default null,
  p_payment_credits bigint default null,
  p_now timestamptz default now()
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_taken bigint := 0;
  v_entry creditgate.ledger;
  v_balance bigint;
begin
  -- The caller holds the balance lock and the key's lock and found no clawback under the
  -- key. Takes what is spendable now (paid lots first); the rest is owed.
  if p_amount > 0 then
    v_taken := least(p_amount, creditgate_private.available_credits(p_user_id, p_now));
  end if;
  if v_taken > 0 then
    v_entry := creditgate_private.post_entry(
      p_user_id, 'clawback', v_taken, p_key, p_hash, null, null, p_reason, p_metadata
    );
    perform creditgate_private.move_lots(v_entry.id, p_user_id, v_taken, p_now, true);
  end if;
  insert into creditgate_private.clawbacks (
    idempotency_key, user_id, requested, taken, ledger_id, reason, kind, payment_id,
    payment_amount, amount_refunded, payment_credits
  ) values (
    p_key, p_user_id, p_amount, v_taken, v_entry.id, p_reason, p_kind, p_payment_id,
    p_payment_amount, p_amount_refunded, p_payment_credits
  )
  on conflict (idempotency_key) do nothing;
  if not found then
    -- Unreachable while the caller holds the key's lock (kept so a clawback can never be
    -- recorded twice). Nothing of this call survives the error.
    perform creditgate_private.raise_error(
      'idempotency_key_reused', jsonb_build_object('idempotency_key', p_key)
    );
  end if;
  update creditgate.balances as b
  set owed = b.owed + (p_amount - v_taken)
  where b.user_id = p_user_id
  returning b.balance into v_balance;
  return jsonb_build_object(
    'requested', p_amount, 'taken', v_taken, 'shortfall', p_amount - v_taken,
    'entry_id', v_entry.id, 'balance', v_balance, 'replayed', false
  );
end
$$;
comment on function creditgate_private.take_clawback(uuid, text, text, bigint, text, jsonb, text, text, bigint, bigint, bigint, timestamptz) is
'Takes back up to p_amount of what is spendable (paid first), records the clawback and adds the rest to what is owed.';

revoke all on function creditgate_private.require_user() from public, anon, authenticated;
revoke all on function creditgate_private.require_admin() from public, anon, authenticated;
revoke all on function creditgate_private.check_key(text, text) from public, anon, authenticated;
revoke all on function creditgate_private.lock_balance(uuid, boolean) from public, anon, authenticated;
revoke all on function creditgate_private.find_entry(text, text) from public, anon, authenticated;
revoke all on function creditgate_private.available_credits(uuid, timestamptz) from public, anon, authenticated;
revoke all on function creditgate_private.post_entry(uuid, text, bigint, text, text, text, uuid, text, jsonb) from public, anon, authenticated;
revoke all on function creditgate_private.move_lots(bigint, uuid, bigint, timestamptz, boolean) from public, anon, authenticated;
revoke all on function creditgate_private.entry_json(creditgate.ledger, boolean) from public, anon, authenticated;
revoke all on function creditgate_private.grant_credits(uuid, bigint, text, text, text, timestamptz, integer, text, jsonb, text, timestamptz) from public, anon, authenticated;
revoke all on function creditgate_private.spend_credits(uuid, bigint, text, uuid, text, jsonb, timestamptz) from public, anon, authenticated;
revoke all on function creditgate_private.refund_credits(uuid, text, bigint, text, text, jsonb) from public, anon, authenticated;
revoke all on function creditgate_private.collect_owed(uuid, bigint, bigint, timestamptz) from public, anon, authenticated;
revoke all on function creditgate_private.owed_paid(creditgate.ledger) from public, anon, authenticated;
revoke all on function creditgate_private.take_clawback(uuid, text, text, bigint, text, jsonb, text, text, bigint, bigint, bigint, timestamptz) from public, anon, authenticated;
