"""Full text for summary-only feeds (`feeds add --full-text`): the article's page is fetched
once, its main text stored, hashed and clustered; a page that fails keeps the summary."""

from __future__ import annotations

import pytest

from aggregator.app import daemon
from aggregator.runtime import Runtime
from aggregator.storage import feeds
from tests.feedserver import FeedServer

PARAGRAPHS = [
    "VAN, Turkey — A strong earthquake struck eastern Turkey on Monday, damaging dozens of "
    "buildings in the provincial capital and sending residents into the streets, officials said.",
    "Rescue teams from neighbouring provinces were sent overnight, and the disaster agency said "
    "schools would stay closed for the rest of the week while engineers inspect them.",
    "The governor said there were no reports of deaths so far, but that several villages in the "
    "mountains had not yet been reached because landslides had blocked the roads.",
]


def page(paragraphs: list[str]) -> bytes:
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return (
        "<!doctype html><html><head><title>Quake - Lake Post</title></head><body>"
        '<nav><a href="/">Home</a> | <a href="/world">World</a></nav>'
        f"<article><h1>Strong quake hits Van</h1>{body}</article>"
        '<aside class="related"><h3>Related</h3><ul><li>Another story</li></ul></aside>'
        "<footer>Copyright 2026 Lake Post</footer></body></html>"
    ).encode()


def rss(items: list[tuple[str, str, str]], *, full: bool) -> bytes:
    """items: (guid, link, text); a full feed carries the paragraphs, a summary feed one line."""
    entries = ""
    for guid, link, text in items:
        body = "".join(f"<p>{p}</p>" for p in PARAGRAPHS) if full else text
        entries += (
            f"<item><title>Quake in Van</title><link>{link}</link><guid>{guid}</guid>"
            f"<pubDate>Mon, 23 Nov 2026 08:00:00 +0000</pubDate>"
            f"<description><![CDATA[{body}]]></description></item>"
        )
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>{entries}</channel></rss>'.encode()


async def add(rt: Runtime, url: str, *, full_text: bool | None = None) -> int:
    async with rt.pool.acquire() as conn:
        feed, _ = await feeds.add(conn, feeds.FeedSpec(url=url, full_text=full_text))
    return feed.id


@pytest.fixture
def pages(feed_server: FeedServer) -> dict[str, str]:
    return {
        "story": feed_server.add("lake/quake.html", page(PARAGRAPHS), "text/html; charset=utf-8"),
        "missing": feed_server.url("lake/gone.html"),
    }


async def test_summary_feed_gets_the_page_text_and_merges_with_the_full_copy(
    runtime: Runtime, feed_server: FeedServer, pages: dict[str, str]
) -> None:
    summary = "A strong earthquake struck eastern Turkey on Monday."
    summary_feed = rss([("lake-1", pages["story"], summary)], full=False)
    lake = await add(
        runtime, feed_server.add("lake.xml", summary_feed, validators=False), full_text=True
    )
    wire = await add(
        runtime,
        feed_server.add("wire.xml", rss([("w-1", "https://wire.example/q", "")], full=True)),
    )
    await daemon.run_once(runtime)

    rows = await runtime.pool.fetch("SELECT id, content_text FROM articles")
    assert len(rows) == 1, "the page's text is the wire copy's: one article"
    assert rows[0]["content_text"] == "\n\n".join(PARAGRAPHS)
    sightings = await runtime.pool.fetch("SELECT feed_id FROM article_sources ORDER BY feed_id")
    assert [r["feed_id"] for r in sightings] == sorted([lake, wire])
    assert len(feed_server.hits("lake/quake.html")) == 1

    # The feed changes (not its item): the item is known, its page is not fetched again.
    feed_server.add("lake.xml", summary_feed + b"<!-- new build -->", validators=False)
    await daemon.run_once(runtime)
    assert len(feed_server.hits("lake/quake.html")) == 1
    assert await runtime.pool.fetchval("SELECT count(*) FROM articles") == 1


async def test_a_page_that_fails_keeps_the_summary_and_others_never_fetch(
    runtime: Runtime, feed_server: FeedServer, pages: dict[str, str]
) -> None:
    text = "Officials in Van said on Monday that the count of damaged buildings had risen again."
    await add(
        runtime,
        feed_server.add("gone.xml", rss([("g-1", pages["missing"], text)], full=False)),
        full_text=True,
    )
    await add(
        runtime,
        feed_server.add("plain.xml", rss([("p-1", pages["story"], text + " More.")], full=False)),
    )
    summary = await daemon.run_once(runtime)
    assert summary.feeds_failed == 0
    texts = sorted(
        r["content_text"] for r in await runtime.pool.fetch("SELECT content_text FROM articles")
    )
    assert texts == [text, text + " More."]
    assert len(feed_server.hits("lake/gone.html")) == 1
    assert feed_server.hits("lake/quake.html") == [], "a feed without --full-text fetches no page"


def test_feed_lists_carry_the_full_text_flag() -> None:
    (spec,) = feeds.parse_toml(b'[[feeds]]\nurl = "https://lake.example/rss"\nfull_text = true\n')
    assert spec.full_text is True
    opml = b'<opml version="2.0"><body><outline xmlUrl="https://a.example/" fullText="true"/></body></opml>'
    assert feeds.parse_opml(opml)[0].full_text is True
    with pytest.raises(Exception, match="full_text must be true or false"):
        feeds.parse_toml(b'[[feeds]]\nurl = "https://lake.example/rss"\nfull_text = "maybe"\n')
