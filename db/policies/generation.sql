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

-- Realtime: owners follow their generations' status (RLS applies to subscribers). The
-- publication carries an explicit column list: only what the owner may read, so a column
-- added later is not streamed until it is listed here. Where the publication exists
-- without this list (Supabase creates it; an older creditgate added the whole table) the
-- table is dropped from it and added back with the list. A FOR ALL TABLES publication
-- cannot take a column list; every column of generations is owner-visible anyway.
do $$
declare
  v_columns text[] := array[
    'id', 'user_id', 'model_id', 'kind', 'status', 'params', 'cost', 'actual_cost',
    'idempotency_key', 'attempts', 'max_attempts', 'output', 'error', 'created_at',
    'started_at', 'finished_at', 'updated_at'
  ];
  v_published text[];
begin
  if not exists (
    select 1 from pg_catalog.pg_publication
    where pubname = 'supabase_realtime' and not puballtables
  ) then
    return;
  end if;
  select t.attnames::text[] into v_published
  from pg_catalog.pg_publication_tables as t
  where t.pubname = 'supabase_realtime' and t.schemaname = 'creditgate' and t.tablename = 'generations';
  -- Listed columns, and published with a list: a table published whole also lists every
  -- column it has (pg_publication_tables), and once the machinery columns are gone (0010)
  -- those are exactly these, yet it would stream any column added later.
  if v_published @> v_columns and v_published <@ v_columns and exists (
    select 1
    from pg_catalog.pg_publication_rel as r
    inner join pg_catalog.pg_publication as p on r.prpubid = p.oid
    where p.pubname = 'supabase_realtime'
      and r.prrelid = 'creditgate.generations'::regclass
      and r.prattrs is not null
  ) then
    return;
  end if;
  if v_published is not null then
    alter publication supabase_realtime drop table creditgate.generations;
  end if;
  execute format(
    'alter publication supabase_realtime add table creditgate.generations (%s)',
    (select string_agg(format('%I', c), ', ') from unnest(v_columns) as c)
  );
end
$$;
