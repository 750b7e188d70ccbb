-- The reader role reads exactly what docs/sql.md documents, column by column, and
-- nothing that authenticates or steers the daemon: not feeds.websub_secret (it signs
-- WebSub pushes), not feeds.lease_token, not the validators and scheduler internals,
-- not story_keys or the lock table. A table or column a later migration adds stays
-- unreadable until that migration grants it (and docs/sql.md documents it);
-- tests/test_reader_role.py holds the grants and the doc to each other.
-- Append-only: never edit a shipped migration; add the next number instead.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'aggregator_reader') THEN
        RAISE WARNING 'role aggregator_reader does not exist: no reader grants made; '
            'see docs/sql.md, "The reader role"';
        RETURN;
    END IF;
    -- 003 granted SELECT on every table, present and future: take all of it back.
    ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON TABLES FROM aggregator_reader;
    ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON SEQUENCES FROM aggregator_reader;
    REVOKE ALL ON ALL TABLES IN SCHEMA public FROM aggregator_reader;
    REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM aggregator_reader;
    REVOKE CREATE ON SCHEMA public FROM aggregator_reader;

    -- 003 skipped these if the role was created after it ran.
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO aggregator_reader', current_database());
    GRANT USAGE ON SCHEMA public TO aggregator_reader;

    GRANT SELECT (id, content_hash, story_id, canonical_url, title, summary, content_html,
                  content_text, author, language, region, published_at, first_seen_at,
                  updated_at, search_vector)
        ON articles TO aggregator_reader;
    GRANT SELECT (article_id, feed_id, url, guid, title, seen_at)
        ON article_sources TO aggregator_reader;
    -- Not: etag, last_modified, last_body_hash, poll_interval, update_interval,
    -- failing_since, disabled_at, moved_to, moved_count, lease_token,
    -- websub_*, full_text.
    GRANT SELECT (id, url, title, site_url, region, language, disabled, disabled_reason,
                  last_polled_at, last_success_at, last_error, last_error_kind, error_count,
                  next_poll_at,
                  created_at)
        ON feeds TO aggregator_reader;
    GRANT SELECT (id, article_id, created_at, sent_at) ON outbox TO aggregator_reader;
    GRANT SELECT (name, regions, languages, feed_ids, query, created_at)
        ON subscribers TO aggregator_reader;
    GRANT SELECT (id, first_seen_at, published_at, updated_at, article_count,
                  representative_id, merged_into)
        ON stories TO aggregator_reader;
    GRANT SELECT (story_id, first_seen_at, published_at, updated_at, title, canonical_url,
                  article_count, outlet_count, outlets, regions, languages)
        ON story_overview TO aggregator_reader;
    -- Read-only commands check the schema version before they read.
    GRANT SELECT (version, name, applied_at) ON schema_migrations TO aggregator_reader;
END
$$;
