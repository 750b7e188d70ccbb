"""Discovery: `feeds add` given a web page adds the feed the page advertises."""

from __future__ import annotations

import asyncpg

from aggregator.http.discover import feed_links
from aggregator.settings import Settings
from tests import processes
from tests.feedserver import FeedServer
from tests.test_polling import rss

PAGE = b"""<!doctype html><html><head><title>Gulf Ledger</title>
<link rel="stylesheet" href="/style.css">
<link rel="alternate" type="application/rss+xml" title="Latest" href="/feeds/latest.xml">
<link rel="alternate" type="application/atom+xml" title="Atom" href="feeds/atom.xml">
<link rel="alternate" hreflang="ar" href="/ar/">
</head><body><p>News.</p></body></html>"""


cli = processes.run_cli


def test_feed_links_prefers_atom_and_resolves_relative_hrefs() -> None:
    links = feed_links(PAGE, base_url="https://ledger.example/news/")
    assert links == [
        "https://ledger.example/news/feeds/atom.xml",
        "https://ledger.example/feeds/latest.xml",
    ]
    assert feed_links(b"<html><head></head></html>", base_url="https://x.example/") == []
    script = b'<link rel="alternate" type="application/rss+xml" href="javascript:alert(1)">'
    assert feed_links(script, base_url="https://x.example/") == []


async def test_feeds_add_with_a_page_adds_its_feed(
    settings: Settings, clean_services: None, feed_server: FeedServer
) -> None:
    page = feed_server.add("news/", PAGE, "text/html; charset=utf-8")
    feed_server.add("news/feeds/atom.xml", b"<html>broken</html>", "text/html")  # not a feed
    feed_url = feed_server.add("feeds/latest.xml", rss(2))
    env = processes.service_env(settings)

    added = await cli(["feeds", "add", page, "--region", "gulf"], env)
    assert added.returncode == 0, added.stderr
    assert f"found its feed {feed_url}" in added.stdout
    conn = await asyncpg.connect(settings.database_url)
    try:
        assert await conn.fetchval("SELECT url FROM feeds") == feed_url
    finally:
        await conn.close()

    feed_server.add("empty/", b"<html><head></head><body>no feeds</body></html>", "text/html")
    refused = await cli(["feeds", "add", feed_server.url("empty/")], env)
    assert refused.returncode == 1 and refused.stderr.startswith("error: no feed at ")
    assert refused.stderr.count("\n") == 1
