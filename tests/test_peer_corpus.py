"""A peer's yardstick: feedparser's own 2,106 test feeds through our parse and normalize.

Runs when ``../shared/peer/feedparser-tests`` (or ``AGGREGATOR_PEER_CORPUS``)
exists. Every file must come out as articles or as one of the project's own
errors, never anything else; and nothing stored from the 745 ``sanitize``
cases (hostile HTML in every field feedparser knows) may keep a script, an
event-handler attribute or a link with a scheme other than http(s).
Our output differs from feedparser's by design, so its ``Expect:`` lines are
not checked.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lxml.html
import pytest

from aggregator.errors import AggregatorError
from aggregator.model import Article
from aggregator.pipeline.normalize import DocumentInfo, FeedContext, articles_from_document

PEER = Path(
    os.environ.get(
        "AGGREGATOR_PEER_CORPUS",
        Path(__file__).resolve().parents[2] / "shared" / "peer" / "feedparser-tests",
    )
)
NOW = datetime(2026, 3, 3, tzinfo=UTC)
FEED_URL = "http://example.org/feed/"  # feedparser's tests resolve relative links against this

pytestmark = pytest.mark.skipif(not PEER.is_dir(), reason=f"no peer corpus at {PEER}")

SCRIPT = re.compile(r"<\s*/?\s*script", re.I)
HANDLER = re.compile(r"<[^>]*\son[a-z]+\s*=", re.I)
UNSAFE_SCHEME = re.compile(r"\b(?:javascript|vbscript|livescript|mocha|data|file)\s*:", re.I)
SCHEME = re.compile(r"([a-z][a-z0-9+.-]*):")
URL_ATTRIBUTES = frozenset({"href", "src", "cite", "action", "background", "poster", "srcset"})
UNSAFE_ELEMENTS = frozenset({"script", "style", "iframe", "object", "embed", "form", "svg", "math"})


def peer_files() -> list[Path]:
    return sorted(
        p for p in PEER.rglob("*") if p.is_file() and p.name not in ("README.md", "LICENSE")
    )


def read(path: Path) -> tuple[DocumentInfo, list[Article]]:
    return articles_from_document(
        path.read_bytes(),
        url=FEED_URL,
        content_type=None,
        feed=FeedContext(url=FEED_URL),
        now=NOW,
    )


def test_every_peer_feed_becomes_articles_or_one_of_our_errors() -> None:
    files = peer_files()
    outcomes: Counter[str] = Counter()
    articles = 0
    for path in files:
        try:
            _, found = read(path)
        except AggregatorError as error:
            outcomes[f"{type(error).__name__} ({getattr(error, 'kind', '-')})"] += 1
            continue
        except Exception as error:  # pragma: no cover - the failure this test exists for
            raise AssertionError(f"{path.relative_to(PEER)}: {error!r}") from error
        outcomes["parsed"] += 1
        articles += len(found)
    print(f"\npeer corpus: {len(files)} files, {articles} articles, outcomes {dict(outcomes)}")
    assert len(files) >= 2_100
    assert outcomes["parsed"] >= 0.99 * len(files)


def test_nothing_stored_from_the_sanitize_cases_can_run_script() -> None:
    cases = sorted((PEER / "wellformed" / "sanitize").glob("*.xml"))
    assert len(cases) >= 700
    problems: list[str] = []
    values = 0
    for path in cases:
        info, found = read(path)
        fields: list[tuple[str, str | None]] = [("feed title", info.title)]
        for url_name, url in (("site_url", info.site_url),):
            problems += unsafe_url(path, url_name, url)
        for article in found:
            fields += [
                ("title", article.title),
                ("summary", article.summary),
                ("content_text", article.content_text),
                ("author", article.author),
                ("guid", article.guid),
            ]
            problems += unsafe_html(path, article.content_html)
            problems += unsafe_url(path, "url", article.url)
            problems += unsafe_url(path, "canonical_url", article.canonical_url)
            values += 1
        for name, value in fields:
            if value and (SCRIPT.search(value) or HANDLER.search(value)):
                problems.append(f"{path.name}: {name} keeps markup: {value[:120]!r}")
            if value and name != "guid" and UNSAFE_SCHEME.search(value):
                problems.append(f"{path.name}: {name} keeps a script URL: {value[:120]!r}")
    print(
        f"\nsanitize cases: {len(cases)} files, {values} articles checked, {len(problems)} problems"
    )
    assert not problems, problems[:20]


def unsafe_html(path: Path, html: str) -> list[str]:
    """Script, style or embedding elements, event handlers, style attributes, and URL
    attributes whose scheme is not http(s), in stored HTML."""
    if not html.strip():
        return []
    if SCRIPT.search(html):
        return [f"{path.name}: content_html keeps <script>: {html[:120]!r}"]
    problems = []
    root: Any = lxml.html.fragment_fromstring(html, create_parent="div")
    for element in root.iter():
        if not isinstance(element.tag, str):
            continue
        if element.tag.lower() in UNSAFE_ELEMENTS:
            problems.append(f"{path.name}: content_html keeps <{element.tag}>")
        for name, value in element.attrib.items():
            if unsafe_attribute(name.lower(), value):
                problems.append(f"{path.name}: content_html keeps {name}={value[:60]!r}")
    return problems


def unsafe_attribute(name: str, value: str) -> bool:
    """An event handler, inline CSS, or a URL whose scheme is not http(s)."""
    if name.startswith("on") or name == "style":
        return True
    return name in URL_ATTRIBUTES and not is_http(value)


def unsafe_url(path: Path, name: str, url: str | None) -> list[str]:
    """Stored links must be absolute http(s)."""
    if url is None or url.lower().startswith(("http://", "https://")):
        return []
    return [f"{path.name}: {name} is {url[:80]!r}"]


def is_http(value: str) -> bool:
    """http(s), or relative; browsers ignore whitespace and control characters in a scheme."""
    cleaned = "".join(c for c in value if c.isprintable() and not c.isspace()).lower()
    scheme = SCHEME.match(cleaned)
    return scheme is None or scheme[1] in ("http", "https")


def test_the_checks_catch_what_they_look_for() -> None:
    here = Path("self-test")
    assert unsafe_html(here, '<a href=" java\tscript:x()">x</a>')
    assert unsafe_html(here, '<img src="https://x.example/a.png" onerror="x()">')
    assert unsafe_html(here, '<p style="background:url(x)">x</p><iframe></iframe>')
    assert not unsafe_html(
        here, '<p><a href="/relative">ok</a> <a href="https://x.example/">ok</a></p>'
    )
    assert unsafe_url(here, "url", "data:text/html,x") and not unsafe_url(here, "url", None)
