-- creditgate_private.tg_users__after_insert(): AFTER INSERT on auth.users.
--   Creates the balance row. A permanent user gets the signup bonus (setting signup_bonus,
--   default 1000, key signup:<user_id>, promotional). An anonymous sign-in
--   (auth.users.is_anonymous) gets setting anonymous_signup_bonus instead (default 0, key
--   signup:anonymous:<user_id>): anonymous users cost nothing to mint, so a bonus for each
--   would be credits for the asking.
-- creditgate_private.tg_users__after_update(): AFTER UPDATE OF is_anonymous on auth.users,
--   only when it goes true -> false (the user linked an email, phone or identity). Grants
--   the signup bonus then, once: a user who already holds signup:<user_id> gets nothing.
--   Never fails GoTrue's update because of a bonus already granted.
-- Both run as the definer: GoTrue writes auth.users as supabase_auth_admin, which has no
-- rights on creditgate tables.

create or replace function creditgate_private.grant_signup_bonus(
  p_user_id uuid,
  p_setting text,
  p_key text
) returns void
language plpgsql
set search_path = ''
as $$
declare
  v_bonus bigint := coalesce((creditgate_private.setting(p_setting))::bigint, 0);
  v_days numeric := (creditgate_private.setting('signup_bonus_expires_days') #>> '{}')::numeric;
begin
  if v_bonus > 0 then
    perform creditgate_private.grant_credits(
      p_user_id, v_bonus, 'signup_bonus', p_key, 'promotional',
      now() + make_interval(days => v_days::integer), 50, 'signup bonus'
    );
  end if;
end
$$;
comment on function creditgate_private.grant_signup_bonus(uuid, text, text) is
'Grants the bonus named by a setting (signup_bonus or anonymous_signup_bonus) under p_key, if above 0.';

create or replace function creditgate_private.tg_users__after_insert()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into creditgate.balances (user_id) values (new.id) on conflict (user_id) do nothing;
  if new.is_anonymous then
    perform creditgate_private.grant_signup_bonus(
      new.id, 'anonymous_signup_bonus', 'signup:anonymous:' || new.id::text
    );
  else
    perform creditgate_private.grant_signup_bonus(new.id, 'signup_bonus', 'signup:' || new.id::text);
  end if;
  return null;
end
$$;
comment on function creditgate_private.tg_users__after_insert() is
'New auth user: balance row plus the signup bonus (the anonymous bonus for anonymous sign-ins), once per user.';

create or replace function creditgate_private.tg_users__after_update()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  -- The user's balance lock first (created if missing: a user from before creditgate),
  -- then the key's: concurrent conversions of one user take turns, and the later one finds
  -- the bonus posted. A bonus already posted is never re-applied, even if the setting
  -- changed since (grant_credits would refuse that replay with PT409 and fail the update).
  perform creditgate_private.lock_balance(new.id, true);
  perform pg_catalog.pg_advisory_xact_lock(1667720057, pg_catalog.hashtext('signup:' || new.id::text));
  if not exists (
    select 1 from creditgate.ledger as l where l.idempotency_key = 'signup:' || new.id::text
  ) then
    perform creditgate_private.grant_signup_bonus(new.id, 'signup_bonus', 'signup:' || new.id::text);
  end if;
  return null;
end
$$;
comment on function creditgate_private.tg_users__after_update() is
'An anonymous user became permanent: the signup bonus, once (key signup:<user_id>).';

revoke all on function creditgate_private.grant_signup_bonus(uuid, text, text) from public, anon, authenticated;
revoke all on function creditgate_private.tg_users__after_insert() from public, anon, authenticated;
revoke all on function creditgate_private.tg_users__after_update() from public, anon, authenticated;

create or replace trigger creditgate_on_auth_user_created
after insert on auth.users
for each row execute function creditgate_private.tg_users__after_insert();

create or replace trigger creditgate_on_auth_user_made_permanent
after update of is_anonymous on auth.users
for each row
when (old.is_anonymous and not new.is_anonymous)
execute function creditgate_private.tg_users__after_update();
