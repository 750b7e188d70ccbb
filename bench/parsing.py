"""``python -m bench.parsing``: the parse step alone, fast path against feedparser.

CPU time per document on both paths, side by side in one run, and the ratio: the
synthetic feeds the farm serves and the project's own corpus. (The end-to-end
effect is in ``python -m bench``.)
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from aggregator.pipeline.parse import _parse_xml_feed
from bench.synthetic import render_feed

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "corpus" / "raw"
URL = "http://127.0.0.1/feed.xml"


def per_document(body: bytes, *, fast: bool, rounds: int = 5, calls: int = 4) -> float:
    """CPU ms per parse: the best of ``rounds`` means of ``calls`` parses (the machine is
    shared; CPU time and the best round are what other load disturbs least)."""
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(calls):
            _parse_xml_feed(body, url=URL, content_type="application/rss+xml", fast=fast)
        best = min(best, (time.process_time() - started) / calls)
    return best * 1_000


def documents() -> list[tuple[str, bytes]]:
    found = [
        (
            f"synthetic {feed}",
            render_feed(feed, 3, items=20, new_per_change=2, published_at={}, epoch=1.7e9),
        )
        for feed in range(2)
    ]
    if CORPUS.is_dir():
        found += [(p.name, p.read_bytes()) for p in sorted(CORPUS.iterdir()) if p.suffix == ".xml"]
    return found


def main() -> None:
    print("document                                 size  feedparser   fast  ratio")
    ratios = []
    for name, body in documents():
        slow = per_document(body, fast=False)
        fast = per_document(body, fast=True)
        ratios.append(slow / fast)
        size = len(body) / 1024
        print(f"{name:38} {size:6.1f} kB {slow:7.2f} ms {fast:6.2f} ms {slow / fast:5.1f}x")
    print(f"geometric mean speed-up {statistics.geometric_mean(ratios):.1f}x")


if __name__ == "__main__":
    main()
