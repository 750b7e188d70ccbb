"""The last hostile inputs: truncated documents, the caps on what hurts, and what
`feeds add` learned from its own fetch.

Documents are parsed by both paths (the strict fast path and feedparser), which must
agree; the pipeline tests run real arq workers, Postgres and Redis against a feed
server on 127.0.0.1, and the `feeds add` tests run the CLI and the daemon as processes.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from aggregator.app import daemon, status
from aggregator.pipeline.parse import (
    DEFAULT_MEMORY_BUDGET,
    ENTRY_COST,
    ParsedFeed,
    _parse_xml_feed,
    parse_feed,
)
from aggregator.runtime import Runtime, open_runtime
from aggregator.settings import Settings
from tests import processes
from tests.feedserver import FeedServer
from tests.hostile.feeds import item, rss_bytes, story

URL = "https://news.example/feed.xml"
ATOM_ENTRY = (
    "<entry><id>urn:e:{n}</id><title>atom headline {n}</title>"
    "<link href='https://news.example/atom/{n}'/><updated>2026-03-02T10:00:00Z</updated>"
    "<content type='html'>{text}</content></entry>"
)


def atom_bytes(count: int) -> bytes:
    entries = "".join(ATOM_ENTRY.format(n=n, text=story("atom", n)) for n in range(count))
    return (
        '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
        f"<title>A</title><id>urn:f</id><updated>2026-03-02T10:00:00Z</updated>{entries}</feed>"
    ).encode()


def both(body: bytes, memory_budget: int = DEFAULT_MEMORY_BUDGET) -> tuple[ParsedFeed, ParsedFeed]:
    fast = _parse_xml_feed(body, url=URL, content_type=None, memory_budget=memory_budget)
    slow = _parse_xml_feed(
        body, url=URL, content_type=None, fast=False, memory_budget=memory_budget
    )
    return fast, slow


def summary(parsed: ParsedFeed) -> list[tuple[str | None, str, str | None]]:
    return [(e.guid, e.title, e.body.value if e.body else None) for e in parsed.entries]


# --- truncated documents ------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["rss", "atom"])
def test_a_document_cut_anywhere_in_its_last_entry_keeps_only_whole_entries(kind: str) -> None:
    whole = rss_bytes(*(item("cut", n) for n in range(4))) if kind == "rss" else atom_bytes(4)
    tag = b"<item>" if kind == "rss" else b"<entry>"
    last = whole.rindex(tag)
    close = b"</item>" if kind == "rss" else b"</entry>"
    complete = summary(parse_feed(whole, url=URL))[:3]
    for end in (last + 2, last + 4):  # inside its start tag: whole entries only
        fast, slow = both(whole[:end])
        assert summary(fast) == summary(slow) == complete, (kind, end)
    # Every cut from after the fourth entry's start tag to just before its end tag's '>'.
    for end in range(last + len(tag), whole.rindex(close) + len(close) - 1, 7):
        fast, slow = both(whole[:end])
        assert summary(fast) == summary(slow) == complete, (kind, end, whole[last:end])
        assert "1 unfinished entry dropped" in (fast.warning or ""), (end, fast.warning)
        assert fast.warning == slow.warning


def test_a_document_cut_between_entries_keeps_them_all_and_says_it_was_truncated() -> None:
    whole = rss_bytes(*(item("between", n) for n in range(3)))
    cut = whole[: whole.rindex(b"</item>") + len(b"</item>")]  # no </channel></rss>
    fast, slow = both(cut)
    assert len(fast.entries) == len(slow.entries) == 3
    assert summary(fast) == summary(slow)
    assert fast.warning == "truncated document (it ends before </rss>)"


def test_a_whole_document_followed_by_junk_is_not_called_truncated() -> None:
    body = rss_bytes(item("junk", 0), item("junk", 1)) + b"\n<!-- cache: hit -->\n"
    fast, slow = both(body)
    assert len(fast.entries) == len(slow.entries) == 2
    assert fast.warning is None


# --- the caps ---------------------------------------------------------------------------


def test_a_legitimate_10000_item_feed_under_the_byte_cap_is_read_whole() -> None:
    """About 9 MB: under the 10 MB body cap, so every item is read (5,000 were, before)."""
    more = " More context on the story." * 20
    body = rss_bytes(*(item("tenk", n, description=story("tenk", n) + more) for n in range(10_000)))
    assert 8_000_000 < len(body) < 10 * 1024 * 1024
    parsed = parse_feed(body, url=URL)
    assert len(parsed.entries) == 10_000
    assert parsed.warning is None


def test_the_memory_cap_cuts_at_an_entry_boundary_and_both_parsers_agree() -> None:
    body = rss_bytes(*(item("many", n) for n in range(40)))
    budget = len(body) + 25 * ENTRY_COST  # room for 25 entries
    fast, slow = both(body, memory_budget=budget)
    assert summary(fast) == summary(slow)
    assert [e.title for e in fast.entries] == [f"many headline {n}" for n in range(25)]
    assert fast.warning is not None and fast.warning.startswith("cap: 40 entries")
    assert "only the first 25 were read" in fast.warning
    json_feed = (
        b'{"version": "https://jsonfeed.org/version/1.1", "title": "J", "items": ['
        + b",".join(b'{"id": "%d", "content_text": "text %d"}' % (n, n) for n in range(40))
        + b"]}"
    )
    parsed = parse_feed(json_feed, url=URL, memory_budget=len(json_feed) + 10 * ENTRY_COST)
    assert len(parsed.entries) == 10 and "only the first 10" in (parsed.warning or "")


@pytest.fixture
async def capped_runtime(settings: Settings, clean_services: None) -> AsyncIterator[Runtime]:
    """A tiny time cap: normalizing stops after the first hundred entries."""
    async with open_runtime(settings.model_copy(update={"max_parse_seconds": 1e-6})) as rt:
        yield rt


async def test_the_time_cap_is_recorded_and_the_next_polls_read_the_rest(
    capped_runtime: Runtime, feed_server: FeedServer
) -> None:
    rt = capped_runtime
    body = rss_bytes(*(item("slow", n) for n in range(250)))
    url = feed_server.add("slow.xml", body)  # with ETag and Last-Modified
    feed_id = await rt.pool.fetchval("INSERT INTO feeds (url) VALUES ($1) RETURNING id", url)
    stored = []
    for _ in range(4):
        summary_ = await daemon.run_once(rt)
        assert summary_.feeds_failed == 0
        stored.append(await rt.pool.fetchval("SELECT count(*) FROM articles"))
        if stored[-1] == 250:
            break
    assert stored == [100, 200, 250], "each poll reads what the cap allows, then the rest"
    assert await rt.pool.fetchval("SELECT count(*) FROM article_sources") == 250
    warning = await rt.pool.fetchval("SELECT last_warning FROM feeds WHERE id = $1", feed_id)
    assert warning is None, "the last poll read the whole body: no warning left"
    # While the cap applied, the row said so and `status` showed it.
    feed_server.add("slow.xml", rss_bytes(*(item("slower", n) for n in range(150))))
    await daemon.run_once(rt)
    async with rt.pool.acquire() as conn:
        feeds, regions = await status.collect(conn)
    (health,) = feeds
    assert health.last_warning is not None and health.last_warning.startswith("cap: normalizing")
    lines = status.render(feeds, regions, now=datetime.now(UTC))
    assert any("warning: cap: normalizing stopped" in line for line in lines), lines
    assert health.state == "ok", "a cap is a warning, not a failure"


async def test_a_truncated_feed_stores_whole_items_and_says_so_on_its_row(
    runtime: Runtime, feed_server: FeedServer
) -> None:
    whole = rss_bytes(*(item("trunc", n) for n in range(5)))
    body = whole[: whole.index(b"</description>", whole.index(b"trunc-4")) - 20]
    url = feed_server.add("trunc.xml", body)
    feed_id = await runtime.pool.fetchval("INSERT INTO feeds (url) VALUES ($1) RETURNING id", url)
    await daemon.run_once(runtime)
    titles = await runtime.pool.fetch("SELECT title FROM articles ORDER BY title")
    assert [r["title"] for r in titles] == [f"trunc headline {n}" for n in range(4)]
    warning = await runtime.pool.fetchval("SELECT last_warning FROM feeds WHERE id = $1", feed_id)
    assert warning == "truncated document (it ends before </rss>): 1 unfinished entry dropped"
    # The whole document later: the fifth item arrives, once, with its whole text.
    feed_server.add("trunc.xml", whole)
    await daemon.run_once(runtime)
    fifth = await runtime.pool.fetch(
        "SELECT content_text FROM articles WHERE title = 'trunc headline 4'"
    )
    assert len(fifth) == 1 and fifth[0]["content_text"].endswith("over its cost.")
    assert (
        await runtime.pool.fetchval("SELECT last_warning FROM feeds WHERE id = $1", feed_id) is None
    )


# --- what `feeds add` learned -------------------------------------------------------------


async def _run_daemon_for(seconds: float, env: dict[str, str]) -> str:
    proc = processes.aggregator(["run"], env)
    try:
        await asyncio.sleep(seconds)
    finally:
        proc.send_signal(signal.SIGTERM)
        await processes.wait_exit(proc, 30)
    return processes.output(proc)


@pytest.fixture
def env(settings: Settings, clean_services: None) -> dict[str, str]:
    return processes.service_env(
        settings, AGGREGATOR_MIN_INTERVAL="1", AGGREGATOR_SCHEDULER_TICK="0.2"
    )


async def test_feeds_add_remembers_a_retry_after(
    env: dict[str, str], feed_server: FeedServer, runtime: Runtime
) -> None:
    url = feed_server.add("busy.xml", b"slow down", "text/plain")
    feed_server.routes["busy.xml"].status = 429
    feed_server.routes["busy.xml"].headers = {"Retry-After": "120"}
    added = await processes.run_cli(["feeds", "add", url], env)
    assert added.returncode == 0, added.stderr
    assert "first poll in 120s" in added.stdout, added.stdout
    printed = await _run_daemon_for(6, env)
    assert "Traceback" not in printed
    assert len(feed_server.hits("busy.xml")) == 1, "only the add's fetch: Retry-After holds"
    row = await runtime.pool.fetchrow("SELECT * FROM feeds WHERE url = $1", url)
    assert row["last_error_kind"] == "rate_limited"
    assert (row["next_poll_at"] - row["last_polled_at"]).total_seconds() >= 119


async def test_feeds_add_stores_what_it_fetched_and_the_first_poll_is_conditional(
    env: dict[str, str], feed_server: FeedServer, runtime: Runtime
) -> None:
    body = rss_bytes(*(item("added", n) for n in range(3)))
    url = feed_server.add("added.xml", body)  # ETag and Last-Modified
    added = await processes.run_cli(["feeds", "add", url, "--interval", "2"], env)
    assert added.returncode == 0, added.stderr
    assert "stored 3 new articles" in added.stdout, added.stdout
    assert await runtime.pool.fetchval("SELECT count(*) FROM articles") == 3
    printed = await _run_daemon_for(6, env)
    assert "Traceback" not in printed
    polls = feed_server.hits("added.xml")[1:]
    assert polls, "the daemon polled it"
    assert all(p.if_none_match and p.status == 304 for p in polls), polls
    assert await runtime.pool.fetchval("SELECT count(*) FROM article_sources") == 3


async def test_feeds_add_follows_a_permanent_redirect(
    env: dict[str, str], feed_server: FeedServer, runtime: Runtime
) -> None:
    new_url = feed_server.add("new.xml", rss_bytes(item("moved", 0)))
    old_url = feed_server.add("old.xml", b"", "text/plain")
    feed_server.routes["old.xml"].status = 301
    feed_server.routes["old.xml"].headers = {"Location": new_url}
    added = await processes.run_cli(["feeds", "add", old_url], env)
    assert added.returncode == 0, added.stderr
    assert f"moved permanently to {new_url}" in added.stdout
    assert await runtime.pool.fetchval("SELECT url FROM feeds") == new_url


# --- an encoding declared wrongly -----------------------------------------------------------

ARABIC = "الحكومة تعلن عن خطة جديدة لدعم الاقتصاد المحلي في المنطقة خلال العام المقبل"


def _declared_utf8(text: str, encoding: str, language: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>T</title>'
        f"<language>{language}</language><item><title>{text[:40]}</title>"
        f"<description>{text}</description><guid>a1</guid></item></channel></rss>"
    ).encode(encoding)


def test_arabic_in_windows_1256_declared_utf8_is_decoded_with_its_code_page() -> None:
    body = _declared_utf8(ARABIC, "windows-1256", "ar")
    fast, slow = both(body)
    assert summary(fast) == summary(slow)
    assert fast.entries[0].body is not None and fast.entries[0].body.value == ARABIC
    assert fast.warning is not None and "decoded as windows-1256" in fast.warning


def test_latin_text_is_not_taken_for_arabic_mojibake() -> None:
    french = "Le gouvernement annonce un plan économique très détaillé pour la région côtière"
    body = _declared_utf8(french, "windows-1252", "ar")  # a CMS's wrong language label
    parsed = parse_feed(body, url=URL)
    assert parsed.entries[0].body is not None and parsed.entries[0].body.value == french
    assert "windows-1256" not in (parsed.warning or "")
