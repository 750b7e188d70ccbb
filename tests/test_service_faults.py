"""Faults in the services themselves, with real processes: Redis restarted empty mid-run,
Postgres stopped for 30 s mid-run, three workers and two schedulers at once. When the
system settles, the articles, sightings and deliveries equal an undisturbed run's."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from aggregator.app.embedded import EmbeddedServices
from aggregator.settings import Settings
from aggregator.storage import migrations, subscribers
from tests import processes
from tests.feedserver import FeedServer
from tests.groundtruth import OWN_CORPUS, Corpus, pairwise
from tests.test_faults import eventually
from tests.test_operations import throwaway_redis  # noqa: F401 (a fixture)

pytestmark = pytest.mark.slow

STOPPED_SECONDS = 30

FAST = {
    "AGGREGATOR_MIN_INTERVAL": "1",
    "AGGREGATOR_MAX_INTERVAL": "2",
    "AGGREGATOR_POLL_INTERVAL": "2",
    "AGGREGATOR_LEASE_SECONDS": "4",
    "AGGREGATOR_SCHEDULER_TICK": "0.2",
    "AGGREGATOR_JOB_TIMEOUT": "10",
    "AGGREGATOR_MAX_BACKOFF": "3",
}


class Expected:
    """What an undisturbed run stores for the corpus, from its ground truth."""

    def __init__(self, corpus: Corpus) -> None:
        self.corpus = corpus
        self.truth = {i["item_id"]: i["exact_dup_group"] for i in corpus.items}
        self.articles = len(set(self.truth.values()))
        self.sightings = len({(i["feed"], i["exact_dup_group"]) for i in corpus.items})

    async def settled(self, database_url: str) -> bool:
        try:
            conn = await asyncpg.connect(database_url, timeout=2)
        except (OSError, asyncpg.PostgresError):
            return False
        try:
            row = await conn.fetchrow(
                "SELECT (SELECT count(*) FROM articles) AS a, "
                "(SELECT count(*) FROM article_sources) AS s"
            )
        except asyncpg.PostgresError:
            return False
        finally:
            await conn.close()
        return (row["a"], row["s"]) == (self.articles, self.sightings)

    async def check(self, database_url: str, feed_ids: dict[str, int]) -> None:
        conn = await asyncpg.connect(database_url)
        try:
            system = await self.corpus.stored_groups(conn, feed_ids)
            assert await conn.fetchval("SELECT count(*) FROM articles") == self.articles
            assert await conn.fetchval("SELECT count(*) FROM article_sources") == self.sightings
        finally:
            await conn.close()
        assert pairwise(system, self.truth) == (1.0, 1.0), "nothing lost, nothing duplicated"


async def prepare(
    database_url: str, server: FeedServer, *, delay: float
) -> tuple[Corpus, dict[str, int]]:
    corpus = Corpus.load(OWN_CORPUS)
    urls = corpus.serve(server)
    for served in server.routes.values():
        served.delay = delay  # polls are in flight when the fault hits
    conn = await asyncpg.connect(database_url)
    try:
        await migrations.migrate(conn)
        feed_ids = await corpus.register(conn, urls)
        await subscribers.add(conn, "everything")
    finally:
        await conn.close()
    return corpus, feed_ids


async def storing(database_url: str) -> bool:
    """The daemon is mid-run: it has stored its first articles."""
    try:
        conn = await asyncpg.connect(database_url, timeout=2)
    except (OSError, asyncpg.PostgresError):
        return False
    try:
        return bool(await conn.fetchval("SELECT count(*) FROM articles"))
    finally:
        await conn.close()


async def until_storing(daemon: subprocess.Popen[bytes], database_url: str) -> None:
    try:
        await eventually(lambda: storing(database_url), 60, "the daemon to store articles")
    except AssertionError:
        processes.sigkill(daemon)
        raise AssertionError(processes.output(daemon)[-3000:]) from None


async def deliveries(redis_url: str) -> int:
    import redis.asyncio

    client = redis.asyncio.from_url(redis_url)
    try:
        return int(await client.zcard("aggregator:subscriber:everything"))
    finally:
        await client.aclose()


async def stop_all(procs: list[subprocess.Popen[bytes]]) -> list[str]:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    codes = [await processes.wait_exit(proc, 40) for proc in procs]
    printed = [processes.output(proc) for proc in procs]
    assert codes == [0] * len(procs), [text[-3000:] for text in printed]
    for proc, text in zip(procs, printed, strict=True):
        if "arq" in proc.args:  # arq's own CLI logs in its own format
            assert "Traceback" not in text, text[-3000:]
            continue
        for line in text.splitlines():
            # Every line is a structured log record (no raw traceback), none an error:
            # a service going away is a warning the daemon recovers from.
            record = json.loads(line)
            assert record["level"] in ("debug", "info", "warning"), line
    return printed


async def test_redis_restarted_empty_mid_run_loses_nothing(
    settings: Settings,
    clean_services: None,
    feed_server: FeedServer,
    throwaway_redis: tuple[int, list[str]],  # noqa: F811
) -> None:
    port, command = throwaway_redis
    redis_url = f"redis://127.0.0.1:{port}/0"
    corpus, feed_ids = await prepare(settings.database_url or "", feed_server, delay=0.3)
    expected = Expected(corpus)
    env = processes.service_env(settings, AGGREGATOR_REDIS_URL=redis_url, **FAST)
    daemon = processes.aggregator(["run"], env)
    restarted = None
    try:
        await until_storing(daemon, settings.database_url or "")
        import redis.asyncio

        client = redis.asyncio.from_url(redis_url)
        try:
            await client.execute_command("SHUTDOWN", "NOSAVE")
        except Exception:  # the server closes the connection as it goes
            pass
        finally:
            await client.aclose()
        await asyncio.sleep(1)
        restarted = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        await eventually(lambda: expected.settled(settings.database_url or ""), 90, "convergence")
        assert daemon.poll() is None, "the daemon stayed up"
        await stop_all([daemon])
    finally:
        if daemon.poll() is None:
            processes.sigkill(daemon)
        if restarted is not None:
            restarted.kill()
            restarted.wait()
    await expected.check(settings.database_url or "", feed_ids)


@pytest.fixture
async def own_postgres() -> AsyncIterator[EmbeddedServices]:
    """A throwaway PostgreSQL (the embedded one, in a temp dir): this test stops it."""
    folder = Path(tempfile.mkdtemp(prefix="aggregator-pg-fault-"))
    folder.chmod(0o755)
    services = EmbeddedServices(folder)
    await asyncio.to_thread(services.start)
    yield services
    await asyncio.to_thread(services.stop)
    shutil.rmtree(folder, ignore_errors=True)


def own_env(settings: Settings, own: EmbeddedServices) -> dict[str, str]:
    return processes.service_env(
        settings,
        AGGREGATOR_DATABASE_URL=own.database_url,
        AGGREGATOR_REDIS_URL=own.redis_url,
        **FAST,
    )


def assert_alive(daemon: subprocess.Popen[bytes]) -> None:
    if daemon.poll() is not None:
        raise AssertionError("the daemon exited: " + processes.output(daemon)[-3000:])


async def test_postgres_down_for_30s_mid_run_loses_nothing(
    settings: Settings,
    clean_services: None,
    feed_server: FeedServer,
    own_postgres: EmbeddedServices,
) -> None:
    database_url = own_postgres.database_url
    corpus, feed_ids = await prepare(database_url, feed_server, delay=0.5)
    expected = Expected(corpus)
    env = own_env(settings, own_postgres)
    daemon = processes.aggregator(["run"], env)
    try:
        await until_storing(daemon, database_url)
        await asyncio.to_thread(own_postgres.stop_postgres)
        await asyncio.sleep(STOPPED_SECONDS)
        assert_alive(daemon)
        await asyncio.to_thread(own_postgres.start_postgres)
        try:
            await eventually(lambda: expected.settled(database_url), 120, "convergence")
        except AssertionError:
            processes.sigkill(daemon)
            raise AssertionError(processes.output(daemon)[-5000:]) from None
        await eventually(
            lambda: _equals(deliveries(own_postgres.redis_url), expected.articles),
            30,
            "every article delivered to the subscriber",
        )
        await stop_all([daemon])
    finally:
        if daemon.poll() is None:
            processes.sigkill(daemon)
    await expected.check(database_url, feed_ids)
    assert await deliveries(own_postgres.redis_url) == expected.articles


async def test_daemon_started_before_postgres_waits_for_it(
    settings: Settings,
    clean_services: None,
    feed_server: FeedServer,
    own_postgres: EmbeddedServices,
) -> None:
    database_url = own_postgres.database_url
    corpus, feed_ids = await prepare(database_url, feed_server, delay=0)
    expected = Expected(corpus)
    await asyncio.to_thread(own_postgres.stop_postgres)
    env = own_env(settings, own_postgres)
    daemon = processes.aggregator(["run"], env)
    try:
        await asyncio.sleep(4)  # a few start attempts
        assert_alive(daemon)
        await asyncio.to_thread(own_postgres.start_postgres)
        await eventually(lambda: expected.settled(database_url), 60, "ingest once it is up")
        (printed,) = await stop_all([daemon])
    finally:
        if daemon.poll() is None:
            processes.sigkill(daemon)
    await expected.check(database_url, feed_ids)
    waiting = [line for line in printed.splitlines() if "cannot reach PostgreSQL" in line]
    assert len(waiting) == 1, printed[-3000:]  # said once, as a warning, naming the service
    assert json.loads(waiting[0])["level"] == "warning"


async def test_three_workers_and_two_schedulers(
    settings: Settings, clean_services: None, feed_server: FeedServer
) -> None:
    corpus, feed_ids = await prepare(settings.database_url or "", feed_server, delay=0.1)
    expected = Expected(corpus)
    env = processes.service_env(settings, **FAST)
    procs = [
        processes.aggregator(["run"], env),
        processes.aggregator(["run"], env),
        processes.arq_worker("workers.poll.WorkerSettings", env),
        processes.arq_worker("workers.poll.WorkerSettings", env),
        processes.arq_worker("workers.store.WorkerSettings", env),
    ]
    try:
        await eventually(lambda: expected.settled(settings.database_url or ""), 90, "convergence")
        await eventually(
            lambda: _equals(deliveries(settings.redis_url or ""), expected.articles),
            30,
            "every article delivered once",
        )
        await asyncio.sleep(3)  # more cycles: nothing changes, nothing is delivered twice
        await stop_all(procs)
    finally:
        for proc in procs:
            if proc.poll() is None:
                processes.sigkill(proc)
    await expected.check(settings.database_url or "", feed_ids)
    assert await deliveries(settings.redis_url or "") == expected.articles


async def _equals(value: object, expected: int) -> bool:
    return await value == expected  # type: ignore[misc]
