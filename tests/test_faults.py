"""Faults with real processes: SIGKILL mid-transaction, SIGTERM on the daemon."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from aggregator import queue
from aggregator.app import daemon
from aggregator.runtime import Runtime
from aggregator.settings import Settings
from aggregator.storage import schedule
from tests import processes
from tests.feedserver import FeedServer
from tests.groundtruth import OWN_CORPUS, Corpus, pairwise

pytestmark = pytest.mark.slow


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def test_worker_killed_mid_store_converges_to_the_same_rows(
    runtime: Runtime, settings: Settings, feed_server: FeedServer
) -> None:
    corpus = Corpus.load(OWN_CORPUS)
    urls = corpus.serve(feed_server)
    async with runtime.pool.acquire() as conn:
        feed_ids = await corpus.register(conn, urls)
    # A short job timeout: arq hands a crashed worker's job on after timeout + 10 s.
    env = processes.service_env(settings, AGGREGATOR_JOB_TIMEOUT="2")

    # Hold a lock that stops every store transaction after it has inserted articles
    # but before its sightings: the worker is then killed mid-transaction.
    blocker = await asyncpg.connect(runtime.database_url)
    blocked = blocker.transaction()
    await blocked.start()
    await blocker.execute("LOCK TABLE article_sources IN EXCLUSIVE MODE")
    first = processes.arq_worker("workers.store.WorkerSettings", env)
    try:
        polls = daemon.Workers(runtime, queues=(queue.POLL_QUEUE,))
        polls.start()
        await daemon.schedule_pass(
            runtime, await schedule.lease_all(runtime.pool, runtime.settings)
        )
        await daemon.wait_drained(runtime, timeout=60, queues=(queue.POLL_QUEUE,))
        await polls.stop()

        async def stores_blocked_mid_transaction() -> bool:
            waiting = await runtime.pool.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE '%INSERT INTO article_sources%'"
            )
            return waiting > 0

        await eventually(stores_blocked_mid_transaction, 30, "a store blocked mid-transaction")
        processes.sigkill(first)
    finally:
        if first.poll() is None:
            processes.sigkill(first)
        processes.output(first)
        await blocked.rollback()
        await blocker.close()

    async def killed_backends_gone() -> bool:
        return not await runtime.pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%INSERT INTO article_sources%'"
            " AND pid <> pg_backend_pid()"
        )

    await eventually(killed_backends_gone, 30, "the killed worker's transactions to end")
    assert await runtime.pool.fetchval("SELECT count(*) FROM articles") == 0, "partial rows"

    second = processes.arq_worker("workers.store.WorkerSettings", env)
    try:

        async def store_queue_drained() -> bool:
            return await queue.depth(runtime.redis, queue.STORE_QUEUE) == 0

        await eventually(store_queue_drained, 60, "the store queue to drain after the restart")
    finally:
        second.send_signal(signal.SIGTERM)
        code = await processes.wait_exit(second, 30)
        printed = processes.output(second)
        assert code == 0, printed

    async with runtime.pool.acquire() as conn:
        system = await corpus.stored_groups(conn, feed_ids)
        articles = await conn.fetchval("SELECT count(*) FROM articles")
        sightings = await conn.fetchval("SELECT count(*) FROM article_sources")
    truth = {i["item_id"]: i["exact_dup_group"] for i in corpus.items}
    assert pairwise(system, truth) == (1.0, 1.0)
    assert articles == len(set(truth.values()))
    assert sightings == len({(i["feed"], i["exact_dup_group"]) for i in corpus.items})


async def test_daemon_stops_cleanly_on_sigterm(
    runtime: Runtime, settings: Settings, feed_server: FeedServer
) -> None:
    corpus = Corpus.load(OWN_CORPUS)
    urls = corpus.serve(feed_server)
    async with runtime.pool.acquire() as conn:
        await corpus.register(conn, urls)
    proc = processes.aggregator(["run"], processes.service_env(settings))
    try:

        async def all_feeds_polled() -> bool:
            return not await runtime.pool.fetchval(
                "SELECT count(*) FROM feeds WHERE last_success_at IS NULL"
            )

        await eventually(all_feeds_polled, 60, "the daemon to poll every feed")
        await eventually(lambda: _queues_empty(runtime), 30, "the daemon to store every batch")
        proc.send_signal(signal.SIGTERM)
        assert await processes.wait_exit(proc, 30) == 0
    finally:
        if proc.poll() is None:
            processes.sigkill(proc)
    printed = processes.output(proc)
    assert "Traceback" not in printed
    assert "stopped" in printed
    assert await runtime.pool.fetchval("SELECT count(*) FROM articles") == len(
        {i["exact_dup_group"] for i in corpus.items}
    )


async def _queues_empty(rt: Runtime) -> bool:
    return all([await queue.depth(rt.redis, q) == 0 for q in (queue.POLL_QUEUE, queue.STORE_QUEUE)])


def _process_table() -> dict[int, tuple[int, str, str]]:
    """Every live process: pid -> (parent pid, state, start time)."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:  # gone meanwhile
            continue
        table[int(entry)] = (int(fields[1]), fields[0], fields[19])
    return table


def descendants(pid: int) -> dict[int, str]:
    """A process's descendants, each with its start time (so a reused pid is not it)."""
    table = _process_table()
    found: dict[int, str] = {}
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for child, (ppid, _, started) in table.items():
            if ppid == parent and child not in found:
                found[child] = started
                frontier.append(child)
    return found


def still_running(processes_: dict[int, str]) -> list[int]:
    """Those of the processes that still run (a zombie has exited)."""
    table = _process_table()
    return [
        pid
        for pid, started in processes_.items()
        if pid in table and table[pid][2] == started and table[pid][1] != "Z"
    ]


async def test_a_sigkilled_daemon_leaves_no_process_behind(
    runtime: Runtime, settings: Settings, feed_server: FeedServer
) -> None:
    corpus = Corpus.load(OWN_CORPUS)
    urls = corpus.serve(feed_server)
    async with runtime.pool.acquire() as conn:
        await corpus.register(conn, urls)
    proc = processes.aggregator(["run"], processes.service_env(settings))
    try:

        async def parsing() -> bool:  # the parse pool and the resource tracker are up
            return bool(await runtime.pool.fetchval("SELECT count(*) FROM articles"))

        await eventually(parsing, 60, "the daemon to store articles")
        children = descendants(proc.pid)
        commands = [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in children]
        assert any(b"resource_tracker" in c for c in commands), commands
        assert any(b"multiprocessing.spawn" in c for c in commands), commands
        processes.sigkill(proc)

        async def none_left() -> bool:
            return not still_running(children)

        await eventually(none_left, 10, f"the daemon's children {children} to exit")
    finally:
        if proc.poll() is None:
            processes.sigkill(proc)
        processes.output(proc)
