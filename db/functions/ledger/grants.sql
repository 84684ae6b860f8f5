-- creditgate.service_grant_credits(user_id, amount, entry_type, idempotency_key, category,
--   expires_at, priority, reason, metadata) -> jsonb            service_role only
-- creditgate.admin_add_credits(user_id, amount, reason, idempotency_key) -> jsonb
--                                                               authenticated, admin checked inside
-- Errors: PT400 invalid_request, PT401, PT403 forbidden, PT404 not_found (unknown user),
--         PT409 idempotency_key_reused. service_grant_credits refuses keys in creditgate's
--         own namespaces (PT400; owed: is what collections of owed credits post under); admin_add_credits stores its keys as admin:<key>.

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
  -- creditgate's own keys are posted by creditgate alone. A grant under one would squat
  -- an entry creditgate owes later: a generation's refund (refund:<id>) would then fail
  -- with PT409 forever, a lot's expiry or a Stripe event's credits likewise.
  if service_grant_credits.idempotency_key ~ '^(signup|stripe|admin|charge|refund|expire|forfeit|owed):' then
    perform creditgate_private.invalid(
      'idempotency_key',
      'the prefixes signup:, stripe:, admin:, charge:, refund:, expire:, forfeit: and owed: are creditgate''s own'
    );
  end if;
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
  v_result jsonb;
begin
  if admin_add_credits.reason is null or length(trim(admin_add_credits.reason)) = 0 then
    perform creditgate_private.invalid('reason', 'required');
  end if;
  perform creditgate_private.check_key(admin_add_credits.idempotency_key);
  -- Namespaced so an admin key can never collide with a system key (stripe:, signup:...).
  v_result := creditgate_private.grant_credits(
    admin_add_credits.user_id,
    admin_add_credits.amount,
    'admin_recharge',
    'admin:' || admin_add_credits.idempotency_key,
    'promotional',
    null,
    50,
    admin_add_credits.reason,
    '{}'::jsonb
  );
  -- Who granted it stays server-side (the ledger is readable by its owner).
  insert into creditgate_private.admin_grants (ledger_id, admin_id)
  values ((v_result ->> 'entry_id')::bigint, v_admin_id)
  on conflict (ledger_id) do nothing;
  return v_result;
end
$$;
comment on function creditgate.admin_add_credits(uuid, bigint, text, text) is
'Admin recharge of a user''s credits. Admin rights come from creditgate_private.admins only.';
revoke all on function creditgate.admin_add_credits(uuid, bigint, text, text) from public, anon, authenticated;
grant execute on function creditgate.admin_add_credits(uuid, bigint, text, text) to authenticated;
