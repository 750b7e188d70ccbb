-- Downstream consumers: full-text search, the arrivals outbox, subscribers and a
-- read-only role. docs/sql.md is the contract these objects implement.
-- Append-only: never edit a shipped migration; add the next number instead.

-- Full-text search. English text is stemmed ("prices" finds "price"); every other
-- language (Arabic, Persian, Turkish, ...) is indexed as plain lowercased tokens,
-- which is what the `simple` configuration gives for any script. The body is cut at
-- 100,000 characters: a tsvector is limited to 1 MB and an article must never fail
-- to store because its text is long.
ALTER TABLE articles ADD COLUMN search_vector tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector(
        CASE WHEN language = 'en' OR language LIKE 'en-%'
             THEN 'english'::regconfig ELSE 'simple'::regconfig END,
        title), 'A')
    || setweight(to_tsvector(
        CASE WHEN language = 'en' OR language LIKE 'en-%'
             THEN 'english'::regconfig ELSE 'simple'::regconfig END,
        summary), 'B')
    || setweight(to_tsvector(
        CASE WHEN language = 'en' OR language LIKE 'en-%'
             THEN 'english'::regconfig ELSE 'simple'::regconfig END,
        left(content_text, 100000)), 'C')
) STORED;

CREATE INDEX articles_search_vector_idx ON articles USING gin (search_vector);

-- The query side of the same rule: the English stems OR the plain tokens of what a
-- user typed (websearch syntax: "quoted phrases", OR, -excluded), so one expression
-- finds English and non-English articles alike. Immutable, so the planner folds it
-- to a constant and uses the GIN index.
CREATE FUNCTION article_search_query(search text) RETURNS tsquery
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT websearch_to_tsquery('english', search) || websearch_to_tsquery('simple', search) $$;

-- "What arrived since" by time (replay windows, dashboards). The index on
-- articles.story_id ("one story across outlets") comes with the stories in 004.
CREATE INDEX articles_first_seen_at_idx ON articles (first_seen_at);

-- The transactional outbox: one row per new article, written by the transaction
-- that stores it, under a lock held until commit, so `id` increases in commit
-- order. The relay turns pending rows (sent_at IS NULL) into subscriber queue jobs
-- and then sets sent_at. Rows are kept: `id` is also the arrival cursor SQL
-- consumers page with.
CREATE TABLE outbox (
    id          bigserial   PRIMARY KEY,
    article_id  bigint      NOT NULL REFERENCES articles (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz,
    CONSTRAINT outbox_article_id_key UNIQUE (article_id)
);

CREATE INDEX outbox_pending_idx ON outbox (id) WHERE sent_at IS NULL;

-- Articles stored before this migration arrived too: give each its arrival row,
-- already sent (they were never new to a subscriber that did not exist yet).
INSERT INTO outbox (article_id, created_at, sent_at)
SELECT id, first_seen_at, now() FROM articles ORDER BY id;

-- A subscriber reads the arq queue aggregator:subscriber:<name>. An empty array
-- means "any"; the dimensions are ANDed, the values within one are ORed.
CREATE TABLE subscribers (
    name        text        PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    regions     text[]      NOT NULL DEFAULT '{}',
    languages   text[]      NOT NULL DEFAULT '{}',
    feed_ids    bigint[]    NOT NULL DEFAULT '{}',
    query       text        CHECK (length(query) <= 1000),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- The read-only role consumers are granted (GRANT aggregator_reader TO alice).
-- Roles belong to the whole cluster: create it once, and only where this user may;
-- otherwise say how to, and let the rest of the schema apply.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'aggregator_reader') THEN
        IF (SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user) THEN
            BEGIN
                CREATE ROLE aggregator_reader NOLOGIN;
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- another database of this cluster created it just now
            END;
        ELSE
            RAISE WARNING 'role aggregator_reader not created: % may not create roles; '
                'see docs/sql.md, "The reader role"', current_user;
            RETURN;
        END IF;
    END IF;
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO aggregator_reader', current_database());
    GRANT USAGE ON SCHEMA public TO aggregator_reader;
    GRANT SELECT ON ALL TABLES IN SCHEMA public TO aggregator_reader;
    -- Tables later migrations add (stories, ...) are readable too.
    ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO aggregator_reader;
END
$$;
