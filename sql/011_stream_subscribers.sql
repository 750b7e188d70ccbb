-- A subscriber is delivered to either an arq queue (aggregator:subscriber:<name>, the
-- default) or a Redis stream (aggregator:stream:<name>) that a consumer in any language
-- reads through its own consumer group. Existing subscribers stay arq queues.
ALTER TABLE subscribers
    ADD COLUMN kind text NOT NULL DEFAULT 'arq' CHECK (kind IN ('arq', 'stream'));

-- Consumers read the kind with the rest of the subscriber (docs/sql.md). Granted by
-- column, so it holds under column-level grants as well as table-level ones.
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'aggregator_reader') THEN
        GRANT SELECT (kind) ON subscribers TO aggregator_reader;
    END IF;
END
$$;
