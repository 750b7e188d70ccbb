"""``python -m bench.scaleout``: the store step with N store processes, lock waits and disk.

Normalizes ``--feeds`` synthetic farm feeds (20 items of about 3.3 kB text each, a
share of them wire copies that every outlet of a language carries at the same point:
the copies that concurrent store workers race on), then for each N of ``--workers``
stores them into a fresh throwaway database with N worker processes at once, each
calling ``store_batch`` on its own connection for every N-th batch, as N store
workers would. It reports:

* **lock wait**: the share of store time the workers' backends spent waiting on a
  lock. Sampled from ``pg_stat_activity`` every few milliseconds: samples with a
  ``Lock`` wait event over samples inside a store transaction (active or idle in
  transaction), split by what waited (the key claims, the story rows, the content
  hash of a copy another worker is inserting, the outbox's arrival order). Also timed
  around the lock statements in the workers (an upper bound: it includes their work).
* **store ms per article**: the workers' seconds in ``store_batch`` per new article,
  and new articles per wall second;
* **disk per article**: ``pg_total_relation_size`` of the tables a stored article
  occupies (articles, article_sources, story_keys, story_key_claims, stories, outbox),
  summed, over the articles stored; and per table; and the same once the claims' dead
  rows are vacuumed, and the articles (what autovacuum leaves of them). The batches
  are stored in two rounds, their halves, and the growth over the second half, the
  claims apart (a working set that the daemon vacuums: ``aggregator.storage.upkeep``),
  is the **marginal** disk per article: what an archive pays for each further article,
  without the fixed costs that a few thousand articles cannot spread (the full-text
  index's pending list takes up to 4 MB, ``gin_pending_list_limit``, which VACUUM
  gives back for reuse: a kilobyte an article at 4,000 articles).

No Redis: only ``store_batch`` runs. Nothing else's database is touched.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from aggregator.storage import db, locks, stories
from aggregator.storage.articles import StoreBatch, store_batch
from bench import services, synthetic
from bench.store import TimedConnection, fresh_batch

APPLICATION = "bench-scaleout"
SAMPLE_SECONDS = 0.003
TABLES = (
    "articles",
    "article_sources",
    "story_keys",
    "story_key_claims",
    "stories",
    "outbox",
)

# The statements that take a lock, by what they lock (the first words of their SQL).
_LOCK_STATEMENTS = {
    "claims": " ".join(stories._CLAIM_KEYS.split())[:40],
    "stories": " ".join(stories._LOCK_STORIES.split())[:40],
    "arrivals": " ".join(locks._HOLD.split())[:40],
}

_SAMPLE = """
SELECT pid, state, wait_event_type, wait_event, left(ltrim(query), 40) AS query
FROM pg_stat_activity
WHERE application_name = $1 AND datname = current_database()
  AND state IN ('active', 'idle in transaction')
"""


def _waited_on(query: str) -> str:
    """What a backend waiting on a lock was running, in a word."""
    query = query.lstrip()
    for name, prefix in _LOCK_STATEMENTS.items():
        if query.startswith(prefix[:30]):
            return name
    if query.startswith("INSERT INTO articles"):
        return "copy being inserted"
    if query.startswith("INSERT INTO article_sources"):
        return "sighting being inserted"
    return query[:30]


async def _sample(url: str, stop: asyncio.Event) -> tuple[int, Counter[str]]:
    """(samples in a store transaction, lock-wait samples by what waited) until ``stop``."""
    conn = await asyncpg.connect(url)
    busy, waits = 0, Counter[str]()
    try:
        while not stop.is_set():
            for row in await conn.fetch(_SAMPLE, APPLICATION):
                busy += 1
                if row["wait_event_type"] == "Lock":
                    waits[f"{_waited_on(row['query'])} ({row['wait_event']})"] += 1
            await asyncio.sleep(SAMPLE_SECONDS)
    finally:
        await conn.close()
    return busy, waits


async def _prepare(feeds: int) -> list[StoreBatch]:
    now = datetime.now(UTC)
    return [fresh_batch(n, n + 1, now) for n in range(feeds)]


async def _round(batch_file: Path, url: str, workers: int) -> list[dict[str, Any]]:
    """``workers`` store processes over the batches of ``batch_file``; their figures."""
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.scaleout",
            "--worker",
            str(batch_file),
            "--database",
            url,
            "--index",
            str(i),
            "--of",
            str(workers),
            stdout=subprocess.PIPE,
        )
        for i in range(workers)
    ]
    outputs = [await child.communicate() for child in children]
    for child in children:
        assert child.returncode == 0, f"a store worker failed ({child.returncode})"
    return [json.loads(out) for out, _ in outputs]


async def _settled_size(url: str) -> tuple[int, int, int, dict[str, int]]:
    """(articles, bytes of the tables, the same once vacuumed as autovacuum would (the
    claims' dead rows, and the full-text index's pending list pages given back for
    reuse: see bench/README.md), bytes by table then)."""

    async def sizes() -> dict[str, int]:
        return {
            table: await conn.fetchval("SELECT pg_total_relation_size($1::regclass)", table)
            for table in TABLES
        }

    conn = await asyncpg.connect(url)
    try:
        raw = sum((await sizes()).values())
        await conn.execute("VACUUM story_key_claims, articles")
        settled = await sizes()
        articles = await conn.fetchval("SELECT count(*) FROM articles")
        return articles, raw, sum(settled.values()), settled
    finally:
        await conn.close()


async def run(
    batches: Sequence[StoreBatch], workers: int, batch_files: Sequence[Path]
) -> dict[str, Any]:
    """Store ``batches`` with ``workers`` processes into a fresh database; the figures."""
    server = services.server_database_url()
    name = services.database_name(f"scaleout{workers}")
    url = await services.create_database(server, name)
    try:
        await db.migrate(url)
        conn = await asyncpg.connect(url)
        try:
            for batch in batches:
                await conn.execute(
                    "INSERT INTO feeds (id, url) VALUES ($1, $2)",
                    batch.feed_id,
                    f"https://{synthetic.outlet_host(batch.feed_id - 1)}/feed",
                )
            await conn.execute("ANALYZE")
        finally:
            await conn.close()
        stop = asyncio.Event()
        sampler = asyncio.create_task(_sample(url, stop))
        # Two rounds, the halves of the batches: the second's growth is the marginal disk.
        results, wall, settled = [], 0.0, []
        for batch_file in batch_files:
            started = time.perf_counter()
            results += await _round(batch_file, url, workers)
            wall += time.perf_counter() - started
            settled.append(await _settled_size(url))
        stop.set()
        busy, waits = await sampler
        conn = await asyncpg.connect(url)
        try:
            key_rows = await conn.fetchval("SELECT count(*) FROM story_keys")
        finally:
            await conn.close()
    finally:
        await services.drop_database(server, name)
    (first_articles, _, _, first_sizes), (articles, raw_bytes, settled_bytes, sizes) = settled
    # The claims are a working set the daemon's upkeep vacuums (aggregator.storage.upkeep),
    # not a cost per article: left out of the marginal figure.
    grown = sum(sizes[t] - first_sizes[t] for t in TABLES if t != "story_key_claims")
    store_seconds = sum(r["seconds"] for r in results)
    new = sum(r["new"] for r in results)
    timed = Counter[str]()
    for r in results:
        timed.update(r["lock_seconds"])
    return {
        "workers": workers,
        "batches": len(batches),
        "new_articles": new,
        "wall_seconds": round(wall, 2),
        "articles_per_second": round(new / wall, 1),
        "store_ms_per_article": round(1000 * store_seconds / max(new, 1), 3),
        "lock_wait_fraction_sampled": round(sum(waits.values()) / max(busy, 1), 4),
        "lock_wait_samples": dict(waits),
        "store_samples": busy,
        "lock_statement_fraction_timed": round(sum(timed.values()) / max(store_seconds, 1e-9), 4),
        "lock_statement_seconds": {k: round(v, 3) for k, v in timed.items()},
        "disk_bytes_per_article": round(raw_bytes / max(articles, 1)),
        "disk_bytes_per_article_settled": round(settled_bytes / max(articles, 1)),
        "disk_bytes_per_article_marginal": round(grown / max(articles - first_articles, 1)),
        "disk_bytes_per_article_by_table": {
            t: round(size / max(articles, 1)) for t, size in sizes.items()
        },
        "story_key_rows_per_article": round(key_rows / max(articles, 1), 2),
    }


async def _work(batch_file: Path, url: str, index: int, of: int) -> dict[str, Any]:
    """One store worker: every ``of``-th batch from ``index``, on its own connection."""
    lines = batch_file.read_text(encoding="utf-8").splitlines()
    batches = [StoreBatch.model_validate_json(line) for line in lines[index::of]]
    conn = await asyncpg.connect(url, server_settings={"application_name": APPLICATION})
    timed = TimedConnection(conn)
    new, seconds = 0, 0.0
    try:
        for batch in batches:
            started = time.perf_counter()
            new += (await store_batch(timed, batch)).new  # type: ignore[arg-type]
            seconds += time.perf_counter() - started
    finally:
        await conn.close()
    lock_seconds = {
        name: sum(s for sql, s in timed.seconds.items() if sql.startswith(prefix))
        for name, prefix in _LOCK_STATEMENTS.items()
    }
    return {"new": new, "seconds": seconds, "lock_seconds": lock_seconds}


def _table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| store workers | new articles | articles/s | store ms/article | lock wait (sampled) "
        "| lock statements (timed) | disk B/article | after VACUUM of the claims "
        "| of the second half |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['workers']} | {r['new_articles']} | {r['articles_per_second']} "
            f"| {r['store_ms_per_article']} | {100 * r['lock_wait_fraction_sampled']:.2f} % "
            f"| {100 * r['lock_statement_fraction_timed']:.2f} % "
            f"| {r['disk_bytes_per_article']} | {r['disk_bytes_per_article_settled']} "
            f"| {r['disk_bytes_per_article_marginal']} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scaleout", description=__doc__)
    parser.add_argument("--feeds", type=int, default=300, help="batches to store (default 300)")
    parser.add_argument(
        "--workers", default="1,3", help="store processes, comma-separated (default 1,3)"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--database", help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--of", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        print(json.dumps(asyncio.run(_work(args.worker, args.database, args.index, args.of))))
        return
    batches = asyncio.run(_prepare(args.feeds))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        half = len(batches) // 2
        batch_files = [Path(tmp) / "first.jsonl", Path(tmp) / "second.jsonl"]
        for path, part in zip(batch_files, (batches[:half], batches[half:]), strict=True):
            path.write_text("".join(b.model_dump_json() + "\n" for b in part), encoding="utf-8")
        for workers in (int(w) for w in args.workers.split(",")):
            results.append(asyncio.run(run(batches, workers, batch_files)))
            print(json.dumps(results[-1]), file=sys.stderr)
    print(_table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
