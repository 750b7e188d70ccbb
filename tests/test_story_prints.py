"""Story prints: computed in the parse processes, carried to the store job, remembered there.

Moving the work off the store job's event loop must not change one result: a
carried print matches exactly as the text it came from, a print that no longer
fits its article is recomputed, a batch queued without prints (by the version
before them) stores the same stories, and a remembered print only ever answers
for its own text, whatever happens to article ids.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any, NoReturn

import asyncpg
import pytest

from aggregator import queue
from aggregator.http import fulltext
from aggregator.model import Article
from aggregator.storage import locks, migrations, stories
from aggregator.storage.articles import StoreBatch, Validators, store_batch
from aggregator.stories import prints as story_prints
from tests import services
from tests.conftest import TABLES
from tests.test_stories import OTHER_REPORT, T0, WIRE, article, corpus_articles


@pytest.fixture
async def conn(database_url: str, clean_services: None) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database_url)
    yield connection
    await connection.close()


def matching_view(fp: story_prints.Fingerprint) -> tuple[object, ...]:
    """Everything matching reads of a fingerprint."""
    return (
        fp.shingles,
        fp.numbers,
        fp.title,
        fp.published_at,
        fp.identity,
        fp.keys,
        fp.tokens,
        fp.is_stub,
        fp.is_short,
    )


def from_text(a: Article) -> story_prints.Fingerprint:
    return story_prints.fingerprint(
        title=a.title,
        text=a.content_text or a.summary,
        published_at=a.published_at,
        canonical_url=a.canonical_url,
        guid=a.guid,
    )


def refuse(*args: object, **kwargs: object) -> NoReturn:
    raise AssertionError("the store job computed a print")


def batch_of(articles: list[Article]) -> StoreBatch:
    return StoreBatch(
        feed_id=1,
        body_hash="0" * 64,
        validators=Validators(body_hash="0" * 64),
        articles=articles,
        fetched_at=T0,
    )


def through_the_queue(articles: list[Article], *, prints: bool = True) -> StoreBatch:
    """The batch as the store job receives it; ``prints=False`` as the version before
    prints queued it."""
    batch = batch_of(articles)
    payload: dict[str, Any] = queue.deserialize(queue.serialize(batch.model_dump(mode="json")))
    if not prints:
        for item in payload["articles"]:
            del item["story_print"]
    return StoreBatch.model_validate(payload)


def test_a_store_job_reads_its_batch_whole_and_logs_it_short() -> None:
    """arq logs the repr of every job's arguments: a batch's must not be its text."""
    from arq.jobs import deserialize_job_raw, serialize_job
    from arq.utils import args_to_string

    articles = [a for _, a in corpus_articles()][:20]
    batch = batch_of(articles)
    raw = serialize_job(
        queue.STORE_JOB, (batch.model_dump(mode="json"),), {}, 1, 0, serializer=queue.serialize
    )
    function, args, kwargs, _, _ = deserialize_job_raw(raw, deserializer=queue.deserialize)
    assert function == queue.STORE_JOB and not kwargs
    assert StoreBatch.model_validate(args[0]) == batch
    logged = args_to_string(args, kwargs)
    assert "feed_id" in logged and f"{len(articles)} articles" in logged
    assert len(logged) < 100


def test_a_carried_print_survives_the_queue_and_matches_as_its_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    articles = [a for _, a in corpus_articles()]
    received = through_the_queue(articles).articles
    assert received == articles
    assert all(a.story_print is not None for a in received)
    monkeypatch.setattr(story_prints, "story_print", refuse)
    carried = [story_prints.article_fingerprint(a) for a in received]
    monkeypatch.undo()
    assert [matching_view(fp) for fp in carried] == [matching_view(from_text(a)) for a in received]


def test_a_print_of_another_text_is_recomputed() -> None:
    """An article whose text changed after its print was made (a copy with another
    text, a batch from an older version) carries a stale print: it must not be used."""
    teaser = article(
        "Iraq and Iran agreed to link Basra by rail.", title="Rail", url="https://a.example/1"
    )
    teaser = teaser.model_copy(
        update={"story_print": story_prints.story_print(teaser.title, teaser.content_text)}
    )
    full = teaser.model_copy(update={"content_text": WIRE})  # the teaser's print rides along
    assert full.story_print == teaser.story_print
    fp = story_prints.article_fingerprint(full)
    assert matching_view(fp) == matching_view(from_text(full))
    assert fp.shingles != story_prints.article_fingerprint(teaser).shingles


def test_a_full_text_page_gets_the_print_of_its_text() -> None:
    teaser = article(
        "Iraq and Iran agreed to link Basra by rail.", title="Rail", url="https://a.example/1"
    )
    teaser = teaser.model_copy(
        update={"story_print": story_prints.story_print(teaser.title, teaser.content_text)}
    )
    full = fulltext.with_text(teaser, WIRE.split("\n\n"))
    assert full.content_text != teaser.content_text
    assert full.story_print == story_prints.story_print(full.title, full.content_text)


async def stored_state(conn: asyncpg.Connection) -> tuple[list[tuple[Any, ...]], ...]:
    articles = await conn.fetch("SELECT id, content_hash, story_id FROM articles ORDER BY id")
    keys = await conn.fetch("SELECT article_id, published_at, codes FROM story_keys ORDER BY 1")
    story_rows = await conn.fetch(
        "SELECT id, merged_into, article_count, representative_id FROM stories ORDER BY id"
    )
    return tuple([tuple(r) for r in rows] for rows in (articles, keys, story_rows))


async def ingest_fresh(
    conn: asyncpg.Connection, articles: list[Article], *, prints: bool
) -> tuple[list[tuple[Any, ...]], ...]:
    """Every article into emptied tables, ids from 1, in batches of 7 as a feed's would come."""
    await conn.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
    await conn.execute("INSERT INTO feeds (url) VALUES ('https://corpus.example/rss')")
    for start in range(0, len(articles), 7):
        await store_batch(conn, through_the_queue(articles[start : start + 7], prints=prints))
    return await stored_state(conn)


async def test_batches_queued_without_prints_store_the_same_stories(
    conn: asyncpg.Connection,
) -> None:
    articles = [a for _, a in corpus_articles()]
    carried = await ingest_fresh(conn, articles, prints=True)
    queued_before = await ingest_fresh(conn, articles, prints=False)
    assert queued_before == carried
    stored, _, _ = carried
    assert len({story for _, _, story in stored}) < len(stored), "copies joined stories"


async def test_the_store_job_computes_no_print_of_carried_or_stored_texts(
    conn: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Carried prints for the new articles; remembered ones for the stored candidates,
    which the store itself remembered as it inserted them."""
    articles = [a for _, a in corpus_articles()]
    story_prints.remembered_prints.clear()
    monkeypatch.setattr(story_prints, "story_print", refuse)
    await ingest_fresh(conn, articles, prints=True)
    assert story_prints.remembered_prints.hits > 0
    assert story_prints.remembered_prints.misses == 0


async def test_a_reused_article_id_never_brings_back_another_text(
    conn: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ids start again at 1 after TRUNCATE ... RESTART IDENTITY (tests, the demo), and
    another store worker may be the one that stores the next article 1: a print this
    worker remembered for article 1 must not answer for it."""
    this_worker = story_prints.RememberedPrints()
    monkeypatch.setattr(story_prints, "remembered_prints", this_worker)
    await ingest_fresh(
        conn, [article(OTHER_REPORT, title="Rail plans", url="https://a.example/1")], prints=False
    )
    assert len(this_worker) == 1
    wire = article(WIRE, title="Rail deal", url="https://b.example/2")
    with monkeypatch.context() as other_worker:
        other_worker.setattr(story_prints, "remembered_prints", story_prints.RememberedPrints())
        await ingest_fresh(conn, [wire], prints=False)
    copy = article(WIRE + " Update.", title="Rail", url="https://c.example/3", minutes=5)
    await store_batch(conn, through_the_queue([copy], prints=False))
    rows = await conn.fetch("SELECT id, story_id FROM articles ORDER BY id")
    assert [(r["id"], r["story_id"]) for r in rows] == [(1, 1), (2, 1)]
    assert (this_worker.hits, this_worker.misses) == (0, 1), "article 1's text, not its id"


def test_remembered_prints_keep_the_latest_used_within_their_budget() -> None:
    texts = [f"{WIRE}\n\nCorrection number {i} of the day." for i in range(5)]
    prints = [story_prints.story_print("Rail", text, with_keys=False) for text in texts]
    probe = story_prints.RememberedPrints()
    probe.add(prints[0])
    each = probe.size
    remembered = story_prints.RememberedPrints(max_bytes=3 * each + each // 2)
    for p in prints[:3]:
        remembered.add(p)
    assert remembered.of("Rail", texts[0]) == prints[0]  # a hit: now the latest used
    remembered.add(prints[3])  # over budget: the least recently used (texts[1]) goes
    assert len(remembered) == 3 and remembered.size <= remembered.max_bytes
    for i in (0, 2, 3):
        assert remembered.of("Rail", texts[i]) == prints[i]
    assert (remembered.hits, remembered.misses) == (4, 0)
    assert remembered.of("Rail", texts[1]) == prints[1]  # computed again, from its text
    assert remembered.misses == 1
    assert remembered.of("Another headline", texts[1]).title != prints[1].title


# The keys of a print are stored (story_keys) and looked up by later versions: a change
# to folding, shingling or hashing that alters them silently splits every story that
# spans an upgrade. Recorded with the str.translate folding (before numpy); any speed-up of
# those steps must leave them equal.
WIRE_KEYS = [
    7449992309656481596,
    -281308611156327833,
    1536899861030421909,
    1196588094278425398,
    -2247189326117239628,
    286322149625929015,
    9070628420354375831,
    -1617298308295332877,
    3936252971653117386,
    5832667155441798944,
    7822751420095025076,
    936761764012653418,
    2886759692511558852,
    5327769406495949618,
    -1410438690041978713,
    7612599743465786253,
    -2098144115407406280,
    -6485811256583708160,
    -1770617467520762195,
    2301798955672864149,
    4217596000786141777,
    6102931872297045973,
    -941115268780315481,
    2684397134772528488,
    -4120859100494797094,
    -7755852198076909762,
    159768793351744162,
    -7228108081737541708,
    1837619479879045915,
    -5122220939959139548,
    -554220405017709679,
]


def test_print_keys_are_those_already_stored() -> None:
    p = story_prints.story_print("Oil prices rise 3% as OPEC+ talks stall in Riyadh", WIRE)
    assert list(p.keys) == WIRE_KEYS
    assert p.numbers == ("150", "3", "32")
    assert p.title == "oil prices rise 3 as opec talks stall in riyadh"


def test_copies_of_one_text_are_printed_once_with_keys() -> None:
    """The parse processes remember the prints of recent texts: a wire copy carried by
    another outlet gets the print its text would get, keys and all, without a second
    computation."""
    recent = story_prints.RememberedPrints(1 << 20, with_keys=True)
    first = recent.of("Oil prices rise 3% as OPEC+ talks stall in Riyadh", WIRE)
    again = recent.of("Oil prices rise 3% as OPEC+ talks stall in Riyadh", WIRE)
    assert again is first and (recent.hits, recent.misses) == (1, 1)
    assert first == story_prints.story_print(
        "Oil prices rise 3% as OPEC+ talks stall in Riyadh", WIRE
    )
    assert list(first.keys) == WIRE_KEYS
    other = recent.of("Another headline about the same OPEC+ talks", WIRE)
    assert other.digest != first.digest and recent.misses == 2


# --- the upgrade to one row of keys per article (migration 014) --------------------------------

_OLD_ARTICLE = """
INSERT INTO articles (story_id, content_hash, canonical_url, title, summary, content_html,
                      content_text, language, region, published_at, first_seen_at)
VALUES (currval('articles_id_seq'), $1, $2, $3, '', '', $4, 'en', 'test', $5, $5)
RETURNING id
"""


async def test_the_upgrade_converts_stored_keys_and_later_copies_find_them(
    database_url: str,
) -> None:
    """Articles stored with one story_keys row per key (up to migration 013) keep their
    keys through 014, and a copy stored after it joins their story."""
    server = services.with_database(database_url, "postgres")
    name = f"aggregator_keys_upgrade_{os.getpid()}"
    url = await services.create_database(server, name)
    conn = await asyncpg.connect(url)
    try:
        await locks.ensure(conn)
        await conn.execute(migrations._CREATE_TABLE)
        for m in migrations.available():
            if m.version < 14:
                async with conn.transaction():
                    await conn.execute(m.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                        m.version,
                        m.name,
                    )
        old = [
            article(WIRE, title="Rail", url="https://a.example/1"),
            article(OTHER_REPORT, title="Plans", url="https://b.example/2", minutes=60 * 24 * 40),
        ]
        expected = {}
        for a in old:
            await conn.execute("SELECT nextval('articles_id_seq')")
            async with conn.transaction():
                article_id = await conn.fetchval(
                    _OLD_ARTICLE,
                    a.content_hash,
                    a.canonical_url,
                    a.title,
                    a.content_text,
                    a.published_at,
                )
                await conn.execute(
                    "INSERT INTO stories (id, first_seen_at, published_at, updated_at, "
                    "representative_id) VALUES ($1, $2, $2, $2, $1)",
                    article_id,
                    a.published_at,
                )
                keys = story_prints.article_fingerprint(a).keys
                await conn.executemany(
                    "INSERT INTO story_keys (key, article_id, published_at) VALUES ($1, $2, $3)",
                    [(key, article_id, a.published_at) for key in keys],
                )
            period = stories.key_period(a.published_at)
            expected[article_id] = sorted(stories.key_code(key, period) for key in set(keys))

        applied = await migrations.migrate(conn)
        assert [m.version for m in applied][:1] == [14]
        rows = await conn.fetch("SELECT article_id, codes FROM story_keys ORDER BY article_id")
        assert {r["article_id"]: sorted(r["codes"]) for r in rows} == expected

        feed = await conn.fetchval(
            "INSERT INTO feeds (url) VALUES ('https://c.example/rss') RETURNING id"
        )
        copy = article(WIRE + " Update.", title="Rail again", url="https://c.example/3")
        await store_batch(conn, batch_of([copy]).model_copy(update={"feed_id": feed}))
        story_of = dict(await conn.fetch("SELECT content_hash, story_id FROM articles"))
        assert story_of[copy.content_hash] == story_of[old[0].content_hash]
    finally:
        await conn.close()
        await services.drop_database(server, name)
