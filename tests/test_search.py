"""Search in the region's languages: the hand-labelled query set through the real store
path and SQL, the SQL fold held to the Python reference (textfold.search_fold), the
migration held to the tables it was generated from, and the refold of an upgraded
database in batches while articles keep arriving."""

from __future__ import annotations

import asyncio
import os
import random
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from aggregator.model import Article
from aggregator.pipeline.contenthash import content_hash
from aggregator.settings import Settings
from aggregator.storage import feeds, locks, migrations, refold
from aggregator.storage.articles import StoreBatch, Validators, store_batch
from aggregator.stories import text as textfold
from tests import processes, services
from tests.groundtruth import SHARED_FIXTURES
from tests.search_queries import ARTICLES, QUERIES

MIGRATION = Path(__file__).parent.parent / "sql" / "010_search_fold.sql"
T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def _article(key: str, language: str, title: str, body: str) -> Article:
    url = f"https://labelled.example/{key}"
    summary = body[:80]
    return Article(
        content_hash=content_hash(body, title=title, canonical_url=url),
        canonical_url=url,
        url=url,
        guid=url,
        title=title,
        summary=summary,
        content_html=f"<p>{body}</p>",
        content_text=body,
        author=None,
        language=language,
        region="test",
        published_at=T0,
    )


async def store(conn: asyncpg.Connection, articles: list[Article], feed_url: str) -> None:
    feed, _ = await feeds.add(conn, feeds.FeedSpec(url=feed_url))
    batch = StoreBatch(
        feed_id=feed.id,
        body_hash="e" * 64,
        validators=Validators(body_hash="e" * 64),
        articles=articles,
        fetched_at=datetime.now(UTC),
    )
    await store_batch(conn, batch)


@pytest.fixture
async def conn(database_url: str, clean_services: None) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database_url)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
async def labelled(conn: asyncpg.Connection) -> dict[str, str]:
    """The labelled articles, stored by the store step; canonical_url -> key."""
    articles = [_article(key, *fields) for key, fields in ARTICLES.items()]
    await store(conn, articles, "https://labelled.example/rss")
    return {f"https://labelled.example/{key}": key for key in ARTICLES}


async def search(conn: asyncpg.Connection, urls: dict[str, str], query: str) -> set[str]:
    rows = await conn.fetch(
        "SELECT canonical_url FROM articles WHERE search_vector @@ article_search_query($1)",
        query,
    )
    return {urls[r["canonical_url"]] for r in rows}


# --- the labelled query set --------------------------------------------------------------------


async def test_labelled_query_set_passes_in_full(
    conn: asyncpg.Connection, labelled: dict[str, str]
) -> None:
    assert len(QUERIES) >= 60
    assert await conn.fetchval("SELECT count(*) FROM articles") == len(ARTICLES)
    failures = []
    for query, expected in QUERIES:
        found = await search(conn, labelled, query)
        if found != expected:
            failures.append(f"{query!r}: missing {expected - found}, extra {found - expected}")
    score = len(QUERIES) - len(failures)
    print(f"labelled search queries: {score}/{len(QUERIES)}")
    assert failures == [], f"{score}/{len(QUERIES)}:\n" + "\n".join(failures)


async def test_the_issue_examples_each_find_the_other_spelling(
    conn: asyncpg.Connection, labelled: dict[str, str]
) -> None:
    """Issue 13's six Arabic and Persian misses and its Turkish one, in both directions."""
    pairs = [
        ("عمان", "عُمان"),
        ("اسعار", "أسعار"),
        ("ذهب", "الذهب"),
        ("ايران", "ایران"),
        ("كتابخانه", "کتابخانه"),
        ("34", "۳۴"),
        ("sirnak", "ŞIRNAK"),
    ]
    for plain, other in pairs:
        found = await search(conn, labelled, plain)
        assert found, plain
        assert await search(conn, labelled, other) == found, (plain, other)


async def test_subscriber_filters_fold_too(conn: asyncpg.Connection) -> None:
    await conn.execute("INSERT INTO subscribers (name, query) VALUES ('gold', 'ذهب -سعر')")
    await store(conn, [_article("ar_gold", *ARTICLES["ar_gold"])], "https://labelled.example/a")
    matched = await conn.fetchval(
        "SELECT count(*) FROM articles a, subscribers s "
        "WHERE s.name = 'gold' AND a.search_vector @@ article_search_query(s.query)"
    )
    assert matched == 1


async def test_a_search_uses_the_gin_index(
    conn: asyncpg.Connection, labelled: dict[str, str]
) -> None:
    async with conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(
            r[0]
            for r in await conn.fetch(
                "EXPLAIN SELECT id FROM articles "
                "WHERE search_vector @@ article_search_query('الذهب')"
            )
        )
    assert "articles_search_vector_idx" in plan, plan


# --- one fold: the SQL function is the Python reference ----------------------------------------


def test_the_migration_is_generated_from_textfold() -> None:
    sql = MIGRATION.read_text(encoding="utf-8")
    body = textfold.sql_fold_body()
    assert (
        "CREATE FUNCTION article_search_fold(input text) RETURNS text\n"
        "LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE\n"
        f"AS $$\n{body}$$;"
    ) in sql
    # Every rule of the table is in it once, and nothing else is replaced.
    replaced = re.findall(r"(?<!regexp_)replace\(folded, U&'([^']*)'", body)
    assert len(replaced) == len(set(replaced)) == len(textfold._SEARCH_TABLE)
    assert textfold.sql_literal(textfold.ARTICLE) in body


def _corpus_texts() -> list[str]:
    texts = []
    for root in (Path(__file__).parent / "corpus", SHARED_FIXTURES):
        path = root / "articles.txt"
        if path.exists():
            paragraphs = path.read_text(encoding="utf-8").split("\n\n")
            texts += [p for p in paragraphs if p.strip() and not p.isascii()]
    for _, title, body in ARTICLES.values():
        texts += [title, body]
    return texts


async def sql_fold(conn: asyncpg.Connection, texts: list[str]) -> list[str]:
    rows = await conn.fetch(
        "SELECT article_search_fold(t) AS f FROM unnest($1::text[]) WITH ORDINALITY AS u(t, n) "
        "ORDER BY n",
        texts,
    )
    return [r["f"] for r in rows]


async def test_sql_fold_is_the_python_fold_on_the_corpora(conn: asyncpg.Connection) -> None:
    texts = _corpus_texts()
    assert len(texts) > 100
    folded = await sql_fold(conn, texts)
    mismatches = [t for t, f in zip(texts, folded, strict=True) if f != textfold.search_fold(t)]
    assert mismatches == []


# Letters, marks and digits of the scripts in play, and the separators between words.
_ALPHABET = st.one_of(
    st.sampled_from(
        "ابتثجحخدذرزسشصضطظعغفقكلمنهويءآأإؤئىةپچژگکیۀٱـًٌٍَُِّْٰٓٔ٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹٫٬\u200c\u200d\u06d5ەل"
    ),
    st.sampled_from("aAiIıİşŞçÇğĞöÖüÜéÉàñßﬁＡ"),
    st.sampled_from(" -\"'.,:!?()0123456789\n"),
    st.characters(min_codepoint=0x0300, max_codepoint=0x036F),
    st.characters(min_codepoint=0xFB50, max_codepoint=0xFDFF, categories=["Lo"]),
)


@given(st.lists(st.text(_ALPHABET, max_size=40), min_size=1, max_size=30))
@hypothesis_settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_sql_fold_is_the_python_fold_on_mixed_scripts(database_url: str, texts: list[str]) -> None:
    async def check() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            await migrations.migrate(conn)
            assert await sql_fold(conn, texts) == [textfold.search_fold(t) for t in texts]
        finally:
            await conn.close()

    asyncio.run(check())


@given(st.text(_ALPHABET, max_size=60))
def test_the_search_fold_is_idempotent(text: str) -> None:
    once = textfold.search_fold(text)
    # Stripping the article can expose another one ("الالفین"): folding twice may strip
    # twice, never anything else.
    twice = textfold.search_fold(once)
    assert twice == once or len(twice) < len(once)


# --- the upgrade: no rewrite, the old vectors kept, then refolded in batches ---------------------


@pytest.fixture
async def upgrade_db(database_url: str) -> AsyncIterator[str]:
    """A database of its own, migrated up to 009 (the schema before search folding)."""
    server = services.with_database(database_url, "postgres")
    name = f"aggregator_search_upgrade_{os.getpid()}"
    url = await services.create_database(server, name)
    try:
        yield url
    finally:
        await services.drop_database(server, name)


async def _migrate_all_but(conn: asyncpg.Connection, *versions: int) -> None:
    """Every migration but ``versions``: the later migrations' columns must exist for
    today's store path (015, which builds on 010's trigger, goes with it)."""
    await locks.ensure(conn)
    await conn.execute(migrations._CREATE_TABLE)
    for m in migrations.available():
        if m.version not in versions:
            async with conn.transaction():
                await conn.execute(m.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    m.version,
                    m.name,
                )


async def _migrate_before_folding(conn: asyncpg.Connection) -> None:
    await _migrate_all_but(conn, 10, 15)


# A writer that names no search_vector: another program's INSERT, or a daemon before 010
# (a generated column then, where today's store path, which brings the folded vector,
# cannot run).
_INSERT_PLAINLY = """
INSERT INTO articles (content_hash, canonical_url, title, summary, content_html, content_text,
                      language, region, published_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                     $7::text[], $8::text[], $9::timestamptz[])
"""


async def insert_plainly(conn: asyncpg.Connection, articles: list[Article]) -> None:
    columns = [
        (
            a.content_hash,
            a.canonical_url,
            a.title,
            a.summary,
            a.content_html,
            a.content_text,
            a.language,
            a.region,
            a.published_at,
        )
        for a in articles
    ]
    await conn.execute(_INSERT_PLAINLY, *map(list, zip(*columns, strict=True)))


def _variants(n: int) -> list[Article]:
    rng = random.Random(n)
    out = []
    for i in range(n):
        key, (language, title, body) = rng.choice(list(ARTICLES.items()))
        out.append(_article(f"{key}-{n}-{i}", language, f"{title} {i}", f"{body} {n} {i}"))
    return out


_UNFOLDED = """
SELECT count(*) FROM articles
WHERE search_vector IS DISTINCT FROM article_search_vector(title, summary, content_text, language)
"""


async def test_upgrade_keeps_old_vectors_then_refolds_in_batches_while_storing(
    upgrade_db: str,
) -> None:
    conn = await asyncpg.connect(upgrade_db)
    writer = await asyncpg.connect(upgrade_db)
    pool = await asyncpg.create_pool(upgrade_db, min_size=1, max_size=2)
    try:
        await _migrate_before_folding(conn)
        old = _variants(300)
        await insert_plainly(conn, old)
        before = await conn.fetch("SELECT id, search_vector::text AS v FROM articles ORDER BY id")
        relfile = await conn.fetchval("SELECT pg_relation_filenode('articles')")

        applied = await migrations.migrate(conn)
        assert [m.version for m in applied] == [10, 15]
        assert await conn.fetchval("SELECT pg_relation_filenode('articles')") == relfile, (
            "dropping the generation expression rewrote the table"
        )
        after = await conn.fetch("SELECT id, search_vector::text AS v FROM articles ORDER BY id")
        assert after == before, "rows keep their vector until their batch is refolded"
        unfolded = await conn.fetchval(_UNFOLDED)
        assert unfolded > 0, "the labelled texts do fold: the old vectors differ"
        assert await conn.fetchval("SELECT last_id FROM search_refold") == len(old)

        # Refold in small batches while another connection keeps storing.
        steps: list[refold.Progress] = []
        storing = asyncio.create_task(
            _store_in_batches(writer, _variants(120), "https://labelled.example/new")
        )
        total = await refold.refold(pool, batch=25, progress=steps.append, pause=0.01)
        await storing
        assert total == len(old)
        assert len(steps) == len(old) // 25
        assert [s.done_through for s in steps] == sorted(s.done_through for s in steps)
        assert await conn.fetchval(_UNFOLDED) == 0, "every article, old and new, is folded"
        assert await conn.fetchval("SELECT count(*) FROM articles") == len(old) + 120
        assert await refold.refold(pool) == 0, "a finished refold does nothing"

        # And the upgraded database finds the other spellings.
        found = await conn.fetchval(
            "SELECT count(*) FROM articles WHERE search_vector @@ article_search_query('ذهب')"
        )
        assert found == await conn.fetchval(
            "SELECT count(*) FROM articles WHERE canonical_url LIKE '%/ar_gold-%'"
        )
    finally:
        await pool.close()
        await writer.close()
        await conn.close()


async def _store_in_batches(conn: asyncpg.Connection, articles: list[Article], url: str) -> None:
    for start in range(0, len(articles), 10):
        await store(conn, articles[start : start + 10], url)
        await asyncio.sleep(0.005)


async def test_the_vector_folded_in_python_is_the_one_postgres_folds(
    conn: asyncpg.Connection,
) -> None:
    """The store path folds the search text in Python and brings the vector; it is the
    one ``article_search_vector()`` computes from the raw text. A writer that brings
    none (direct SQL, an older daemon) gets it from the trigger."""
    texts = list(dict.fromkeys(t for t in _corpus_texts() if len(t) > 20))
    mine = [
        _article(f"corpus-{i}", "ar" if i % 3 else "en", text[:60], text)
        for i, text in enumerate(texts)
    ]
    # Enough texts that folding changes: 94 from the project's own corpus alone (a clone
    # without ../shared), more with the shared one.
    assert (
        sum(textfold.search_folded(a.title, a.summary, a.content_text) != (None,) * 3 for a in mine)
        > 80
    )
    others = [
        _article(f"other-{i}", "fa", t[:50], f"{t} (another writer)") for i, t in enumerate(texts)
    ]
    await store(conn, mine, "https://labelled.example/mine")
    await insert_plainly(conn, others)
    assert await conn.fetchval("SELECT count(*) FROM articles") == 2 * len(texts)
    assert await conn.fetchval("SELECT count(*) FROM articles WHERE search_vector IS NULL") == 0
    assert await conn.fetchval(_UNFOLDED) == 0


async def test_an_edit_refolds_the_row(conn: asyncpg.Connection, labelled: dict[str, str]) -> None:
    await conn.execute(
        "UPDATE articles SET title = 'مكتبة عامة' WHERE canonical_url LIKE '%/ar_gold'"
    )
    assert await search(conn, labelled, "المكتبة") == {"ar_library", "ar_gold"}
    assert "ar_gold" in await search(conn, labelled, "ذهب"), "the body still says الذهب"
    assert await conn.fetchval(_UNFOLDED) == 0


def test_story_fold_keeps_its_own_rules() -> None:
    """The story fold shares textfold.LETTERS but not the search-only rules: stored
    story prints must not change (tests/test_story_prints.py holds their keys)."""
    from aggregator.stories import text as story_text

    assert story_text.fold("ئ") != story_text.fold("ی")
    assert story_text.fold("الذهب") != story_text.fold("ذهب")
    assert textfold.search_fold("ئ") == textfold.search_fold("ی")


async def test_migrate_command_finishes_the_refold_with_progress(
    upgrade_db: str, settings: Settings
) -> None:
    conn = await asyncpg.connect(upgrade_db)
    try:
        await _migrate_before_folding(conn)
        await insert_plainly(conn, _variants(2500))
        env = processes.service_env(settings) | {"AGGREGATOR_DATABASE_URL": upgrade_db}
        result = subprocess.run(
            [sys.executable, "-m", "aggregator", "migrate"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        assert "applied 010_search_fold" in result.stdout
        assert "refolding the search index: through article 2000 of 2500" in result.stdout
        assert "search index refolded: 2500 articles" in result.stdout
        assert await conn.fetchval(_UNFOLDED) == 0
    finally:
        await conn.close()


async def test_the_daemon_refolds_in_the_background(upgrade_db: str) -> None:
    conn = await asyncpg.connect(upgrade_db)
    pool = await asyncpg.create_pool(upgrade_db, min_size=1, max_size=2)
    try:
        await _migrate_before_folding(conn)
        await insert_plainly(conn, _variants(50))
        await migrations.migrate(conn)
        assert await conn.fetchval(_UNFOLDED) > 0
        await refold.run_in_background(pool)
        assert await conn.fetchval(_UNFOLDED) == 0
        assert await conn.fetchval("SELECT done_through = last_id FROM search_refold")
    finally:
        await pool.close()
        await conn.close()
