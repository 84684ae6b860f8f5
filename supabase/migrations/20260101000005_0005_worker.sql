-- creditgate generated migration; do not edit. source: schema/0005_worker.sql sha256: 5ded582d17d0237262c571c691d16244e70b9f00f10cd79c3de3ef900d959d09

-- The worker side of the generation lifecycle: what settle and the reaper need to be
-- idempotent per lease, and the indexes the sweeps and admin_stats read through.

-- The lease whose settle produced generations.settle_result. A settle replayed under the
-- same lease returns that result; any other lease gets lease_lost.
alter table creditgate.generations add column settled_lease_token uuid;
comment on column creditgate.generations.settled_lease_token is
'Lease token of the settle that wrote settle_result: replays under it get the stored result.';

-- Which lease each provider attempt ran under: one outcome per lease, ever.
alter table creditgate_private.provider_calls add column lease_token uuid;
comment on column creditgate_private.provider_calls.lease_token is
'Lease the attempt ran under; unique, so a lease reports one outcome (settle or expiry).';
create unique index provider_calls_lease_token_key on creditgate_private.provider_calls (lease_token)
  where lease_token is not null;

-- admin_stats reads generations created since a date, across users.
create index generations_created_at_idx on creditgate.generations (created_at);

-- The purge sweep also lists media their owner deleted (the file must go too).
create index media_deleted_at_idx on creditgate.media (deleted_at)
  where purged_at is null and deleted_at is not null;
