-- Ledger guards.
-- tg_ledger__before_insert: sets delta's sign from entry_type (callers give amount only),
--   moves the user's (locked) balance row by it and sets balance_after to the result.
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
  if (new.entry_type = 'refund') <> (new.charge_key is not null) then
    raise exception using
      errcode = '23514',
      message = 'a refund, and only a refund, names the charge it refunds (charge_key)';
  end if;
  -- The entry moves the cached balance with it, in the same statement, so the two cannot
  -- disagree. The caller holds this row's lock (lock_balance), so the figure is current; a
  -- balance that would go negative fails the balances domain check (23514).
  update creditgate.balances as b
  set balance = b.balance + new.delta, updated_at = now()
  where b.user_id = new.user_id
  returning b.balance into new.balance_after;
  if not found then
    raise exception using
      errcode = '23503',
      message = format('no balance row for user %s', new.user_id);
  end if;
  return new;
end
$$;
comment on function creditgate_private.tg_ledger__before_insert() is
'Computes the signed delta from entry_type (no caller can pick the sign), moves the balance by it and records balance_after.';

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
