-- Article text and HTML compressed with pglz again.
-- Append-only: never edit a shipped migration; add the next number instead.
--
-- 007 chose lz4 for its speed, "at about the same size for prose". Measured on the
-- bench farm's 3.3 kB texts it is not: lz4 kept 1,984 bytes of a text where pglz keeps
-- 1,551, and a stored article carries its text twice (content_html, content_text), so
-- pglz saves about 0.9 kB of disk an article (python -m bench.scaleout), for some more
-- CPU in Postgres when a batch is stored and when a reader decompresses. The search
-- vector stays lz4: neither method compresses it, and lz4 gives up sooner. Rows already
-- stored keep their method until they are rewritten.
DO $$
BEGIN
    ALTER TABLE articles
        ALTER COLUMN content_html SET COMPRESSION pglz,
        ALTER COLUMN content_text SET COMPRESSION pglz,
        ALTER COLUMN summary SET COMPRESSION pglz;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'this PostgreSQL cannot choose a compression method: it uses pglz already';
END
$$;
