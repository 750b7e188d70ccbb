"""Recovery at default settings, with real processes: after a daemon is SIGKILLed, Redis
restarts empty, or Postgres comes back from an outage, every feed is polled again within
30 s (the lease, 300 s, is not the path), and the articles, sightings and subscriber
deliveries equal an undisturbed run's: nothing lost, nothing duplicated."""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
import redis.asyncio

from aggregator import refresh
from aggregator.app.embedded import EmbeddedServices
from aggregator.consumer import queue_name
from aggregator.refresh import Outcome
from aggregator.runtime import Runtime
from aggregator.settings import Settings
from aggregator.storage import migrations, recovery, schedule, subscribers
from aggregator.storage.seen import FeedWindow
from tests import processes
from tests.feedserver import FeedServer
from tests.test_faults import eventually
from tests.test_operations import throwaway_redis  # noqa: F401 (a fixture)
from tests.test_polling import add_feed, rss
from tests.test_service_faults import own_postgres, stop_all  # noqa: F401 (a fixture)

RECOVER_SECONDS = 30  # the bound, at default settings
INTERVAL = 2.0  # every feed's own poll interval (an operator's override)
TICK_SECONDS = 3.0  # each feed publishes an item this often, plus a wire story all carry
SUBSCRIBER = "everything"

# Only the poll interval is short, so that a fault shows within a test's minute; the
# lease (300 s), the scheduler tick, job timeouts and retries are the defaults.
POLLING = {"AGGREGATOR_MIN_INTERVAL": "1", "AGGREGATOR_MAX_INTERVAL": str(INTERVAL)}


class Newsroom:
    """Feeds that keep publishing: every ``TICK_SECONDS`` each feed gets an item of its
    own and the same wire story (one article, a sighting in every feed). An undisturbed
    run stores exactly what was published."""

    def __init__(self, server: FeedServer, feeds: int) -> None:
        self.server = server
        self.paths = [f"newsroom-{i}.xml" for i in range(feeds)]
        self.ticks = 0
        self._task: asyncio.Task[None] | None = None
        self._publish()

    @property
    def urls(self) -> list[str]:
        return [self.server.url(path) for path in self.paths]

    def _publish(self) -> None:
        self.ticks += 1
        now = datetime.now(UTC)
        for i, path in enumerate(self.paths):
            items = []
            for n in range(self.ticks):
                date = (now - timedelta(seconds=n)).strftime("%a, %d %b %Y %H:%M:%S +0000")
                items.append(
                    f"<item><title>Local {i}.{n}</title><link>https://site{i}.example/{n}</link>"
                    f"<guid>local-{i}-{n}</guid><pubDate>{date}</pubDate><description>Feed {i} "
                    f"local report {n}: the town hall opened its doors for the market day and "
                    f"the stall holders counted {i * 1000 + n} visitors.</description></item>"
                    f"<item><title>Wire {n}</title><link>https://site{i}.example/wire/{n}</link>"
                    f"<guid>wire-{i}-{n}</guid><pubDate>{date}</pubDate><description>Wire "
                    f"report {n}: the regional council met in session {n} and agreed the "
                    f"budget for the coming year after a debate of {n + 7} hours.</description>"
                    "</item>"
                )
            body = (
                '<?xml version="1.0"?><rss version="2.0"><channel><title>Newsroom</title>'
                + "".join(reversed(items))
                + "</channel></rss>"
            )
            self.server.add(path, body.encode())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            self._publish()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    @property
    def articles(self) -> int:
        return (len(self.paths) + 1) * self.ticks

    @property
    def sightings(self) -> int:
        return 2 * len(self.paths) * self.ticks

    async def prepare(self, database_url: str) -> None:
        conn = await asyncpg.connect(database_url)
        try:
            await migrations.migrate(conn)
            for url in self.urls:
                await conn.execute(
                    "INSERT INTO feeds (url, poll_interval) VALUES ($1, $2)", url, INTERVAL
                )
            await subscribers.add(conn, SUBSCRIBER)
        finally:
            await conn.close()

    async def stored(self, database_url: str) -> tuple[int, int] | None:
        try:
            conn = await asyncpg.connect(database_url, timeout=2)
        except (OSError, asyncpg.PostgresError):
            return None
        try:
            row = await conn.fetchrow(
                "SELECT (SELECT count(*) FROM articles) AS a, "
                "(SELECT count(*) FROM article_sources) AS s"
            )
        except asyncpg.PostgresError:
            return None
        finally:
            await conn.close()
        return row["a"], row["s"]

    async def settled(self, database_url: str, redis_url: str) -> bool:
        """Every article and sighting stored, every article delivered (not yet checked
        for duplicates: see ``check``)."""
        if await self.stored(database_url) != (self.articles, self.sightings):
            return False
        return len(await delivered(redis_url)) >= self.articles

    async def check(self, database_url: str, redis_url: str) -> None:
        """Lost 0, duplicated 0: the rows and deliveries of an undisturbed run."""
        assert await self.stored(database_url) == (self.articles, self.sightings)
        conn = await asyncpg.connect(database_url)
        try:
            ids = {r["id"] for r in await conn.fetch("SELECT id FROM articles")}
            per_feed = await conn.fetch(
                "SELECT feed_id, count(*) AS n FROM article_sources GROUP BY feed_id"
            )
        finally:
            await conn.close()
        assert {r["n"] for r in per_feed} == {2 * self.ticks}, "every feed's every item"
        deliveries = await delivered(redis_url)
        assert sorted(deliveries) == sorted(ids), "each article delivered once"

    def first_fetch_after(self, moment: float) -> dict[str, float]:
        """Seconds from ``moment`` to the start of each feed's first fetch after it (when
        its request came in, not when it was answered: see ``FeedServer.hold``)."""
        first: dict[str, float] = {}
        for request in sorted(self.server.requests, key=lambda r: r.arrived):
            if request.arrived >= moment:
                first.setdefault(request.path, request.arrived - moment)
        return first


async def delivered(redis_url: str) -> list[int]:
    """The article ids of the deliveries queued for the subscriber (nobody consumes them)."""
    client = redis.asyncio.from_url(redis_url)
    try:
        job_ids = await client.zrange(queue_name(SUBSCRIBER), 0, -1)
        ids = []
        for job_id in job_ids:
            raw = await client.get(b"arq:job:" + job_id)
            if raw is not None:
                ids.append(json.loads(raw)["a"][0]["id"])
        return ids
    except (OSError, redis.exceptions.ConnectionError):
        return []
    finally:
        await client.aclose()


def recovered_within(newsroom: Newsroom, moment: float, what: str) -> float:
    """Every feed fetched again after ``moment``, within the bound; the slowest's delay."""
    first = newsroom.first_fetch_after(moment)
    missing = {"/" + p for p in newsroom.paths} - set(first)
    assert not missing, f"after {what}, never polled again: {sorted(missing)[:5]}"
    slowest = max(first.values())
    print(f"\n{what}: every feed polled again within {slowest:.1f} s")
    assert slowest <= RECOVER_SECONDS, f"after {what}, a feed waited {slowest:.1f} s"
    return slowest


async def until_recovered(newsroom: Newsroom, moment: float) -> None:
    """Wait until every feed has been fetched again since ``moment``, or the bound (and a
    little) has passed; ``recovered_within`` then judges. Waiting for the event rather
    than the whole bound keeps the suite short when recovery is quick."""
    loop = asyncio.get_running_loop()
    while loop.time() < moment + RECOVER_SECONDS + 3:
        if len(newsroom.first_fetch_after(moment)) == len(newsroom.paths):
            return
        await asyncio.sleep(0.5)


async def converge(newsroom: Newsroom, database_url: str, redis_url: str, daemons) -> None:  # type: ignore[no-untyped-def]
    try:
        await eventually(lambda: newsroom.settled(database_url, redis_url), 90, "every item stored")
    except AssertionError:
        printed = []
        for proc in daemons:
            if proc.poll() is None:
                processes.sigkill(proc)
            printed.append(processes.output(proc)[-3000:])
        raise AssertionError(
            f"stored {await newsroom.stored(database_url)} of "
            f"{(newsroom.articles, newsroom.sightings)}, "
            f"{len(await delivered(redis_url))} delivered; " + "\n".join(printed)
        ) from None


@pytest.mark.slow
async def test_a_daemon_sigkilled_its_feeds_are_taken_over_within_30s(
    settings: Settings, clean_services: None, feed_server: FeedServer
) -> None:
    database_url, redis_url = settings.database_url or "", settings.redis_url or ""
    newsroom = Newsroom(feed_server, 60)
    await newsroom.prepare(database_url)
    for path in newsroom.paths:
        feed_server.routes[path].delay = 0.5  # the killed daemon has polls in flight
    env = processes.service_env(settings, **POLLING)
    first = processes.aggregator(["run"], env)
    second = processes.aggregator(["run"], env)
    loop = asyncio.get_running_loop()
    newsroom.start()
    try:
        await eventually(lambda: _stored_some(newsroom, database_url), 60, "ingest to start")
        await asyncio.sleep(4)  # both daemons hold leases and run polls and stores
        await eventually(lambda: _polling(database_url, first.pid), 30, "polls in flight")
        processes.sigkill(first)
        killed_at = loop.time()
        await until_recovered(newsroom, killed_at)
        await newsroom.stop()
        await converge(newsroom, database_url, redis_url, [second])
        await asyncio.sleep(3)  # more cycles: nothing changes, nothing delivered twice
        assert second.poll() is None, "the survivor stayed up"
        (printed,) = await stop_all([second])
        reaped = [
            json.loads(line)["event"] for line in printed.splitlines() if "stopped beating" in line
        ]
        assert reaped, "the survivor noticed the killed daemon"
        released = int(reaped[0].split("released ")[1].split()[0])
        assert released > 0, f"the survivor took the killed daemon's leases: {reaped}"
    finally:
        await newsroom.stop()
        for proc in (first, second):
            if proc.poll() is None:
                processes.sigkill(proc)
        processes.output(first)
    recovered_within(newsroom, killed_at, "a daemon SIGKILLed")
    per_feed: dict[str, list[float]] = {}
    for request in feed_server.requests:
        per_feed.setdefault(request.path, []).append(request.at)
    gaps = [b - a for times in per_feed.values() for a, b in itertools.pairwise(times)]
    assert min(gaps) > INTERVAL * 0.75, "a feed was fetched twice for one due time"
    await newsroom.check(database_url, redis_url)


@pytest.mark.slow
async def test_redis_restarted_empty_every_feed_polled_within_30s_and_replay_refills(
    settings: Settings,
    clean_services: None,
    feed_server: FeedServer,
    throwaway_redis: tuple[int, list[str]],  # noqa: F811
) -> None:
    port, command = throwaway_redis
    database_url, redis_url = settings.database_url or "", f"redis://127.0.0.1:{port}/0"
    newsroom = Newsroom(feed_server, 40)
    await newsroom.prepare(database_url)
    for path in newsroom.paths:
        feed_server.routes[path].delay = 1.0  # polls are in flight when Redis goes
    env = processes.service_env(settings, AGGREGATOR_REDIS_URL=redis_url, **POLLING)
    daemon = processes.aggregator(["run"], env)
    loop = asyncio.get_running_loop()
    restarted = None
    started = datetime.now(UTC)
    newsroom.start()
    try:
        await eventually(lambda: _stored_some(newsroom, database_url), 60, "ingest to start")
        await asyncio.sleep(3)
        await polls_in_flight(feed_server, database_url)
        client = redis.asyncio.from_url(redis_url)
        try:
            await client.execute_command("SHUTDOWN", "NOSAVE")
        except Exception:  # the server closes the connection as it goes
            pass
        finally:
            await client.aclose()
        assert not await _answers(redis_url), "Redis is down"
        feed_server.release()  # the polls in flight finish while Redis is away
        await asyncio.sleep(1)
        restarted = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        await eventually(lambda: _answers(redis_url), 10, "Redis to come back")
        back_at = loop.time()
        await until_recovered(newsroom, back_at)
        await newsroom.stop()
        # Deliveries queued before the restart are gone with it: everything is stored,
        # but only what was relayed after the restart is queued, each once.
        await eventually(
            lambda: _stored_all(newsroom, database_url), 90, "every item stored after the restart"
        )
        await eventually(lambda: _relayed(database_url), 30, "the outbox relayed")
        lost_with_redis = await delivered(redis_url)
        assert len(lost_with_redis) == len(set(lost_with_redis)), "no delivery twice"
        assert len(lost_with_redis) < newsroom.articles
        assert daemon.poll() is None, "the daemon stayed up"
        (printed,) = await stop_all([daemon])
        assert "gave back" in printed, gave_back_missing(printed)
        replay = await processes.run_cli(
            ["subscribers", "replay", SUBSCRIBER, "--since", started.isoformat()], env
        )
        assert replay.returncode == 0, replay.stderr[-3000:]
        replayed = await delivered(redis_url)
    finally:
        feed_server.release()
        await newsroom.stop()
        if daemon.poll() is None:
            processes.sigkill(daemon)
        if restarted is not None:
            restarted.kill()
            restarted.wait()
    recovered_within(newsroom, back_at, "Redis restarted empty")
    assert await newsroom.stored(database_url) == (newsroom.articles, newsroom.sightings)
    conn = await asyncpg.connect(database_url)
    try:
        ids = {r["id"] for r in await conn.fetch("SELECT id FROM articles")}
    finally:
        await conn.close()
    # Replay re-delivers the window (consumers dedupe by id): every article is queued now.
    assert set(replayed) == ids, "replay brought back what Redis lost"


@pytest.mark.slow
async def test_postgres_back_after_an_outage_every_feed_polled_within_30s(
    settings: Settings,
    clean_services: None,
    feed_server: FeedServer,
    own_postgres: EmbeddedServices,  # noqa: F811
) -> None:
    database_url, redis_url = own_postgres.database_url, own_postgres.redis_url
    newsroom = Newsroom(feed_server, 40)
    await newsroom.prepare(database_url)
    for path in newsroom.paths:
        feed_server.routes[path].delay = 1.0  # as in the Redis test; see polls_in_flight
    env = processes.service_env(
        settings, AGGREGATOR_DATABASE_URL=database_url, AGGREGATOR_REDIS_URL=redis_url, **POLLING
    )
    daemon = processes.aggregator(["run"], env)
    loop = asyncio.get_running_loop()
    newsroom.start()
    try:
        await eventually(lambda: _stored_some(newsroom, database_url), 60, "ingest to start")
        await asyncio.sleep(3)
        await polls_in_flight(feed_server, database_url)
        await asyncio.to_thread(own_postgres.stop_postgres)
        assert await newsroom.stored(database_url) is None, "Postgres is down"
        feed_server.release()  # the polls in flight finish while Postgres is away
        await asyncio.sleep(20)
        assert daemon.poll() is None, processes.output(daemon)[-3000:]
        await asyncio.to_thread(own_postgres.start_postgres)
        back_at = loop.time()
        await until_recovered(newsroom, back_at)
        await newsroom.stop()
        await converge(newsroom, database_url, redis_url, [daemon])
        await asyncio.sleep(3)
        (printed,) = await stop_all([daemon])
        assert "gave back" in printed, gave_back_missing(printed)
    finally:
        feed_server.release()
        await newsroom.stop()
        if daemon.poll() is None:
            processes.sigkill(daemon)
    recovered_within(newsroom, back_at, "Postgres back after 20 s")
    await newsroom.check(database_url, redis_url)


async def polls_in_flight(server: FeedServer, database_url: str) -> None:
    """Hold the feed server's answers until polls are in flight: fetches waiting on the
    server, their feeds claimed. The caller brings the fault, then ``server.release()``s
    them, so they finish while the service is away, however long the fault took to start.

    (Waiting for a fresh claim and then stopping Postgres raced: the daemon's polls run in
    step, all feeds at once then none for a couple of seconds, and a stop that took longer
    than the fetch landed between two rounds, when nothing was in flight to interrupt.)"""
    server.hold()
    await eventually(lambda: _claimed_and_held(server, database_url), 30, "polls in flight")


async def _claimed_and_held(server: FeedServer, database_url: str) -> bool:
    if not server.held:
        return False
    conn = await asyncpg.connect(database_url)
    try:
        return bool(await conn.fetchval("SELECT count(*) FROM feeds WHERE lease_claimed"))
    finally:
        await conn.close()


def gave_back_missing(printed: str) -> str:
    """The assertion message when no lease was given back: the daemon's warnings (pytest
    would show only the ends of the whole log, which read as if nothing had happened)."""
    warnings = [
        json.loads(line)["event"][:200] for line in printed.splitlines() if '"warning"' in line
    ]
    return f"the interrupted polls' leases were given back; the daemon warned: {warnings[:20]}"


async def _stored_some(newsroom: Newsroom, database_url: str) -> bool:
    stored = await newsroom.stored(database_url)
    return stored is not None and stored[0] > 0


async def _polling(database_url: str, pid: int | None = None) -> bool:
    """Polls are in flight (of this process): feeds claimed and not reported yet."""
    conn = await asyncpg.connect(database_url)
    try:
        return bool(
            await conn.fetchval(
                "SELECT count(*) FROM feeds LEFT JOIN processes p ON p.id = lease_owner "
                "WHERE lease_claimed AND ($1::int IS NULL OR p.pid = $1) "
                # claimed in the last 0.3 s (a claim sets next_poll_at a lease ahead): its
                # fetch, 0.5 s or more, is still running
                "AND next_poll_at > now() + interval '300 seconds' - interval '0.3 seconds'",
                pid,
            )
        )
    finally:
        await conn.close()


async def _stored_all(newsroom: Newsroom, database_url: str) -> bool:
    return await newsroom.stored(database_url) == (newsroom.articles, newsroom.sightings)


async def _relayed(database_url: str) -> bool:
    conn = await asyncpg.connect(database_url)
    try:
        return not await conn.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
    finally:
        await conn.close()


async def _answers(redis_url: str) -> bool:
    client = redis.asyncio.from_url(redis_url)
    try:
        return bool(await client.ping())
    except (OSError, redis.exceptions.ConnectionError):
        return False
    finally:
        await client.aclose()


# --- each mechanism on its own -----------------------------------------------------------


async def _lease_state(rt: Runtime, feed_id: int) -> asyncpg.Record:
    return await rt.pool.fetchrow(
        "SELECT lease_token, lease_owner, lease_claimed, last_success_at, "
        "next_poll_at - now() AS due_in FROM feeds WHERE id = $1",
        feed_id,
    )


async def test_a_process_that_stopped_beating_loses_its_leases_and_store_jobs(
    runtime: Runtime, feed_server: FeedServer
) -> None:
    queued, claimed, alive = [
        await add_feed(runtime, feed_server.add(f"beat-{i}.xml", rss(1))) for i in range(3)
    ]
    dead, live = uuid.uuid4(), uuid.uuid4()
    for process_id, silent in ((dead, 60), (live, 0)):
        await runtime.pool.execute(
            "INSERT INTO processes (id, host, pid, heartbeat_at) "
            "VALUES ($1, 'h', 1, now() - make_interval(secs => $2))",
            process_id,
            silent,
        )
    leases = {
        lease.feed_id: lease.token
        for lease in await schedule.lease_all(runtime.pool, runtime.settings, dead)
    }
    await schedule.claim(runtime.pool, runtime.settings, [(claimed, leases[claimed])], dead)
    await runtime.pool.execute("UPDATE feeds SET lease_owner = $1 WHERE id = $2", live, alive)
    # The dead process was running a store job: arq would rerun it only after its timeout.
    await runtime.redis.sadd(recovery.jobs_key(dead), "store:1:abc")
    await runtime.redis.set("arq:in-progress:store:1:abc", b"1", px=130_000)

    holder = runtime.holder
    await recovery.beat(runtime.pool, holder)
    assert await recovery.reap(runtime.pool, runtime.redis, holder) == [], (
        "a process that has not beaten for long itself (Postgres just came back) reaps nobody"
    )
    holder.beating_since = holder.beating_since - timedelta(seconds=11)  # type: ignore[operator]
    assert await recovery.reap(runtime.pool, runtime.redis, holder) == [dead]

    for feed_id in (queued, claimed):
        state = await _lease_state(runtime, feed_id)
        assert (state["lease_token"], state["lease_owner"], state["lease_claimed"]) == (
            None,
            None,
            False,
        )
        assert state["due_in"] <= timedelta(seconds=schedule.RELEASE_JITTER_SECONDS)
    assert (await _lease_state(runtime, alive))["lease_owner"] == live, "a live holder keeps it"
    assert not await runtime.redis.exists("arq:in-progress:store:1:abc"), "its job handed on"
    assert await runtime.pool.fetchval("SELECT count(*) FROM processes WHERE id = $1", dead) == 0
    assert await recovery.reap(runtime.pool, runtime.redis, holder) == [], "reaped once"


async def test_a_redis_that_lost_its_data_releases_the_leases_of_its_queued_jobs(
    runtime: Runtime, feed_server: FeedServer
) -> None:
    queued, running, unstored, stored = [
        await add_feed(runtime, feed_server.add(f"epoch-{i}.xml", rss(1))) for i in range(4)
    ]
    leases = {
        lease.feed_id: lease.token
        for lease in await schedule.lease_all(runtime.pool, runtime.settings)
    }
    await schedule.claim(runtime.pool, runtime.settings, [(running, leases[running])])
    await schedule.release(runtime.pool, [(unstored, leases[unstored]), (stored, leases[stored])])
    await runtime.pool.execute(
        "UPDATE feeds SET pending_body_hash = CASE WHEN id = $1 THEN 'lost' END, "
        "next_poll_at = now() + interval '15 minutes' WHERE id = ANY($2::bigint[])",
        unstored,
        [unstored, stored],
    )
    holder = runtime.holder
    lease = runtime.settings.lease_seconds
    assert await recovery.check_redis(runtime.pool, runtime.redis, holder, lease) is False, (
        "a process that saw no epoch before only records one"
    )
    assert (await _lease_state(runtime, queued))["lease_token"] is not None
    await runtime.redis.delete(recovery.EPOCH_KEY)  # Redis restarted empty
    assert await recovery.check_redis(runtime.pool, runtime.redis, holder, lease) is True
    assert await recovery.check_redis(runtime.pool, runtime.redis, holder, lease) is False

    released = timedelta(seconds=schedule.RELEASE_JITTER_SECONDS)
    assert (await _lease_state(runtime, queued))["lease_token"] is None
    assert (await _lease_state(runtime, queued))["due_in"] <= released
    assert (await _lease_state(runtime, running))["lease_claimed"], "a running poll reports itself"
    assert (await _lease_state(runtime, unstored))["due_in"] <= released
    assert (await _lease_state(runtime, stored))["due_in"] > timedelta(minutes=10)


async def test_a_poll_interrupted_by_redis_gives_its_lease_back(
    runtime: Runtime, feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis.exceptions

    feed_id = await add_feed(runtime, feed_server.add("interrupted.xml", rss(2)))
    (lease,) = await schedule.lease_all(runtime.pool, runtime.settings)

    async def redis_gone(*args: object, **kwargs: object) -> FeedWindow:
        raise redis.exceptions.ConnectionError("Redis went away")

    monkeypatch.setattr(runtime.seen, "window", redis_gone)
    assert await refresh.refresh_feed(runtime, feed_id, lease.token) == Outcome.INTERRUPTED
    state = await _lease_state(runtime, feed_id)
    assert state["lease_token"] is None and state["last_success_at"] is None
    assert state["due_in"] <= timedelta(seconds=schedule.RELEASE_JITTER_SECONDS)


async def test_a_late_report_from_a_poll_whose_lease_was_taken_back_is_ignored(
    runtime: Runtime, feed_server: FeedServer
) -> None:
    feed_id = await add_feed(runtime, feed_server.add("late.xml", rss(1)))
    (lease,) = await schedule.lease_all(runtime.pool, runtime.settings)
    ((feed, token),) = await schedule.claim(
        runtime.pool, runtime.settings, [(feed_id, lease.token)]
    )
    (again,) = await schedule.lease_all(runtime.pool, runtime.settings)  # taken back, re-leased
    late = schedule.Recorder(runtime.settings, {feed_id: token})
    late.success(feed, 60, queued_body_hash="b")
    await late.flush(runtime.pool)
    state = await _lease_state(runtime, feed_id)
    assert state["last_success_at"] is None and str(state["lease_token"]) == again.token
