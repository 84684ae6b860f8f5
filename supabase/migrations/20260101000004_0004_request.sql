-- creditgate generated migration; do not edit. source: schema/0004_request.sql sha256: d80f51f25412b77a3c6c55f7b88d38cff76e435dc953fced12d2f9d0228587d0

-- Request side of the generation lifecycle: sanity on rate-limit counters and the default
-- rate-limit rules. Rules are seeded once here (a versioned file never runs again), so an
-- operator's later edits or deletions stand.

alter table creditgate_private.rate_limit_counters
  add constraint rate_limit_counters_count_check check (count >= 1);

insert into creditgate_private.rate_limit_rules (id, scope, kind, window_seconds, max_requests)
values
  ('user_per_minute', 'user', null, 60, 30),
  ('user_per_hour', 'user', null, 3600, 600),
  ('ip_per_minute', 'ip', null, 60, 120),
  ('user_video_per_hour', 'user', 'video', 3600, 60)
on conflict (id) do nothing;
