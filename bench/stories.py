"""Benchmark: does storing an article cost the same with 100,000 stored as with none?

Stores synthetic articles through ``store_batch`` (the real store transaction,
story assignment included) into a fresh database on a real PostgreSQL, in
feed-sized batches, and compares the mean per-article cost of the first and the
last 10,000 articles. The stream looks like news: about 1,000 articles a day
for 100 days, so the 7-day story window always holds several thousand
articles; 30% of articles are edited republications of a story from the last
36 hours (new headline, trimmed ending, editor's note, summary), 10% are
issues of templated daily bulletins whose wording repeats and figures change.
It also scores the clustering on the stream, pairwise, as a sanity check.

    .venv/bin/python bench/stories.py                    # 100,000 articles
    .venv/bin/python bench/stories.py --articles 20000   # quicker

The server is AGGREGATOR_BENCH_DATABASE_URL, else postgresql://postgres@127.0.0.1:5432/postgres;
the database ``aggregator_bench_<pid>`` is created there and dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import os
import random
import statistics
import sys
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aggregator.model import Article
from aggregator.pipeline.contenthash import content_hash
from aggregator.storage import migrations
from aggregator.storage.articles import StoreBatch, Validators, store_batch

START = datetime(2024, 1, 1, tzinfo=UTC)
PER_DAY = 1_000
WINDOW = 10_000


@dataclass(frozen=True)
class Item:
    article: Article
    story: str  # the generator's own story label, for the sanity score


class Newsroom:
    """A deterministic stream of synthetic news: stories, republications, bulletins."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        syllables = ["ka", "ri", "mo", "tan", "el", "su", "bar", "no", "qi", "dar", "lu", "sha"]
        vocabulary = {
            "".join(self.rng.choice(syllables) for _ in range(self.rng.randint(1, 4)))
            for _ in range(20_000)
        }
        self.words = sorted(vocabulary)
        # Zipf-like weights: a few words are everywhere, as in real text.
        self.cum_weights = list(
            itertools.accumulate(1 / (rank + 1) for rank in range(len(self.words)))
        )
        self.recent: deque[tuple[str, list[str], str, datetime]] = deque()
        self.serial = 0

    def sentence(self) -> str:
        words = self.rng.choices(
            self.words, cum_weights=self.cum_weights, k=self.rng.randint(12, 28)
        )
        return " ".join(words).capitalize() + "."

    def paragraphs(self) -> list[str]:
        return [
            " ".join(self.sentence() for _ in range(self.rng.randint(2, 4)))
            for _ in range(self.rng.randint(3, 8))
        ]

    def stream(self, count: int) -> Iterator[Item]:
        for n in range(count):
            at = START + timedelta(days=n / PER_DAY, seconds=self.rng.randint(0, 600))
            while self.recent and at - self.recent[0][3] > timedelta(hours=36):
                self.recent.popleft()
            roll = self.rng.random()
            if roll < 0.3 and self.recent:
                yield self.republication(at)
            elif roll < 0.4:
                yield self.bulletin(at, n)
            else:
                yield self.original(at)

    def original(self, at: datetime) -> Item:
        self.serial += 1
        label = f"S{self.serial}"
        paragraphs, title = self.paragraphs(), self.sentence().rstrip(".")
        self.recent.append((label, paragraphs, title, at))
        return self.item(label, title, paragraphs, at)

    def republication(self, at: datetime) -> Item:
        label, paragraphs, title, _ = self.rng.choice(self.recent)
        edit = self.rng.choice(["retitle", "trim", "note", "summary"])
        if edit == "retitle":
            title = self.sentence().rstrip(".")
        elif edit == "trim" and len(paragraphs) > 2:
            paragraphs = paragraphs[:-1]
        elif edit == "note":
            paragraphs = ["Editor's note: " + self.sentence(), *paragraphs]
        else:
            paragraphs = [paragraphs[0].split(". ")[0] + "."]
        return self.item(label, title, paragraphs, at, outlet=self.rng.randint(1, 50))

    def bulletin(self, at: datetime, n: int) -> Item:
        series = self.rng.randint(1, 20)
        figures = [f"{self.rng.uniform(10, 1000):.2f}" for _ in range(3)]
        day = at.strftime("%A")
        text = (
            f"Market bulletin {series}: the index closed {day} at {figures[0]} points, "
            f"turnover reached {figures[1]} million and the benchmark yield stood at "
            f"{figures[2]} percent, according to the exchange's closing data for the session."
        )
        label = f"B{series}-{n}"
        return self.item(label, f"Bulletin {series}: index at {figures[0]}", [text, text], at)

    def item(
        self, label: str, title: str, paragraphs: list[str], at: datetime, outlet: int = 0
    ) -> Item:
        text = "\n\n".join(paragraphs)
        body = " ".join(" ".join(paragraphs).split())
        slug = hashlib.blake2b(f"{label}{outlet}{title}".encode(), digest_size=6).hexdigest()
        url = f"https://outlet{outlet}.example/news/{slug}"
        article = Article(
            content_hash=content_hash(body, title=title, canonical_url=url),
            canonical_url=url,
            url=url,
            guid=None,
            title=title,
            summary=body[:300],
            content_html="",
            content_text=text,
            author=None,
            language="en",
            region="bench",
            published_at=at,
        )
        return Item(article, label)


async def run(database_url: str, count: int, batch_size: int) -> None:
    conn = await asyncpg.connect(database_url)
    await migrations.migrate(conn)
    feed_id = await conn.fetchval(
        "INSERT INTO feeds (url) VALUES ('https://bench.example/rss') RETURNING id"
    )
    items = list(Newsroom(seed=1).stream(count))
    per_article: list[float] = []
    started = time.perf_counter()
    for i in range(0, len(items), batch_size):
        chunk = [item.article for item in items[i : i + batch_size]]
        batch = StoreBatch(
            feed_id=feed_id,
            body_hash="0" * 64,
            validators=Validators(body_hash="0" * 64),
            articles=chunk,
            fetched_at=chunk[-1].published_at,
        )
        t = time.perf_counter()
        await store_batch(conn, batch)
        per_article += [(time.perf_counter() - t) / len(chunk)] * len(chunk)
        if (i // batch_size) % 500 == 0:
            print(
                f"  {i + len(chunk):>7} stored, {time.perf_counter() - started:6.1f} s", flush=True
            )
    total = time.perf_counter() - started

    first = statistics.fmean(per_article[:WINDOW]) * 1000
    last = statistics.fmean(per_article[-WINDOW:]) * 1000
    keys = await conn.fetchval("SELECT count(*) FROM story_keys")
    stories = await conn.fetchval("SELECT count(*) FROM stories WHERE merged_into IS NULL")
    rows = await conn.fetch("SELECT content_hash, story_id FROM articles")
    story_of = {r["content_hash"]: r["story_id"] for r in rows}
    precision, recall = score({it.article.content_hash: it.story for it in items}, story_of)
    await conn.close()

    print(f"articles stored: {len(items)} in batches of {batch_size}, {total:.0f} s")
    print(f"story keys: {keys} ({keys / len(items):.1f} per article); stories: {stories}")
    print(f"per-article store time, first {WINDOW:,}: {first:.2f} ms")
    print(f"per-article store time, last  {WINDOW:,}: {last:.2f} ms  (ratio {last / first:.2f})")
    segments = [
        f"{statistics.fmean(per_article[i : i + WINDOW]) * 1000:.2f}"
        for i in range(0, len(per_article), WINDOW)
    ]
    print(f"per-article ms by {WINDOW:,}-article segment: {' '.join(segments)}")
    print(f"clustering on the stream: pairwise precision {precision:.4f}, recall {recall:.4f}")


def score(truth: dict[str, str], system: dict[str, int]) -> tuple[float, float]:
    """Pairwise precision and recall, counted per group (the stream is too big for pairs)."""

    def pairs(groups: dict[object, int]) -> int:
        return sum(n * (n - 1) // 2 for n in groups.values())

    def count(keys: Iterator[object]) -> dict[object, int]:
        counts: dict[object, int] = {}
        for key in keys:
            counts[key] = counts.get(key, 0) + 1
        return counts

    hashes = list(truth)
    both = pairs(count((truth[h], system[h]) for h in hashes))
    together_system = pairs(count(system[h] for h in hashes))
    together_truth = pairs(count(truth[h] for h in hashes))
    return (
        both / together_system if together_system else 1.0,
        both / together_truth if together_truth else 1.0,
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--articles", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=20, help="articles per store transaction")
    args = parser.parse_args()
    server = os.environ.get(
        "AGGREGATOR_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    name = f"aggregator_bench_{os.getpid()}"
    admin = await asyncpg.connect(server)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        parts = urlsplit(server)
        await run(urlunsplit(parts._replace(path="/" + name)), args.articles, args.batch)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
