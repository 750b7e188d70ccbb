"""Normalization: URLs, dates, values, and the content hash. Pure functions, no services."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from aggregator.pipeline.contenthash import content_hash
from aggregator.pipeline.normalize import (
    FeedContext,
    articles_from_document,
    canonical_url,
    clean,
    safe_url,
    sane_date,
    sanitize_html,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_canonical_url_drops_tracking_fragment_and_default_port() -> None:
    assert (
        canonical_url("HTTPS://News.Example:443/a/b?p=12&utm_source=rss&utm_medium=x#xtor=RSS-3")
        == "https://news.example/a/b?p=12"
    )
    assert canonical_url("http://a.example:8080/x?fbclid=1") == "http://a.example:8080/x"


def test_canonical_url_keeps_raw_iri_paths() -> None:
    url = "https://fa.example/news/تهران-آب?utm_campaign=feed"
    assert canonical_url(url) == "https://fa.example/news/تهران-آب"


def test_only_http_links_survive() -> None:
    base = "https://site.example/feed"
    assert safe_url("javascript:alert(1)", base=base) is None
    assert safe_url("data:text/html,hi", base=base) is None
    assert safe_url("file:///etc/passwd", base=base) is None
    assert safe_url("/story/1", base=base) == "https://site.example/story/1"


def test_dates_out_of_range_become_first_seen() -> None:
    assert sane_date(None, now=NOW) == NOW
    assert sane_date(datetime(1, 1, 1, tzinfo=UTC), now=NOW) == NOW
    assert sane_date(NOW + timedelta(days=30), now=NOW) == NOW
    past = datetime(2014, 9, 12, 10, 0, tzinfo=UTC)
    assert sane_date(past, now=NOW) == past


def test_html_is_sanitized_with_an_allowlist() -> None:
    dirty = '<p onclick="x()">Hi <a href="javascript:alert(1)">x</a><script>bad()</script><img src=x onerror=y></p>'
    clean_html = sanitize_html(dirty)
    for bad in ("onclick", "javascript:", "<script", "onerror"):
        assert bad not in clean_html


def test_control_characters_removed_and_lengths_bounded() -> None:
    assert clean("a\x00b\x07c\td", 100) == "abc\td"
    assert len(clean("x" * 5000, 1000)) == 1000


def test_short_bodies_do_not_merge_unrelated_items() -> None:
    a = content_hash("Read more", title="Quake hits Van", canonical_url="https://a.example/1")
    b = content_hash("Read more", title="Oil prices fall", canonical_url="https://a.example/2")
    assert a != b
    long_body = "x" * 60
    assert content_hash(long_body, title="A", canonical_url="u1") == content_hash(
        long_body, title="B", canonical_url="u2"
    )


def test_feed_with_nul_bytes_and_script_titles_yields_safe_articles() -> None:
    feed = (
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>'
        b"<item><title>&lt;script&gt;alert(1)&lt;/script&gt;Headline</title>"
        b"<link>javascript:alert(1)</link><description>Body\x00 text</description></item>"
        b"</channel></rss>"
    )
    _, articles = articles_from_document(
        feed,
        url="https://x.example/rss",
        content_type="application/rss+xml",
        feed=FeedContext(url="https://x.example/rss"),
        now=NOW,
    )
    (article,) = articles
    assert "<script" not in article.title and "alert" not in article.title
    assert article.url is None and article.canonical_url is None
    assert "\x00" not in article.content_text


@given(st.text(), st.text(max_size=50), st.one_of(st.none(), st.text(max_size=50)))
def test_content_hash_is_a_stable_sha256(body: str, title: str, url: str | None) -> None:
    h = content_hash(body, title=title, canonical_url=url)
    assert len(h) == 64 and int(h, 16) >= 0
    assert h == content_hash(body, title=title, canonical_url=url)


@given(st.text())
def test_clean_never_leaves_nul(value: str) -> None:
    assert "\x00" not in clean(value, 10_000)
