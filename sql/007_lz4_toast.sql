-- Article text, HTML and search vectors are TOASTed (compressed out of line) past 2 kB.
-- lz4 compresses and decompresses several times faster than the default pglz, at
-- about the same size for prose: storing a batch costs less CPU in Postgres. A server
-- built without lz4 keeps pglz (the notice says so); rows already stored keep theirs.
DO $$
BEGIN
    ALTER TABLE articles
        ALTER COLUMN content_html SET COMPRESSION lz4,
        ALTER COLUMN content_text SET COMPRESSION lz4,
        ALTER COLUMN summary SET COMPRESSION lz4,
        ALTER COLUMN search_vector SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'this PostgreSQL has no lz4: article text stays compressed with pglz';
END
$$;
