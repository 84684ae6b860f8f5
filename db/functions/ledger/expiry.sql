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
    where l.live and l.expires_at <= service_expire_credits.now
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
    -- The lot's nth expiry (a refund into an expired lot makes a second one): the first
    -- n whose key is free, found through the ledger's key index. Only this sweep posts
    -- expire: keys (service_grant_credits refuses creditgate's prefixes), and it holds the
    -- lot owner's lock, so a free key stays free until it commits: no key lock needed,
    -- which keeps a sweep of thousands of lots out of the shared lock table.
    v_seq := 1;
    v_key := format('expire:%s:1', v_lot.id);
    while exists (select 1 from creditgate.ledger as e where e.idempotency_key = v_key) loop
      v_seq := v_seq + 1;
      v_key := format('expire:%s:%s', v_lot.id, v_seq);
    end loop;
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
      where l.live and l.expires_at <= service_expire_credits.now
    )
  );
end
$$;
comment on function creditgate.service_expire_credits(timestamptz, integer) is
'Posts expire entries for lapsed lots (credits were unspendable from the instant they expired).';
revoke all on function creditgate.service_expire_credits(timestamptz, integer) from public, anon, authenticated;
grant execute on function creditgate.service_expire_credits(timestamptz, integer) to service_role;
