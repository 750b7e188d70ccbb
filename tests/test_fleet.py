"""Operating a fleet: every working process serves its own /metrics and /healthz, health
means *this* process consumes, shared gauges are counted once, the outbox backlog is a
metric, alert rules check, and a PostgreSQL outage is one warning and one recovery line."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import aiohttp
import pytest
import yaml

from aggregator import metrics
from aggregator.app import daemon
from aggregator.app import web as daemon_web
from aggregator.health import HEALTH_INTERVAL, Liveness, health_key
from aggregator.queue import POLL_QUEUE, STORE_QUEUE
from aggregator.runtime import Runtime, open_runtime
from aggregator.settings import Settings
from aggregator.storage import db, outbox, schedule
from tests import processes
from tests.feedserver import FeedServer
from tests.groundtruth import OWN_CORPUS, Corpus
from tests.services import free_port
from tests.test_faults import eventually
from tests.test_operations import sample

ROOT = Path(__file__).resolve().parent.parent


async def get(base: str, path: str) -> tuple[int, str]:
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
            session.get(base + path) as answer,
        ):
            return answer.status, await answer.text()
    except (aiohttp.ClientError, TimeoutError):
        return 0, ""


def total(text: str, name: str) -> float:
    """The sum of every sample of ``name`` whatever its labels."""
    found = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            found += float(line.rsplit(" ", 1)[1])
    return found


@pytest.mark.slow
async def test_standalone_workers_serve_their_own_metrics_and_health(
    runtime: Runtime, settings: Settings, feed_server: FeedServer
) -> None:
    corpus = Corpus.load(OWN_CORPUS)
    urls = corpus.serve(feed_server)
    async with runtime.pool.acquire() as conn:
        await corpus.register(conn, urls)
    ports = {POLL_QUEUE: free_port(), STORE_QUEUE: free_port()}
    workers = {
        q: processes.arq_worker(
            f"workers.{q.split(':')[1]}.WorkerSettings",
            processes.service_env(settings, AGGREGATOR_HTTP_PORT=str(port)),
        )
        for q, port in ports.items()
    }
    bases = {q: f"http://127.0.0.1:{port}" for q, port in ports.items()}
    try:
        for q, base in bases.items():

            async def healthy(base: str = base) -> bool:
                return (await get(base, "/healthz"))[0] == 200

            await eventually(healthy, 60, f"the {q} worker's /healthz")
        await daemon.schedule_pass(runtime, await schedule.lease_all(runtime.pool, settings))
        await daemon.wait_drained(runtime, timeout=120)
        articles = await runtime.pool.fetchval("SELECT count(*) FROM articles")
        assert articles > 0

        poll_status, poll_health = await get(bases[POLL_QUEUE], "/healthz")
        assert poll_status == 200 and f"{POLL_QUEUE}: polling" in poll_health, poll_health
        assert STORE_QUEUE not in poll_health, "each process reports its own queue only"

        _, poll_metrics = await get(bases[POLL_QUEUE], "/metrics")
        _, store_metrics = await get(bases[STORE_QUEUE], "/metrics")
        assert total(poll_metrics, "aggregator_fetches_total") == len(corpus.feeds)
        assert total(store_metrics, "aggregator_articles_stored_total") == articles
        assert total(store_metrics, "aggregator_fetches_total") == 0
        for text in (poll_metrics, store_metrics):
            assert sample(text, "aggregator_db_pool_connections", state="max") > 0
            # Shared state is the daemon's to report, so that sum() counts it once.
            assert "aggregator_queue_depth{" not in text
            assert "aggregator_outbox_pending" not in text

        # No relay ran: the outbox holds one row per new article, and says how old.
        shared = await metrics.exposition(runtime)
        text = shared.decode()
        assert sample(text, "aggregator_outbox_pending") == articles
        assert sample(text, "aggregator_outbox_oldest_pending_seconds") > 0
        await outbox.drain(runtime.pool, runtime.redis, timeout=60)
        text = (await metrics.exposition(runtime)).decode()
        assert sample(text, "aggregator_outbox_pending") == 0
        assert sample(text, "aggregator_outbox_oldest_pending_seconds") == 0
    finally:
        for process in workers.values():
            process.send_signal(signal.SIGTERM)
        for process in workers.values():
            await processes.wait_exit(process, 30)
            processes.output(process)


async def test_daemon_health_is_its_own_workers_and_scheduler(
    settings: Settings, clean_services: None
) -> None:
    settings = settings.model_copy(update={"http_port": free_port()})
    async with open_runtime(settings) as rt, daemon_web.serve(rt) as base:
        assert base is not None
        workers = daemon.Workers(rt)
        workers.start()
        try:

            async def healthy() -> bool:
                return (await get(base, "/healthz"))[0] == 200

            await eventually(healthy, 20, "/healthz with the workers running")
            _, text = await get(base, "/healthz")
            assert f"{POLL_QUEUE}: polling" in text and f"{STORE_QUEUE}: polling" in text
        finally:
            await workers.stop()
        # The workers' loops are gone but the process (and its HTTP server) is not: that is
        # what a health check must catch. arq removes its key on the way out; a loop that
        # died lets it expire after HEALTH_INTERVAL + 1 s: the same state.
        await rt.redis.delete(health_key(POLL_QUEUE), health_key(STORE_QUEUE))
        status, text = await get(base, "/healthz")
        assert status == 503 and "not consuming" in text, text


async def test_liveness_counts_a_busy_worker_and_a_stuck_loop_only_for_this_process(
    redis_url: str, clean_services: None
) -> None:
    import redis.asyncio

    client = redis.asyncio.from_url(redis_url)
    try:
        live = Liveness(job_timeout=30)
        live.watch_queue(POLL_QUEUE)
        # Another process's health record (the daemon's, or arq's shared key) is not ours.
        await client.set(f"{POLL_QUEUE}:health-check", b"someone else")
        await client.set(f"{POLL_QUEUE}:health-check:otherhost:1", b"someone else")
        assert (await live.check(client))[0] is False
        live.job_event(POLL_QUEUE)  # every slot busy with a long job: alive
        alive, lines = await live.check(client)
        assert alive and "busy" in lines[0]
        live._jobs[POLL_QUEUE] = time.monotonic() - 30 - HEALTH_INTERVAL - 1
        assert (await live.check(client))[0] is False
        await client.set(health_key(POLL_QUEUE), b"j_complete=3")
        assert (await live.check(client))[0] is True
        live.watch_loop("scheduler", 5)
        assert (await live.check(client))[0] is True
        live._beats["scheduler"] -= 6
        alive, lines = await live.check(client)
        assert not alive and "scheduler: stuck" in lines[-1]
    finally:
        await client.aclose()


async def test_queue_depths_list_queues_not_health_check_keys(runtime: Runtime) -> None:
    await runtime.redis.zadd("aggregator:subscriber:desk", {"job": 1})
    await runtime.redis.set("aggregator:subscriber:desk:health-check", b"consumer alive")
    await runtime.redis.set(health_key(POLL_QUEUE), b"worker alive")
    text = (await metrics.exposition(runtime)).decode()
    depths = [line for line in text.splitlines() if line.startswith("aggregator_queue_depth{")]
    assert 'aggregator_queue_depth{queue="aggregator:subscriber:desk"} 1.0' in depths
    assert not [line for line in depths if "health-check" in line], depths


# --- PostgreSQL outage: one warning, one recovery line ------------------------------------


class CuttableProxy:
    """A TCP proxy in front of the test's PostgreSQL that can cut every connection and
    refuse new ones (an outage) without touching the server other tests use."""

    def __init__(self, database_url: str) -> None:
        parts = urlsplit(database_url)
        sockets = parse_qs(parts.query).get("host")
        self.unix = f"{sockets[0]}/.s.PGSQL.{parts.port or 5432}" if sockets else None
        self.target = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self.port = free_port()
        user = parts.netloc.rpartition("@")[0]
        netloc = f"{user}@127.0.0.1:{self.port}" if user else f"127.0.0.1:{self.port}"
        self.url = urlunsplit(parts._replace(netloc=netloc, query=""))
        self.down = False
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", self.port)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:
            writer.close()
            return
        if self.unix:
            up_reader, up_writer = await asyncio.open_unix_connection(self.unix)
        else:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def cut(self) -> None:
        self.down = True
        for writer in self.writers:
            writer.close()
        self.writers.clear()

    async def stop(self) -> None:
        self.cut()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def test_postgres_outage_is_one_warning_and_one_recovery_line(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = CuttableProxy(database_url)
    await proxy.start()
    pool = await db.create_pool(proxy.url, min_size=1, max_size=2)
    try:
        caplog.set_level(logging.DEBUG)
        caplog.clear()
        proxy.cut()
        await asyncio.sleep(4.5)  # asyncpg retries the floor at 1 s, 2 s, 4 s...
        proxy.down = False

        def recovered() -> bool:
            return any("works again" in r.getMessage() for r in caplog.records)

        deadline = time.monotonic() + 30
        while not recovered() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert await pool.fetchval("SELECT 1") == 1
    finally:
        await pool.close()
        await proxy.stop()
    floor = [r for r in caplog.records if r.name == "asyncpg.pool"]
    ours = [r for r in caplog.records if r.name == "aggregator.db"]
    assert floor == [], "asyncpg's own retry lines (with tracebacks) are not shown"
    warnings = [r for r in ours if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "PostgreSQL pool connection failed" in warnings[0].getMessage()
    assert warnings[0].exc_info is None, "no traceback"
    assert len([r for r in ours if r.levelno >= logging.DEBUG]) >= 2, "the retries are debug"
    infos = [r for r in ours if r.levelno == logging.INFO]
    assert len(infos) == 1 and "works again" in infos[0].getMessage()


# --- deployment files ----------------------------------------------------------------------


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())  # type: ignore[no-any-return]


def test_compose_gives_every_working_process_its_port_and_own_health_check() -> None:
    services = compose()["services"]
    ports = set()
    for name in ("aggregator", "worker", "store-worker"):
        service = services[name]
        port = service["environment"]["AGGREGATOR_HTTP_PORT"]
        ports.add(port)
        check = " ".join(service["healthcheck"]["test"])
        assert "arq --check" not in check and 'arq", "--check' not in check, name
        assert f"127.0.0.1:{port}/healthz" in check, (name, check)
        assert service["environment"]["AGGREGATOR_HTTP_HOST"] == "0.0.0.0"
    assert len(ports) == 3


def test_dashboard_sums_the_fleet() -> None:
    dashboard = json.loads((ROOT / "deploy" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert any("aggregator_outbox_oldest_pending_seconds" in e for e in exprs)
    for expr in exprs:
        # A rate or a per-process gauge taken bare would show one line per process.
        assert expr.lstrip().startswith(("sum", "max", "histogram_quantile")), expr
        if "rate(" in expr and not expr.startswith("histogram_quantile"):
            assert expr.startswith("sum"), expr


def test_alert_rules_name_real_metrics() -> None:
    text = (ROOT / "deploy" / "alerts.yml").read_text()
    known = {  # every series name we export
        *metrics.REGISTRY._names_to_collectors,
        *metrics.SHARED_REGISTRY._names_to_collectors,
    }
    used = set()
    for word in text.replace("(", " ").replace(")", " ").replace("[", " ").split():
        if word.startswith("aggregator_"):
            used.add(word.split("{")[0])
    assert used and used <= known, used - known
    assert "aggregator_outbox_oldest_pending_seconds" in used
    assert "aggregator_publish_to_stored_seconds_bucket" in used


def test_alert_rules_pass_promtool() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")
    checked = subprocess.run(
        [promtool, "check", "rules", str(ROOT / "deploy" / "alerts.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 3 rules found" in checked.stdout, checked.stdout
