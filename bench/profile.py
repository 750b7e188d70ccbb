"""Reading py-spy profiles: where the daemon's CPU goes, by stage and by function.

``python -m bench --profile`` records ``aggregator run --once`` under
``py-spy record --subprocesses --format raw`` (collapsed stacks, one line per
distinct stack with its sample count; idle threads are not sampled, so
samples are CPU). This module folds them into:

* processes: the daemon's event loop vs. the parse processes;
* stages: each sample charged to the first frame (from the leaf up) that
  belongs to a known stage (feedparser, language detection, story matching...);
* the functions with the most inclusive and self samples.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

# (stage, pattern on "function (file:line)") from the most specific; the leaf-most match wins.
STAGES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern))
    for name, pattern in (
        ("language detection", r"aggregator/pipeline/language\.py|py3langid"),
        ("story prints", r"aggregator/stories/(prints|text)\.py"),
        ("story matching", r"aggregator/stories/|aggregator/storage/stories\.py"),
        ("body text (lxml)", r"aggregator/pipeline/bodytext\.py"),
        ("sanitize (nh3)", r"sanitize_html|_bounded_html"),
        ("fastparse (lxml)", r"aggregator/pipeline/fastparse\.py"),
        ("feedparser", r"feedparser/|xml/sax|feedparser_sgmllib|sgmllib"),
        ("defuse/decode", r"aggregator/pipeline/(parse|cut)\.py"),
        ("normalize (rest)", r"aggregator/pipeline/"),
        ("pydantic (validate/dump)", r"pydantic|model_dump|model_validate"),
        ("json (queue payloads)", r"json/|aggregator/queue\.py"),
        ("asyncpg", r"asyncpg/"),
        ("redis client", r"redis/"),
        ("arq", r"arq/"),
        ("aiohttp (fetch)", r"aiohttp/|yarl/|multidict/"),
        ("process pool / pickling", r"concurrent/futures|multiprocessing/|pickle"),
        ("asyncio loop", r"asyncio/"),
    )
)


def _frames(stack: str) -> list[str]:
    # py-spy raw: 'process 1:"cmd";frame;frame;... count'
    return [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]


def _process_kind(stack: str) -> str:
    head = stack.split(";", 2)
    if len(head) > 1 and head[1].startswith("process ") and "spawn_main" in head[1]:
        return "parse processes"
    return "daemon (event loop)"


def stage_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, pattern in STAGES:
            if pattern.search(frame):
                return name
    return "other"


def summarize(path: Path, *, top: int = 15) -> dict[str, Any]:
    processes: Counter[str] = Counter()
    stages: Counter[tuple[str, str]] = Counter()
    inclusive: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        kind = _process_kind(stack)
        frames = _frames(stack)
        processes[kind] += count
        stages[(kind, stage_of(frames))] += count
        for frame in set(frames):
            inclusive[frame] += count
        if frames:
            self_time[frames[-1]] += count

    def share(n: int) -> float:
        return round(100 * n / total, 1) if total else 0.0

    return {
        "samples": total,
        "processes": {k: share(v) for k, v in processes.most_common()},
        "stages": [
            {"process": kind, "stage": stage, "percent": share(n)}
            for (kind, stage), n in stages.most_common()
        ],
        "inclusive": [
            {"function": f, "percent": share(n)}
            for f, n in inclusive.most_common(top * 4)
            if "aggregator/" in f or "workers/" in f
        ][:top],
        "self": [{"function": f, "percent": share(n)} for f, n in self_time.most_common(top)],
    }


def render(summary: dict[str, Any]) -> str:
    lines = [f"{summary['samples']} samples (CPU only)"]
    lines += [f"  {kind}: {pct}%" for kind, pct in summary["processes"].items()]
    lines.append("by stage:")
    lines += [
        f"  {s['percent']:5.1f}%  {s['process']:<20} {s['stage']}"
        for s in summary["stages"]
        if s["percent"] >= 0.5
    ]
    lines.append("our functions, inclusive:")
    lines += [f"  {f['percent']:5.1f}%  {f['function']}" for f in summary["inclusive"]]
    lines.append("self time:")
    lines += [f"  {f['percent']:5.1f}%  {f['function']}" for f in summary["self"]]
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    print(render(summarize(Path(sys.argv[1]))))
