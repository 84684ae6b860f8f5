-- creditgate_private.setting_defaults() -> table (key, value, description)
-- creditgate_private.setting(p_key) -> jsonb
--
-- Settings live in creditgate_private.settings; a key absent there takes its default
-- here. Only keys listed here exist: admin_set_setting refuses anything else.

create or replace function creditgate_private.setting_defaults()
returns table (key text, value jsonb, description text)
language sql
immutable
set search_path = ''
as $$
  values
    ('maintenance_mode', 'false'::jsonb, 'true switches off new generations (PT503 maintenance)'),
    ('signup_bonus', '1000'::jsonb, 'credits granted to each new user (0 = none)'),
    ('signup_bonus_expires_days', 'null'::jsonb, 'days until the signup bonus expires (null = never)')
$$;
comment on function creditgate_private.setting_defaults() is
'Every known setting with its default and meaning.';

create or replace function creditgate_private.setting(p_key text)
returns jsonb
language sql
stable
set search_path = ''
as $$
  select coalesce(
    (select s.value from creditgate_private.settings as s where s.key = p_key),
    (select d.value from creditgate_private.setting_defaults() as d where d.key = p_key)
  );
$$;
comment on function creditgate_private.setting(text) is
'Current value of a setting, falling back to its default.';

revoke all on function creditgate_private.setting_defaults() from public, anon, authenticated;
revoke all on function creditgate_private.setting(text) from public, anon, authenticated;
