-- RLS and privileges for the generation lifecycle tables.
-- Public registry: enabled models and LoRAs are readable by anyone (their routes and
-- sources live in private tables nobody but the owner can read). Generations and media:
-- owners read their own rows; every write goes through definer functions. Private tables:
-- RLS on with no policy, no grants.

alter table creditgate.models enable row level security;
alter table creditgate.loras enable row level security;
alter table creditgate.generations enable row level security;
alter table creditgate.media enable row level security;
alter table creditgate_private.model_routes enable row level security;
alter table creditgate_private.lora_sources enable row level security;
alter table creditgate_private.rate_limit_rules enable row level security;
alter table creditgate_private.rate_limit_counters enable row level security;
alter table creditgate_private.provider_calls enable row level security;

revoke all on table creditgate.models, creditgate.loras, creditgate.generations, creditgate.media
  from public, anon, authenticated, service_role;
revoke all on table creditgate_private.model_routes, creditgate_private.lora_sources,
  creditgate_private.rate_limit_rules, creditgate_private.rate_limit_counters,
  creditgate_private.provider_calls
  from public, anon, authenticated, service_role;
revoke all on sequence creditgate_private.provider_calls_id_seq
  from public, anon, authenticated, service_role;

grant select on table creditgate.models, creditgate.loras to anon, authenticated, service_role;
grant select on table creditgate.generations, creditgate.media to authenticated, service_role;

drop policy if exists "Anyone can read enabled models" on creditgate.models;
create policy "Anyone can read enabled models" on creditgate.models
  for select to anon, authenticated using (enabled);

drop policy if exists "Anyone can read enabled LoRAs" on creditgate.loras;
create policy "Anyone can read enabled LoRAs" on creditgate.loras
  for select to anon, authenticated using (enabled);

drop policy if exists "Users can read their own generations" on creditgate.generations;
create policy "Users can read their own generations" on creditgate.generations
  for select to authenticated using (user_id = (select auth.uid()));

drop policy if exists "Users can read their own media" on creditgate.media;
create policy "Users can read their own media" on creditgate.media
  for select to authenticated using (user_id = (select auth.uid()));

-- Realtime: owners follow their generations' status (RLS applies to subscribers).
do $$
begin
  if exists (select 1 from pg_catalog.pg_publication where pubname = 'supabase_realtime')
     and not exists (
       select 1 from pg_catalog.pg_publication_tables
       where pubname = 'supabase_realtime' and schemaname = 'creditgate' and tablename = 'generations'
     ) then
    alter publication supabase_realtime add table creditgate.generations;
  end if;
end
$$;
