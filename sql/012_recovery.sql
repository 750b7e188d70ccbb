-- Recovery in seconds: processes beat, leases name their holder, and a queued store
-- batch is remembered on its feed until it commits (a Redis that restarts empty loses it).

-- One row per running daemon or worker process, beating every couple of seconds.
-- Leases held by a process that stopped beating are released by the others.
CREATE TABLE processes (
    id            uuid        PRIMARY KEY,
    host          text        NOT NULL,
    pid           integer     NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE feeds
    -- The process holding the lease: the scheduler that queued the poll, then the
    -- worker that claimed it (lease_claimed).
    ADD COLUMN lease_owner        uuid,
    ADD COLUMN lease_claimed      boolean NOT NULL DEFAULT false,
    -- The body hash of a store batch queued by a poll and not yet committed.
    ADD COLUMN pending_body_hash  text;

CREATE INDEX feeds_lease_owner ON feeds (lease_owner) WHERE lease_owner IS NOT NULL;

-- Steering state, not the consumers' contract.
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'aggregator_reader') THEN
        REVOKE ALL ON processes FROM aggregator_reader;
    END IF;
END
$$;
