-- creditgate.cancel_generation(generation_id uuid) -> jsonb                     authenticated
--   {generation_id, status: 'canceled', refunded, balance}
--   The owner cancels a generation that no worker has claimed yet; its charge is refunded
--   in full (key refund:<generation_id>), in the same transaction.
--   Errors: PT401 not_authenticated, PT404 not_found (unknown or not the caller's),
--   PT409 invalid_state (already running, finished or canceled; DETAIL {status}).
--
-- Locks: the caller's balance row first (as every money operation), then the generation
-- row. A worker's claim skips the locked row (SKIP LOCKED) and then sees it canceled.

create or replace function creditgate.cancel_generation(generation_id uuid)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user_id uuid := creditgate_private.require_user();
  v_generation creditgate.generations;
  v_refund jsonb;
begin
  -- Cheap unlocked look first, so a stranger's or unknown id never takes the balance lock.
  if not exists (
    select 1 from creditgate.generations as g
    where g.id = cancel_generation.generation_id and g.user_id = v_user_id
  ) then
    perform creditgate_private.raise_error('not_found', jsonb_build_object('object', 'generation'));
  end if;

  perform creditgate_private.lock_balance(v_user_id);
  select g.* into v_generation
  from creditgate.generations as g
  where g.id = cancel_generation.generation_id and g.user_id = v_user_id
  for update;
  if v_generation.status <> 'queued' then
    perform creditgate_private.raise_error(
      'invalid_state', jsonb_build_object('status', v_generation.status, 'allowed', 'queued')
    );
  end if;

  update creditgate.generations as g
  set status = 'canceled', finished_at = now(), updated_at = now(),
      error = jsonb_build_object('code', 'canceled', 'message', 'Canceled by the user.')
  where g.id = v_generation.id;
  perform pg_notify('creditgate_generation_settled', v_generation.id::text);
  v_refund := creditgate_private.refund_credits(
    v_user_id, 'charge:' || v_generation.id::text, v_generation.cost, 'refund:' || v_generation.id,
    'canceled', jsonb_build_object('generation_id', v_generation.id)
  );
  return jsonb_build_object(
    'generation_id', v_generation.id,
    'status', 'canceled',
    'refunded', (v_refund ->> 'refunded')::bigint,
    'balance', (v_refund ->> 'balance')::bigint
  );
end
$$;
comment on function creditgate.cancel_generation(uuid) is
'The owner cancels a queued generation; its charge is refunded in full in the same transaction.';

revoke all on function creditgate.cancel_generation(uuid) from public, anon, authenticated;
grant execute on function creditgate.cancel_generation(uuid) to authenticated;
