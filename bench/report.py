"""The bench's outputs: a plain-text table, the JSON of everything, and a PNG chart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

COLUMNS = (
    ("scenario", "scenario", "{}"),
    ("system", "system", "{}"),
    ("feeds", "feeds", "{:,}"),
    ("items", "items", "{:,}"),
    ("seconds", "wall s", "{:.1f}"),
    ("feeds_per_s", "feeds/s", "{:,.0f}"),
    ("articles_per_s", "articles/s", "{:,.0f}"),
    ("cpu_s_per_1k", "CPU s/1k", "{:.2f}"),
    ("rss", "peak RSS MB", "{}"),
)


def _rss(r: dict[str, Any]) -> str:
    """The system's own processes (summed), then its database's backends."""
    rss = r["peak_rss_mb"]
    own = rss.get("daemon") or rss.get("peer") or {}
    text = f"{own.get('sum', 0):.0f}"
    if own.get("max") and own.get("sum") != own.get("max"):
        text += f" (main {own['max']:.0f})"
    if "postgres" in rss:
        text += f" +pg {rss['postgres']['sum']:.0f}"
    return text


def _cell(r: dict[str, Any], key: str, fmt: str) -> str:
    if key == "rss":
        return _rss(r)
    value = r.get(key)
    return "-" if value is None else fmt.format(value)


def table(result: dict[str, Any]) -> str:
    rows = [[_cell(r, key, fmt) for key, _, fmt in COLUMNS] for r in result["rows"]]
    header = [title for _, title, _ in COLUMNS]
    widths = [max(len(x) for x in col) for col in zip(header, *rows, strict=False)]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    lines += [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows
    ]
    notes = []
    for scenario, peers in result.get("ratios", {}).items():
        said = ", ".join(f"{v:g}x {k}" if v else f"- {k}" for k, v in peers.items())
        notes.append(f"{scenario}: ours is {said} (peer wall time / ours, same feeds)")
    for peer, why in result.get("skipped_peers", {}).items():
        notes.append(f"{peer}: skipped: {why}")
    for r in result["rows"]:
        if r["scenario"] == "freshness":
            notes.append(
                f"freshness: publish-to-queryable lag p50 {r['lag_p50']}s, p99 {r['lag_p99']}s, "
                f"max {r['lag_max']}s at a {r['poll_interval']:g}s poll interval "
                f"({r['items']} of {r['published']} items seen)"
            )
    if result.get("ours_empty_run_seconds"):
        notes.append(
            f"ours: each run --once includes about {result['ours_empty_run_seconds']:.1f}s of "
            "fixed cost (with no feeds: start-up, parse processes, shutdown); "
            "steady@N after cold ingest is one cycle of a running daemon, start-up excluded"
        )
    payload = result.get("store_payload")
    if payload:
        notes.append(
            f"store payload on Redis: {payload['bytes_per_article']:,} bytes per article "
            f"(its story print {payload['print_bytes_per_article']:,} of them), "
            f"{payload['articles']:,} farm articles"
        )
    for r in result["rows"]:
        if r["system"] == "ours" and r.get("daemon_cpu_seconds"):
            notes.append(
                f"{r['scenario']}: ours used {r['daemon_cpu_seconds']:.1f} CPU s, "
                f"{r['event_loop_cpu_seconds']:.1f} of them in the event-loop process "
                f"(one core at most: {r['event_loop_cpu_seconds'] / r['seconds']:.0%} busy), "
                "the rest in the parse processes"
            )
    for level in result.get("growth_store", {}).get("levels", []):
        notes.append(
            f"store at {level['stored_before']:,} stored: {level['ms_per_article']} ms/article "
            f"({level['articles_per_s']:,} articles/s, one connection), "
            f"{level['bytes_per_article'] or 0:,} bytes/article on disk"
        )
    for level in result.get("growth_feeds", {}).get("levels", []):
        notes.append(
            f"steady cycle at {level['feeds']:,} feeds: {level['seconds']}s, "
            f"{level['feeds_per_s']:,} feeds/s, {level['articles_per_s']:,} new articles/s"
        )
    return "\n".join([*lines, "", *notes])


def write_json(result: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")


def write_chart(result: dict[str, Any], path: Path) -> str | None:
    """A PNG: articles/s per scenario and system, and the growth curves. None if written."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install -e '.[bench]')"
    # Freshness runs for a set time: its wall seconds say nothing about speed.
    rows = [r for r in result["rows"] if r["items"] and r["scenario"] != "freshness"]
    scenarios = list(dict.fromkeys(r["scenario"] for r in rows))
    systems = list(dict.fromkeys(r["system"] for r in rows))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    width = 0.8 / max(len(systems), 1)
    for i, system in enumerate(systems):
        xs, ys = [], []
        for j, scenario in enumerate(scenarios):
            found = next(
                (r for r in rows if r["system"] == system and r["scenario"] == scenario), None
            )
            if found:
                xs.append(j + i * width)
                ys.append(found["seconds"])
        axes[0].bar(xs, ys, width, label=system)
    axes[0].set_xticks([j + width * (len(systems) - 1) / 2 for j in range(len(scenarios))])
    axes[0].set_xticklabels(scenarios, rotation=15)
    axes[0].set_ylabel("wall seconds (lower is better)")
    axes[0].set_title("Each scenario's work, same farm")
    axes[0].legend()
    store = result.get("growth_store", {}).get("levels", [])
    if store:
        axes[1].plot(
            [lv["stored_before"] for lv in store], [lv["ms_per_article"] for lv in store], "o-"
        )
        axes[1].set_xscale("symlog", linthresh=1000)
        axes[1].set_xlabel("articles already stored")
        axes[1].set_ylabel("ms per stored article")
        axes[1].set_ylim(bottom=0)
        axes[1].set_title("Store cost as the archive grows")
    fleet = result.get("growth_feeds", {}).get("levels", [])
    if fleet:
        axes[2].plot([lv["feeds"] for lv in fleet], [lv["feeds_per_s"] for lv in fleet], "o-")
        axes[2].set_xscale("log")
        axes[2].set_xlabel("feeds in the fleet (5% changed)")
        axes[2].set_ylabel("feeds polled per second")
        axes[2].set_ylim(bottom=0)
        axes[2].set_title("Steady cycle as the fleet grows")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return None
