"""The SQL contract (docs/sql.md) against real Postgres: every documented query runs on
fixture data and returns the columns the doc shows, through the indexes it names; the
reader role reads and cannot write; full-text search; NOTIFY and arrivals on commit."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from aggregator.model import Article
from aggregator.pipeline.contenthash import content_hash
from aggregator.storage import feeds, outbox
from aggregator.storage.articles import StoreBatch, Validators, store_batch

DOC = Path(__file__).resolve().parent.parent / "docs" / "sql.md"
BIG_TABLES = {"articles", "article_sources", "outbox"}

UMM_QASR = [
    "The new grain terminal at the port of Umm Qasr opened on Monday, adding four berths "
    "and silos for 300,000 tonnes of wheat to Iraq's only deep-water port.",
    "Officials said the terminal would cut unloading times for bulk carriers from nine "
    "days to three, and ease the queues of ships that wait in the Gulf for a berth.",
    "The project, financed by a consortium of regional lenders, took four years to build "
    "and employs about 600 people from Basra province.",
    "Traders in Basra said the first vessel to dock, carrying wheat from the Black Sea, "
    "was unloaded in under forty hours.",
]
EDITORS_NOTE = (
    "Editor's note: Meridian Digest's parent company owns a minority stake in one of the "
    "lenders named in this story."
)


def _article(
    title: str,
    paragraphs: list[str],
    *,
    url: str,
    language: str,
    region: str,
    published: datetime,
) -> Article:
    text = "\n\n".join(paragraphs)
    return Article(
        content_hash=content_hash(" ".join(paragraphs), title=title, canonical_url=url),
        canonical_url=url,
        url=url,
        guid=url,
        title=title,
        summary=paragraphs[0][:200],
        content_html="".join(f"<p>{p}</p>" for p in paragraphs),
        content_text=text,
        author=None,
        language=language,
        region=region,
        published_at=published,
    )


FIXTURE_FEEDS = {
    "gulf": ("https://gulf-ledger.example/rss", "Gulf Ledger", "gulf", "en"),
    "levant": ("https://levant-lantern.example/atom", "The Levant Lantern", "levant", "en"),
    "meridian": ("https://meridian-digest.example/feed.json", "Meridian Digest", "mena", "en"),
    "marsad": ("https://al-marsad.example/rss", "المرصد", "iraq", "ar"),
    "sepehr": ("https://sepehr.example/fa/rss", "روزنامه سپهر", "iran", "fa"),
    "marmara": ("https://marmara-postasi.example/atom", "Marmara Postası", "turkey", "tr"),
}
DAY = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)


def fixture_batches() -> list[tuple[str, Article]]:
    """(feed, article) in store order: article ids 1..6; article 1 seen by two feeds."""
    umm_qasr = _article(
        "Port of Umm Qasr opens grain berth",
        UMM_QASR,
        url="https://gulf-ledger.example/umm-qasr",
        language="en",
        region="gulf",
        published=DAY,
    )
    return [
        ("gulf", umm_qasr),
        ("levant", umm_qasr.model_copy(update={"url": "https://levant-lantern.example/umm-qasr"})),
        (
            "meridian",
            _article(
                "Iraq: Umm Qasr grain terminal opens",
                [*UMM_QASR, EDITORS_NOTE],
                url="https://meridian-digest.example/umm-qasr",
                language="en",
                region="mena",
                published=DAY + timedelta(minutes=20),
            ),
        ),
        (
            "gulf",
            _article(
                "Oil price rises as Gulf output dips",
                [
                    "Brent crude rose two percent on Tuesday after producers in the Gulf "
                    "reported lower output for November.",
                    "Analysts expect prices to stay firm until the spring.",
                ],
                url="https://gulf-ledger.example/oil-price",
                language="en",
                region="gulf",
                published=DAY + timedelta(days=1, hours=2, minutes=30),
            ),
        ),
        (
            "marsad",
            _article(
                "ارتفاع أسعار النفط في البصرة",
                [
                    "ارتفعت أسعار النفط في أسواق البصرة يوم الثلاثاء بعد تراجع الإنتاج في الخليج.",
                    "وقال تجار إن الأسعار ستبقى مرتفعة حتى الربيع.",
                ],
                url="https://al-marsad.example/oil",
                language="ar",
                region="iraq",
                published=DAY + timedelta(days=1, hours=3),
            ),
        ),
        (
            "sepehr",
            _article(
                "افزایش قیمت نفت در بازارهای خلیج فارس",
                [
                    "قیمت نفت روز سه‌شنبه پس از کاهش تولید در خلیج فارس افزایش یافت.",
                    "کارشناسان می‌گویند قیمت‌ها تا بهار بالا می‌ماند.",
                ],
                url="https://sepehr.example/fa/oil",
                language="fa",
                region="iran",
                published=DAY + timedelta(days=1, hours=4),
            ),
        ),
        (
            "marmara",
            _article(
                "İstanbul'da petrol fiyatları yükseldi",
                [
                    "Petrol fiyatları salı günü Körfez'deki üretim düşüşünün ardından yükseldi.",
                    "Uzmanlar fiyatların bahara kadar yüksek kalmasını bekliyor.",
                ],
                url="https://marmara-postasi.example/petrol",
                language="tr",
                region="turkey",
                published=DAY + timedelta(days=1, hours=5),
            ),
        ),
    ]


async def store_fixture(conn: asyncpg.Connection) -> dict[str, int]:
    """Store the fixture through the real store path; return feed key -> feed id."""
    feed_ids = {}
    for key, (url, title, region, language) in FIXTURE_FEEDS.items():
        feed, _ = await feeds.add(
            conn, feeds.FeedSpec(url=url, title=title, region=region, language=language)
        )
        feed_ids[key] = feed.id
    now = datetime.now(UTC)
    for n, (key, article) in enumerate(fixture_batches()):
        batch = StoreBatch(
            feed_id=feed_ids[key],
            body_hash=f"{n:064x}",
            validators=Validators(body_hash=f"{n:064x}"),
            articles=[article],
            fetched_at=now + timedelta(seconds=n),
        )
        await store_batch(conn, batch)
    return feed_ids


@pytest.fixture
async def fixture_db(database_url: str, clean_services: None) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url)
    try:
        await store_fixture(conn)
        yield conn
    finally:
        await conn.close()


# --- the examples in docs/sql.md ---------------------------------------------------------------

_EXAMPLE = re.compile(r"```sql\n(?P<sql>.*?)```\s*```text\n(?P<shape>.*?)```", re.S)


def documented_queries() -> list[Any]:
    doc = DOC.read_text(encoding="utf-8")
    examples = list(_EXAMPLE.finditer(doc))
    # Every sql block must show its result shape right under it.
    assert len(examples) == doc.count("```sql"), "a ```sql block without a ```text result"
    params = []
    for example in examples:
        heading = [h for h in re.findall(r"^###+ (.+)$", doc[: example.start()], re.M)][-1]
        header = example["shape"].splitlines()[0]
        columns = [c.strip() for c in header.split("|")]
        params.append(pytest.param(example["sql"], columns, id=heading))
    return params


QUERIES = documented_queries()


def test_the_doc_has_the_required_examples() -> None:
    headings = {p.id for p in QUERIES}
    for required in ("Latest articles", "One story", "Full-text search", "arrived since"):
        assert any(required in h for h in headings), required


@pytest.mark.parametrize(("sql", "columns"), QUERIES)
async def test_documented_query(
    fixture_db: asyncpg.Connection, sql: str, columns: list[str]
) -> None:
    """Runs, returns the documented columns and some rows, uses indexes, and runs for the
    reader role too."""
    statement = await fixture_db.prepare(sql)
    assert [a.name for a in statement.get_attributes()] == columns
    assert await statement.fetch(), "the example finds nothing in the fixture: stale values"

    # With sequential scans priced out, a big table still read by Seq Scan has no index.
    async with fixture_db.transaction():
        await fixture_db.execute("SET LOCAL enable_seqscan = off")
        plan = json.loads(await fixture_db.fetchval("EXPLAIN (FORMAT JSON) " + sql))
    seq = [n["Relation Name"] for n in _nodes(plan[0]["Plan"]) if n["Node Type"] == "Seq Scan"]
    assert not set(seq) & BIG_TABLES, f"sequential scan of {seq}"

    async with fixture_db.transaction():
        await fixture_db.execute("SET LOCAL ROLE aggregator_reader")
        assert await fixture_db.fetch(sql)


def _nodes(node: dict[str, Any]) -> Any:
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


async def test_one_story_spans_outlets(fixture_db: asyncpg.Connection) -> None:
    sql = next(p.values[0] for p in QUERIES if "One story" in (p.id or ""))
    rows = await fixture_db.fetch(sql)
    assert {r["outlet"] for r in rows} >= {"Gulf Ledger", "The Levant Lantern"}


# --- the reader role ---------------------------------------------------------------------------


@pytest.mark.parametrize(("sql", "columns"), QUERIES)
async def test_reader_runs_documented_queries(
    fixture_db: asyncpg.Connection, sql: str, columns: list[str]
) -> None:
    async with fixture_db.transaction():
        await fixture_db.execute("SET LOCAL ROLE aggregator_reader")
        assert await fixture_db.fetch(sql)


WRITES = [
    "INSERT INTO articles (content_hash, published_at) VALUES (repeat('a', 64), now())",
    "UPDATE articles SET title = 'x'",
    "DELETE FROM article_sources",
    "UPDATE feeds SET disabled = true",
    "DELETE FROM outbox",
    "INSERT INTO subscribers (name) VALUES ('sneaky')",
    "TRUNCATE articles CASCADE",
    "CREATE TABLE mine (x int)",
    "SELECT nextval('articles_id_seq')",
]


async def test_reader_cannot_write(fixture_db: asyncpg.Connection) -> None:
    for statement in WRITES:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with fixture_db.transaction():
                await fixture_db.execute("SET LOCAL ROLE aggregator_reader")
                await fixture_db.execute(statement)
    assert await fixture_db.fetchval("SELECT count(*) FROM articles") == 6


def documented_columns() -> dict[str, list[str]]:
    """Each table or view under a ``### `name``` heading -> the columns of its
    ``| column | type | meaning |`` table, as docs/sql.md lists them."""
    doc = DOC.read_text(encoding="utf-8")
    found: dict[str, list[str]] = {}
    sections = re.split(r"^### ", doc, flags=re.M)[1:]
    for section in sections:
        name = re.match(r"`(\w+)`", section)
        table = re.search(
            r"^\| column \| type \| meaning \|\n\|[-|]+\|\n((?:\|.*\n?)+)", section, re.M
        )
        if name and table:
            found[name[1]] = re.findall(r"^\| `(\w+)` \|", table[1], re.M)
    return found


def test_the_doc_lists_columns_for_every_table() -> None:
    documented = documented_columns()
    for table in ("articles", "article_sources", "feeds", "outbox", "subscribers", "stories"):
        assert table in documented, table
    assert {"id", "content_hash", "search_vector"} <= set(documented["articles"])
    assert "websub_secret" not in documented["feeds"]


async def test_reader_reads_every_documented_table(fixture_db: asyncpg.Connection) -> None:
    async with fixture_db.transaction():
        await fixture_db.execute("SET LOCAL ROLE aggregator_reader")
        for table, columns in documented_columns().items():
            await fixture_db.fetch(f"SELECT {', '.join(columns)} FROM {table} LIMIT 1")


# --- full-text search --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected_title"),
    [
        ("oil prices", "Oil price rises as Gulf output dips"),  # English stems: prices -> price
        ("rising output", "Oil price rises as Gulf output dips"),
        ('"grain terminal" -editor', "Port of Umm Qasr opens grain berth"),
        ("النفط", "ارتفاع أسعار النفط في البصرة"),
        ("البصرة", "ارتفاع أسعار النفط في البصرة"),
        ("نفت", "افزایش قیمت نفت در بازارهای خلیج فارس"),
        # خلیج alone also finds the Arabic article's الخليج now (tests/test_search.py)
        ('"خلیج فارس"', "افزایش قیمت نفت در بازارهای خلیج فارس"),
        ("petrol fiyatları", "İstanbul'da petrol fiyatları yükseldi"),
        ("İSTANBUL", "İstanbul'da petrol fiyatları yükseldi"),
    ],
)
async def test_full_text_search_in_every_language(
    fixture_db: asyncpg.Connection, query: str, expected_title: str
) -> None:
    titles = [
        r["title"]
        for r in await fixture_db.fetch(
            "SELECT title FROM articles WHERE search_vector @@ article_search_query($1)", query
        )
    ]
    assert titles == [expected_title]


async def test_a_huge_body_is_still_stored_and_searchable(
    fixture_db: asyncpg.Connection,
) -> None:
    """tsvector is capped at 1 MB: an article with a megabyte of distinct words must
    still store (the index covers its first 100,000 characters)."""
    words = " ".join(f"w{n:07d}" for n in range(120_000))  # ~1 MB, all distinct
    article = _article(
        "Huge",
        ["needle " + words],
        url="https://gulf-ledger.example/huge",
        language="en",
        region="gulf",
        published=DAY,
    )
    feed_id = await fixture_db.fetchval("SELECT min(id) FROM feeds")
    batch = StoreBatch(
        feed_id=feed_id,
        body_hash="f" * 64,
        validators=Validators(body_hash="f" * 64),
        articles=[article],
        fetched_at=datetime.now(UTC),
    )
    assert (await store_batch(fixture_db, batch)).new == 1
    found = await fixture_db.fetchval(
        "SELECT title FROM articles WHERE search_vector @@ article_search_query('needle')"
    )
    assert found == "Huge"


# --- NOTIFY and arrivals -----------------------------------------------------------------------


async def test_notify_fires_on_commit_with_the_article_id(
    fixture_db: asyncpg.Connection, database_url: str
) -> None:
    listener = await asyncpg.connect(database_url)
    heard: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener(outbox.CHANNEL, lambda *args: heard.put_nowait(args[3]))
    writer = await asyncpg.connect(database_url)
    try:
        article = _article(
            "Late news",
            ["A late story with enough words in it to be hashed on its own body text."],
            url="https://gulf-ledger.example/late",
            language="en",
            region="gulf",
            published=DAY,
        )
        batch = StoreBatch(
            feed_id=await writer.fetchval("SELECT min(id) FROM feeds"),
            body_hash="e" * 64,
            validators=Validators(body_hash="e" * 64),
            articles=[article],
            fetched_at=datetime.now(UTC),
        )
        outer = writer.transaction()
        await outer.start()
        await store_batch(writer, batch)  # a savepoint inside the outer transaction
        await listener.execute("SELECT 1")  # a round trip: anything sent would be here
        assert heard.empty(), "NOTIFY before commit"
        await outer.commit()
        article_id = await writer.fetchval(
            "SELECT id FROM articles WHERE content_hash = $1", article.content_hash
        )
        assert await asyncio.wait_for(heard.get(), 10) == str(article_id)
        # Readable by the listener the moment it is told.
        assert await listener.fetchval("SELECT title FROM articles WHERE id = $1", article_id)
    finally:
        await writer.close()
        await listener.close()


async def test_every_article_has_one_arrival_in_store_order(
    fixture_db: asyncpg.Connection,
) -> None:
    arrivals = await fixture_db.fetch("SELECT article_id FROM outbox ORDER BY id")
    stored = await fixture_db.fetch("SELECT id FROM articles ORDER BY id")
    assert [r["article_id"] for r in arrivals] == [r["id"] for r in stored]
    assert len(stored) == 6


async def test_an_arrival_waits_for_the_earlier_one_to_commit(
    fixture_db: asyncpg.Connection, database_url: str
) -> None:
    """Outbox ids follow commit order: while one store transaction that got an outbox id
    is uncommitted, a second cannot take the next id."""
    first = await asyncpg.connect(database_url)
    second = await asyncpg.connect(database_url)
    try:
        feed_id = await first.fetchval("SELECT min(id) FROM feeds")

        def batch(n: int) -> StoreBatch:
            article = _article(
                f"Story {n}",
                [f"Story number {n} has a body long enough to be hashed by its text alone."],
                url=f"https://gulf-ledger.example/story-{n}",
                language="en",
                region="gulf",
                published=DAY,
            )
            return StoreBatch(
                feed_id=feed_id,
                body_hash=f"{n:064x}",
                validators=Validators(body_hash=f"{n:064x}"),
                articles=[article],
                fetched_at=datetime.now(UTC),
            )

        held = first.transaction()
        await held.start()
        await store_batch(first, batch(100))
        racing = asyncio.create_task(store_batch(second, batch(101)))
        await _until_blocked(fixture_db, second)
        assert not racing.done()
        await held.commit()
        await asyncio.wait_for(racing, 10)
        order = await fixture_db.fetch(
            "SELECT a.title FROM outbox o JOIN articles a ON a.id = o.article_id "
            "WHERE a.title LIKE 'Story %' ORDER BY o.id"
        )
        assert [r["title"] for r in order] == ["Story 100", "Story 101"]
    finally:
        await first.close()
        await second.close()


async def _until_blocked(observer: asyncpg.Connection, blocked: asyncpg.Connection) -> None:
    pid = blocked.get_server_pid()
    for _ in range(200):
        waiting = await observer.fetchval(
            "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid
        )
        if waiting:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the second store never waited for the first")
