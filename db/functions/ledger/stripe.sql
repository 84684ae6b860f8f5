-- creditgate.service_apply_checkout(event_id, user_id, price_id, quantity, amount_total,
--   currency, session_id, amount_tax) -> jsonb                                      service_role
--   Credits for a paid Stripe checkout; amount from creditgate.credit_packs. Granted only
--   when amount_total - amount_tax and currency equal the pack's price times quantity;
--   otherwise held (creditgate_private.checkout_holds, reported by audit()) and nothing is
--   granted. Key stripe:checkout:<session_id> (one grant per Checkout Session, whichever
--   event brings it), or stripe:<event_id> without a session.
-- creditgate.service_clawback(event_id, user_id, amount, reason) -> jsonb          service_role
--   A clawback keyed stripe:<event_id>: takes back up to what is spendable (paid lots first);
--   the rest is owed, paid first from any credit that reaches the user later.
-- creditgate.service_stripe_refund(refund_id, user_id, payment_id, credits, payment_amount,
--   amount_refunded, reason) -> jsonb                                               service_role
--   A (partial) refund of a Stripe payment that bought `credits`: claws back
--   floor(credits * amount_refunded / payment_amount) for the payment in total, less what
--   earlier refunds and an open dispute of it asked for. Key stripe:refund:<refund_id>.
-- creditgate.service_stripe_dispute(dispute_id, user_id, payment_id, credits, reason) -> jsonb
--   A dispute of a payment: claws back its credits less what refunds of it already asked
--   for. Key stripe:dispute:<dispute_id>.                                           service_role
-- creditgate.service_stripe_dispute_won(dispute_id, user_id, payment_id, reason) -> jsonb
--   The merchant won: returns what the dispute's clawback took (and collected since) to
--   the lots it came from and cancels what is still owed, once. Key
--   stripe:dispute-won:<dispute_id>. Won before the dispute was seen: the dispute is
--   recorded as won with nothing taken, and its late arrival replays that.  service_role
-- Errors: PT400 invalid_request, PT404 not_found (unknown price or user), PT409 idempotency_key_reused.

drop function if exists creditgate.service_apply_checkout(text, uuid, text, integer);
create or replace function creditgate.service_apply_checkout(
  event_id text,
  user_id uuid,
  price_id text,
  quantity integer default 1,
  amount_total bigint default null,
  currency text default null,
  session_id text default null,
  amount_tax bigint default 0
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_pack creditgate.credit_packs;
  v_key text;
  v_hash text;
  v_entry creditgate.ledger;
  v_reason text;
  v_result jsonb;
begin
  perform creditgate_private.check_key(service_apply_checkout.event_id, 'event_id');
  if service_apply_checkout.quantity is null or service_apply_checkout.quantity not between 1 and 1000 then
    perform creditgate_private.invalid('quantity', 'between 1 and 1000');
  end if;
  if service_apply_checkout.amount_total is null or service_apply_checkout.amount_total < 0 then
    perform creditgate_private.invalid('amount_total', 'the amount paid, in the currency''s smallest unit');
  end if;
  if service_apply_checkout.currency is null or service_apply_checkout.currency !~ '^[A-Za-z]{3}$' then
    perform creditgate_private.invalid('currency', 'an ISO 4217 code');
  end if;
  if service_apply_checkout.amount_tax is not null and service_apply_checkout.amount_tax < 0 then
    perform creditgate_private.invalid('amount_tax', 'zero or more');
  end if;
  if service_apply_checkout.session_id is not null then
    perform creditgate_private.check_key(service_apply_checkout.session_id, 'session_id');
  end if;
  select p.* into v_pack
  from creditgate.credit_packs as p
  where p.stripe_price_id = service_apply_checkout.price_id;
  if v_pack.id is null then
    perform creditgate_private.raise_error(
      'not_found', jsonb_build_object('object', 'credit_pack', 'price_id', service_apply_checkout.price_id)
    );
  end if;
  -- One grant per Checkout Session: checkout.session.completed and
  -- checkout.session.async_payment_succeeded of one session are two events for one payment.
  v_key := 'stripe:' || coalesce('checkout:' || service_apply_checkout.session_id, service_apply_checkout.event_id);
  -- The request is the purchase itself; the lot's expiry is derived from the pack at first
  -- delivery, so a retry hours later still matches.
  v_hash := md5(jsonb_build_array(
    'checkout', service_apply_checkout.user_id, service_apply_checkout.price_id,
    service_apply_checkout.quantity
  )::text);

  perform creditgate_private.lock_balance(service_apply_checkout.user_id, true);
  v_entry := creditgate_private.find_entry(v_key, v_hash);
  if v_entry.id is null then
    -- What was paid must be what the pack costs: a session created with another amount or
    -- currency (or a discount) buys nothing automatically; an operator decides.
    if lower(service_apply_checkout.currency) <> lower(v_pack.currency) then
      v_reason := 'currency_mismatch';
    elsif service_apply_checkout.amount_total - coalesce(service_apply_checkout.amount_tax, 0)
          <> v_pack.price_cents::bigint * service_apply_checkout.quantity then
      v_reason := 'amount_mismatch';
    end if;
    if v_reason is not null then
      insert into creditgate_private.checkout_holds (
        idempotency_key, event_id, session_id, user_id, price_id, quantity, expected_amount,
        expected_currency, amount_total, amount_tax, currency, reason
      ) values (
        v_key, service_apply_checkout.event_id, service_apply_checkout.session_id,
        service_apply_checkout.user_id, service_apply_checkout.price_id,
        service_apply_checkout.quantity, v_pack.price_cents::bigint * service_apply_checkout.quantity,
        lower(v_pack.currency), service_apply_checkout.amount_total,
        service_apply_checkout.amount_tax, lower(service_apply_checkout.currency), v_reason
      )
      on conflict (idempotency_key) do nothing;
      return jsonb_build_object(
        'held', true, 'reason', v_reason, 'pack_id', v_pack.id, 'credits', 0,
        'expected_amount', v_pack.price_cents::bigint * service_apply_checkout.quantity,
        'expected_currency', lower(v_pack.currency),
        'amount', service_apply_checkout.amount_total - coalesce(service_apply_checkout.amount_tax, 0),
        'currency', lower(service_apply_checkout.currency),
        'replayed', not found
      );
    end if;
  end if;
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
    ) || case
      when service_apply_checkout.session_id is null then '{}'::jsonb
      else jsonb_build_object('session_id', service_apply_checkout.session_id)
    end,
    v_hash
  );
  return v_result || jsonb_build_object('pack_id', v_pack.id, 'credits', v_result -> 'amount');
end
$$;
comment on function creditgate.service_apply_checkout(text, uuid, text, integer, bigint, text, text, bigint) is
'Applies a paid Stripe checkout once per session, only if it paid the pack''s price: credits come from credit_packs, never the client.';
revoke all on function creditgate.service_apply_checkout(text, uuid, text, integer, bigint, text, text, bigint) from public, anon, authenticated;
grant execute on function creditgate.service_apply_checkout(text, uuid, text, integer, bigint, text, text, bigint) to service_role;

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
  -- The event's key lock (find_entry), so the same event for two users takes turns and the
  -- later call sees the earlier one's clawback row below. A ledger entry under the key is
  -- this clawback's own (same request: the row below replays it, with the balance the entry
  -- left) or another request's (PT409).
  v_entry := creditgate_private.find_entry(v_key, v_hash);
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
      'balance', coalesce(v_entry.balance_after::bigint, v_balance),
      'replayed', true
    );
  end if;
  return creditgate_private.take_clawback(
    service_clawback.user_id, v_key, v_hash, service_clawback.amount, service_clawback.reason,
    jsonb_build_object('event_id', service_clawback.event_id, 'requested', service_clawback.amount)
  );
end
$$;
comment on function creditgate.service_clawback(text, uuid, bigint, text) is
'Takes back credits after a Stripe refund or dispute, at most what is spendable; the rest is owed.';
revoke all on function creditgate.service_clawback(text, uuid, bigint, text) from public, anon, authenticated;
grant execute on function creditgate.service_clawback(text, uuid, bigint, text) to service_role;

create or replace function creditgate_private.payment_clawback_replay(
  p_key text,
  p_user_id uuid,
  p_payment_id text,
  p_balance bigint
) returns jsonb
language plpgsql
stable
set search_path = ''
as $$
declare
  v_prior creditgate_private.clawbacks;
begin
  -- The clawback already recorded under p_key (same user and payment: its original figures,
  -- replayed; otherwise PT409), or null.
  select c.* into v_prior from creditgate_private.clawbacks as c where c.idempotency_key = p_key;
  if v_prior.idempotency_key is null then
    return null;
  end if;
  if v_prior.user_id <> p_user_id or v_prior.payment_id is distinct from p_payment_id then
    perform creditgate_private.raise_error(
      'idempotency_key_reused', jsonb_build_object('idempotency_key', p_key)
    );
  end if;
  return jsonb_build_object(
    'requested', v_prior.requested, 'taken', v_prior.taken, 'shortfall', v_prior.shortfall,
    'entry_id', v_prior.ledger_id, 'balance', p_balance, 'replayed', true
  );
end
$$;
comment on function creditgate_private.payment_clawback_replay(text, uuid, text, bigint) is
'Replay of a refund or dispute clawback already recorded under the key; PT409 if it was for another user or payment.';
revoke all on function creditgate_private.payment_clawback_replay(text, uuid, text, bigint) from public, anon, authenticated;

create or replace function creditgate_private.payment_claimed(p_user_id uuid, p_payment_id text)
returns table (refunds bigint, disputes bigint, money_refunded bigint)
language plpgsql
stable
set search_path = ''
as $$
begin
  -- What the payment's clawbacks already asked for: its refunds (for good), its disputes
  -- not won (a won dispute gave back what it took), and the most money reported refunded.
  return query
  select
    coalesce(sum(c.requested) filter (where c.kind = 'refund'), 0)::bigint,
    coalesce(sum(c.requested) filter (where c.kind = 'dispute' and c.resolution is null), 0)::bigint,
    coalesce(max(c.amount_refunded), 0)::bigint
  from creditgate_private.clawbacks as c
  where c.payment_id = p_payment_id and c.user_id = p_user_id;
end
$$;
comment on function creditgate_private.payment_claimed(uuid, text) is
'Credits already asked back for a Stripe payment by refunds and open disputes, and the most money refunded.';
revoke all on function creditgate_private.payment_claimed(uuid, text) from public, anon, authenticated;

create or replace function creditgate.service_stripe_refund(
  refund_id text,
  user_id uuid,
  payment_id text,
  credits bigint,
  payment_amount bigint,
  amount_refunded bigint,
  reason text default 'stripe refund'
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_key text;
  v_hash text;
  v_balance bigint;
  v_replay jsonb;
  v_claimed record;
  v_money bigint;
  v_target bigint;
  v_request bigint;
begin
  perform creditgate_private.check_key(service_stripe_refund.refund_id, 'refund_id');
  perform creditgate_private.check_key(service_stripe_refund.payment_id, 'payment_id');
  if service_stripe_refund.credits is null or service_stripe_refund.credits <= 0 then
    perform creditgate_private.invalid('credits', 'must be a positive integer');
  end if;
  if service_stripe_refund.payment_amount is null or service_stripe_refund.payment_amount <= 0 then
    perform creditgate_private.invalid('payment_amount', 'must be a positive integer');
  end if;
  if service_stripe_refund.amount_refunded is null or service_stripe_refund.amount_refunded < 0 then
    perform creditgate_private.invalid('amount_refunded', 'zero or more');
  end if;
  v_key := 'stripe:refund:' || service_stripe_refund.refund_id;
  -- The refund, not the event that reported it: a later event lists the same refund with a
  -- larger amount refunded in total, and must replay it.
  v_hash := md5(jsonb_build_array(
    'stripe_refund', service_stripe_refund.user_id, service_stripe_refund.payment_id,
    service_stripe_refund.credits, service_stripe_refund.payment_amount
  )::text);

  v_balance := creditgate_private.lock_balance(service_stripe_refund.user_id);
  perform creditgate_private.find_entry(v_key, v_hash);
  v_replay := creditgate_private.payment_clawback_replay(
    v_key, service_stripe_refund.user_id, service_stripe_refund.payment_id, v_balance
  );
  if v_replay is not null then
    return v_replay;
  end if;
  -- Every clawback of one payment is the same user's, so the balance lock above serializes
  -- them: the figures below are current. In proportion to the money refunded so far,
  -- rounded down once for the total (so refunds of 1/3 + 1/3 + 1/3 take the whole pack),
  -- never more than the pack, less what was asked already (an open dispute asked for it all).
  select * into v_claimed
  from creditgate_private.payment_claimed(service_stripe_refund.user_id, service_stripe_refund.payment_id);
  v_money := least(
    greatest(service_stripe_refund.amount_refunded, v_claimed.money_refunded),
    service_stripe_refund.payment_amount
  );
  v_target := floor(
    service_stripe_refund.credits::numeric * v_money / service_stripe_refund.payment_amount
  )::bigint;
  v_request := greatest(0, v_target - v_claimed.refunds - v_claimed.disputes);
  return creditgate_private.take_clawback(
    service_stripe_refund.user_id, v_key, v_hash, v_request, service_stripe_refund.reason,
    jsonb_build_object(
      'refund_id', service_stripe_refund.refund_id, 'payment_id', service_stripe_refund.payment_id,
      'requested', v_request
    ),
    'refund', service_stripe_refund.payment_id, service_stripe_refund.payment_amount, v_money,
    service_stripe_refund.credits
  );
end
$$;
comment on function creditgate.service_stripe_refund(text, uuid, text, bigint, bigint, bigint, text) is
'Claws back a Stripe refund''s share of the credits a payment bought (rounded down, never past the pack), once per refund id.';
revoke all on function creditgate.service_stripe_refund(text, uuid, text, bigint, bigint, bigint, text) from public, anon, authenticated;
grant execute on function creditgate.service_stripe_refund(text, uuid, text, bigint, bigint, bigint, text) to service_role;

create or replace function creditgate.service_stripe_dispute(
  dispute_id text,
  user_id uuid,
  payment_id text,
  credits bigint,
  reason text default 'stripe dispute'
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_key text;
  v_hash text;
  v_balance bigint;
  v_replay jsonb;
  v_claimed record;
  v_request bigint;
begin
  perform creditgate_private.check_key(service_stripe_dispute.dispute_id, 'dispute_id');
  perform creditgate_private.check_key(service_stripe_dispute.payment_id, 'payment_id');
  if service_stripe_dispute.credits is null or service_stripe_dispute.credits <= 0 then
    perform creditgate_private.invalid('credits', 'must be a positive integer');
  end if;
  v_key := 'stripe:dispute:' || service_stripe_dispute.dispute_id;
  v_hash := md5(jsonb_build_array(
    'stripe_dispute', service_stripe_dispute.user_id, service_stripe_dispute.payment_id
  )::text);

  v_balance := creditgate_private.lock_balance(service_stripe_dispute.user_id);
  perform creditgate_private.find_entry(v_key, v_hash);
  v_replay := creditgate_private.payment_clawback_replay(
    v_key, service_stripe_dispute.user_id, service_stripe_dispute.payment_id, v_balance
  );
  if v_replay is not null then
    return v_replay;
  end if;
  -- What refunds of this payment (and any other open dispute of it) already asked for is
  -- not asked again: a refund and a dispute of one charge never take the credits twice.
  select * into v_claimed
  from creditgate_private.payment_claimed(service_stripe_dispute.user_id, service_stripe_dispute.payment_id);
  v_request := greatest(0, service_stripe_dispute.credits - v_claimed.refunds - v_claimed.disputes);
  return creditgate_private.take_clawback(
    service_stripe_dispute.user_id, v_key, v_hash, v_request, service_stripe_dispute.reason,
    jsonb_build_object(
      'dispute_id', service_stripe_dispute.dispute_id, 'payment_id', service_stripe_dispute.payment_id,
      'requested', v_request
    ),
    'dispute', service_stripe_dispute.payment_id
  );
end
$$;
comment on function creditgate.service_stripe_dispute(text, uuid, text, bigint, text) is
'Claws back the credits a disputed Stripe payment bought, less what its refunds took; the rest is owed. Once per dispute.';
revoke all on function creditgate.service_stripe_dispute(text, uuid, text, bigint, text) from public, anon, authenticated;
grant execute on function creditgate.service_stripe_dispute(text, uuid, text, bigint, text) to service_role;

create or replace function creditgate.service_stripe_dispute_won(
  dispute_id text,
  user_id uuid,
  payment_id text,
  reason text default 'stripe dispute won'
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_key text;
  v_return_key text;
  v_hash text;
  v_claw creditgate_private.clawbacks;
  v_open bigint;
  v_returned bigint;
  v_given bigint;
  v_entry creditgate.ledger;
  v_balance bigint;
  v_credits bigint;
  v_payment_amount bigint;
  v_money bigint;
  v_refunds bigint;
  v_due bigint;
begin
  perform creditgate_private.check_key(service_stripe_dispute_won.dispute_id, 'dispute_id');
  perform creditgate_private.check_key(service_stripe_dispute_won.payment_id, 'payment_id');
  v_key := 'stripe:dispute:' || service_stripe_dispute_won.dispute_id;
  v_return_key := 'stripe:dispute-won:' || service_stripe_dispute_won.dispute_id;
  v_hash := md5(jsonb_build_array(
    'stripe_dispute_won', service_stripe_dispute_won.user_id, service_stripe_dispute_won.payment_id
  )::text);

  v_balance := creditgate_private.lock_balance(service_stripe_dispute_won.user_id);
  -- The dispute's own key first (as service_stripe_dispute takes it), then the return's.
  perform creditgate_private.find_entry(
    v_key,
    md5(jsonb_build_array(
      'stripe_dispute', service_stripe_dispute_won.user_id, service_stripe_dispute_won.payment_id
    )::text)
  );
  v_entry := creditgate_private.find_entry(v_return_key, v_hash);
  select c.* into v_claw
  from creditgate_private.clawbacks as c
  where c.idempotency_key = v_key
  for update;
  if v_claw.idempotency_key is null then
    -- Won before the dispute itself arrived (events come in any order): record the dispute
    -- as won with nothing taken, so its late delivery replays that and takes nothing.
    insert into creditgate_private.clawbacks (
      idempotency_key, user_id, requested, taken, reason, kind, payment_id, resolution, resolved_at
    ) values (
      v_key, service_stripe_dispute_won.user_id, 0, 0, service_stripe_dispute_won.reason,
      'dispute', service_stripe_dispute_won.payment_id, 'won', now()
    );
    return jsonb_build_object(
      'returned', 0, 'cancelled', 0, 'entry_id', null, 'balance', v_balance, 'replayed', false
    );
  end if;
  if v_claw.user_id <> service_stripe_dispute_won.user_id
     or v_claw.payment_id is distinct from service_stripe_dispute_won.payment_id
     or v_claw.kind <> 'dispute' then
    perform creditgate_private.raise_error(
      'idempotency_key_reused', jsonb_build_object('idempotency_key', v_key)
    );
  end if;
  if v_claw.resolution is not null then
    -- The balance the win left: after the refunds' catch-up, else after collections for
    -- other disputes, else after the return itself (nothing returned: the balance now).
    return jsonb_build_object(
      'returned', v_claw.returned, 'cancelled', v_claw.cancelled, 'entry_id', v_entry.id,
      'balance', coalesce(
        (select l.balance_after::bigint from creditgate.ledger as l
         where l.idempotency_key = 'stripe:refund-after-won:' || service_stripe_dispute_won.dispute_id),
        (creditgate_private.owed_paid(v_entry) ->> 'balance')::bigint,
        v_entry.balance_after::bigint,
        v_balance
      ),
      'replayed', true
    );
  end if;

  -- Cancel what is still owed, return everything the dispute took: its clawback and the
  -- collections made for it since, each to the lot it came from.
  v_open := v_claw.requested - v_claw.taken - v_claw.collected - v_claw.cancelled;
  v_returned := v_claw.taken + v_claw.collected;
  update creditgate_private.clawbacks as c
  set cancelled = c.cancelled + v_open, returned = v_returned, resolution = 'won', resolved_at = now()
  where c.idempotency_key = v_key;
  update creditgate.balances as b
  set owed = b.owed - v_open
  where b.user_id = service_stripe_dispute_won.user_id;
  if v_returned > 0 then
    v_entry := creditgate_private.post_entry(
      service_stripe_dispute_won.user_id, 'purchase', v_returned, v_return_key, v_hash, null, null,
      service_stripe_dispute_won.reason,
      jsonb_build_object(
        'dispute_id', service_stripe_dispute_won.dispute_id,
        'payment_id', service_stripe_dispute_won.payment_id, 'clawback_key', v_key
      )
    );
    with taken_per_lot as (
      select m.lot_id, -sum(m.amount) as n
      from creditgate_private.lot_movements as m
      join creditgate.ledger as e on e.id = m.ledger_id
      where e.user_id = service_stripe_dispute_won.user_id
        and e.entry_type = 'clawback'
        and (e.id = v_claw.ledger_id or e.metadata ->> 'clawback_key' = v_key)
      group by m.lot_id
    ),
    updated as (
      update creditgate.credit_lots as l
      set remaining = l.remaining + t.n
      from taken_per_lot as t
      where l.id = t.lot_id
      returning l.id, t.n
    ),
    recorded as (
      insert into creditgate_private.lot_movements (ledger_id, lot_id, amount)
      select v_entry.id, u.id, u.n from updated as u
      returning amount
    )
    select coalesce(sum(r.amount), 0) into v_given from recorded as r;
    if v_given <> v_returned then
      raise exception 'dispute % returned % of % to lots', v_key, v_given, v_returned;
    end if;
    v_balance := v_entry.balance_after;
    -- Returned credits are credits reaching the user: another dispute's debt comes first.
    if creditgate_private.collect_owed(service_stripe_dispute_won.user_id, v_entry.id, v_returned, now()) > 0 then
      v_balance := (creditgate_private.owed_paid(v_entry) ->> 'balance')::bigint;
    end if;
  end if;
  -- Refunds of the payment that arrived while the dispute was open asked for nothing (the
  -- dispute had asked for everything). Now that it no longer counts, they take their share.
  select
    max(c.payment_credits), max(c.payment_amount), max(c.amount_refunded),
    coalesce(sum(c.requested), 0)
  into v_credits, v_payment_amount, v_money, v_refunds
  from creditgate_private.clawbacks as c
  where c.payment_id = service_stripe_dispute_won.payment_id
    and c.user_id = service_stripe_dispute_won.user_id
    and c.kind = 'refund';
  if v_payment_amount > 0 then
    v_due := floor(v_credits::numeric * least(v_money, v_payment_amount) / v_payment_amount)::bigint
      - v_refunds
      - (select coalesce(sum(c.requested), 0) from creditgate_private.clawbacks as c
         where c.payment_id = service_stripe_dispute_won.payment_id
           and c.user_id = service_stripe_dispute_won.user_id
           and c.kind = 'dispute' and c.resolution is null);
    if v_due > 0 then
      v_balance := (creditgate_private.take_clawback(
        service_stripe_dispute_won.user_id,
        'stripe:refund-after-won:' || service_stripe_dispute_won.dispute_id, v_hash, v_due,
        'stripe refund',
        jsonb_build_object(
          'dispute_id', service_stripe_dispute_won.dispute_id,
          'payment_id', service_stripe_dispute_won.payment_id, 'requested', v_due
        ),
        'refund', service_stripe_dispute_won.payment_id, v_payment_amount, v_money, v_credits
      ) ->> 'balance')::bigint;
    end if;
  end if;
  return jsonb_build_object(
    'returned', v_returned, 'cancelled', v_open, 'entry_id', v_entry.id, 'balance', v_balance,
    'replayed', false
  );
end
$$;
comment on function creditgate.service_stripe_dispute_won(text, uuid, text, text) is
'A dispute the merchant won: returns what its clawback took and cancels what is still owed, exactly once.';
revoke all on function creditgate.service_stripe_dispute_won(text, uuid, text, text) from public, anon, authenticated;
grant execute on function creditgate.service_stripe_dispute_won(text, uuid, text, text) to service_role;
