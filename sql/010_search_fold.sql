-- Search in the region's languages: the index and the query fold the same spellings.
-- What is folded, with examples: docs/sql.md, "Full-text search". The rules are
-- aggregator/textfold.py's search_fold(); tests/test_search.py holds this file's
-- literals to what that module generates, and the two folds to each other.
--
-- search_vector stops being a generated column: changing a generated expression
-- rewrites the whole table under an exclusive lock. Instead a trigger computes the
-- folded vector of every article stored or edited from now on, and the articles
-- stored before are refolded in batches of a few thousand rows, each its own short
-- transaction, by `aggregator migrate` and by the running daemon (aggregator/refold.py),
-- while ingestion goes on. Until its batch comes, an old row keeps its old vector.

-- The fold. ASCII text has nothing to fold (lowercasing is to_tsvector's), so it is
-- returned as it is; otherwise, in this order: heh with yeh above to heh (NFKD would
-- make it the Kurdish letter ae), NFKD, the Latin diacritics and Arabic harakat,
-- shadda, tanween, hamza marks and superscript alef dropped, the letter variants
-- mapped, and the article and its proclitics stripped at the start of a word.
CREATE FUNCTION article_search_fold(input text) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
AS $$
DECLARE
    folded text;
BEGIN
    IF octet_length(input) = length(input) THEN
        RETURN input;
    END IF;
    folded := normalize(replace(input, U&'\06C0', U&'\0647'), NFKD);
    folded := regexp_replace(folded, U&'[\0300-\036F\064B-\065F\0670]', '', 'g');
    folded := replace(folded, U&'\064A', U&'\06CC');  -- arabic letter yeh
    folded := replace(folded, U&'\0649', U&'\06CC');  -- arabic letter alef maksura
    folded := replace(folded, U&'\0643', U&'\06A9');  -- arabic letter kaf
    folded := replace(folded, U&'\0629', U&'\0647');  -- arabic letter teh marbuta
    folded := replace(folded, U&'\0640', U&'');  -- arabic tatweel
    folded := replace(folded, U&'\200C', U&' ');  -- zero width non-joiner
    folded := replace(folded, U&'\066B', U&'.');  -- arabic decimal separator
    folded := replace(folded, U&'\066C', U&',');  -- arabic thousands separator
    folded := replace(folded, U&'\0131', U&'i');  -- latin small letter dotless i
    folded := replace(folded, U&'\0671', U&'\0627');  -- arabic letter alef wasla
    folded := replace(folded, U&'\0626', U&'\06CC');  -- arabic letter yeh with hamza above
    IF folded ~ U&'[\0660-\0669\06F0-\06F9]' THEN  -- Arabic-Indic and Persian digits
        folded := replace(folded, U&'\0660', U&'0');
        folded := replace(folded, U&'\0661', U&'1');
        folded := replace(folded, U&'\0662', U&'2');
        folded := replace(folded, U&'\0663', U&'3');
        folded := replace(folded, U&'\0664', U&'4');
        folded := replace(folded, U&'\0665', U&'5');
        folded := replace(folded, U&'\0666', U&'6');
        folded := replace(folded, U&'\0667', U&'7');
        folded := replace(folded, U&'\0668', U&'8');
        folded := replace(folded, U&'\0669', U&'9');
        folded := replace(folded, U&'\06F0', U&'0');
        folded := replace(folded, U&'\06F1', U&'1');
        folded := replace(folded, U&'\06F2', U&'2');
        folded := replace(folded, U&'\06F3', U&'3');
        folded := replace(folded, U&'\06F4', U&'4');
        folded := replace(folded, U&'\06F5', U&'5');
        folded := replace(folded, U&'\06F6', U&'6');
        folded := replace(folded, U&'\06F7', U&'7');
        folded := replace(folded, U&'\06F8', U&'8');
        folded := replace(folded, U&'\06F9', U&'9');
    END IF;
    RETURN regexp_replace(folded, U&'(?<![\0621-\064A\066E\066F\0671-\06D3\06D5\06EE\06EF\06FA-\06FC\06FF\0750-\077F])(?:[\0648\0628\0641\06A9]?\0627\0644|\0644\0644)(?=[\0621-\064A\066E\066F\0671-\06D3\06D5\06EE\06EF\06FA-\06FC\06FF\0750-\077F]{2})(?!(?:\0644\0647|\0630\06CC|\062A\06CC|\0627\0646)(?![\0621-\064A\066E\066F\0671-\06D3\06D5\06EE\06EF\06FA-\06FC\06FF\0750-\077F]))(?![\0621-\064A\066E\066F\0671-\06D3\06D5\06EE\06EF\06FA-\06FC\06FF\0750-\077F]*[\067E\0686\0698\06AF])', '', 'g');
END
$$;

-- The vector of one article: English is stemmed (`english`), every other language is
-- plain tokens (`simple`), both on the folded text; title A, summary B, body C (its
-- first 100,000 characters: a tsvector is limited to 1 MB).
CREATE FUNCTION article_search_vector(title text, summary text, body text, language text)
RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
SELECT setweight(to_tsvector(config, article_search_fold(title)), 'A')
    || setweight(to_tsvector(config, article_search_fold(summary)), 'B')
    || setweight(to_tsvector(config, left(article_search_fold(left(body, 100000)), 100000)), 'C')
FROM (SELECT CASE WHEN language = 'en' OR language LIKE 'en-%'
                  THEN 'english'::regconfig ELSE 'simple'::regconfig END AS config) AS c
$$;

-- The query side: what a user typed (websearch syntax: "phrases", or, -excluded),
-- folded like the articles, as English stems OR plain tokens. Immutable, so the
-- planner folds a constant query to a constant and uses the GIN index.
CREATE OR REPLACE FUNCTION article_search_query(search text) RETURNS tsquery
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
SELECT websearch_to_tsquery('english', article_search_fold(search))
    || websearch_to_tsquery('simple', article_search_fold(search))
$$;

-- No rewrite: the stored vectors stay as they are (PostgreSQL 13+).
ALTER TABLE articles ALTER COLUMN search_vector DROP EXPRESSION;

CREATE FUNCTION articles_search_vector_refresh() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    NEW.search_vector := article_search_vector(NEW.title, NEW.summary, NEW.content_text, NEW.language);
    RETURN NEW;
END
$$;

CREATE TRIGGER articles_search_vector
BEFORE INSERT OR UPDATE OF title, summary, content_text, language ON articles
FOR EACH ROW EXECUTE FUNCTION articles_search_vector_refresh();

-- Internal: how far the refold of the articles stored before this migration got.
-- Rows with done_through < id <= last_id still carry the unfolded vector.
CREATE TABLE search_refold (
    singleton     boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    done_through  bigint  NOT NULL,
    last_id       bigint  NOT NULL
);
INSERT INTO search_refold (done_through, last_id) SELECT 0, coalesce(max(id), 0) FROM articles;
REVOKE ALL ON search_refold FROM PUBLIC;
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'aggregator_reader') THEN
        REVOKE ALL ON search_refold FROM aggregator_reader;
        GRANT EXECUTE ON FUNCTION article_search_fold(text), article_search_query(text),
            article_search_vector(text, text, text, text) TO aggregator_reader;
    END IF;
END
$$;
