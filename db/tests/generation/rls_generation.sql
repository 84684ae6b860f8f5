-- RLS and privileges on the generation tables: the public registry shows enabled models and
-- LoRAs only and never a route or source; generations and media are owner-only reads;
-- nobody writes directly; private tables are closed to every client role.
begin;

select tests.seed_models();
insert into creditgate.loras (id, name, model_ids, price, enabled) values ('lora-off', 'Off', array['img-test'], 1, false);
select tests.create_user() as u \gset
select tests.create_user() as other \gset
select tests.media_for(:'u') as m \gset
select tests.media_for(:'other') as other_m \gset
select tests.as_user(:'u');
select creditgate.request_generation('img-test', '{"prompt": "mine"}', 'r-1') ->> 'generation_id' as g \gset
select tests.as_user(:'other');
select creditgate.request_generation('img-test', '{"prompt": "theirs"}', 'r-1') ->> 'generation_id' as other_g \gset
select tests.as_owner();

create temp table private_tables (name text) on commit drop;
grant select on private_tables to anon, authenticated, service_role;
insert into private_tables values
  ('creditgate_private.model_routes'), ('creditgate_private.lora_sources'),
  ('creditgate_private.rate_limit_rules'), ('creditgate_private.rate_limit_counters'),
  ('creditgate_private.provider_calls');

select plan(53);

-- RLS is on everywhere.
select ok(c.relrowsecurity, c.oid::regclass::text || ' has RLS enabled')
from pg_class as c
where c.oid in ('creditgate.models'::regclass, 'creditgate.loras'::regclass, 'creditgate.generations'::regclass,
  'creditgate.media'::regclass, 'creditgate_private.model_routes'::regclass, 'creditgate_private.lora_sources'::regclass,
  'creditgate_private.rate_limit_rules'::regclass, 'creditgate_private.rate_limit_counters'::regclass,
  'creditgate_private.provider_calls'::regclass)
order by c.oid::regclass::text;

-- No client role holds any privilege on a private table.
select is(
  (select count(*)::integer from private_tables as p, unnest(array['anon', 'authenticated', 'service_role']) as r (role),
     unnest(array['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) as k (priv)
   where has_table_privilege(r.role, p.name, k.priv)),
  0, 'anon, authenticated and service_role have no privilege on private generation tables');

-- anon: the public registry only.
select tests.as_anon();
select is((select array_agg(m.id order by m.id) from creditgate.models as m),
  array['chat-test', 'edit-test', 'img-test', 'video-test'], 'anon sees the enabled models only');
select is((select array_agg(l.id order by l.id) from creditgate.loras as l),
  array['lora-a', 'lora-b'], 'anon sees the enabled LoRAs only');
select ok((select string_agg(to_jsonb(m)::text, ' ') from creditgate.models as m) !~ '(127\.0\.0\.1|7860|local-|endpoint)',
  'model rows carry no route');
select ok((select string_agg(to_jsonb(l)::text, ' ') from creditgate.loras as l) !~ '(safetensors|loras/|source)',
  'LoRA rows carry no source');
select throws_ok($$select * from creditgate.generations$$, '42501', 'permission denied for table generations',
  'anon cannot read generations');
select throws_ok($$select * from creditgate.media$$, '42501', 'permission denied for table media',
  'anon cannot read media');
select throws_ok($$select * from creditgate_private.model_routes$$, '42501', 'permission denied for schema creditgate_private',
  'anon cannot reach routes');
select throws_ok($$insert into creditgate.models (id, kind, name) values ('evil', 'image', 'x')$$,
  '42501', 'permission denied for table models', 'anon cannot add models');
select ok(has_function_privilege('anon', 'creditgate.quote(text, jsonb)', 'execute'), 'anon may quote');
select ok(not has_function_privilege('anon', 'creditgate.request_generation(text, jsonb, text)', 'execute'),
  'anon may not request generations');
select ok(not has_function_privilege('anon', 'creditgate.cancel_generation(uuid)', 'execute'), 'anon may not cancel');
select ok(not has_function_privilege('anon', 'creditgate.save_media(uuid)', 'execute'), 'anon may not save media');
select ok(not has_function_privilege('anon', 'creditgate.delete_media(uuid)', 'execute'), 'anon may not delete media');
select ok(not has_function_privilege('anon', 'creditgate.admin_set_setting(text, jsonb)', 'execute'), 'anon may not set settings');
select ok(not has_function_privilege('anon', 'creditgate.admin_set_model_enabled(text, boolean)', 'execute'), 'anon may not switch models');
select ok(not has_function_privilege('public', 'creditgate.request_generation(text, jsonb, text)', 'execute'),
  'PUBLIC holds no execute on request_generation');

-- authenticated: own rows only, no writes, nothing private.
select tests.as_user(:'u');
select is((select array_agg(m.id order by m.id) from creditgate.models as m),
  array['chat-test', 'edit-test', 'img-test', 'video-test'], 'users see the enabled models only');
select is((select array_agg(l.id order by l.id) from creditgate.loras as l), array['lora-a', 'lora-b'],
  'users see the enabled LoRAs only');
select is((select count(*)::integer from creditgate.generations as g where g.id = :'g'), 1, 'a user reads their generation');
select is((select count(*)::integer from creditgate.generations as g where g.id = :'other_g'), 0,
  'a user cannot read another user''s generation');
select is((select count(*)::integer from creditgate.generations as g where g.user_id <> :'u'), 0,
  'no other user''s generation is visible at all');
select is((select count(*)::integer from creditgate.media as m where m.id = :'m'), 1, 'a user reads their media');
select is((select count(*)::integer from creditgate.media as m where m.id = :'other_m'), 0,
  'a user cannot read another user''s media');
select is((select count(*)::integer from creditgate.media as m where m.user_id <> :'u'), 0,
  'no other user''s media is visible at all');
select throws_ok(format($$update creditgate.generations set status = 'succeeded' where id = %L$$, :'g'),
  '42501', 'permission denied for table generations', 'a user cannot update their generation');
select throws_ok(format($$delete from creditgate.generations where id = %L$$, :'g'),
  '42501', 'permission denied for table generations', 'a user cannot delete their generation');
select throws_ok(
  format($$insert into creditgate.generations (user_id, model_id, kind, params, cost, idempotency_key)
           values (%L, 'img-test', 'image', '{}', 1, 'x')$$, :'u'),
  '42501', 'permission denied for table generations', 'a user cannot insert a generation');
select throws_ok(format($$update creditgate.media set saved = true where id = %L$$, :'m'),
  '42501', 'permission denied for table media', 'a user cannot update media directly');
select throws_ok($$update creditgate.models set enabled = true$$,
  '42501', 'permission denied for table models', 'a user cannot change models');
select throws_ok($$update creditgate.loras set price = 0$$,
  '42501', 'permission denied for table loras', 'a user cannot change LoRA prices');
select throws_ok($$select * from creditgate_private.model_routes$$, '42501', 'permission denied for schema creditgate_private',
  'a user cannot read routes');
select throws_ok($$select * from creditgate_private.lora_sources$$, '42501', 'permission denied for schema creditgate_private',
  'a user cannot read LoRA sources');
select throws_ok($$select * from creditgate_private.rate_limit_counters$$, '42501', 'permission denied for schema creditgate_private',
  'a user cannot read rate limit counters');
select throws_ok($$delete from creditgate_private.rate_limit_counters$$, '42501', 'permission denied for schema creditgate_private',
  'a user cannot reset rate limits');
select ok((select string_agg(to_jsonb(g)::text, ' ') from creditgate.generations as g) !~ '(127\.0\.0\.1|7860|local-img-test|safetensors)',
  'a user''s generation rows carry no route or source');

-- service_role reads, but writes only through functions.
select tests.as_service();
select throws_ok(format($$update creditgate.generations set status = 'succeeded' where id = %L$$, :'g'),
  '42501', 'permission denied for table generations', 'service_role cannot update generations directly');
select throws_ok(format($$delete from creditgate.media where id = %L$$, :'m'),
  '42501', 'permission denied for table media', 'service_role cannot delete media rows directly');
select throws_ok($$update creditgate.models set enabled = true$$,
  '42501', 'permission denied for table models', 'service_role cannot change models directly');

-- Realtime publishes generations (RLS then filters what each subscriber sees).
select tests.as_owner();
select ok(
  not exists (select 1 from pg_publication where pubname = 'supabase_realtime')
  or exists (select 1 from pg_publication_tables
             where pubname = 'supabase_realtime' and schemaname = 'creditgate' and tablename = 'generations'),
  'creditgate.generations is in the supabase_realtime publication');

-- Policies use (select auth.uid()) on an indexed column.
select policies_are('creditgate', 'generations', array['Users can read their own generations']);
select policies_are('creditgate', 'media', array['Users can read their own media']);
select policies_are('creditgate', 'models', array['Anyone can read enabled models']);
select policies_are('creditgate', 'loras', array['Anyone can read enabled LoRAs']);

select * from finish();
rollback;
