-- creditgate.admin_set_setting(key text, value jsonb) -> jsonb {key, value}       authenticated
--   Sets an app-wide setting (maintenance_mode, signup_bonus, plan_daily_caps,
--   media_ttl_hours, max_prompt_length, max_attempts, lease_seconds...). Only keys listed in
--   creditgate_private.setting_defaults(), with values setting_problem() accepts.
-- creditgate.admin_set_model_enabled(model_id text, enabled boolean) -> jsonb
--   {model_id, enabled}: switches a model on or off for new requests (queued ones still run).
--   Errors: PT401 not_authenticated, PT403 forbidden (not in creditgate_private.admins),
--   PT400 invalid_request (field key / value / enabled), PT404 not_found (model).

create or replace function creditgate.admin_set_setting(key text, value jsonb)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_admin_id uuid := creditgate_private.require_admin();
  v_problem text;
begin
  if admin_set_setting.key is null or not exists (
    select 1 from creditgate_private.setting_defaults() as d where d.key = admin_set_setting.key
  ) then
    perform creditgate_private.invalid('key', 'unknown setting');
  end if;
  v_problem := creditgate_private.setting_problem(admin_set_setting.key, admin_set_setting.value);
  if v_problem is not null then
    perform creditgate_private.invalid('value', v_problem);
  end if;
  insert into creditgate_private.settings as s (key, value, updated_at, updated_by)
  values (admin_set_setting.key, admin_set_setting.value, now(), v_admin_id)
  on conflict on constraint settings_pkey do update
    set value = excluded.value, updated_at = excluded.updated_at, updated_by = excluded.updated_by;
  return jsonb_build_object('key', admin_set_setting.key, 'value', admin_set_setting.value);
end
$$;
comment on function creditgate.admin_set_setting(text, jsonb) is
'Admins set a known app-wide setting to a value of the right type and range.';

create or replace function creditgate.admin_set_model_enabled(model_id text, enabled boolean)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_found text;
begin
  perform creditgate_private.require_admin();
  if admin_set_model_enabled.enabled is null then
    perform creditgate_private.invalid('enabled', 'must be true or false');
  end if;
  update creditgate.models as m
  set enabled = admin_set_model_enabled.enabled
  where m.id = admin_set_model_enabled.model_id
  returning m.id into v_found;
  if v_found is null then
    perform creditgate_private.raise_error('not_found', jsonb_build_object('object', 'model'));
  end if;
  return jsonb_build_object('model_id', v_found, 'enabled', admin_set_model_enabled.enabled);
end
$$;
comment on function creditgate.admin_set_model_enabled(text, boolean) is
'Admins switch a model on or off for new requests; generations already queued still run.';

revoke all on function creditgate.admin_set_setting(text, jsonb) from public, anon, authenticated;
revoke all on function creditgate.admin_set_model_enabled(text, boolean) from public, anon, authenticated;
grant execute on function creditgate.admin_set_setting(text, jsonb) to authenticated;
grant execute on function creditgate.admin_set_model_enabled(text, boolean) to authenticated;
