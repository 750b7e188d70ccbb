-- Story keys, one row per article, and claims on keys instead of one global lock.
-- Append-only: never edit a shipped migration; add the next number instead.
--
-- story_keys held one row per (key, article): 31-33 rows per article, each with two
-- btree entries, 3.4 kB of disk per article. Now an article's keys are one array,
-- found through a GIN index. Each key is stored as a code: the key XOR its article's
-- period (8 weeks since the epoch) shifted into the top 16 bits
-- (aggregator/storage/stories.py, key_code). A lookup asks for the codes of the periods
-- its time window covers (one, or two near a period's end), so a key that recurs every
-- day (a templated bulletin) costs the lookup its rows of those weeks only, however many
-- years of them are stored.
ALTER TABLE story_keys RENAME TO story_keys_by_key;

CREATE TABLE story_keys (
    article_id    bigint      PRIMARY KEY REFERENCES articles (id) ON DELETE CASCADE,
    published_at  timestamptz NOT NULL,
    codes         bigint[]    NOT NULL
);

INSERT INTO story_keys (article_id, published_at, codes)
SELECT article_id, min(published_at),
       array_agg(DISTINCT key # (floor(extract(epoch FROM published_at) / 4838400)::bigint << 48))
FROM story_keys_by_key
GROUP BY article_id;

DROP TABLE story_keys_by_key;

-- fastupdate off: a pending list would be scanned whole by every lookup.
CREATE INDEX story_keys_codes_idx ON story_keys USING gin (codes) WITH (fastupdate = off);

-- The articles stored under any of these codes, always through the GIN index. Asked
-- for a batch's ~1,300 codes, the planner estimates that most rows overlap and reads
-- the table instead, testing every row against every code (0.6 s at 2,500 articles).
-- Runs with its caller's privileges: the reader role, which cannot read story_keys,
-- gets nothing from it.
CREATE FUNCTION story_keys_overlapping(bigint[])
RETURNS TABLE (article_id bigint, published_at timestamptz, codes bigint[])
LANGUAGE sql STABLE ROWS 20
SET enable_seqscan = off
AS $$ SELECT article_id, published_at, codes FROM story_keys WHERE codes && $1 $$;
REVOKE ALL ON FUNCTION story_keys_overlapping(bigint[]) FROM PUBLIC;

-- A store transaction claims the keys of its new articles before it looks up their
-- candidates: it inserts one row per key, in key order, and deletes them again before
-- it commits. A second transaction inserting a key that an open one inserted waits
-- until that one ends (the unique index), then finds the row gone and goes on: it then
-- sees every article the first stored under that key. So only transactions storing
-- articles that share a key wait for each other; nothing stays in the table, and it
-- is unlogged (after a crash it is empty, as it should be). The reader role cannot
-- insert here: it can hold no claim.
CREATE UNLOGGED TABLE story_key_claims (
    key  bigint  PRIMARY KEY
);

-- Internal, like ingest_locks: not the consumers' contract (009 revoked everything on
-- tables created before it; these are new).
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'aggregator_reader') THEN
        REVOKE ALL ON story_keys, story_key_claims FROM aggregator_reader;
    END IF;
END
$$;
