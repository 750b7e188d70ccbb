-- The core tables: feeds we poll, the articles they carry, and every sighting.
-- Append-only: never edit a shipped migration; add the next number instead.

CREATE TABLE feeds (
    id               bigserial PRIMARY KEY,
    url              text        NOT NULL CHECK (length(url) <= 2048),
    title            text,
    site_url         text,
    region           text,
    language         text,
    etag             text,
    last_modified    text,
    last_body_hash   text,
    poll_interval    double precision CHECK (poll_interval > 0),
    next_poll_at     timestamptz NOT NULL DEFAULT now(),
    last_polled_at   timestamptz,
    last_success_at  timestamptz,
    error_count      integer     NOT NULL DEFAULT 0,
    last_error       text,
    last_error_kind  text,
    disabled         boolean     NOT NULL DEFAULT false,
    disabled_reason  text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT feeds_url_key UNIQUE (url)
);

-- The scheduler's only question: which active feeds are due?
CREATE INDEX feeds_due_idx ON feeds (next_poll_at) WHERE NOT disabled;

CREATE TABLE articles (
    id             bigserial PRIMARY KEY,
    content_hash   text        NOT NULL CHECK (length(content_hash) = 64),
    story_id       bigint,
    canonical_url  text,
    title          text        NOT NULL DEFAULT '',
    summary        text        NOT NULL DEFAULT '',
    content_html   text        NOT NULL DEFAULT '',
    content_text   text        NOT NULL DEFAULT '',
    author         text,
    language       text,
    region         text,
    published_at   timestamptz NOT NULL,
    first_seen_at  timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT articles_content_hash_key UNIQUE (content_hash)
);

CREATE INDEX articles_published_at_idx ON articles (published_at DESC);
CREATE INDEX articles_region_published_at_idx ON articles (region, published_at DESC);

-- One row per (article, feed): the same story from five feeds is one article
-- with five sightings. url and guid are as that feed published them.
CREATE TABLE article_sources (
    article_id  bigint      NOT NULL REFERENCES articles (id) ON DELETE CASCADE,
    feed_id     bigint      NOT NULL REFERENCES feeds (id) ON DELETE CASCADE,
    url         text,
    guid        text,
    title       text,
    seen_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (article_id, feed_id)
);

CREATE INDEX article_sources_feed_id_idx ON article_sources (feed_id, seen_at DESC);
