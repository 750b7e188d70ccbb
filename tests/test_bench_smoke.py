"""The benchmark runs end to end at its smoke size and writes every scenario's numbers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.services import with_database

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = {"cold", "steady", "freshness", "growth"}


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_quick_bench_writes_json_with_every_scenario(
    tmp_path: Path, service_urls: tuple[str, str], clean_services: None
) -> None:
    database_url, redis_url = service_urls
    env = os.environ | {
        # The bench makes its own databases on the suite's server...
        "AGGREGATOR_BENCH_DATABASE_URL": with_database(database_url, "postgres"),
        # ...and uses this session's own Redis database, which no one else flushes now.
        "AGGREGATOR_BENCH_REDIS_URL": redis_url,
    }
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=220,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "bench.json").read_text())

    rows = result["rows"]
    assert set(result["scenarios"]) == SCENARIOS
    assert {r["scenario"].split("@")[0] for r in rows} == {"cold", "steady", "freshness"}
    cold = next(r for r in rows if r["scenario"] == "cold" and r["system"] == "ours")
    sizes = result["sizes"]
    assert cold["items"] == sizes["cold_feeds"] * sizes["items"]  # every item, once per feed
    assert cold["failed_feeds"] == 0
    assert cold["articles_per_s"] > 0 and cold["cpu_s_per_1k"] > 0
    assert cold["peak_rss_mb"]["daemon"]["max"] > 0
    fresh = next(r for r in rows if r["scenario"] == "freshness")
    assert fresh["missing"] == 0 and fresh["lag_p99"] is not None
    assert [lv["stored_before"] for lv in result["growth_store"]["levels"]] == list(
        sizes["growth_levels"]
    )
    assert result["growth_feeds"]["levels"]
    for peer in ("reader", "sequential"):
        ran = any(r["system"] == peer for r in rows)
        assert ran or peer in result.get("skipped_peers", {}), peer
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert (tmp_path / "bench.png").stat().st_size > 0


def test_soak_slope_is_per_hour() -> None:
    from bench.soak import slope_per_hour

    assert slope_per_hour([(0, 100.0), (1800, 100.0), (3600, 100.0)]) == 0
    assert slope_per_hour([(0, 0.0), (60, 1.0), (120, 2.0)]) == pytest.approx(60.0)
    assert slope_per_hour([(0, 5.0)]) is None


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_short_soak_reports_every_slope(
    tmp_path: Path, service_urls: tuple[str, str], clean_services: None
) -> None:
    database_url, redis_url = service_urls
    env = os.environ | {
        "AGGREGATOR_BENCH_DATABASE_URL": with_database(database_url, "postgres"),
        "AGGREGATOR_BENCH_REDIS_URL": redis_url,
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--soak",
            "12",
            "--soak-feeds",
            "20",
            "--soak-interval",
            "3",
            "--soak-churn",
            "0.5",
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=220,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    soak = json.loads((tmp_path / "soak.json").read_text())["soak"]
    figures = soak["figures"]
    assert set(figures) >= {"rss_mb", "fds", "used_memory", "db_bytes_per_article"}
    assert figures["rss_mb"]["min"] > 0 and figures["fds"]["min"] > 0
    assert soak["articles_stored_while_soaking"] > 0, "churn published, the daemon stored"
    assert soak["failed_feeds"] == 0
    assert 0 < soak["window_bytes_per_feed"] < 10_000
    assert "slope/hour" in done.stdout
