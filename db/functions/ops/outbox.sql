-- The transactional outbox (DESIGN §8). Events are rows of creditgate_private.events,
-- inserted by triggers and jobs in the transaction of their cause: a cause that rolls back
-- leaves no event, and one that commits always has its event. Each event is fanned out at
-- once to the enabled webhook endpoints that want its type (webhook_deliveries).
--
-- creditgate_private.emit_event(p_type, p_user_id, p_payload, p_dedupe_key) -> uuid
--   Inserts one event (none if p_dedupe_key was already used: "once per lot") and its
--   deliveries; returns its id, or null when deduplicated.
-- Triggers (cheap WHEN clauses, since the request path updates balances and inserts ledger
-- rows on every charge):
--   ledger AFTER INSERT, credit entry types           -> credits.added
--   balances AFTER UPDATE OF balance, a fall that may cross a threshold (bounds in its
--     WHEN, kept current by a trigger on settings) -> balance.low when it crosses
--   generations AFTER UPDATE OF status, now final     -> generation.succeeded | generation.failed
--   clawbacks AFTER INSERT, shortfall > 0             -> clawback.owed
-- Payloads carry ids, amounts and timestamps only: never prompts, outputs, error texts or
-- secrets.

create or replace function creditgate_private.emit_event(
  p_type text,
  p_user_id uuid,
  p_payload jsonb,
  p_dedupe_key text default null
) returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_id uuid;
begin
  insert into creditgate_private.events (id, event_type, user_id, dedupe_key, payload)
  values (creditgate_private.uuid_v7(), p_type, p_user_id, p_dedupe_key, p_payload)
  on conflict on constraint events_dedupe_key_key do nothing
  returning id into v_id;
  if v_id is null then
    return null;
  end if;
  insert into creditgate_private.webhook_deliveries (event_id, endpoint_id)
  select v_id, e.id
  from creditgate_private.webhook_endpoints as e
  where e.enabled and (p_type = any(e.event_types) or '*' = any(e.event_types));
  if found then
    perform pg_notify('creditgate_webhooks', '');
  end if;
  return v_id;
end
$$;
comment on function creditgate_private.emit_event(text, uuid, jsonb, text) is
'Writes one outbox event (deduplicated by key) and queues its webhook deliveries.';

create or replace function creditgate_private.tg_ledger__after_insert_event()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform creditgate_private.emit_event(
    'credits.added', new.user_id,
    jsonb_build_object(
      'user_id', new.user_id, 'entry_id', new.id, 'entry_type', new.entry_type,
      'amount', new.amount, 'balance_after', new.balance_after,
      'generation_id', new.generation_id, 'created_at', new.created_at
    )
  );
  return null;
end
$$;
comment on function creditgate_private.tg_ledger__after_insert_event() is
'credits.added for every credit entry (signup bonus, purchase, grant, admin recharge, refund).';

create or replace function creditgate_private.tg_balances__after_update_event()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_threshold bigint;
begin
  -- Runs only for falls that may cross a threshold (see install_balance_low_trigger), on
  -- the request path: the threshold (the plan's override in plan_low_balance_thresholds,
  -- else low_balance_threshold) is read in one query (100 is the catalog's default; a test
  -- keeps the two equal). An AFTER trigger: a BEFORE one would re-fetch and lock the old
  -- row on every update, even when its WHEN is false.
  select coalesce(
    (select (s.value ->> new.plan)::bigint from creditgate_private.settings as s
     where s.key = 'plan_low_balance_thresholds' and jsonb_typeof(s.value -> new.plan) = 'number'),
    (select (s.value #>> '{}')::bigint from creditgate_private.settings as s
     where s.key = 'low_balance_threshold'),
    100
  ) into v_threshold;
  -- The balance row is locked by every money operation, so OLD is the balance the previous
  -- committed operation left: exactly one update crosses the threshold per fall, however
  -- many spends race; a rise back to the threshold or above re-arms it.
  if v_threshold > 0 and old.balance >= v_threshold and new.balance < v_threshold then
    perform creditgate_private.emit_event(
      'balance.low', new.user_id,
      jsonb_build_object(
        'user_id', new.user_id, 'balance', new.balance, 'previous_balance', old.balance,
        'threshold', v_threshold, 'plan', new.plan, 'at', now()
      )
    );
  end if;
  return null;
end
$$;
comment on function creditgate_private.tg_balances__after_update_event() is
'balance.low when a balance falls below its plan''s threshold (once per crossing).';

create or replace function creditgate_private.tg_generations__after_update_event()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform creditgate_private.emit_event(
    'generation.' || new.status, new.user_id,
    jsonb_build_object(
      'generation_id', new.id, 'user_id', new.user_id, 'model_id', new.model_id,
      'kind', new.kind, 'cost', new.cost, 'actual_cost', new.actual_cost,
      'attempts', new.attempts, 'error_code', new.error ->> 'code',
      'created_at', new.created_at, 'finished_at', new.finished_at
    )
  );
  return null;
end
$$;
comment on function creditgate_private.tg_generations__after_update_event() is
'generation.succeeded or generation.failed when a generation reaches that status.';

create or replace function creditgate_private.tg_clawbacks__after_insert_event()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform creditgate_private.emit_event(
    'clawback.owed', new.user_id,
    jsonb_build_object(
      'user_id', new.user_id, 'clawback_key', new.idempotency_key, 'kind', new.kind,
      'payment_id', new.payment_id, 'requested', new.requested, 'taken', new.taken,
      'owed', new.requested - new.taken, 'created_at', new.created_at
    )
  );
  return null;
end
$$;
comment on function creditgate_private.tg_clawbacks__after_insert_event() is
'clawback.owed when a clawback could not take everything it asked for.';

create or replace trigger ledger_after_insert_event
after insert on creditgate.ledger
for each row
when (new.entry_type in ('signup_bonus', 'purchase', 'grant', 'admin_recharge', 'refund'))
execute function creditgate_private.tg_ledger__after_insert_event();

-- The balances trigger's WHEN clause carries the lowest and highest threshold in force as
-- constants, so a spend that cannot cross any threshold (the balance stays above the
-- highest, or was already below the lowest) costs no function call at all. Re-created
-- whenever a threshold setting changes, and here with the current settings.
create or replace function creditgate_private.install_balance_low_trigger()
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_default bigint := coalesce(
    (select (s.value #>> '{}')::bigint from creditgate_private.settings as s
     where s.key = 'low_balance_threshold'),
    (creditgate_private.setting_catalog() -> 'low_balance_threshold' ->> 'value')::bigint
  );
  v_min bigint;
  v_max bigint;
begin
  select least(v_default, min(o.value::text::bigint)), greatest(v_default, max(o.value::text::bigint))
  into v_min, v_max
  from creditgate_private.settings as s
  cross join lateral jsonb_each(s.value) as o
  where s.key = 'plan_low_balance_thresholds' and jsonb_typeof(o.value) = 'number';
  v_min := coalesce(v_min, v_default);
  v_max := coalesce(v_max, v_default);
  execute format(
    'create or replace trigger balances_after_update_event'
    ' after update of balance on creditgate.balances for each row'
    ' when (new.balance < old.balance and new.balance < %s and old.balance >= %s)'
    ' execute function creditgate_private.tg_balances__after_update_event()',
    greatest(v_max, 0), greatest(v_min, 1)
  );
end
$$;
comment on function creditgate_private.install_balance_low_trigger() is
'(Re)creates the balance.low trigger with the current lowest and highest thresholds in its WHEN.';

create or replace function creditgate_private.tg_settings__after_change_thresholds()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform creditgate_private.install_balance_low_trigger();
  return null;
end
$$;
comment on function creditgate_private.tg_settings__after_change_thresholds() is
'A threshold setting changed: re-create the balance.low trigger with the new bounds.';

create or replace trigger settings_after_write_thresholds
after insert or update on creditgate_private.settings
for each row
when (new.key in ('low_balance_threshold', 'plan_low_balance_thresholds'))
execute function creditgate_private.tg_settings__after_change_thresholds();

create or replace trigger settings_after_delete_thresholds
after delete on creditgate_private.settings
for each row
when (old.key in ('low_balance_threshold', 'plan_low_balance_thresholds'))
execute function creditgate_private.tg_settings__after_change_thresholds();
-- The balances trigger itself is created by db/policies/ops.sql, once every function it
-- reads exists.

create or replace trigger generations_after_update_event
after update of status on creditgate.generations
for each row
when (new.status in ('succeeded', 'failed') and old.status is distinct from new.status)
execute function creditgate_private.tg_generations__after_update_event();

create or replace trigger clawbacks_after_insert_event
after insert on creditgate_private.clawbacks
for each row
when (new.requested > new.taken)
execute function creditgate_private.tg_clawbacks__after_insert_event();

revoke all on function creditgate_private.emit_event(text, uuid, jsonb, text) from public, anon, authenticated;
revoke all on function creditgate_private.tg_ledger__after_insert_event() from public, anon, authenticated;
revoke all on function creditgate_private.tg_balances__after_update_event() from public, anon, authenticated;
revoke all on function creditgate_private.install_balance_low_trigger() from public, anon, authenticated;
revoke all on function creditgate_private.tg_settings__after_change_thresholds() from public, anon, authenticated;
revoke all on function creditgate_private.tg_generations__after_update_event() from public, anon, authenticated;
revoke all on function creditgate_private.tg_clawbacks__after_insert_event() from public, anon, authenticated;
