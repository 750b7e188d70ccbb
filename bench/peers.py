"""The peers, each run as its own process on the same farm: ``python -m bench.peers KIND``.

* ``reader``: lemon24/reader, the well-kept Python feed library: feeds added
  to a SQLite file, then ``update_feeds(workers=N, scheduled=False)`` (its
  thread pool fetches with requests and parses with feedparser).
* ``sequential``: the plain loop a newcomer would write: aiohttp GET
  (conditional, with the ETag and Last-Modified it kept), ``feedparser.parse``
  with its defaults, ``executemany`` of ``INSERT ... ON CONFLICT DO NOTHING``
  into Postgres, one feed after another.

Each ``cycle`` polls every listed feed once and prints one JSON line: the items
newly stored, the wall and CPU seconds of the cycle alone (set-up excluded).
Running ``--cycles 2`` with a ``--pause`` file lets the bench change the farm
between cycles without restarting the peer (its state stays warm, like a daemon's).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _wait_turn(turn: Path | None, cycle: int) -> None:
    """Before cycle n > 0, wait for the bench to write ``n`` into ``turn``."""
    if turn is None or cycle == 0:
        return
    while True:
        try:
            if int(turn.read_text() or "0") >= cycle:
                return
        except (FileNotFoundError, ValueError):
            pass
        time.sleep(0.05)


def _report(kind: str, cycle: int, items: int, wall: float, cpu: float, **extra: Any) -> None:
    line = {"peer": kind, "cycle": cycle, "items": items, "seconds": wall, "cpu_seconds": cpu}
    print(json.dumps(line | extra), flush=True)


# --- lemon24/reader --------------------------------------------------------------------------


def run_reader(
    urls: list[str], *, path: Path, workers: int, cycles: int, turn: Path | None
) -> None:
    from reader import make_reader

    reader = make_reader(str(path))
    try:
        for url in urls:
            reader.add_feed(url, exist_ok=True)
        for cycle in range(cycles):
            _wait_turn(turn, cycle)
            before = reader.get_entry_counts().total or 0
            wall, cpu = time.perf_counter(), time.process_time()
            errors = 0
            for result in reader.update_feeds_iter(scheduled=False, workers=workers):
                if isinstance(result.error, Exception):
                    errors += 1
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            after = reader.get_entry_counts().total or 0
            _report("reader", cycle, after - before, wall, cpu, errors=errors, total=after)
    finally:
        reader.close()


# --- the plain sequential loop ---------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS seq_feeds (url text PRIMARY KEY, etag text, last_modified text);
CREATE TABLE IF NOT EXISTS seq_entries (
    feed_url text NOT NULL, guid text NOT NULL, title text, link text, summary text,
    content text, published timestamptz, PRIMARY KEY (feed_url, guid)
);
"""
_INSERT = """
INSERT INTO seq_entries (feed_url, guid, title, link, summary, content, published)
VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING
"""


async def run_sequential(urls: list[str], *, dsn: str, cycles: int, turn: Path | None) -> None:
    import calendar
    from datetime import UTC, datetime

    import aiohttp
    import asyncpg
    import feedparser

    def when(struct: Any) -> datetime | None:
        return datetime.fromtimestamp(calendar.timegm(struct), UTC) if struct else None

    conn = await asyncpg.connect(dsn)
    await conn.execute(_SCHEMA)
    validators: dict[str, tuple[str | None, str | None]] = {}
    async with aiohttp.ClientSession() as session:
        for cycle in range(cycles):
            _wait_turn(turn, cycle)
            before = await conn.fetchval("SELECT count(*) FROM seq_entries")
            wall, cpu = time.perf_counter(), time.process_time()
            errors = 0
            for url in urls:
                etag, modified = validators.get(url, (None, None))
                headers = {}
                if etag:
                    headers["If-None-Match"] = etag
                if modified:
                    headers["If-Modified-Since"] = modified
                try:
                    async with session.get(url, headers=headers) as response:
                        if response.status == 304:
                            continue
                        body = await response.read()
                        etag = response.headers.get("ETag")
                        modified = response.headers.get("Last-Modified")
                except aiohttp.ClientError:
                    errors += 1
                    continue
                parsed = feedparser.parse(body)
                rows = [
                    (
                        url,
                        e.get("id") or e.get("link") or "",
                        e.get("title"),
                        e.get("link"),
                        e.get("summary"),
                        (e.get("content") or [{}])[0].get("value"),
                        when(e.get("published_parsed")),
                    )
                    for e in parsed.entries
                ]
                async with conn.transaction():
                    await conn.executemany(_INSERT, rows)
                    await conn.execute(
                        "INSERT INTO seq_feeds VALUES ($1, $2, $3) ON CONFLICT (url) "
                        "DO UPDATE SET etag = $2, last_modified = $3",
                        url,
                        etag,
                        modified,
                    )
                validators[url] = (etag, modified)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            stored = await conn.fetchval("SELECT count(*) FROM seq_entries") - before
            _report("sequential", cycle, stored, wall, cpu, errors=errors)
    await conn.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("reader", "sequential"))
    parser.add_argument("--urls", type=Path, required=True, help="a file, one feed URL a line")
    parser.add_argument("--sqlite", type=Path, help="reader: its database file")
    parser.add_argument("--dsn", help="sequential: its Postgres database")
    parser.add_argument("--workers", type=int, default=16, help="reader: update workers")
    parser.add_argument("--cycles", type=int, default=1)
    parser.add_argument("--turn", type=Path, help="a file the bench writes n into before cycle n")
    args = parser.parse_args(argv)
    urls = args.urls.read_text().split()
    runners: dict[str, Callable[[], None]] = {
        "reader": lambda: run_reader(
            urls, path=args.sqlite, workers=args.workers, cycles=args.cycles, turn=args.turn
        ),
        "sequential": lambda: asyncio.run(
            run_sequential(urls, dsn=args.dsn, cycles=args.cycles, turn=args.turn)
        ),
    }
    runners[args.kind]()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
