"""Schema migrations: numbered plain ``.sql`` files applied in order.

Each file runs in its own transaction and is recorded in ``schema_migrations``.
That transaction first takes the ``migrations`` row lock (aggregator.storage.locks) and
checks the file is still pending, so two daemons starting at once apply each file
once, in order. Applying twice is a no-op.

A migration's DDL waits at most ``LOCK_TIMEOUT`` for its table locks, then rolls
back and tries again later: an ALTER TABLE queued behind a reader's long SELECT
would otherwise hold up every insert into that table until the SELECT ends.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

from aggregator.errors import MigrationLockError, SchemaBehindError
from aggregator.storage import locks

log = logging.getLogger("aggregator.migrations")

_FILE_NAME = re.compile(r"^(\d{3,})_([a-z0-9_]+)\.sql$")

# How long one attempt's statements may wait for a lock (while one waits, the queries
# queued behind it wait too), and how long to keep trying before giving up.
LOCK_TIMEOUT = 0.5
PATIENCE = 600.0
_RETRY_MAX_DELAY = 8.0

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer     PRIMARY KEY,
    name        text        NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def label(self) -> str:
        return f"{self.version:03d}_{self.name}"


def available() -> list[Migration]:
    """The migrations shipped with this version, in order."""
    found = []
    for entry in resources.files("aggregator.sql").iterdir():
        match = _FILE_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"two migrations share a number: {versions}")
    return found


async def applied_versions(conn: asyncpg.Connection) -> set[int]:
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return set()
    rows = await conn.fetch("SELECT version FROM schema_migrations")
    return {r["version"] for r in rows}


async def pending(conn: asyncpg.Connection) -> list[Migration]:
    done = await applied_versions(conn)
    return [m for m in available() if m.version not in done]


async def require_current(conn: asyncpg.Connection) -> None:
    """Raise ``SchemaBehindError`` unless every migration this version ships is applied.

    For commands that only read: they never migrate (the read-only role may not)."""
    waiting = await pending(conn)
    if waiting:
        done = await applied_versions(conn)
        raise SchemaBehindError(
            f"the database schema is at version {max(done, default=0):03d}, this aggregator "
            f"needs {available()[-1].version:03d} ({', '.join(m.label for m in waiting)} not "
            "applied): run `aggregator migrate` as the role that owns the schema"
        )


async def migrate(
    conn: asyncpg.Connection, *, lock_timeout: float = LOCK_TIMEOUT, patience: float = PATIENCE
) -> list[Migration]:
    """Apply every pending migration; return the ones applied now (not by another process)."""
    await locks.ensure(conn)
    if await conn.fetchval("SELECT to_regclass('schema_migrations') IS NULL"):
        async with conn.transaction():
            await locks.hold(conn, locks.MIGRATIONS)
            await conn.execute(_CREATE_TABLE)
    applied = []
    for migration in await pending(conn):
        if await apply(conn, migration, lock_timeout=lock_timeout, patience=patience):
            applied.append(migration)
    return applied


async def apply(
    conn: asyncpg.Connection,
    migration: Migration,
    *,
    lock_timeout: float = LOCK_TIMEOUT,
    patience: float = PATIENCE,
) -> bool:
    """Apply one migration unless another process has; False if it had."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    delay = lock_timeout
    while True:
        try:
            async with conn.transaction():
                await locks.hold(conn, locks.MIGRATIONS)
                if await conn.fetchval(_APPLIED, migration.version):
                    return False
                await conn.execute(
                    "SELECT set_config('lock_timeout', $1, true)", f"{lock_timeout * 1000:.0f}ms"
                )
                await conn.execute(migration.sql)
                await conn.execute(_RECORD, migration.version, migration.name)
            return True
        except asyncpg.LockNotAvailableError:
            if loop.time() + delay > deadline:
                raise MigrationLockError(
                    f"migration {migration.label} could not lock the tables it changes for "
                    f"{patience:.0f}s: other sessions held them (see pg_locks); try again"
                ) from None
            if delay == lock_timeout:  # once: the retries follow
                log.warning(
                    "migration %s waits for tables other sessions are using; retrying",
                    migration.label,
                )
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # jitter
            delay = min(delay * 2, _RETRY_MAX_DELAY)


_APPLIED = "SELECT EXISTS (SELECT FROM schema_migrations WHERE version = $1)"
_RECORD = "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)"
