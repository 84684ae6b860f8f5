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
    'started_at', 'finished_at', 'updated_at', 'prices'
  ];
  v_published text[];
  v_listed boolean;
begin
  if not exists (
    select 1 from pg_catalog.pg_publication
    where pubname = 'supabase_realtime' and not puballtables
  ) then
    return;
  end if;
  -- prattrs is null when the table is published whole (no column list).
  select pr.prattrs is not null,
    (select array_agg(a.attname::text) from pg_catalog.pg_attribute as a
     where a.attrelid = pr.prrelid and a.attnum = any(pr.prattrs::int2 []))
  into v_listed, v_published
  from pg_catalog.pg_publication_rel as pr
  inner join pg_catalog.pg_publication as p on p.oid = pr.prpubid
  where p.pubname = 'supabase_realtime' and pr.prrelid = 'creditgate.generations'::regclass;
  if found then
    if v_listed and v_published @> v_columns and v_published <@ v_columns then
      return;
    end if;
    alter publication supabase_realtime drop table creditgate.generations;
  end if;
  execute format(
    'alter publication supabase_realtime add table creditgate.generations (%s)',
    (select string_agg(format('%I', c), ', ') from unnest(v_columns) as c)
  );
end
$$;
