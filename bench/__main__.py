"""``python -m bench``: run the scenarios, print the table, write JSON and a PNG chart.

See bench/README.md for what each scenario measures and the sizes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from bench import report, scenarios

SCENARIOS = ("cold", "steady", "freshness", "growth")


def _parse_set(values: list[str]) -> dict[str, str]:
    overrides = {}
    for value in values:
        name, sep, setting = value.partition("=")
        if not sep:
            raise SystemExit(f"--set wants NAME=VALUE, got {value!r}")
        name = name.upper()
        overrides[name if name.startswith("AGGREGATOR_") else f"AGGREGATOR_{name}"] = setting
    return overrides


def _meta(args: argparse.Namespace, sizes: scenarios.Sizes) -> dict[str, Any]:
    from aggregator import __version__

    return {
        "command": "python -m bench " + " ".join(sys.argv[1:]),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "version": __version__,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "size": args.size,
        "overrides": _parse_set(args.set),
    }


async def _profile(sizes: scenarios.Sizes, out: Path, overrides: dict[str, str]) -> dict[str, Any]:
    """Cold ingest and the steady cycle of our daemon under py-spy (no peers)."""
    from bench import profile
    from bench.farm import FarmProcess
    from bench.ours import Ours

    found: dict[str, Any] = {}
    async with FarmProcess(sizes.farm_feeds, items=sizes.items) as farm:
        await farm.warm(0, sizes.cold_feeds)
        async with Ours("profile", farm.base_url, farm.pid, overrides=overrides) as ours:
            await ours.add_feeds(range(sizes.cold_feeds))
            raw = out / "profile-cold.raw"
            result = await scenarios.ours_once(ours, profile=raw)
            found["cold"] = {
                "wall_seconds": result["wall_seconds"],
                "items": result["items"],
                **profile.summarize(raw),
            }
        raw = out / "profile-steady.raw"
        result = await scenarios.steady(
            farm, sizes.steady_feeds, sizes.changed_share, overrides=overrides, profile=raw
        )
        found["steady"] = {"wall_seconds": result["row"]["seconds"], **profile.summarize(raw)}
    for name, summary in found.items():
        print(f"\n== profile: {name} ({summary['wall_seconds']}s under py-spy)")
        print(profile.render(summary))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--quick",
        dest="size",
        action="store_const",
        const="quick",
        help="tiny sizes: a smoke run in well under a minute (CI)",
    )
    size.add_argument(
        "--full",
        dest="size",
        action="store_const",
        const="full",
        help="the issue's full sizes (2,000-feed cold ingest, 1M stored articles, "
        "100k feeds): about 25 minutes on 2 cores",
    )
    parser.set_defaults(size="default")
    parser.add_argument(
        "--only", action="append", choices=SCENARIOS, help="run only this scenario (repeatable)"
    )
    parser.add_argument("--no-peers", action="store_true", help="skip reader and the plain loop")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="instead: profile cold ingest and the steady cycle with py-spy",
    )
    parser.add_argument(
        "--soak",
        type=float,
        metavar="SECONDS",
        help="instead: run `aggregator run` this long over --soak-feeds farm feeds with churn "
        "every cycle; report slopes of RSS, descriptors, Redis memory, database size per article",
    )
    parser.add_argument("--soak-feeds", type=int, default=10_000, metavar="N")
    parser.add_argument("--soak-interval", type=float, default=60.0, metavar="SECONDS")
    parser.add_argument("--soak-churn", type=float, default=0.05, metavar="SHARE")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an AGGREGATOR_* setting for our daemon, e.g. --set poll_delay=0.01",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("bench-results"),
        help="folder for bench.json and bench.png (default: bench-results/)",
    )
    args = parser.parse_args(argv)
    sizes = {"quick": scenarios.QUICK, "default": scenarios.DEFAULT, "full": scenarios.FULL}[
        args.size
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    overrides = _parse_set(args.set)
    started = time.perf_counter()

    def progress(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    meta = _meta(args, sizes)
    if args.soak:
        from bench import soak

        soak_sizes = soak.SoakSizes(
            feeds=args.soak_feeds, interval=args.soak_interval, churn=args.soak_churn
        )
        found = asyncio.run(
            soak.soak(args.soak, soak_sizes, overrides=overrides, progress=progress)
        )
        report.write_json({"meta": meta, "soak": found}, args.out / "soak.json")
        print(soak.render(found))
        print(f"\nwrote {args.out / 'soak.json'}")
        return 0
    if args.profile:
        found = asyncio.run(_profile(sizes, args.out, overrides))
        report.write_json({"meta": meta, "profile": found}, args.out / "profile.json")
        print(f"\nwrote {args.out / 'profile.json'} and the raw py-spy stacks beside it")
        return 0
    result = asyncio.run(
        scenarios.run_all(
            sizes,
            scenarios=set(args.only or SCENARIOS),
            peers=not args.no_peers,
            overrides=overrides,
            progress=progress,
        )
    )
    meta["seconds"] = round(time.perf_counter() - started, 1)
    result = {"meta": meta, **result}
    print(report.table(result))
    report.write_json(result, args.out / "bench.json")
    why_not = report.write_chart(result, args.out / "bench.png")
    print(
        f"\nwrote {args.out / 'bench.json'}"
        + (f" (no chart: {why_not})" if why_not else f" and {args.out / 'bench.png'}")
        + f" in {meta['seconds']}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
