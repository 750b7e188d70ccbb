"""Labelled feed corpora and pairwise scoring against their ground truth.

A corpus is a folder with ``ground_truth.json`` and the feed files it names
(the layout of ``../shared/fixtures/feeds/``). The project's own corpus lives
in ``tests/corpus``; the shared one is used too whenever it sits beside the
checkout.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from aggregator.app import daemon
from aggregator.runtime import Runtime
from aggregator.storage import feeds
from tests.feedserver import FeedServer

HERE = Path(__file__).resolve().parent
OWN_CORPUS = HERE / "corpus"
SHARED_FIXTURES = Path(
    os.environ.get(
        "AGGREGATOR_SHARED_FIXTURES", HERE.parent.parent / "shared" / "fixtures" / "feeds"
    )
)


SHARED_MISSING = (
    f"the shared corpus is not there ({SHARED_FIXTURES}): a checkout without ../shared "
    "beside it, or set AGGREGATOR_SHARED_FIXTURES"
)


def corpora() -> list[Path]:
    """The corpora present: ours always, the shared one when it sits beside the checkout."""
    found = [OWN_CORPUS]
    if (SHARED_FIXTURES / "ground_truth.json").exists():
        found.append(SHARED_FIXTURES)
    return [c for c in found if (c / "ground_truth.json").exists()]


def corpus_params() -> list[Any]:
    """Both corpora as test parameters; the shared one is a visible skip when it is missing."""
    params = [pytest.param(c, id=c.parent.name + "/" + c.name) for c in corpora()]
    if SHARED_FIXTURES not in corpora():
        params.append(
            pytest.param(
                SHARED_FIXTURES,
                id="fixtures/feeds",
                marks=pytest.mark.skip(reason=SHARED_MISSING),
            )
        )
    return params


@dataclass
class Corpus:
    root: Path
    truth: dict[str, Any]

    @classmethod
    def load(cls, root: Path) -> Corpus:
        return cls(root, json.loads((root / "ground_truth.json").read_text(encoding="utf-8")))

    @property
    def items(self) -> list[dict[str, Any]]:
        return list(self.truth["items"])

    @property
    def feeds(self) -> list[dict[str, Any]]:
        return list(self.truth["feeds"])

    def serve(self, server: FeedServer) -> dict[str, str]:
        """Serve every feed file; return feed file -> local URL."""
        urls = {}
        for feed in self.feeds:
            body = (self.root / feed["file"]).read_bytes()
            urls[feed["file"]] = server.add(Path(feed["file"]).name, body, feed["content_type"])
        return urls

    async def register(self, conn: asyncpg.Connection, urls: Mapping[str, str]) -> dict[str, int]:
        """Add every served feed; return feed file -> feed id."""
        ids = {}
        for feed in self.feeds:
            spec = feeds.FeedSpec(
                url=urls[feed["file"]], region="test", language=feed.get("language")
            )
            row, _ = await feeds.add(conn, spec)
            ids[feed["file"]] = row.id
        return ids

    async def stored_groups(
        self, conn: asyncpg.Connection, feed_ids: Mapping[str, int]
    ) -> dict[str, int]:
        """item_id -> the article id its sighting points at (every item must have one)."""
        rows = await conn.fetch("SELECT article_id, feed_id, guid, url FROM article_sources")
        by_guid = {(r["feed_id"], r["guid"]): r["article_id"] for r in rows if r["guid"]}
        by_url = {(r["feed_id"], r["url"]): r["article_id"] for r in rows if r["url"]}
        groups: dict[str, int] = {}
        for item in self.items:
            feed_id = feed_ids[item["feed"]]
            article = by_guid.get((feed_id, item["key"])) or by_url.get((feed_id, item["link"]))
            if article is None:
                raise AssertionError(f"{item['item_id']} has no sighting: not stored")
            groups[item["item_id"]] = article
        return groups


async def ingest(rt: Runtime, server: FeedServer, corpus: Corpus) -> dict[str, int]:
    """Serve and register a corpus, poll every feed once through the real pipeline;
    return feed file -> feed id."""
    urls = corpus.serve(server)
    async with rt.pool.acquire() as conn:
        feed_ids = await corpus.register(conn, urls)
    summary = await daemon.run_once(rt, timeout=120)
    assert summary.feeds_failed == 0, summary.failures
    return feed_ids


def pairwise(system: Mapping[str, Hashable], truth: Mapping[str, Hashable]) -> tuple[float, float]:
    """Pairwise precision and recall of a grouping against the truth, over all item pairs."""
    together_system = together_truth = both = 0
    for a, b in itertools.combinations(sorted(truth), 2):
        s = system[a] == system[b]
        t = truth[a] == truth[b]
        together_system += s
        together_truth += t
        both += s and t
    precision = both / together_system if together_system else 1.0
    recall = both / together_truth if together_truth else 1.0
    return precision, recall
