"""The read-only role as a consumer gets it: a login ``IN ROLE aggregator_reader``, used
with clients that import nothing of this project (psql, plain asyncpg, the CLI run as a
process). It reads exactly the documented columns, no secret, writes nothing, runs every
documented query and read-only command, and nothing it does slows ingestion."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from aggregator import errors
from aggregator.model import Article
from aggregator.pipeline.contenthash import content_hash
from aggregator.reach import service_error, where
from aggregator.settings import Settings
from aggregator.storage import locks, migrations, subscribers
from aggregator.storage.articles import StoreBatch, Validators, store_batch
from tests import processes, services
from tests.feedserver import FeedServer
from tests.test_sql_contract import QUERIES, documented_columns, store_fixture

ROOT = Path(__file__).resolve().parent.parent
# The advisory lock ids the ingest path and the migrations used before migration 009.
# A reader may still take them: nothing waits for them any more.
OLD_ADVISORY_IDS = (0x6167_6772, 0x7374_6F72, 0x6167_6F75, 0x6167_7265)
SECRETS = (("feeds", "websub_secret"), ("feeds", "lease_token"))


@dataclass(frozen=True)
class Login:
    name: str
    url: str


def as_login(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}"))


@pytest.fixture
async def reader(database_url: str, clean_services: None) -> AsyncIterator[Login]:
    """A login role of our own in aggregator_reader. Roles are cluster-wide: this one has a
    unique name and is dropped at the end; no other role is touched."""
    name = f"aggregator_test_reader_{os.getpid()}_{secrets.token_hex(4)}"
    password = secrets.token_hex(16)
    admin = await asyncpg.connect(database_url)
    await admin.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{password}' IN ROLE aggregator_reader")
    try:
        yield Login(name, as_login(database_url, name, password))
    finally:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", name
        )
        await admin.execute(f"DROP ROLE {name}")
        await admin.close()


@pytest.fixture
async def owner(database_url: str, clean_services: None) -> AsyncIterator[asyncpg.Connection]:
    """The schema owner's connection, on the fixture data of docs/sql.md's examples."""
    conn = await asyncpg.connect(database_url)
    try:
        await store_fixture(conn)
        yield conn
    finally:
        await conn.close()


def psql(url: str, sql: str) -> subprocess.CompletedProcess[str]:
    client = shutil.which("psql")
    if client is None:
        pytest.skip("psql is not installed")
    return subprocess.run(
        [client, url, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("PG")},
    )


# --- what the role can read --------------------------------------------------------------------

_READABLE_COLUMNS = """
SELECT c.relname, a.attname
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND has_column_privilege($1, c.oid, a.attnum, 'SELECT')
"""

_OTHER_PRIVILEGES = """
SELECT c.relname, p.privilege
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN unnest(ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER'])
    AS p(privilege)
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND (has_table_privilege($1, c.oid, p.privilege)
       OR (p.privilege IN ('INSERT', 'UPDATE', 'REFERENCES')
           AND has_any_column_privilege($1, c.oid, p.privilege)))
UNION ALL
SELECT c.relname, 'sequence'
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public'
  AND CASE WHEN c.relkind = 'S' THEN has_sequence_privilege($1, c.oid, 'USAGE, SELECT, UPDATE') END
UNION ALL
SELECT p.proname, 'security definer'
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'public' AND p.prosecdef AND has_function_privilege($1, p.oid, 'EXECUTE')
UNION ALL
SELECT 'public', 'CREATE' WHERE has_schema_privilege($1, 'public', 'CREATE')
"""


async def test_the_reader_reads_exactly_the_documented_columns(
    database_url: str, reader: Login
) -> None:
    """Computed from the catalog over every table and view: a column a migration adds is
    unreadable until granted, and a granted one fails here until docs/sql.md lists it."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(_READABLE_COLUMNS, reader.name)
        others = await conn.fetch(_OTHER_PRIVILEGES, reader.name)
    finally:
        await conn.close()
    readable: dict[str, set[str]] = {}
    for row in rows:
        readable.setdefault(row["relname"], set()).add(row["attname"])
    documented = {table: set(columns) for table, columns in documented_columns().items()}
    assert readable == documented
    for table, column in SECRETS:
        assert column not in readable[table]
    assert "ingest_locks" not in readable and "story_keys" not in readable
    assert [tuple(r) for r in others] == [], "the reader may write, lock or create"


async def test_each_secret_column_is_denied(owner: asyncpg.Connection, reader: Login) -> None:
    await owner.execute("UPDATE feeds SET websub_secret = 'hub-key', lease_token = NULL")
    for table, column in SECRETS:
        denied = psql(reader.url, f"SELECT {column} FROM {table}")
        assert denied.returncode != 0 and denied.stdout == ""
        assert f"permission denied for table {table}" in denied.stderr, denied.stderr
        whole_rows = psql(reader.url, f"SELECT * FROM {table}")
        assert whole_rows.returncode != 0 and "permission denied" in whole_rows.stderr
    allowed = psql(reader.url, "SELECT count(*) FROM feeds WHERE url LIKE 'https://%'")
    assert allowed.returncode == 0 and allowed.stdout.strip() == "6", allowed.stderr


# --- what the role cannot do -------------------------------------------------------------------


async def _tables(conn: asyncpg.Connection) -> list[tuple[str, str, str]]:
    rows = await conn.fetch(
        """
        SELECT c.relname, c.relkind::text,
               (SELECT a.attname FROM pg_attribute a
                WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                ORDER BY a.attnum LIMIT 1) AS first_column
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
        ORDER BY 1
        """
    )
    return [(r["relname"], r["relkind"], r["first_column"]) for r in rows]


def _writes(tables: list[tuple[str, str, str]]) -> Iterator[tuple[str, str]]:
    """(statement, kind of relation) for every write and every lock but ACCESS SHARE."""
    for table, kind, column in tables:
        if kind == "S":
            yield f"SELECT nextval('{table}')", kind
            yield f"SELECT setval('{table}', 1)", kind
            continue
        yield f"INSERT INTO {table} DEFAULT VALUES", kind
        yield f"UPDATE {table} SET {column} = {column}", kind
        yield f"DELETE FROM {table}", kind
        yield f"TRUNCATE {table} CASCADE", kind
        for strength in ("UPDATE", "NO KEY UPDATE", "SHARE", "KEY SHARE"):
            yield f"SELECT 1 FROM {table} FOR {strength}", kind
        for mode in ("ROW SHARE", "ROW EXCLUSIVE", "SHARE", "EXCLUSIVE", "ACCESS EXCLUSIVE"):
            yield f"LOCK TABLE {table} IN {mode} MODE", kind
    yield "CREATE TABLE public.mine (x int)", "schema"
    yield "CREATE VIEW public.mine AS SELECT 1", "schema"
    yield "CREATE FUNCTION public.mine() RETURNS int LANGUAGE sql AS 'SELECT 1'", "schema"


async def test_every_write_and_row_lock_is_denied(owner: asyncpg.Connection, reader: Login) -> None:
    tables = await _tables(owner)
    assert {"ingest_locks", "articles", "feeds", "outbox"} <= {t for t, _, _ in tables}
    counts = {
        t: await owner.fetchval(f"SELECT count(*) FROM {t}") for t, k, _ in tables if k == "r"
    }
    conn = await asyncpg.connect(reader.url)
    allowed = []
    try:
        for statement, kind in _writes(tables):
            try:
                async with conn.transaction():  # LOCK TABLE needs one
                    await conn.execute(statement)
            except asyncpg.InsufficientPrivilegeError:
                continue
            except (
                asyncpg.ObjectNotInPrerequisiteStateError,  # not an updatable view
                asyncpg.WrongObjectTypeError,  # TRUNCATE of a view
                asyncpg.FeatureNotSupportedError,  # FOR UPDATE of an aggregate
            ):
                if kind == "v":
                    continue  # a view refuses these before privileges are checked
                raise
            allowed.append(statement)
    finally:
        await conn.close()
    assert allowed == []
    after = {t: await owner.fetchval(f"SELECT count(*) FROM {t}") for t in counts}
    assert after == counts and counts["articles"] == 6


def test_the_ingest_path_takes_no_advisory_lock() -> None:
    """Any role may take any advisory lock, so none may guard ingestion."""
    for path in (ROOT / "aggregator").rglob("*.py"):
        assert not re.search(r"pg_(try_)?advisory", path.read_text(encoding="utf-8")), path


# --- what the role can do ----------------------------------------------------------------------


async def test_every_documented_query_works_for_the_reader(
    owner: asyncpg.Connection, reader: Login
) -> None:
    conn = await asyncpg.connect(reader.url)
    try:
        for query in QUERIES:
            sql, columns = query.values
            statement = await conn.prepare(sql)
            assert [a.name for a in statement.get_attributes()] == columns, query.id
            assert await statement.fetch(), query.id
        assert await conn.fetchval(
            "SELECT count(*) FROM articles WHERE search_vector @@ article_search_query('oil')"
        )
    finally:
        await conn.close()


def _article(title: str, url: str) -> Article:
    text = f"{title}. " + " ".join(f"word{n} of a story told in full" for n in range(12))
    return Article(
        content_hash=content_hash(text, title=title, canonical_url=url),
        canonical_url=url,
        url=url,
        guid=url,
        title=title,
        summary=text[:100],
        content_html=f"<p>{text}</p>",
        content_text=text,
        author=None,
        language="en",
        region="gulf",
        published_at=datetime.now(UTC),
    )


async def test_read_only_commands_work_as_the_reader(
    owner: asyncpg.Connection, reader: Login, settings: Settings
) -> None:
    await subscribers.add(owner, "gulf-desk", regions=["gulf"])
    env = processes.service_env(settings, AGGREGATOR_DATABASE_URL=reader.url)
    expected = {
        ("stories",): "Umm Qasr",
        ("status",): "gulf",
        ("status", "--json"): '"regions"',
        ("feeds", "list"): "https://gulf-ledger.example/rss",
        ("subscribers", "list"): "gulf-desk",
        ("psql", "-X", "-A", "-t", "-c", "SELECT count(*) FROM articles"): "6",
    }
    for args, shows in expected.items():
        result = await processes.run_cli(list(args), env, timeout=120)
        assert result.returncode == 0 and shows in result.stdout, (args, result.stderr)
        assert "error" not in result.stderr, (args, result.stderr)

    # tail: the backlog, then an article stored while it listens.
    tail = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aggregator",
        "tail",
        "-n",
        "2",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert tail.stderr is not None and tail.stdout is not None
        ready = await asyncio.wait_for(tail.stderr.readline(), 60)
        assert b"following new articles" in ready, ready
        backlog = [await asyncio.wait_for(tail.stdout.readline(), 30) for _ in range(2)]
        assert "Marmara" not in backlog[0].decode() and "petrol" in backlog[1].decode()
        feed_id = await owner.fetchval("SELECT min(id) FROM feeds")
        late = _article("Tail sees this late story", "https://gulf-ledger.example/late")
        await store_batch(
            owner,
            StoreBatch(
                feed_id=feed_id,
                body_hash="d" * 64,
                validators=Validators(body_hash="d" * 64),
                articles=[late],
                fetched_at=datetime.now(UTC),
            ),
        )
        line = await asyncio.wait_for(tail.stdout.readline(), 30)
        assert "Tail sees this late story" in line.decode()
    finally:
        if tail.returncode is None:
            tail.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(tail.wait(), 30)
    assert code == 0


async def test_commands_that_write_say_permission_denied(
    owner: asyncpg.Connection, reader: Login, settings: Settings
) -> None:
    env = processes.service_env(settings, AGGREGATOR_DATABASE_URL=reader.url)
    at = where(reader.url)  # host:port/db, or the socket folder (db) on the embedded server
    for args in (["migrate"], ["feeds", "add", "https://new.example/rss", "--no-fetch"]):
        result = await processes.run_cli(args, env)
        assert result.returncode == 1
        line = result.stderr.strip()
        assert line.startswith(f"error: permission denied by PostgreSQL at {at} to role "), line
        assert "\n" not in line and "cannot reach" not in line


@pytest.fixture
async def behind_database(database_url: str, reader: Login) -> AsyncIterator[str]:
    """A database of our own with migrations 001-008 only: as a release older than this."""
    server = urlsplit(database_url)._replace(path="/postgres").geturl()
    name = f"aggregator_test_{os.getpid()}_behind"
    url = await services.create_database(server, name)
    conn = await asyncpg.connect(url)
    try:
        await locks.ensure(conn)
        await conn.execute(migrations._CREATE_TABLE)
        for migration in migrations.available():
            if migration.version <= 8:
                assert await migrations.apply(conn, migration)
    finally:
        await conn.close()
    try:
        yield url
    finally:
        await services.drop_database(server, name)


async def test_a_schema_behind_is_one_line_and_not_migrated(
    behind_database: str, reader: Login, settings: Settings
) -> None:
    password = reader.url.split("@")[0].rsplit(":", 1)[1]
    url = as_login(behind_database, reader.name, password)
    env = processes.service_env(settings, AGGREGATOR_DATABASE_URL=url)
    for args in (["stories"], ["status"], ["feeds", "list"], ["tail"], ["subscribers", "list"]):
        result = await processes.run_cli(args, env)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("error: the database schema is at version 008"), lines[0]
        assert "009_reader_role" in lines[0] and "`aggregator migrate`" in lines[0]
    conn = await asyncpg.connect(behind_database)
    try:
        assert await conn.fetchval("SELECT max(version) FROM schema_migrations") == 8
    finally:
        await conn.close()


# --- nothing the reader does slows ingestion ---------------------------------------------------


def _rss(run: str, feed: int, items: int) -> bytes:
    entries = "".join(
        f"<item><title>Run {run} feed {feed} story {i}</title>"
        f"<link>https://news.example/{run}/{feed}/{i}</link><guid>{run}-{feed}-{i}</guid>"
        f"<pubDate>Wed, 25 Nov 2026 {i % 24:02d}:00:00 +0000</pubDate>"
        f"<description>Report {i} from desk {feed} in run {run}: "
        + " ".join(f"{run}{feed}x{i}w{n}" for n in range(40))
        + "</description></item>"
        for i in range(items)
    )
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>Desk {run}{feed}</title>'
        f"{entries}</channel></rss>"
    ).encode()


FEEDS, ITEMS = 8, 10


async def _timed_run(
    server: FeedServer, run: str, env: dict[str, str], database_url: str
) -> tuple[float, int]:
    """Disable the earlier feeds, add this run's, time `aggregator run --once`; return the
    seconds and the articles it stored."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("UPDATE feeds SET disabled = true")
        for feed in range(FEEDS):
            url = server.add(f"{run}/{feed}.xml", _rss(run, feed, ITEMS))
            await conn.execute("INSERT INTO feeds (url, region) VALUES ($1, 'gulf')", url)
        started = time.monotonic()
        # A run stalled by a lock would wait as long as the reader holds it: the whole test.
        result = await processes.run_cli(["run", "--once"], env, timeout=120)
        elapsed = time.monotonic() - started
        assert result.returncode == 0, result.stderr
        stored = await conn.fetchval(
            "SELECT count(*) FROM articles WHERE title LIKE $1", f"Run {run} %"
        )
    finally:
        await conn.close()
    return elapsed, stored


async def test_a_reader_holding_every_lock_does_not_slow_a_run(
    reader: Login, settings: Settings, feed_server: FeedServer, database_url: str
) -> None:
    env = processes.service_env(settings)
    baseline, stored = await _timed_run(feed_server, "a", env, database_url)
    assert stored == FEEDS * ITEMS

    # The reader takes every lock it can that the ingest path ever took or takes.
    session = await asyncpg.connect(reader.url)  # session-level advisory locks
    for lock_id in OLD_ADVISORY_IDS:
        await session.execute("SELECT pg_advisory_lock($1)", lock_id)
    holder = await asyncpg.connect(reader.url)  # one long transaction
    transaction = holder.transaction(isolation="repeatable_read")
    await transaction.start()
    documented = documented_columns()
    row_locks = [
        f"SELECT name FROM ingest_locks WHERE name = '{name}' FOR {strength} NOWAIT"
        for name in locks.NAMES
        for strength in ("UPDATE", "KEY SHARE")
    ] + [f"SELECT 1 FROM {table} FOR KEY SHARE NOWAIT" for table in documented]
    assert [await _attempt(holder, sql) for sql in row_locks] == ["denied"] * len(row_locks)
    for table, columns in documented.items():
        # ACCESS SHARE on every table it can read, held until the transaction ends.
        await holder.fetch(f"SELECT {', '.join(columns)} FROM {table} LIMIT 1")
        await _attempt(holder, f"LOCK TABLE {table} IN ACCESS SHARE MODE")
    granted = await session.fetch(
        "SELECT l.locktype, l.mode, l.relation::regclass::text AS relation "
        "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE a.usename = $1 AND l.granted",
        reader.name,
    )
    assert sum(r["locktype"] == "advisory" for r in granted) == len(OLD_ADVISORY_IDS)
    shared = {r["relation"] for r in granted if r["mode"] == "AccessShareLock"}
    assert set(documented) <= shared, shared
    try:
        locked, stored = await _timed_run(feed_server, "b", env, database_url)
        # The locks were held for the whole run.
        assert not holder.is_closed() and holder.is_in_transaction()
    finally:
        await transaction.rollback()
        await holder.close()
        await session.close()
    print(f"\nrun --once: {baseline:.1f}s alone, {locked:.1f}s with a reader holding every lock")
    assert stored == FEEDS * ITEMS
    # Before migration 009 such a reader stalled a run from 1.5 s to 19 s, and for as long
    # as it held the locks: here it held them throughout and the run still finished.
    assert locked < max(2 * baseline, baseline + 5), (baseline, locked)


async def _attempt(conn: asyncpg.Connection, sql: str) -> str:
    try:
        async with conn.transaction():  # a savepoint: the long transaction goes on
            await conn.execute(sql)
    except asyncpg.InsufficientPrivilegeError:
        return "denied"
    return "ok"


async def test_a_migration_does_not_queue_ingestion_behind_a_reader(
    database_url: str, reader: Login
) -> None:
    """A reader's open transaction holds ACCESS SHARE on a table a migration alters. The
    migration waits LOCK_TIMEOUT at a time, not forever, so inserts queued behind its
    ACCESS EXCLUSIVE request wait at most that long; it applies once the reader is done."""
    owner = await asyncpg.connect(database_url)
    writer = await asyncpg.connect(database_url)
    holder = await asyncpg.connect(reader.url)
    probe = migrations.Migration(
        990_000 + os.getpid() % 1000, "probe", "ALTER TABLE reader_probe ADD COLUMN late int"
    )
    await owner.execute("CREATE TABLE reader_probe (x int)")
    try:
        await owner.execute("GRANT SELECT ON reader_probe TO aggregator_reader")
        transaction = holder.transaction()
        await transaction.start()
        await holder.fetch("SELECT x FROM reader_probe")  # ACCESS SHARE until it ends

        waits: list[float] = []
        stop = asyncio.Event()

        async def ingest() -> None:
            while not stop.is_set():
                started = time.monotonic()
                await writer.execute("INSERT INTO reader_probe VALUES (1)")
                waits.append(time.monotonic() - started)
                await asyncio.sleep(0.02)

        inserting = asyncio.create_task(ingest())
        with pytest.raises(errors.MigrationLockError, match="probe"):
            await migrations.apply(owner, probe, lock_timeout=0.3, patience=3)
        assert len(waits) > 20 and max(waits) < 1.5, max(waits)

        await transaction.rollback()
        assert await migrations.apply(owner, probe, lock_timeout=0.3, patience=10)
        stop.set()
        await inserting
        assert "late" in {
            r["attname"]
            for r in await owner.fetch(
                "SELECT attname FROM pg_attribute WHERE attrelid = 'reader_probe'::regclass"
            )
        }
    finally:
        await holder.close()
        await writer.close()
        await owner.execute("DROP TABLE IF EXISTS reader_probe")
        await owner.execute("DELETE FROM schema_migrations WHERE version = $1", probe.version)
        await owner.close()


# --- connection failures name the service, where it is and what happened -----------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_connection_failures_are_one_distinct_line(
    reader: Login, settings: Settings, database_url: str
) -> None:
    env = processes.service_env(settings)
    port = _free_port()
    no_db = urlsplit(database_url)._replace(path="/no_such_db_here").geturl()
    cases = {
        f"postgresql://postgres@127.0.0.1:{port}/news": (
            f"error: cannot reach PostgreSQL at 127.0.0.1:{port}/news: connection refused"
        ),
        as_login(database_url, "nobody_" + secrets.token_hex(4), "x"): (
            f"error: PostgreSQL at {where(database_url)} refused the login: role"
        ),
        no_db: f"error: PostgreSQL at {where(no_db)} has no such database: ",
    }
    for url, message in cases.items():
        result = await processes.run_cli(["stories"], env | {"AGGREGATOR_DATABASE_URL": url})
        assert result.returncode == 1
        assert result.stderr.startswith(message) and result.stderr.count("\n") == 1, result.stderr


async def test_redis_failures_are_named(settings: Settings, clean_services: None) -> None:
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        pytest.skip("redis-server is not installed")
    port = _free_port()
    options = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    server = subprocess.Popen(
        [redis_server, "--port", str(port), *options, "--requirepass", "right-password"],
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            if services.listening("127.0.0.1", port):
                break
            await asyncio.sleep(0.05)
        env = processes.service_env(settings)
        cases = {
            f"redis://:wrong-password@127.0.0.1:{port}/0": (
                f"error: Redis at 127.0.0.1:{port}/0 refused the login: "
            ),
            f"redis://127.0.0.1:{_free_port()}/0": "error: cannot reach Redis at 127.0.0.1:",
        }
        for url, message in cases.items():
            result = await processes.run_cli(
                ["subscribers", "list"], env | {"AGGREGATOR_REDIS_URL": url}
            )
            # arq logs its own retries first (as JSON: not a terminal); the error is last.
            assert result.returncode == 1
            assert result.stderr.splitlines()[-1].startswith(message), result.stderr
            assert "wrong-password" not in result.stderr
    finally:
        server.terminate()
        server.wait(10)


async def test_a_silent_server_is_a_timeout() -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    url = f"postgresql://postgres@127.0.0.1:{silent.getsockname()[1]}/news"
    try:
        with pytest.raises(TimeoutError) as caught:
            await asyncpg.connect(url, timeout=0.5)
    finally:
        silent.close()
    message = str(service_error("PostgreSQL", url, caught.value))
    assert message.startswith("cannot reach PostgreSQL at 127.0.0.1:") and "timed out" in message


def test_messages_are_distinct() -> None:
    """Permission denied is never "cannot reach"."""
    url = "postgresql://analyst:secret@db.example:5432/news"
    denied = asyncpg.InsufficientPrivilegeError("permission denied for schema public")
    assert str(service_error("PostgreSQL", url, denied)) == (
        "permission denied by PostgreSQL at db.example:5432/news to role analyst: "
        "permission denied for schema public"
    )
    login = asyncpg.InvalidPasswordError('password authentication failed for user "analyst"')
    assert str(service_error("PostgreSQL", url, login)).startswith(
        "PostgreSQL at db.example:5432/news refused the login: password authentication failed"
    )
    assert "secret" not in str(service_error("PostgreSQL", url, denied))
