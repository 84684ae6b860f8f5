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
  values (v_key, service_clawback.user_id, service_clawback.amount, v_taken, v_entry.id, service_clawback.reason)
  on conflict (idempotency_key) do nothing;
  if not found then
    -- Unreachable while the key lock above holds the event (kept so a clawback can never
    -- be recorded twice). Nothing of this call survives the error.
    perform creditgate_private.raise_error(
      'idempotency_key_reused', jsonb_build_object('idempotency_key', v_key)
    );
  end if;
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
