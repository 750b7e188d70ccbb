-- What the last read of a feed's body dropped or worked around, in one line: a truncated
-- document's unfinished entry, a memory or time cap that applied, an encoding repaired.
-- NULL when the body was read whole and clean. Part of the readers' contract (docs/sql.md).
ALTER TABLE feeds ADD COLUMN last_warning text;

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'aggregator_reader') THEN
        GRANT SELECT (last_warning) ON feeds TO aggregator_reader;
    END IF;
END
$$;
