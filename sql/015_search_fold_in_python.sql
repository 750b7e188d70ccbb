-- The store path brings the folded search text with each article: the parse processes
-- fold it in Python (aggregator/stories/text.py's search_fold, held to
-- article_search_fold() by tests/test_search.py), and the article INSERT builds the
-- vector from it. Folding 3 kB of Arabic or Persian in PL/pgSQL doubled the INSERT's
-- cost (0.59 to 1.23 ms an article, bench.store); the parse processes fold it in a
-- fraction of that, off the store's serial step.
--
-- The vector is the same expression as article_search_vector()'s, on text folded before.
CREATE FUNCTION article_search_vector_folded(
    title text, summary text, body text, language text
) RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
SELECT setweight(to_tsvector(
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
        body), 'C')
$$;

-- Every other writer (direct SQL, an edit, an older daemon) still gets the vector
-- folded here: the trigger runs unless the row came with one (an INSERT that set it,
-- an UPDATE that changed it). A condition on the trigger, not in its function: a row
-- that came with its vector costs no PL/pgSQL call.
DROP TRIGGER articles_search_vector ON articles;
CREATE TRIGGER articles_search_vector
BEFORE INSERT ON articles
FOR EACH ROW WHEN (NEW.search_vector IS NULL)
EXECUTE FUNCTION articles_search_vector_refresh();
CREATE TRIGGER articles_search_vector_edit
BEFORE UPDATE OF title, summary, content_text, language ON articles
FOR EACH ROW WHEN (NEW.search_vector IS NOT DISTINCT FROM OLD.search_vector)
EXECUTE FUNCTION articles_search_vector_refresh();

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'aggregator_reader') THEN
        GRANT EXECUTE ON FUNCTION article_search_vector_folded(text, text, text, text)
            TO aggregator_reader;
    END IF;
END
$$;
