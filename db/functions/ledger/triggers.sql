-- Ledger guards.
-- tg_ledger__before_insert: sets delta's sign from entry_type (callers give amount only),
--   moves the user's (locked) balance row by it and sets balance_after to the result; keeps
--   the row's daily usage (credits charged for generations today, UTC, net of refunds).
-- tg_ledger__refuse_change: UPDATE, DELETE and TRUNCATE are refused for every role.

create or replace function creditgate_private.tg_ledger__before_insert()
returns trigger
language plpgsql
set search_path = ''
as $$
declare
  -- The entry's UTC day (created_at defaults to now(): the day its generation's
  -- created_at falls on).
  v_day date := (new.created_at at time zone 'UTC')::date;
  -- What this entry adds to that day's usage: a generation's charge adds its amount, a
  -- refund of a charge posted the same day takes its amount back; anything else, nothing.
  v_used bigint := 0;
begin
  if new.amount is null or new.amount <= 0 then
    raise exception using errcode = '23514', message = 'ledger amount must be > 0';
  end if;
  new.delta := case
    when new.entry_type in ('signup_bonus', 'purchase', 'grant', 'admin_recharge', 'refund')
      then new.amount
    when new.entry_type in ('spend', 'expire', 'clawback', 'forfeit')
      then -new.amount
  end;
  if (new.entry_type = 'refund') <> (new.charge_key is not null) then
    raise exception using
      errcode = '23514',
      message = 'a refund, and only a refund, names the charge it refunds (charge_key)';
  end if;
  if new.generation_id is not null then
    if new.entry_type = 'spend' then
      v_used := new.amount;
    elsif new.entry_type = 'refund' and exists (
      select 1 from creditgate.ledger as c
      where c.idempotency_key = new.charge_key
        and (c.created_at at time zone 'UTC')::date = v_day
    ) then
      v_used := -new.amount;
    end if;
  end if;
  -- The entry moves the cached balance with it, in the same statement, so the two cannot
  -- disagree. The caller holds this row's lock (lock_balance), so the figure is current; a
  -- balance that would go negative fails the balances domain check (23514).
  -- Daily usage restarts on the first counted entry of a new day. A transaction that began
  -- before midnight but reaches the row after one that began after it counts nowhere: its
  -- day is over, and the newer day's figure must not include it.
  update creditgate.balances as b
  set balance = b.balance + new.delta,
      updated_at = now(),
      daily_used = case
        when v_used = 0 or b.daily_used_on > v_day then b.daily_used
        -- never below zero, even for a refund that should not exist (audit reports those)
        when b.daily_used_on = v_day then greatest(0, b.daily_used + v_used)
        else greatest(0, v_used)
      end,
      daily_used_on = case
        when v_used = 0 or b.daily_used_on > v_day then b.daily_used_on
        else v_day
      end
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
