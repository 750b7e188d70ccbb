-- Polling state: adaptive intervals, failure streaks, permanent redirects and poll leases.

ALTER TABLE feeds
    -- The interval the scheduler settled on from ttl, sy:update*, Cache-Control/Expires
    -- and the feed's observed publishing rate (seconds, before jitter).
    ADD COLUMN update_interval  double precision CHECK (update_interval > 0),
    -- When the current failure streak began (NULL while healthy).
    ADD COLUMN failing_since    timestamptz,
    ADD COLUMN disabled_at      timestamptz,
    -- A 301/308 target seen on consecutive polls; the URL moves after a few.
    ADD COLUMN moved_to         text CHECK (length(moved_to) <= 2048),
    ADD COLUMN moved_count      integer NOT NULL DEFAULT 0,
    -- The lease a queued poll job holds; a job whose token no longer matches is stale.
    ADD COLUMN lease_token      uuid;
