-- creditgate generated migration; do not edit. source: repeatables sha256: 33bf3a94c49e0330e69c0721bfa829541145df02ac91b70abe2239bc7581c96a

-- ===== db/functions/ledger/account.sql =====
-- creditgate.get_balance() -> jsonb {balance, available, plan, expiring, daily}   authenticated
-- creditgate.is_admin() -> boolean                                              authenticated
-- Errors: PT401 not_authenticated.

create or replace function creditgate_private.daily_usage(p_user_id uuid, p_plan text)
returns jsonb
language sql
stable
set search_path = ''
as $$
  -- Replaced by the generation lifecycle with real usage and plan caps.
  select jsonb_build_object('used', 0, 'cap', null);
$$;
comment on function creditgate_private.daily_usage(uuid, text) is
'Credits the user spent today and their plan''s daily cap.';
revoke all on function creditgate_private.daily_usage(uuid, text) from public, anon, authenticated;

create or replace function creditgate.get_balance()
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_user_id uuid := creditgate_private.require_user();
  v_balance bigint;
  v_plan text;
begin
  select b.balance, b.plan into v_balance, v_plan
  from creditgate.balances as b
  where b.user_id = v_user_id;
  return jsonb_build_object(
    'balance', coalesce(v_balance, 0),
    'available', creditgate_private.available_credits(v_user_id, now()),
    'plan', coalesce(v_plan, 'free'),
    'expiring', coalesce((
      select jsonb_agg(jsonb_build_object(
        'lot_id', l.id, 'amount', l.remaining, 'category', l.category, 'expires_at', l.expires_at
      ) order by l.expires_at, l.id)
      from creditgate.credit_lots as l
      where l.user_id = v_user_id
        and l.remaining > 0
        and l.expires_at > now()
        and l.expires_at <= now() + interval '30 days'
    ), '[]'::jsonb),
    'daily', creditgate_private.daily_usage(v_user_id, coalesce(v_plan, 'free'))
  );
end
$$;
comment on function creditgate.get_balance() is
'The caller''s balance, spendable credits, plan, lots expiring within 30 days, daily usage.';
revoke all on function creditgate.get_balance() from public, anon, authenticated;
grant execute on function creditgate.get_balance() to authenticated;

create or replace function creditgate.is_admin()
returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select exists (
    select 1 from creditgate_private.admins as a where a.user_id = (select auth.uid())
  );
$$;
comment on function creditgate.is_admin() is
'Whether the caller is an admin (creditgate_private.admins; never JWT metadata).';
revoke all on function creditgate.is_admin() from public, anon, authenticated;
grant execute on function creditgate.is_admin() to authenticated;

-- ===== db/functions/ledger/audit.sql =====
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
    coalesce(jsonb_agg(to_jsonb(b)) filter (where b.rn <= 5), '[]')
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
    coalesce(jsonb_agg(to_jsonb(b)) filter (where b.rn <= 5), '[]')
  from (select bad.*, row_number() over (order by bad.id) as rn from bad) as b;

  -- Each entry's lot movements add up to its delta; each lot's movements to its remaining.
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
    coalesce(jsonb_agg(to_jsonb(b)) filter (where b.rn <= 5), '[]')
  from (select bad.*, row_number() over (order by bad.entry_id) as rn from bad) as b;

  return query
  with bad as (
    select c.id as lot_id, c.remaining, coalesce(sum(m.amount), 0) as moved
    from creditgate.credit_lots as c
    left join creditgate_private.lot_movements as m on m.lot_id = c.id
    group by c.id, c.remaining
    having coalesce(sum(m.amount), 0) <> c.remaining
  )
  select 'lot_remaining_matches_movements'::text, count(*),
    coalesce(jsonb_agg(to_jsonb(b)) filter (where b.rn <= 5), '[]')
  from (select bad.*, row_number() over (order by bad.lot_id) as rn from bad) as b;

  -- Invariant 4: no ledger key applied twice (also holds if the unique index were dropped).
  return query
  with bad as (
    select l.idempotency_key, count(*) as entries
    from creditgate.ledger as l
    group by l.idempotency_key
    having count(*) > 1
  )
  select 'idempotency_keys_unique'::text, count(*),
    coalesce(jsonb_agg(to_jsonb(b)) filter (where b.rn <= 5), '[]')
  from (select bad.*, row_number() over () as rn from bad) as b;

  -- Invariant 3 (ledger side): refunds of a charge never exceed it.
  return query
  with bad as (
    select s.idempotency_key as charge_key, s.amount as charged, sum(r.amount) as refunded
    from creditgate.ledger as s
    join creditgate.ledger as r on r.charge_key = s.idempotency_key
    where s.entry_type = 'spend'
    group by s.idempotency_key, s.amount
    having sum(r.amount) > s.amount
  )
  select 'refunds_within_charge'::text, count(*),
    coalesce(jsonb_agg(to_jsonb(b)) filter (where b.rn <= 5), '[]')
  from (select bad.*, row_number() over () as rn from bad) as b;

  -- Clawback records agree with their ledger entries.
  return query
  with bad as (
    select c.idempotency_key, c.taken, l.amount as posted
    from creditgate_private.clawbacks as c
    left join creditgate.ledger as l on l.id = c.ledger_id
    where (c.taken > 0) <> (l.id is not null) or (l.id is not null and l.amount <> c.taken)
  )
  select 'clawbacks_match_ledger'::text, count(*),
    coalesce(jsonb_agg(to_jsonb(b)) filter (where b.rn <= 5), '[]')
  from (select bad.*, row_number() over () as rn from bad) as b;

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
    coalesce(jsonb_agg(to_jsonb(b)) filter (where b.rn <= 5), '[]')
  from (select bad.*, row_number() over () as rn from bad) as b;
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

-- ===== db/functions/ledger/expiry.sql =====
-- creditgate.service_expire_credits(now, max_lots) -> jsonb {users, lots, credits, more}   service_role
--   Posts one `expire` entry per lapsed lot with credits left (key expire:<lot_id>:<n>).
--   Expired credits are already unspendable (available_credits); this makes the ledger say so.
--   Users are locked in user_id order, so concurrent sweeps never deadlock.

create or replace function creditgate.service_expire_credits(
  now timestamptz default now(),
  max_lots integer default 10000
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_lot record;
  v_user_id uuid;
  v_remaining bigint;
  v_seq bigint;
  v_key text;
  v_entry creditgate.ledger;
  v_users integer := 0;
  v_lots integer := 0;
  v_credits bigint := 0;
begin
  if service_expire_credits.max_lots is null or service_expire_credits.max_lots < 1 then
    perform creditgate_private.invalid('max_lots', 'must be >= 1');
  end if;
  for v_lot in
    select l.id, l.user_id
    from creditgate.credit_lots as l
    where l.remaining > 0 and l.expires_at <= service_expire_credits.now
    order by l.user_id, l.id
    limit service_expire_credits.max_lots
  loop
    if v_user_id is distinct from v_lot.user_id then
      perform creditgate_private.lock_balance(v_lot.user_id);
      v_user_id := v_lot.user_id;
      v_users := v_users + 1;
    end if;
    -- Re-read under the user's lock: a spend may have emptied it meanwhile.
    select l.remaining into v_remaining from creditgate.credit_lots as l where l.id = v_lot.id;
    continue when v_remaining = 0;
    select count(*) + 1 into v_seq
    from creditgate_private.lot_movements as m
    join creditgate.ledger as e on e.id = m.ledger_id
    where m.lot_id = v_lot.id and e.entry_type = 'expire';
    v_key := format('expire:%s:%s', v_lot.id, v_seq);
    v_entry := creditgate_private.post_entry(
      v_lot.user_id, 'expire', v_remaining, v_key,
      md5(jsonb_build_array('expire', v_lot.id, v_seq)::text),
      null, null, 'credits expired', jsonb_build_object('lot_id', v_lot.id)
    );
    update creditgate.credit_lots as l set remaining = 0 where l.id = v_lot.id;
    insert into creditgate_private.lot_movements (ledger_id, lot_id, amount)
    values (v_entry.id, v_lot.id, -v_remaining);
    v_lots := v_lots + 1;
    v_credits := v_credits + v_remaining;
  end loop;
  return jsonb_build_object(
    'users', v_users, 'lots', v_lots, 'credits', v_credits,
    'more', exists (
      select 1 from creditgate.credit_lots as l
      where l.remaining > 0 and l.expires_at <= service_expire_credits.now
    )
  );
end
$$;
comment on function creditgate.service_expire_credits(timestamptz, integer) is
'Posts expire entries for lapsed lots (credits were unspendable from the instant they expired).';
revoke all on function creditgate.service_expire_credits(timestamptz, integer) from public, anon, authenticated;
grant execute on function creditgate.service_expire_credits(timestamptz, integer) to service_role;

-- ===== db/functions/ledger/grants.sql =====
-- creditgate.service_grant_credits(user_id, amount, entry_type, idempotency_key, category,
--   expires_at, priority, reason, metadata) -> jsonb            service_role only
-- creditgate.admin_add_credits(user_id, amount, reason, idempotency_key) -> jsonb
--                                                               authenticated, admin checked inside
-- Errors: PT400 invalid_request, PT401, PT403 forbidden, PT404 not_found (unknown user),
--         PT409 idempotency_key_reused.

create or replace function creditgate.service_grant_credits(
  user_id uuid,
  amount bigint,
  entry_type text,
  idempotency_key text,
  category text default 'promotional',
  expires_at timestamptz default null,
  priority integer default 50,
  reason text default null,
  metadata jsonb default '{}'
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
begin
  return creditgate_private.grant_credits(
    service_grant_credits.user_id,
    service_grant_credits.amount,
    service_grant_credits.entry_type,
    service_grant_credits.idempotency_key,
    service_grant_credits.category,
    service_grant_credits.expires_at,
    service_grant_credits.priority,
    service_grant_credits.reason,
    coalesce(service_grant_credits.metadata, '{}')
  );
end
$$;
comment on function creditgate.service_grant_credits(uuid, bigint, text, text, text, timestamptz, integer, text, jsonb) is
'Backend grant of credits (bonus, purchase, grant, admin_recharge) as a lot; idempotent by key.';
revoke all on function creditgate.service_grant_credits(uuid, bigint, text, text, text, timestamptz, integer, text, jsonb) from public, anon, authenticated;
grant execute on function creditgate.service_grant_credits(uuid, bigint, text, text, text, timestamptz, integer, text, jsonb) to service_role;

create or replace function creditgate.admin_add_credits(
  user_id uuid,
  amount bigint,
  reason text,
  idempotency_key text
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_admin_id uuid := creditgate_private.require_admin();
begin
  if admin_add_credits.reason is null or length(trim(admin_add_credits.reason)) = 0 then
    perform creditgate_private.invalid('reason', 'required');
  end if;
  perform creditgate_private.check_key(admin_add_credits.idempotency_key);
  -- Namespaced so an admin key can never collide with a system key (stripe:, signup:...).
  return creditgate_private.grant_credits(
    admin_add_credits.user_id,
    admin_add_credits.amount,
    'admin_recharge',
    'admin:' || admin_add_credits.idempotency_key,
    'promotional',
    null,
    50,
    admin_add_credits.reason,
    jsonb_build_object('admin_id', v_admin_id)
  );
end
$$;
comment on function creditgate.admin_add_credits(uuid, bigint, text, text) is
'Admin recharge of a user''s credits. Admin rights come from creditgate_private.admins only.';
revoke all on function creditgate.admin_add_credits(uuid, bigint, text, text) from public, anon, authenticated;
grant execute on function creditgate.admin_add_credits(uuid, bigint, text, text) to authenticated;

-- ===== db/functions/ledger/primitives.sql =====
-- Private money primitives. Every credit movement in creditgate goes through these.
--
-- Locking: the caller's balances row is locked first (lock_balance) and held to commit;
-- every other row a primitive touches belongs to that user, so per-user work serializes
-- on one row and multi-user work (the expiry sweep) locks users in user_id order.
--
-- require_user() -> uuid                         PT401 not_authenticated
-- require_admin() -> uuid                        PT401, PT403 forbidden
-- check_key(p_key)                               PT400 invalid_request
-- lock_balance(p_user_id, p_create) -> bigint    PT404 not_found
-- find_entry(p_key, p_request_hash) -> ledger    PT409 idempotency_key_reused
-- post_entry(...) -> ledger                      PT409 idempotency_key_reused (racing key)
-- move_lots(p_entry_id, p_user_id, p_amount, p_now, p_paid_first) -> bigint
-- available_credits(p_user_id, p_now) -> bigint
-- grant_credits(...) -> jsonb                    PT400, PT404, PT409
-- spend_credits(...) -> jsonb                    PT400, PT402, PT404, PT409
-- refund_credits(...) -> jsonb                   PT400, PT404, PT409

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
  return v_user_id;
end
$$;
comment on function creditgate_private.require_user() is
'The calling user from the verified JWT (auth.uid()), or PT401.';

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
stable
set search_path = ''
as $$
declare
  v_entry creditgate.ledger;
begin
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
'The entry already posted under a key (replay), PT409 if it was posted for another request.';

create or replace function creditgate_private.available_credits(p_user_id uuid, p_now timestamptz)
returns bigint
language sql
stable
set search_path = ''
as $$
  select coalesce(sum(l.remaining), 0)::bigint
  from creditgate.credit_lots as l
  where l.user_id = p_user_id
    and l.remaining > 0
    and (l.expires_at is null or l.expires_at > p_now);
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
  -- delta and balance_after are set by the ledger's BEFORE INSERT trigger.
  insert into creditgate.ledger (
    user_id, entry_type, amount, delta, balance_after, idempotency_key, request_hash,
    charge_key, generation_id, reason, metadata
  ) values (
    p_user_id, p_entry_type, p_amount, 0, 0, p_key, p_request_hash,
    p_charge_key, p_generation_id, p_reason, coalesce(p_metadata, '{}')
  )
  on conflict (idempotency_key) do nothing
  returning * into v_entry;
  if v_entry.id is null then
    -- Another user's transaction took this key first (same-user calls serialize on the
    -- balance lock and are caught by find_entry before getting here).
    perform creditgate_private.raise_error(
      'idempotency_key_reused', jsonb_build_object('idempotency_key', p_key)
    );
  end if;
  update creditgate.balances as b
  set balance = v_entry.balance_after, updated_at = now()
  where b.user_id = p_user_id;
  return v_entry;
end
$$;
comment on function creditgate_private.post_entry(uuid, text, bigint, text, text, text, uuid, text, jsonb) is
'Appends one ledger entry and moves the cached balance with it. Caller holds the balance lock.';

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
      and l.remaining > 0
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
language sql
immutable
set search_path = ''
as $$
  select jsonb_build_object(
    'entry_id', p_entry.id,
    'entry_type', p_entry.entry_type,
    'amount', p_entry.amount,
    'balance', p_entry.balance_after,
    'replayed', p_replayed
  );
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
    return creditgate_private.entry_json(v_entry, false) || jsonb_build_object('lot_id', v_lot_id);
  end if;
  select l.id into v_lot_id from creditgate.credit_lots as l where l.source_entry_id = v_entry.id;
  return creditgate_private.entry_json(v_entry, true) || jsonb_build_object('lot_id', v_lot_id);
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
begin
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
    return creditgate_private.entry_json(v_entry, true) || jsonb_build_object('refunded', v_entry.amount);
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
  return creditgate_private.entry_json(v_entry, false) || jsonb_build_object('refunded', v_amount);
end
$$;
comment on function creditgate_private.refund_credits(uuid, text, bigint, text, text, jsonb) is
'Refunds up to what charge p_charge_key still holds, once per key, back into its lots.';

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

-- ===== db/functions/ledger/signup.sql =====
-- creditgate_private.tg_users__after_insert(): AFTER INSERT on auth.users.
-- Creates the balance row and grants the signup bonus (setting signup_bonus, default 1000,
-- key signup:<user_id>, promotional). Runs as the definer because Supabase inserts users
-- as supabase_auth_admin, which has no rights on creditgate tables.

create or replace function creditgate_private.tg_users__after_insert()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_bonus bigint := coalesce((creditgate_private.setting('signup_bonus'))::bigint, 0);
  v_days numeric := (creditgate_private.setting('signup_bonus_expires_days') #>> '{}')::numeric;
begin
  insert into creditgate.balances (user_id) values (new.id) on conflict (user_id) do nothing;
  if v_bonus > 0 then
    perform creditgate_private.grant_credits(
      new.id, v_bonus, 'signup_bonus', 'signup:' || new.id::text, 'promotional',
      now() + make_interval(days => v_days::integer), 50, 'signup bonus'
    );
  end if;
  return null;
end
$$;
comment on function creditgate_private.tg_users__after_insert() is
'New auth user: balance row plus the signup bonus, exactly once per user.';
revoke all on function creditgate_private.tg_users__after_insert() from public, anon, authenticated;

create or replace trigger creditgate_on_auth_user_created
after insert on auth.users
for each row execute function creditgate_private.tg_users__after_insert();

-- ===== db/functions/ledger/stripe.sql =====
-- creditgate.service_apply_checkout(event_id, user_id, price_id, quantity) -> jsonb   service_role
--   Credits for a paid Stripe checkout; amount from creditgate.credit_packs; key stripe:<event_id>.
-- creditgate.service_clawback(event_id, user_id, amount, reason) -> jsonb              service_role
--   Stripe refund or dispute: takes back up to what is spendable (paid lots first) and
--   records the shortfall in creditgate_private.clawbacks.
-- Errors: PT400 invalid_request, PT404 not_found (unknown price or user), PT409 idempotency_key_reused.

create or replace function creditgate.service_apply_checkout(
  event_id text,
  user_id uuid,
  price_id text,
  quantity integer default 1
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_pack creditgate.credit_packs;
  v_key text;
  v_hash text;
  v_result jsonb;
begin
  perform creditgate_private.check_key(service_apply_checkout.event_id, 'event_id');
  if service_apply_checkout.quantity is null or service_apply_checkout.quantity not between 1 and 1000 then
    perform creditgate_private.invalid('quantity', 'between 1 and 1000');
  end if;
  select p.* into v_pack
  from creditgate.credit_packs as p
  where p.stripe_price_id = service_apply_checkout.price_id;
  if v_pack.id is null then
    perform creditgate_private.raise_error(
      'not_found', jsonb_build_object('object', 'credit_pack', 'price_id', service_apply_checkout.price_id)
    );
  end if;
  v_key := 'stripe:' || service_apply_checkout.event_id;
  -- The request is the event itself; the lot's expiry is derived from the pack at first
  -- delivery, so a retry hours later still matches.
  v_hash := md5(jsonb_build_array(
    'checkout', service_apply_checkout.user_id, service_apply_checkout.price_id,
    service_apply_checkout.quantity
  )::text);
  v_result := creditgate_private.grant_credits(
    service_apply_checkout.user_id,
    v_pack.credits * service_apply_checkout.quantity,
    'purchase',
    v_key,
    v_pack.category,
    now() + v_pack.expires_after,
    v_pack.priority,
    'stripe checkout',
    jsonb_build_object(
      'event_id', service_apply_checkout.event_id, 'price_id', service_apply_checkout.price_id,
      'pack_id', v_pack.id, 'quantity', service_apply_checkout.quantity
    ),
    v_hash
  );
  return v_result || jsonb_build_object('pack_id', v_pack.id, 'credits', v_result -> 'amount');
end
$$;
comment on function creditgate.service_apply_checkout(text, uuid, text, integer) is
'Applies a paid Stripe checkout once per event: credits come from credit_packs, never the client.';
revoke all on function creditgate.service_apply_checkout(text, uuid, text, integer) from public, anon, authenticated;
grant execute on function creditgate.service_apply_checkout(text, uuid, text, integer) to service_role;

create or replace function creditgate.service_clawback(
  event_id text,
  user_id uuid,
  amount bigint,
  reason text
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_key text;
  v_hash text;
  v_prior creditgate_private.clawbacks;
  v_taken bigint;
  v_entry creditgate.ledger;
  v_balance bigint;
begin
  perform creditgate_private.check_key(service_clawback.event_id, 'event_id');
  if service_clawback.amount is null or service_clawback.amount <= 0 then
    perform creditgate_private.invalid('amount', 'must be a positive integer');
  end if;
  v_key := 'stripe:' || service_clawback.event_id;
  v_hash := md5(jsonb_build_array('clawback', service_clawback.user_id, service_clawback.amount)::text);

  v_balance := creditgate_private.lock_balance(service_clawback.user_id);
  select c.* into v_prior from creditgate_private.clawbacks as c where c.idempotency_key = v_key;
  if v_prior.idempotency_key is not null then
    if v_prior.user_id <> service_clawback.user_id or v_prior.requested <> service_clawback.amount then
      perform creditgate_private.raise_error(
        'idempotency_key_reused', jsonb_build_object('idempotency_key', v_key)
      );
    end if;
    return jsonb_build_object(
      'requested', v_prior.requested, 'taken', v_prior.taken, 'shortfall', v_prior.shortfall,
      'entry_id', v_prior.ledger_id,
      'balance', coalesce((select l.balance_after from creditgate.ledger as l where l.id = v_prior.ledger_id), v_balance),
      'replayed', true
    );
  end if;

  v_taken := least(service_clawback.amount, creditgate_private.available_credits(service_clawback.user_id, now()));
  if v_taken > 0 then
    v_entry := creditgate_private.post_entry(
      service_clawback.user_id, 'clawback', v_taken, v_key, v_hash, null, null,
      service_clawback.reason,
      jsonb_build_object('event_id', service_clawback.event_id, 'requested', service_clawback.amount)
    );
    perform creditgate_private.move_lots(v_entry.id, service_clawback.user_id, v_taken, now(), true);
    v_balance := v_entry.balance_after;
  end if;
  insert into creditgate_private.clawbacks (idempotency_key, user_id, requested, taken, ledger_id, reason)
  values (v_key, service_clawback.user_id, service_clawback.amount, v_taken, v_entry.id, service_clawback.reason);
  return jsonb_build_object(
    'requested', service_clawback.amount, 'taken', v_taken,
    'shortfall', service_clawback.amount - v_taken, 'entry_id', v_entry.id,
    'balance', v_balance, 'replayed', false
  );
end
$$;
comment on function creditgate.service_clawback(text, uuid, bigint, text) is
'Takes back credits after a Stripe refund or dispute, at most what is spendable; records any shortfall.';
revoke all on function creditgate.service_clawback(text, uuid, bigint, text) from public, anon, authenticated;
grant execute on function creditgate.service_clawback(text, uuid, bigint, text) to service_role;

-- ===== db/functions/ledger/triggers.sql =====
-- Ledger guards.
-- tg_ledger__before_insert: sets delta's sign from entry_type (callers give amount only)
--   and balance_after from the user's (locked) balance row.
-- tg_ledger__refuse_change: UPDATE, DELETE and TRUNCATE are refused for every role.

create or replace function creditgate_private.tg_ledger__before_insert()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.amount is null or new.amount <= 0 then
    raise exception using errcode = '23514', message = 'ledger amount must be > 0';
  end if;
  new.delta := case
    when new.entry_type in ('signup_bonus', 'purchase', 'grant', 'admin_recharge', 'refund')
      then new.amount
    when new.entry_type in ('spend', 'expire', 'clawback')
      then -new.amount
  end;
  -- The caller holds this row's lock (lock_balance), so the figure is current.
  select b.balance + new.delta into new.balance_after
  from creditgate.balances as b
  where b.user_id = new.user_id;
  return new;
end
$$;
comment on function creditgate_private.tg_ledger__before_insert() is
'Computes the signed delta from entry_type so no caller can pick the sign.';

create or replace function creditgate_private.tg_ledger__refuse_change()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  raise exception using
    errcode = '42501',
    message = 'creditgate.ledger is append-only',
    detail = format('%s refused', tg_op),
    hint = 'Post a compensating entry (refund, clawback) instead.';
end
$$;
comment on function creditgate_private.tg_ledger__refuse_change() is
'Refuses UPDATE, DELETE and TRUNCATE on the ledger, for every role including the owner.';

create or replace trigger ledger_before_insert
before insert on creditgate.ledger
for each row execute function creditgate_private.tg_ledger__before_insert();

create or replace trigger ledger_refuse_update_delete
before update or delete on creditgate.ledger
for each row execute function creditgate_private.tg_ledger__refuse_change();

create or replace trigger ledger_refuse_truncate
before truncate on creditgate.ledger
for each statement execute function creditgate_private.tg_ledger__refuse_change();

-- Lot movements are part of the ledger's history: append-only too.
create or replace trigger lot_movements_refuse_update_delete
before update or delete on creditgate_private.lot_movements
for each row execute function creditgate_private.tg_ledger__refuse_change();

create or replace trigger lot_movements_refuse_truncate
before truncate on creditgate_private.lot_movements
for each statement execute function creditgate_private.tg_ledger__refuse_change();

revoke all on function creditgate_private.tg_ledger__before_insert() from public, anon, authenticated;
revoke all on function creditgate_private.tg_ledger__refuse_change() from public, anon, authenticated;

-- ===== db/functions/private/errors.sql =====
-- creditgate_private.error_codes() -> table (message, sqlstate, hint)
-- creditgate_private.raise_error(p_message, p_detail, p_hint)
--
-- The one registry of intentional errors (DESIGN §5). SQLSTATEs are PostgREST's PTxyz
-- codes, so Supabase clients get HTTP status xyz. MESSAGE is a constant code, DETAIL is
-- JSON, HINT is advice. Raising an unregistered message is itself an error.

create or replace function creditgate_private.error_codes()
returns table (message text, sqlstate text, hint text)
language sql
immutable
set search_path = ''
as $$
  values
    ('invalid_request', 'PT400', 'Fix the field named in DETAIL and retry.'),
    ('not_authenticated', 'PT401', 'Sign in and send the access token.'),
    ('insufficient_credits', 'PT402', 'Buy or earn more credits, or lower the request.'),
    ('forbidden', 'PT403', 'This action needs an admin.'),
    ('not_found', 'PT404', 'Check the id; it may not exist or not be yours.'),
    ('idempotency_key_reused', 'PT409', 'Use a new idempotency key for a different request.'),
    ('invalid_state', 'PT409', 'The object is not in a state that allows this action.'),
    ('lease_lost', 'PT409', 'Another worker holds this job now; drop the result.'),
    ('rate_limited', 'PT429', 'Wait retry_after_seconds before retrying.'),
    ('daily_cap_reached', 'PT429', 'The daily limit resets at resets_at.'),
    ('maintenance', 'PT503', 'The app is in maintenance; retry later.'),
    ('model_unavailable', 'PT503', 'This model is switched off; pick another one.')
$$;
comment on function creditgate_private.error_codes() is
'Registry of every intentional error: constant message, PTxyz SQLSTATE, advice.';

create or replace function creditgate_private.raise_error(
  p_message text,
  p_detail jsonb default '{}',
  p_hint text default null
) returns void
language plpgsql
set search_path = ''
as $$
declare
  v_sqlstate text;
  v_hint text;
begin
  select e.sqlstate, e.hint into v_sqlstate, v_hint
  from creditgate_private.error_codes() as e
  where e.message = p_message;
  if v_sqlstate is null then
    raise exception 'unregistered error code: %', p_message;
  end if;
  raise exception using
    errcode = v_sqlstate,
    message = p_message,
    detail = coalesce(p_detail, '{}'::jsonb)::text,
    hint = coalesce(p_hint, v_hint);
end
$$;
comment on function creditgate_private.raise_error(text, jsonb, text) is
'Raise a registered error: SQLSTATE and default hint come from error_codes().';

create or replace function creditgate_private.invalid(p_field text, p_reason text)
returns void
language sql
set search_path = ''
as $$
  select creditgate_private.raise_error(
    'invalid_request', jsonb_build_object('field', p_field, 'reason', p_reason)
  );
$$;
comment on function creditgate_private.invalid(text, text) is
'Shorthand for PT400 invalid_request naming the offending field.';

revoke all on function creditgate_private.error_codes() from public, anon, authenticated;
revoke all on function creditgate_private.raise_error(text, jsonb, text) from public, anon, authenticated;
revoke all on function creditgate_private.invalid(text, text) from public, anon, authenticated;

-- ===== db/functions/private/settings.sql =====
-- creditgate_private.setting_defaults() -> table (key, value, description)
-- creditgate_private.setting(p_key) -> jsonb
--
-- Settings live in creditgate_private.settings; a key absent there takes its default
-- here. Only keys listed here exist: admin_set_setting refuses anything else.

create or replace function creditgate_private.setting_defaults()
returns table (key text, value jsonb, description text)
language sql
immutable
set search_path = ''
as $$
  values
    ('maintenance_mode', 'false'::jsonb, 'true switches off new generations (PT503 maintenance)'),
    ('signup_bonus', '1000'::jsonb, 'credits granted to each new user (0 = none)'),
    ('signup_bonus_expires_days', 'null'::jsonb, 'days until the signup bonus expires (null = never)')
$$;
comment on function creditgate_private.setting_defaults() is
'Every known setting with its default and meaning.';

create or replace function creditgate_private.setting(p_key text)
returns jsonb
language sql
stable
set search_path = ''
as $$
  select coalesce(
    (select s.value from creditgate_private.settings as s where s.key = p_key),
    (select d.value from creditgate_private.setting_defaults() as d where d.key = p_key)
  );
$$;
comment on function creditgate_private.setting(text) is
'Current value of a setting, falling back to its default.';

revoke all on function creditgate_private.setting_defaults() from public, anon, authenticated;
revoke all on function creditgate_private.setting(text) from public, anon, authenticated;

-- ===== db/policies/ledger.sql =====
-- RLS and privileges for the money tables. Clients read their own rows; nobody but the
-- owner (through definer functions) writes — not anon, not authenticated, not service_role.

alter table creditgate.balances enable row level security;
alter table creditgate.credit_lots enable row level security;
alter table creditgate.ledger enable row level security;
alter table creditgate.credit_packs enable row level security;
alter table creditgate_private.lot_movements enable row level security;
alter table creditgate_private.settings enable row level security;
alter table creditgate_private.admins enable row level security;
alter table creditgate_private.clawbacks enable row level security;

revoke all on table creditgate.balances, creditgate.credit_lots, creditgate.ledger,
  creditgate.credit_packs from public, anon, authenticated, service_role;
revoke all on table creditgate_private.lot_movements, creditgate_private.settings,
  creditgate_private.admins, creditgate_private.clawbacks
  from public, anon, authenticated, service_role;

grant select on table creditgate.balances, creditgate.credit_lots, creditgate.ledger
  to authenticated, service_role;
grant select on table creditgate.credit_packs to anon, authenticated, service_role;

drop policy if exists "Users can read their own balance" on creditgate.balances;
create policy "Users can read their own balance" on creditgate.balances
  for select to authenticated using (user_id = (select auth.uid()));

drop policy if exists "Users can read their own credit lots" on creditgate.credit_lots;
create policy "Users can read their own credit lots" on creditgate.credit_lots
  for select to authenticated using (user_id = (select auth.uid()));

drop policy if exists "Users can read their own ledger entries" on creditgate.ledger;
create policy "Users can read their own ledger entries" on creditgate.ledger
  for select to authenticated using (user_id = (select auth.uid()));

drop policy if exists "Anyone can read active credit packs" on creditgate.credit_packs;
create policy "Anyone can read active credit packs" on creditgate.credit_packs
  for select to anon, authenticated using (active);
