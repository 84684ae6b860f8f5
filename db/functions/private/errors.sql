-- creditgate_private.error_codes() -> table (message, sqlstate, hint)
-- creditgate_private.raise_error(p_message, p_detail, p_hint)
--
-- The one registry of intentional errors (DESIGN §5). SQLSTATEs are PostgREST's PTxyz
-- codes, so Supabase clients get HTTP status xyz. MESSAGE is a constant code, DETAIL is
-- JSON, HINT is advice. Raising an unregistered message is itself an error.

create or replace function creditgate_private.error_codes()
returns table (message text, sqlstate text, hint text)
language sql
immutable
set search_path = ''
as $$
  values
    ('invalid_request', 'PT400', 'Fix the field named in DETAIL and retry.'),
    ('not_authenticated', 'PT401', 'Sign in and send the access token.'),
    ('insufficient_credits', 'PT402', 'Buy or earn more credits, or lower the request.'),
    ('forbidden', 'PT403', 'This action needs an admin.'),
    ('not_found', 'PT404', 'Check the id; it may not exist or not be yours.'),
    ('idempotency_key_reused', 'PT409', 'Use a new idempotency key for a different request.'),
    ('invalid_state', 'PT409', 'The object is not in a state that allows this action.'),
    ('lease_lost', 'PT409', 'Another worker holds this job now; drop the result.'),
    ('rate_limited', 'PT429', 'Wait retry_after_seconds before retrying.'),
    ('daily_cap_reached', 'PT429', 'The daily limit resets at resets_at.'),
    ('maintenance', 'PT503', 'The app is in maintenance; retry later.'),
    ('model_unavailable', 'PT503', 'This model is switched off; pick another one.')
$$;
comment on function creditgate_private.error_codes() is
'Registry of every intentional error: constant message, PTxyz SQLSTATE, advice.';

create or replace function creditgate_private.raise_error(
  p_message text,
  p_detail jsonb default '{}',
  p_hint text default null
) returns void
language plpgsql
set search_path = ''
as $$
declare
  v_sqlstate text;
  v_hint text;
begin
  select e.sqlstate, e.hint into v_sqlstate, v_hint
  from creditgate_private.error_codes() as e
  where e.message = p_message;
  if v_sqlstate is null then
    raise exception 'unregistered error code: %', p_message;
  end if;
  raise exception using
    errcode = v_sqlstate,
    message = p_message,
    detail = coalesce(p_detail, '{}'::jsonb)::text,
    hint = coalesce(p_hint, v_hint);
end
$$;
comment on function creditgate_private.raise_error(text, jsonb, text) is
'Raise a registered error: SQLSTATE and default hint come from error_codes().';

create or replace function creditgate_private.invalid(p_field text, p_reason text)
returns void
language sql
set search_path = ''
as $$
  select creditgate_private.raise_error(
    'invalid_request', jsonb_build_object('field', p_field, 'reason', p_reason)
  );
$$;
comment on function creditgate_private.invalid(text, text) is
'Shorthand for PT400 invalid_request naming the offending field.';

revoke all on function creditgate_private.error_codes() from public, anon, authenticated;
revoke all on function creditgate_private.raise_error(text, jsonb, text) from public, anon, authenticated;
revoke all on function creditgate_private.invalid(text, text) from public, anon, authenticated;
