"""Consumers written from the README without our code: plain arq workers and redis-cli.

Each consumer runs as its own process, under an interpreter that cannot import
``aggregator`` (``python -S`` with a path holding only arq and its dependencies), so
the contract is what such a client sees: every delivery is either taken or ends in the
subscriber's dead letters with a reason, never silently gone.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qs, urlsplit

import pytest
from packaging.requirements import Requirement

from aggregator import consumer, metrics
from aggregator.app import daemon
from aggregator.app.demo import sample_feeds
from aggregator.runtime import Runtime
from aggregator.settings import Settings
from aggregator.storage import deliveries, outbox, results, streams, subscribers
from tests import processes
from tests.feedserver import FeedServer
from tests.test_consumers import add_subscriber, eventually, ids_where, ingest, register_samples

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "plain_arq_consumer.py"
MISBEHAVING = ROOT / "tests" / "plain" / "misbehaving_consumer.py"


# --- an interpreter with arq and nothing of ours ------------------------------------------------


def _top_level(dist: importlib.metadata.Distribution) -> set[str]:
    listed = dist.read_text("top_level.txt")
    if listed:
        return {line.strip() for line in listed.splitlines() if line.strip()}
    names = set()
    for file in dist.files or []:
        first = file.parts[0]
        if first.endswith((".dist-info", ".pth")) or first in ("..", "__pycache__", "bin"):
            continue
        names.add(first.removesuffix(".py"))
    return names


def _dependency_closure(root: str) -> set[Path]:
    """Every importable top-level path of ``root`` and its (non-extra) requirements."""
    seen: set[str] = set()
    todo = [root]
    paths: set[Path] = set()
    while todo:
        name = todo.pop()
        key = name.lower().replace("_", "-")
        if key in seen:
            continue
        seen.add(key)
        dist = importlib.metadata.distribution(name)
        for requirement in map(Requirement, dist.requires or []):
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
        base = Path(str(dist.locate_file("")))
        for top in _top_level(dist):
            for candidate in (base / top, base / f"{top}.py"):
                if candidate.exists():
                    paths.add(candidate)
    return paths


@pytest.fixture(scope="module")
def plain_path() -> Iterator[Path]:
    """A folder with arq, its dependencies and the consumer files: nothing else."""
    folder = Path(tempfile.mkdtemp(prefix="plain-consumer-"))
    for path in _dependency_closure("arq"):
        (folder / path.name).symlink_to(path)
    shutil.copy(EXAMPLE, folder / EXAMPLE.name)
    shutil.copy(MISBEHAVING, folder / MISBEHAVING.name)
    # The README's worker with arq's defaults: the same file without the one setting.
    source = EXAMPLE.read_text()
    setting = "    job_deserializer = json.loads"
    assert setting in source
    defaults = "\n".join(ln for ln in source.splitlines() if not ln.startswith(setting))
    (folder / "default_settings_consumer.py").write_text(defaults + "\n")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def plain_env(folder: Path, redis_url: str, **extra: str) -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "PYTHONPATH": str(folder), "REDIS_URL": redis_url} | extra


def test_the_plain_interpreter_has_arq_and_not_the_aggregator(
    plain_path: Path, redis_url: str
) -> None:
    env = plain_env(plain_path, redis_url)
    found = subprocess.run(
        [sys.executable, "-S", "-c", "import arq, json; print(arq.VERSION)"],
        env=env,
        cwd=plain_path,
        capture_output=True,
        text=True,
    )
    assert found.returncode == 0, found.stderr
    ours = subprocess.run(
        [sys.executable, "-S", "-c", "import aggregator"],
        env=env,
        cwd=plain_path,
        capture_output=True,
        text=True,
    )
    assert ours.returncode == 1 and "No module named 'aggregator'" in ours.stderr


class PlainWorker:
    """``arq MODULE.WorkerSettings`` as a separate process; what it prints, by line."""

    def __init__(self, folder: Path, module: str, env: dict[str, str]) -> None:
        self._out: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop)
        self._err: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-S", "-m", "arq", f"{module}.WorkerSettings"],
            cwd=folder,
            env=env,
            stdout=self._out,
            stderr=self._err,
        )

    def lines(self) -> list[str]:
        self._out.seek(0)
        return self._out.read().decode().splitlines()

    def ids(self) -> list[int]:
        return [int(line.split()[0]) for line in self.lines()]

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._err.seek(0)
        log = self._err.read().decode(errors="replace")
        self._out.close()
        self._err.close()
        return log


@asynccontextmanager
async def plain_worker(
    folder: Path, module: str, settings: Settings, subscriber: str, **extra: str
) -> AsyncIterator[PlainWorker]:
    assert settings.redis_url
    env = plain_env(folder, settings.redis_url, SUBSCRIBER=subscriber, **extra)
    worker = PlainWorker(folder, module, env)
    try:
        yield worker
    finally:
        worker.stop()


def failed_count(name: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "aggregator_deliveries_failed_total", {"subscriber": name}
    )
    return value or 0.0


async def json_cli(settings: Settings, *args: str) -> Any:
    result = await processes.run_cli(list(args), processes.service_env(settings))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# --- arq consumers ------------------------------------------------------------------------------


async def test_default_settings_consumer_loses_nothing_and_dead_letters_replay_to_a_fixed_one(
    runtime: Runtime, settings: Settings, feed_server: FeedServer, plain_path: Path
) -> None:
    """The issue's reproduction: a worker on arq's defaults (pickle) fails every JSON job.
    With the daemon running, each delivery lands in the dead letters with the reason,
    within seconds; replaying them to a worker with json.loads delivers each one."""
    name = "plain"
    await add_subscriber(runtime, name)
    await register_samples(runtime, feed_server)
    env = processes.service_env(settings)
    async with plain_worker(plain_path, "default_settings_consumer", settings, name) as worker:
        aggregator = processes.aggregator(["run"], env)
        try:

            async def all_dead() -> bool:
                total = await runtime.pool.fetchval("SELECT count(*) FROM articles")
                dead, _ = await subscribers.dead_letters(runtime.redis, name)
                pending = await outbox.pending(runtime.pool)
                return total > 0 and pending == 0 and dead == total

            await eventually(all_dead, "every delivery to be dead-lettered", timeout=120)
        finally:
            aggregator.send_signal(signal.SIGTERM)
            await processes.wait_exit(aggregator, 60)
            processes.output(aggregator)
        assert worker.lines() == []  # it handled nothing
    expected = await ids_where(runtime, "true")
    count, dead = await subscribers.dead_letters(runtime.redis, name, limit=1000)
    assert count == len(expected)
    assert sorted(d.article_id for d in dead) == sorted(expected)
    assert all("DeserializationError" in d.error and "json.loads" in d.error for d in dead), dead
    assert await runtime.redis.zcard(deliveries.watch_key(name)) == 0
    assert await runtime.redis.zcard(consumer.queue_name(name)) == 0

    listing = await json_cli(settings, "subscribers", "list", "--json")
    (entry,) = listing
    assert entry["name"] == name and entry["kind"] == "arq"
    assert entry["queued"] == 0 and entry["dead_letters"] == len(expected)
    assert "DeserializationError" in entry["last_reason"]
    text = await processes.run_cli(["subscribers", "list"], env)
    assert "DeserializationError" in text.stdout and f"dead {len(expected):>5}" in text.stdout

    async with plain_worker(plain_path, "plain_arq_consumer", settings, name) as fixed:
        replay = await processes.run_cli(["subscribers", "replay", name, "--dead-letters"], env)
        assert replay.returncode == 0, replay.stderr
        assert f"queued {len(expected)} dead-lettered articles again" in replay.stdout

        async def all_printed() -> bool:
            return len(fixed.lines()) >= len(expected)

        await eventually(all_printed, "the fixed consumer to take every article", timeout=60)
        # The replayed deliveries are watched too: each is seen to succeed.
        await eventually(lambda: _watch_settles(runtime, name), "the replayed deliveries to settle")
        assert sorted(fixed.ids()) == sorted(expected)
    assert (await subscribers.dead_letters(runtime.redis, name))[0] == 0


async def _watch_settles(rt: Runtime, name: str) -> bool:
    await deliveries.watch_once(rt.redis, [name])
    return await rt.redis.zcard(deliveries.watch_key(name)) == 0


async def test_readme_consumer_gets_every_article_once_in_commit_order(
    runtime: Runtime, settings: Settings, feed_server: FeedServer, plain_path: Path
) -> None:
    """The README's worker (json.loads, max_jobs=1), with `aggregator run --once` as a
    process: each matching article exactly once, in commit order, and the run reports
    that its consumer took them all."""
    name = "gulf-desk"
    await add_subscriber(runtime, name, regions=["gulf", "levant"])
    await register_samples(runtime, feed_server)
    env = processes.service_env(settings)
    async with plain_worker(plain_path, "plain_arq_consumer", settings, name) as worker:
        run = await processes.run_cli(["run", "--once"], env)
        assert run.returncode == 0, run.stderr
        expected = await ids_where(runtime, "a.region IN ('gulf', 'levant')")
        total = await runtime.pool.fetchval("SELECT count(*) FROM articles")
        assert 0 < len(expected) < total
        # run --once waited for the outcomes before it reported.
        assert (
            f"subscriber deliveries taken: {len(expected)}, dead-lettered: 0, "
            "still with their consumers: 0" in run.stdout
        ), run.stdout
        assert worker.ids() == expected
    assert (await subscribers.dead_letters(runtime.redis, name))[0] == 0
    assert await runtime.redis.zcard(deliveries.watch_key(name)) == 0


async def test_raising_handler_dead_letters_before_run_once_reports(
    runtime: Runtime, settings: Settings, feed_server: FeedServer, plain_path: Path
) -> None:
    name = "raiser"
    await add_subscriber(runtime, name, languages=["en"])
    await register_samples(runtime, feed_server)
    before = failed_count(name)
    async with plain_worker(plain_path, "misbehaving_consumer", settings, name, MODE="raise"):
        summary = await daemon.run_once(runtime, timeout=120)
    expected = await ids_where(runtime, "a.language = 'en'")
    assert expected
    assert (summary.sent.delivered, summary.sent.dead, summary.sent.waiting) == (
        0,
        len(expected),
        0,
    )
    _, dead = await subscribers.dead_letters(runtime.redis, name, limit=1000)
    assert sorted(d.article_id for d in dead) == sorted(expected)
    for d in dead:
        assert d.error == f"handler raised ValueError('cannot handle article {d.article_id}')"
        assert d.tries == 1  # arq does not retry an ordinary exception
    assert failed_count(name) - before == len(expected)


async def _queue_synthetic(rt: Runtime, name: str, count: int) -> list[int]:
    ids = list(range(101, 101 + count))
    for article_id in ids:
        payload = {"id": article_id, "title": f"article {article_id}"}
        assert await deliveries.enqueue(rt.redis, name, payload, f"test:{name}:{article_id}")
    return ids


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("timeout", "timed out after 1 s"),
        ("nofunction", "job function 'new_article' not found"),
        ("retry", "consumer failed: max 2 retries exceeded"),
        ("noresult", "vanished: no result (the consumer keeps no results, keep_result=0"),
    ],
)
async def test_every_way_a_plain_consumer_fails_ends_in_dead_letters_with_its_reason(
    runtime: Runtime, settings: Settings, plain_path: Path, mode: str, reason: str
) -> None:
    name = f"failing-{mode}"
    await add_subscriber(runtime, name)
    ids = await _queue_synthetic(runtime, name, 2)
    async with plain_worker(plain_path, "misbehaving_consumer", settings, name, MODE=mode):

        async def settled() -> bool:
            await deliveries.watch_once(runtime.redis, [name])
            return await runtime.redis.zcard(deliveries.watch_key(name)) == 0

        await eventually(settled, f"{mode}: the deliveries to settle", timeout=60)
    _, dead = await subscribers.dead_letters(runtime.redis, name, limit=10)
    assert sorted(d.article_id for d in dead) == ids
    assert all(d.error.startswith(reason) for d in dead), [d.error for d in dead]


async def test_a_delivery_that_expires_unconsumed_is_dead_lettered(runtime: Runtime) -> None:
    name = "nobody-home"
    await add_subscriber(runtime, name)
    (article_id,) = await _queue_synthetic(runtime, name, 1)
    job_id = f"test:{name}:{article_id}"
    await runtime.redis.delete(f"arq:job:{job_id}")  # what the 7-day expiry does
    done = await deliveries.watch_once(runtime.redis, [name])
    assert (done.delivered, done.dead) == (0, 0)  # not due yet: looked at after 0.5 s
    await asyncio.sleep(deliveries.MIN_RECHECK + 0.1)
    done = await deliveries.watch_once(runtime.redis, [name])
    assert done.dead == 1
    _, (dead,) = await subscribers.dead_letters(runtime.redis, name)
    assert dead.error == "expired: not consumed within 7 days" and dead.job_id == job_id


async def test_a_hostile_pickled_result_runs_nothing_and_is_a_dead_letter(
    runtime: Runtime, tmp_path: Path
) -> None:
    """Anyone who can write to the shared Redis can write a result; reading it must not
    run code in the daemon."""
    name = "hostile"
    await add_subscriber(runtime, name)
    ids = await _queue_synthetic(runtime, name, 3)
    marker = tmp_path / "ran"

    class Exploit:
        def __reduce__(self) -> tuple[Any, ...]:
            return (os.system, (f"touch {marker}",))

    class Build:
        def __reduce__(self) -> tuple[Any, ...]:
            return (Path, (str(marker),), {"x": 1})

    forged = [
        pickle.dumps({"s": True, "r": Exploit(), "t": 1}),  # "success" carrying a payload
        pickle.dumps({"s": False, "r": Exploit(), "t": 1, "b": Build()}),
        b"\x80\x05garbage",
    ]
    for article_id, result in zip(ids, forged, strict=True):
        job_id = f"test:{name}:{article_id}"
        async with runtime.redis.pipeline(transaction=True) as pipe:
            pipe.delete(f"arq:job:{job_id}")
            pipe.zrem(consumer.queue_name(name), job_id)
            pipe.set(f"arq:result:{job_id}", result)
            await pipe.execute()
    await runtime.redis.zadd(deliveries.watch_key(name), {"not a delivery": 0})
    await asyncio.sleep(deliveries.MIN_RECHECK + 0.1)
    done = await deliveries.watch_once(runtime.redis, [name])
    assert not marker.exists()
    assert await runtime.redis.zcard(deliveries.watch_key(name)) == 0
    assert (done.delivered, done.dead) == (1, 2)
    _, dead = await subscribers.dead_letters(runtime.redis, name)
    assert [d.error for d in dead] == [
        f"handler raised system('touch {marker}')",
        "result unreadable: neither JSON nor pickle (use either serializer)",
    ]


def test_reading_results_never_raises_on_bytes() -> None:
    for data in (b"", b"{", b"[]", b'{"s": 1}', b"\x80", pickle.dumps([1, 2]), b"\x00" * 100):
        outcome = results.read(data)
        assert outcome.success is False and outcome.reason


# --- streams ------------------------------------------------------------------------------------


def redis_cli(settings: Settings, *args: str) -> list[str]:
    client = shutil.which("redis-cli")
    if client is None:
        pytest.skip("redis-cli is not installed")
    assert settings.redis_url
    url = urlsplit(settings.redis_url)
    if url.scheme == "unix":  # the embedded Redis
        db = parse_qs(url.query).get("db", ["0"])[0]
        where = ["-s", url.path, "-n", db]
    else:
        where = ["-u", settings.redis_url]
    found = subprocess.run(
        [client, *where, "--raw", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert found.returncode == 0 and "ERR" not in found.stdout, (found.stdout, found.stderr)
    return found.stdout.splitlines()


def entries(lines: list[str]) -> list[tuple[str, int, dict[str, Any]]]:
    """XREADGROUP / XAUTOCLAIM entries in --raw output: id, "id", N, "article", JSON."""
    found = []
    for index, line in enumerate(lines):
        if line == "id" and index + 3 < len(lines) and lines[index + 2] == "article":
            found.append((lines[index - 1], int(lines[index + 1]), json.loads(lines[index + 3])))
    return found


async def test_redis_cli_reads_the_stream_in_a_group_and_claims_back_a_dead_consumers_entry(
    runtime: Runtime, settings: Settings, feed_server: FeedServer
) -> None:
    name = "wire"
    env = processes.service_env(settings)
    added = await processes.run_cli(
        ["subscribers", "add", name, "--stream", "--region", "gulf", "--region", "levant"], env
    )
    assert added.returncode == 0, added.stderr
    assert "stream aggregator:stream:wire" in added.stdout
    await register_samples(runtime, feed_server)
    await ingest(runtime)
    expected = await ids_where(runtime, "a.region IN ('gulf', 'levant')")
    assert 1 < len(expected) < await runtime.pool.fetchval("SELECT count(*) FROM articles")
    key = streams.stream_key(name)
    assert not await runtime.redis.exists(consumer.queue_name(name))

    redis_cli(settings, "XGROUP", "CREATE", key, "readers", "0")
    # Consumer c1 reads one entry and dies before XACK.
    read = ["XREADGROUP", "GROUP", "readers"]
    (first,) = entries(redis_cli(settings, *read, "c1", "COUNT", "1", "STREAMS", key, ">"))
    # c2 reads the rest and acknowledges them.
    rest = entries(redis_cli(settings, *read, "c2", "COUNT", "1000", "STREAMS", key, ">"))
    for entry_id, _, _ in rest:
        assert redis_cli(settings, "XACK", key, "readers", entry_id) == ["1"]
    assert redis_cli(settings, "XPENDING", key, "readers")[0] == "1"
    # c2 claims back what c1 left unacknowledged for more than 200 ms.
    await asyncio.sleep(0.3)
    claimed = entries(redis_cli(settings, "XAUTOCLAIM", key, "readers", "c2", "200", "0-0"))
    assert [c[0] for c in claimed] == [first[0]]
    assert redis_cli(settings, "XACK", key, "readers", first[0]) == ["1"]
    assert redis_cli(settings, "XPENDING", key, "readers")[0] == "0"

    # One entry per matching article, in commit order, each the arq job's JSON payload.
    got = [first, *rest]
    assert [article_id for _, article_id, _ in got] == expected
    async with runtime.pool.acquire() as conn:
        bodies = await subscribers.payloads(conn, expected)
    for _, article_id, article in got:
        assert article == json.loads(json.dumps(bodies[article_id]))

    (listed,) = await json_cli(settings, "subscribers", "list", "--json")
    assert listed["kind"] == "stream" and listed["key"] == key
    assert listed["queued"] == len(expected) and listed["dead_letters"] == 0
    (group,) = listed["groups"]
    assert (group["name"], group["pending"]) == ("readers", 0)
    assert group["lag"] in (0, None)  # Redis 7 reports the lag; 6.2 (embedded) does not


async def test_stream_relay_adds_each_article_once_across_a_crash_before_marking_sent(
    runtime: Runtime, feed_server: FeedServer
) -> None:
    name = "once"
    await add_subscriber(runtime, name, kind="stream")
    await register_samples(runtime, feed_server, sample_feeds()[:3])
    await ingest(runtime)
    expected = await ids_where(runtime, "true")
    key = streams.stream_key(name)
    assert await runtime.redis.xlen(key) == len(expected)

    # The relay added every entry and "crashed" before its UPDATE: the rows are pending
    # again, and the next pass runs them all a second time.
    await runtime.pool.execute("UPDATE outbox SET sent_at = NULL")
    again = await outbox.relay_once(runtime.pool, runtime.redis)
    assert again is not None
    assert (again.rows, again.queued, again.already_queued) == (len(expected), 0, len(expected))
    assert await outbox.pending(runtime.pool) == 0
    ids = [int(fields[b"id"]) for _, fields in await runtime.redis.xrange(key)]
    assert ids == expected


async def test_stream_subscriber_replay_dead_letters_kind_change_and_remove(
    runtime: Runtime, settings: Settings, feed_server: FeedServer
) -> None:
    env = processes.service_env(settings)
    name = "feed.wire"
    await add_subscriber(runtime, "queue-one")
    await add_subscriber(runtime, name, languages=["ar"], kind="stream")
    await register_samples(runtime, feed_server)
    await ingest(runtime)
    arabic = await ids_where(runtime, "a.language = 'ar'")
    key = streams.stream_key(name)
    marker = await runtime.redis.get(streams.marker_key(name))
    assert await runtime.redis.xlen(key) == len(arabic) > 0

    # A replay adds the window again with new entry ids; the relay's marker is untouched.
    replay = await processes.run_cli(["subscribers", "replay", name, "--since", "1h"], env)
    assert replay.returncode == 0, replay.stderr
    assert f"queued {len(arabic)} articles" in replay.stdout
    ids = [int(f[b"id"]) for _, f in await runtime.redis.xrange(key)]
    assert ids == arabic + arabic
    assert await runtime.redis.get(streams.marker_key(name)) == marker

    # Dead letters of a stream subscriber are replayed to its stream.
    entry = consumer.DeadLetter(
        article_id=arabic[0], job_id="x", tries=1, error="test", failed_at=datetime.now(UTC)
    )
    await runtime.redis.rpush(consumer.dead_letter_key(name), entry.model_dump_json())
    retried = await processes.run_cli(["subscribers", "replay", name, "--dead-letters"], env)
    assert "queued 1 dead-lettered articles again" in retried.stdout, retried.stderr
    assert await runtime.redis.xlen(key) == 2 * len(arabic) + 1

    # The kind never changes under a consumer: one line, no traceback.
    for args in (["queue-one", "--stream"], [name, "--stream", "--region", "gulf"]):
        changed = await processes.run_cli(["subscribers", "add", *args], env)
        if args[0] == name:
            assert changed.returncode == 0 and "stream aggregator:stream:" in changed.stdout
        else:
            assert changed.returncode == 1
            assert changed.stderr.strip() == (
                "error: subscriber 'queue-one' is an arq queue, not a stream; "
                "remove it first (`aggregator subscribers remove queue-one`)"
            )
    updated = await processes.run_cli(["subscribers", "add", name, "--language", "fa"], env)
    assert "stream aggregator:stream:feed.wire" in updated.stdout  # still a stream

    removed = await processes.run_cli(["subscribers", "remove", name], env)
    assert removed.returncode == 0, removed.stderr
    assert not await runtime.redis.exists(
        key, streams.marker_key(name), consumer.dead_letter_key(name)
    )
    removed = await processes.run_cli(["subscribers", "remove", "queue-one"], env)
    assert not await runtime.redis.exists(deliveries.watch_key("queue-one"))


def test_readme_shows_the_plain_consumer_file_verbatim() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    body = EXAMPLE.read_text(encoding="utf-8").split('"""\n', 1)[1].strip()
    assert body in readme, "paste examples/plain_arq_consumer.py (after its docstring) in README"


async def test_node_consumer_with_no_package_claims_back_and_reads_the_stream(
    runtime: Runtime, settings: Settings, feed_server: FeedServer
) -> None:
    """examples/stream_consumer.mjs, a consumer in another language, as a process."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    name = "wire-js"
    await add_subscriber(runtime, name, kind="stream", languages=["fa", "ar"])
    await register_samples(runtime, feed_server)
    await ingest(runtime)
    expected = await ids_where(runtime, "a.language IN ('fa', 'ar')")
    assert len(expected) > 1
    key = streams.stream_key(name)
    redis_cli(settings, "XGROUP", "CREATE", key, "node", "0")
    # Another consumer of the group reads the first entry and dies before XACK.
    (first,) = entries(
        redis_cli(
            settings, "XREADGROUP", "GROUP", "node", "dead", "COUNT", "1", "STREAMS", key, ">"
        )
    )
    await asyncio.sleep(0.3)
    assert settings.redis_url
    env = {
        "PATH": os.environ["PATH"],
        "REDIS_URL": settings.redis_url,
        "STREAM": key,
        "GROUP": "node",
        "CLAIM_IDLE_MS": "200",
    }
    consumer_process = await asyncio.create_subprocess_exec(
        node,
        str(ROOT / "examples" / "stream_consumer.mjs"),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert consumer_process.stdout is not None
        printed = []
        while len(printed) < len(expected):
            line = await asyncio.wait_for(consumer_process.stdout.readline(), 30)
            assert line, "the node consumer exited"
            printed.append(int(line.split()[0]))

        async def all_acknowledged() -> bool:
            return redis_cli(settings, "XPENDING", key, "node")[0] == "0"

        await eventually(all_acknowledged, "the node consumer to acknowledge every entry")
    finally:
        if consumer_process.returncode is None:
            consumer_process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(consumer_process.communicate(), 30)
    # The claimed-back entry first (it was committed first), then the rest, once each.
    assert first[1] == expected[0]
    assert printed == expected


def test_readme_shows_the_node_consumers_loop_verbatim() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    source = (ROOT / "examples" / "stream_consumer.mjs").read_text(encoding="utf-8")
    loop = source[source.index('let cursor = "0-0";') :]
    assert f"```js\n{loop}```" in readme, "paste the loop of examples/stream_consumer.mjs"
