-- creditgate_private.setting_catalog() -> jsonb  {key: {value, description}}
-- creditgate_private.setting_defaults() -> table (key, value, description)
-- creditgate_private.setting(p_key) -> jsonb
-- creditgate_private.setting_problem(p_key, p_value) -> text   null when p_value is acceptable
--
-- Settings live in creditgate_private.settings; a key absent there takes its default
-- here. Only keys listed here exist: admin_set_setting refuses anything else, and refuses a
-- value that setting_problem() objects to (the audit's settings check uses it too).

create or replace function creditgate_private.setting_catalog()
returns jsonb
language plpgsql
immutable
set search_path = ''
as $$
begin
  -- One constant: setting() reads a default with an operator, no query (it runs several
  -- times on every request).
  return '{
    "maintenance_mode": {"value": false,
      "description": "true switches off new generations (PT503 maintenance)"},
    "signup_bonus": {"value": 1000,
      "description": "credits granted to each new user (0 = none)"},
    "anonymous_signup_bonus": {"value": 0,
      "description": "credits granted to each new anonymous user (auth.users.is_anonymous); the signup bonus waits until the user becomes permanent"},
    "signup_bonus_expires_days": {"value": null,
      "description": "days until the signup bonus expires (null = never)"},
    "plan_daily_caps": {"value": {"free": 20000, "pro": 500000},
      "description": "credits a user may be charged per UTC day, by balances.plan (net of refunds); a plan missing here, or mapped to null, is uncapped; 0 blocks the plan"},
    "media_ttl_hours": {"value": 24,
      "description": "hours until unsaved media expire and are purged"},
    "max_prompt_length": {"value": 10000,
      "description": "app-wide ceiling on prompt (and chat conversation) characters; each model has its own, lower limit"},
    "max_attempts": {"value": 3,
      "description": "provider attempts per generation before it fails and is refunded"},
    "lease_seconds": {"value": 120,
      "description": "default worker lease on a claimed generation"},
    "max_lease_seconds": {"value": 3600,
      "description": "longest lease a worker may ask for"},
    "client_ip_header": {"value": "cf-connecting-ip",
      "description": "the one request header that holds the client address for per-IP rate limits: a header name (cf-connecting-ip: set by Supabase''s edge and by the bundled service) or x-forwarded-for:N (the Nth entry from the right, N = trusted proxies that append to it); see docs/security.md"},
    "low_balance_threshold": {"value": 100,
      "description": "balance.low fires when a balance falls below this (0 = never)"},
    "plan_low_balance_thresholds": {"value": {},
      "description": "per-plan override of low_balance_threshold, by balances.plan"},
    "credits_expiring_days": {"value": 7,
      "description": "credits.expiring fires this many days before a lot expires"},
    "webhook_retry_budget_hours": {"value": 72,
      "description": "hours a webhook delivery is retried before it is parked"},
    "webhook_backoff_base_seconds": {"value": 5,
      "description": "first retry delay of a webhook delivery; doubles per attempt, with jitter"},
    "webhook_backoff_max_seconds": {"value": 21600,
      "description": "longest delay between two webhook delivery attempts"},
    "webhook_allow_loopback": {"value": false,
      "description": "development only: allow http:// webhook URLs on 127.0.0.1/::1/localhost"}
  }'::jsonb;
end
$$;
comment on function creditgate_private.setting_catalog() is
'Every known setting: {key: {value: default, description}}.';

create or replace function creditgate_private.setting_defaults()
returns table (key text, value jsonb, description text)
language plpgsql
immutable
set search_path = ''
as $$
begin
  return query
  select c.key, c.value -> 'value', c.value ->> 'description'
  from jsonb_each(creditgate_private.setting_catalog()) as c
  order by c.key;
end
$$;
comment on function creditgate_private.setting_defaults() is
'Every known setting with its default and meaning.';

create or replace function creditgate_private.setting(p_key text)
returns jsonb
language plpgsql
stable
set search_path = ''
as $$
declare
  v_value jsonb;
begin
  -- plpgsql, not sql: its plans are cached per session, and this runs on every request.
  select s.value into v_value from creditgate_private.settings as s where s.key = p_key;
  if found then
    return v_value;
  end if;
  return creditgate_private.setting_catalog() -> p_key -> 'value';
end
$$;
comment on function creditgate_private.setting(text) is
'Current value of a setting, falling back to its default.';

create or replace function creditgate_private.setting_problem(p_key text, p_value jsonb)
returns text
language plpgsql
immutable
set search_path = ''
as $$
declare
  v_type text := jsonb_typeof(p_value);
  v_plan text;
  v_cap jsonb;
begin
  if p_value is null then
    return 'required';
  end if;
  case p_key
    when 'maintenance_mode' then
      if v_type <> 'boolean' then
        return 'must be true or false';
      end if;
    when 'signup_bonus' then
      if not creditgate_private.json_is_int(p_value, 0, 1000000000) then
        return 'must be an integer between 0 and 1000000000';
      end if;
    when 'anonymous_signup_bonus' then
      if not creditgate_private.json_is_int(p_value, 0, 1000000000) then
        return 'must be an integer between 0 and 1000000000';
      end if;
    when 'signup_bonus_expires_days' then
      if v_type <> 'null' and not creditgate_private.json_is_int(p_value, 1, 3650) then
        return 'must be null or an integer between 1 and 3650';
      end if;
    when 'plan_daily_caps' then
      if v_type <> 'object' then
        return 'must be an object mapping plan names to a credit cap (integer >= 0) or null';
      end if;
      for v_plan, v_cap in select e.key, e.value from jsonb_each(p_value) as e loop
        if v_plan !~ '^[a-z][a-z0-9_]{0,31}$' then
          return 'plan names are lower-case identifiers (as balances.plan)';
        end if;
        if jsonb_typeof(v_cap) <> 'null'
           and not creditgate_private.json_is_int(v_cap, 0, 1000000000000000) then
          return 'caps must be null or an integer between 0 and 1000000000000000';
        end if;
      end loop;
    when 'media_ttl_hours' then
      if not creditgate_private.json_is_int(p_value, 1, 8760) then
        return 'must be an integer between 1 and 8760';
      end if;
    when 'max_prompt_length' then
      if not creditgate_private.json_is_int(p_value, 1, 100000) then
        return 'must be an integer between 1 and 100000';
      end if;
    when 'max_attempts' then
      if not creditgate_private.json_is_int(p_value, 1, 10) then
        return 'must be an integer between 1 and 10';
      end if;
    when 'lease_seconds' then
      if not creditgate_private.json_is_int(p_value, 5, 86400) then
        return 'must be an integer between 5 and 86400';
      end if;
    when 'max_lease_seconds' then
      if not creditgate_private.json_is_int(p_value, 5, 86400) then
        return 'must be an integer between 5 and 86400';
      end if;
    when 'client_ip_header' then
      if v_type <> 'string' or (p_value #>> '{}') !~ '^[a-z0-9][a-z0-9-]{0,63}(:[1-9][0-9]?)?$' then
        return 'must be a lower-case header name, optionally with :N (1-99) for the Nth comma-separated entry from the right';
      end if;
    when 'low_balance_threshold' then
      if not creditgate_private.json_is_int(p_value, 0, 1000000000000000) then
        return 'must be an integer between 0 and 1000000000000000';
      end if;
    when 'plan_low_balance_thresholds' then
      if v_type <> 'object' then
        return 'must be an object mapping plan names to a threshold (integer >= 0)';
      end if;
      for v_plan, v_cap in select e.key, e.value from jsonb_each(p_value) as e loop
        if v_plan !~ '^[a-z][a-z0-9_]{0,31}$' then
          return 'plan names are lower-case identifiers (as balances.plan)';
        end if;
        if not creditgate_private.json_is_int(v_cap, 0, 1000000000000000) then
          return 'thresholds must be integers between 0 and 1000000000000000';
        end if;
      end loop;
    when 'credits_expiring_days' then
      if not creditgate_private.json_is_int(p_value, 0, 365) then
        return 'must be an integer between 0 and 365';
      end if;
    when 'webhook_retry_budget_hours' then
      if v_type <> 'number' or (p_value #>> '{}')::numeric not between 0.001 and 720 then
        return 'must be a number of hours between 0.001 and 720';
      end if;
    when 'webhook_backoff_base_seconds' then
      if v_type <> 'number' or (p_value #>> '{}')::numeric not between 0.05 and 3600 then
        return 'must be a number of seconds between 0.05 and 3600';
      end if;
    when 'webhook_backoff_max_seconds' then
      if v_type <> 'number' or (p_value #>> '{}')::numeric not between 0.05 and 604800 then
        return 'must be a number of seconds between 0.05 and 604800';
      end if;
    when 'webhook_allow_loopback' then
      if v_type <> 'boolean' then
        return 'must be true or false';
      end if;
    else
      return 'unknown setting';
  end case;
  return null;
end
$$;
comment on function creditgate_private.setting_problem(text, jsonb) is
'Why a value is unacceptable for a setting (null if it is fine): one place for types and ranges.';

-- A JSON number that is a whole number within [p_min, p_max].
create or replace function creditgate_private.json_is_int(p_value jsonb, p_min numeric, p_max numeric)
returns boolean
language plpgsql
immutable
set search_path = ''
as $$
declare
  v_number numeric;
begin
  if p_value is null or jsonb_typeof(p_value) <> 'number' then
    return false;
  end if;
  v_number := (p_value #>> '{}')::numeric;
  return v_number = trunc(v_number) and v_number between p_min and p_max;
end
$$;
comment on function creditgate_private.json_is_int(jsonb, numeric, numeric) is
'Whether a JSON value is a whole number within a range (1e3 and 512.0 count; "5" does not).';

revoke all on function creditgate_private.setting_catalog() from public, anon, authenticated;
revoke all on function creditgate_private.setting_defaults() from public, anon, authenticated;
revoke all on function creditgate_private.setting(text) from public, anon, authenticated;
revoke all on function creditgate_private.setting_problem(text, jsonb) from public, anon, authenticated;
revoke all on function creditgate_private.json_is_int(jsonb, numeric, numeric) from public, anon, authenticated;
