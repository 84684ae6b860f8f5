-- creditgate.get_balance() -> jsonb {balance, available, owed, plan, expiring, daily}   authenticated
-- creditgate.is_admin() -> boolean                                              authenticated
-- Errors: PT401 not_authenticated (get_balance: no caller; both: a deleted account).

drop function if exists creditgate_private.daily_usage(uuid, text);
create or replace function creditgate_private.daily_usage(p_balance creditgate.balances)
returns jsonb
language plpgsql
stable
set search_path = ''
as $$
declare
  -- The current UTC day; caps reset at UTC midnight.
  v_today date := (now() at time zone 'UTC')::date;
  v_cap jsonb := creditgate_private.setting('plan_daily_caps') -> coalesce(p_balance.plan, 'free');
begin
  -- From the balance row the caller has already read (no row: nothing used, plan free).
  -- Net of refunds (the ledger trigger keeps the figure): failed and canceled generations
  -- were refunded in full, succeeded ones cost their actual_cost, queued and running ones
  -- hold their full price until settled.
  return jsonb_build_object(
    'used', case when p_balance.daily_used_on = v_today then p_balance.daily_used::bigint else 0 end,
    'cap', case when jsonb_typeof(v_cap) = 'number' then v_cap else 'null'::jsonb end
  );
end
$$;
comment on function creditgate_private.daily_usage(creditgate.balances) is
'Credits charged today (UTC, net of refunds) by the balance row''s user, and their plan''s cap (null = uncapped).';
revoke all on function creditgate_private.daily_usage(creditgate.balances) from public, anon, authenticated;

create or replace function creditgate.get_balance()
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_user_id uuid := creditgate_private.require_user();
  v_row creditgate.balances;
begin
  select b.* into v_row from creditgate.balances as b where b.user_id = v_user_id;
  return jsonb_build_object(
    'balance', coalesce(v_row.balance::bigint, 0),
    'available', creditgate_private.available_credits(v_user_id, now()),
    -- Credits a Stripe refund or dispute could not take back; the next credits pay them.
    'owed', coalesce(v_row.owed::bigint, 0),
    'plan', coalesce(v_row.plan::text, 'free'),
    'expiring', coalesce((
      select jsonb_agg(jsonb_build_object(
        'lot_id', l.id, 'amount', l.remaining, 'category', l.category, 'expires_at', l.expires_at
      ) order by l.expires_at, l.id)
      from creditgate.credit_lots as l
      where l.user_id = v_user_id
        and l.live
        and l.expires_at > now()
        and l.expires_at <= now() + interval '30 days'
    ), '[]'::jsonb),
    'daily', creditgate_private.daily_usage(v_row)
  );
end
$$;
comment on function creditgate.get_balance() is
'The caller''s balance, spendable credits, credits owed after clawbacks, plan, lots expiring within 30 days, daily usage.';
revoke all on function creditgate.get_balance() from public, anon, authenticated;
grant execute on function creditgate.get_balance() to authenticated;

create or replace function creditgate.is_admin()
returns boolean
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_user_id uuid := auth.uid();
begin
  if v_user_id is null then
    return false;
  end if;
  -- A deleted account's still-valid JWT: PT401, as from every client function (the
  -- service's account check for routes that only read tables).
  perform creditgate_private.require_user();
  return exists (select 1 from creditgate_private.admins as a where a.user_id = v_user_id);
end
$$;
comment on function creditgate.is_admin() is
'Whether the caller is an admin (creditgate_private.admins; never JWT metadata). PT401 for a deleted account.';
revoke all on function creditgate.is_admin() from public, anon, authenticated;
grant execute on function creditgate.is_admin() to authenticated;
