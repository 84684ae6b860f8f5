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
alter table creditgate_private.checkout_holds enable row level security;

revoke all on table creditgate.balances, creditgate.credit_lots, creditgate.ledger,
  creditgate.credit_packs from public, anon, authenticated, service_role;
revoke all on table creditgate_private.lot_movements, creditgate_private.settings,
  creditgate_private.admins, creditgate_private.clawbacks, creditgate_private.checkout_holds
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
