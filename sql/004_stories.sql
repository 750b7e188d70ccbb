-- Stories: the edited copies of one news story across outlets (aggregator/stories.py).
-- Append-only: never edit a shipped migration; add the next number instead.

-- One row per story. A story's id is the id of the article that started it; a
-- story found later to be the same as another points at it with merged_into
-- (its articles move), so an id handed out once always leads somewhere.
CREATE TABLE stories (
    id                 bigint      PRIMARY KEY,
    first_seen_at      timestamptz NOT NULL,
    published_at       timestamptz NOT NULL,  -- the earliest publication among its articles
    updated_at         timestamptz NOT NULL,  -- when an article last joined
    article_count      integer     NOT NULL DEFAULT 1,  -- as of the last join (the view counts live)
    representative_id  bigint      REFERENCES articles (id) ON DELETE SET NULL,
    merged_into        bigint      REFERENCES stories (id)
);

CREATE INDEX stories_first_seen_at_idx ON stories (first_seen_at DESC) WHERE merged_into IS NULL;
CREATE INDEX stories_published_at_idx ON stories (published_at DESC) WHERE merged_into IS NULL;

-- Articles stored before stories existed: each is a story of its own. (They have no
-- story keys, so later copies do not find them.)
INSERT INTO stories (id, first_seen_at, published_at, updated_at, representative_id)
SELECT id, first_seen_at, published_at, first_seen_at, id FROM articles WHERE story_id IS NULL;
UPDATE articles SET story_id = id WHERE story_id IS NULL;

ALTER TABLE articles
    ADD CONSTRAINT articles_story_id_fkey FOREIGN KEY (story_id) REFERENCES stories (id);
CREATE INDEX articles_story_id_idx ON articles (story_id);

-- The lookup side of story matching: a few keys per article (MinHash LSH bands of
-- its text and lead, its canonical URL, publisher-scoped guid and headline). A new
-- article reads only the rows of its own keys within the time window, so the cost
-- does not grow with the number of stored articles.
CREATE TABLE story_keys (
    key           bigint      NOT NULL,
    article_id    bigint      NOT NULL REFERENCES articles (id) ON DELETE CASCADE,
    published_at  timestamptz NOT NULL
);

CREATE INDEX story_keys_key_idx ON story_keys (key, published_at);
CREATE INDEX story_keys_article_id_idx ON story_keys (article_id);

-- Stories as a reader sees them: the representative headline (the fullest text),
-- how many articles and outlets carried it, and where. Counted live from the
-- articles, so pruning old articles never leaves a stale figure; a story with no
-- article left is not shown. An outlet is a site (the host of the feed's site link,
-- else of the feed URL): two feeds of one site are one outlet.
CREATE VIEW story_overview AS
SELECT s.id AS story_id,
       s.first_seen_at,
       s.published_at,
       s.updated_at,
       r.title,
       r.canonical_url,
       o.article_count,
       o.outlet_count,
       o.outlets,
       o.regions,
       o.languages
FROM stories s
CROSS JOIN LATERAL (
    SELECT a.title, a.canonical_url
    FROM articles a
    WHERE a.story_id = s.id
    ORDER BY a.id = s.representative_id DESC, length(a.content_text) DESC, a.published_at, a.id
    LIMIT 1
) r
CROSS JOIN LATERAL (
    SELECT count(DISTINCT a.id) AS article_count,
           count(DISTINCT f.outlet) AS outlet_count,
           coalesce(array_agg(DISTINCT f.outlet) FILTER (WHERE f.outlet IS NOT NULL), '{}') AS outlets,
           coalesce(array_agg(DISTINCT a.region) FILTER (WHERE a.region IS NOT NULL), '{}') AS regions,
           coalesce(array_agg(DISTINCT a.language) FILTER (WHERE a.language IS NOT NULL), '{}') AS languages
    FROM articles a
    LEFT JOIN article_sources src ON src.article_id = a.id
    LEFT JOIN LATERAL (
        SELECT lower(substring(coalesce(fd.site_url, fd.url)
                               FROM '^[A-Za-z][A-Za-z0-9+.-]*://(?:[^@/]*@)?([^/:?#]+)')) AS outlet
        FROM feeds fd WHERE fd.id = src.feed_id
    ) f ON true
    WHERE a.story_id = s.id
) o
WHERE s.merged_into IS NULL;
