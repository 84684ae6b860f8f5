-- creditgate_private.tg_users__after_insert(): AFTER INSERT on auth.users.
-- Creates the balance row and grants the signup bonus (setting signup_bonus, default 1000,
-- key signup:<user_id>, promotional). Runs as the definer because Supabase inserts users
-- as supabase_auth_admin, which has no rights on creditgate tables.

create or replace function creditgate_private.tg_users__after_insert()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_bonus bigint := coalesce((creditgate_private.setting('signup_bonus'))::bigint, 0);
  v_days numeric := (creditgate_private.setting('signup_bonus_expires_days') #>> '{}')::numeric;
begin
  insert into creditgate.balances (user_id) values (new.id) on conflict (user_id) do nothing;
  if v_bonus > 0 then
    perform creditgate_private.grant_credits(
      new.id, v_bonus, 'signup_bonus', 'signup:' || new.id::text, 'promotional',
      now() + make_interval(days => v_days::integer), 50, 'signup bonus'
    );
  end if;
  return null;
end
$$;
comment on function creditgate_private.tg_users__after_insert() is
'New auth user: balance row plus the signup bonus, exactly once per user.';
revoke all on function creditgate_private.tg_users__after_insert() from public, anon, authenticated;

create or replace trigger creditgate_on_auth_user_created
after insert on auth.users
for each row execute function creditgate_private.tg_users__after_insert();
