"""Ingest locks: the few steps of ingestion that must not interleave, serialized.

Each lock is one row of ``ingest_locks``, taken with ``SELECT ... FOR UPDATE`` and
held until the transaction ends. They used to be advisory locks, but Postgres lets
any role take any advisory lock, so a read-only login holding one stalled ingestion.
A row lock needs UPDATE privilege on its table, which the read-only role
``aggregator_reader`` has on no table, and it cannot even read this one: nothing it
does can hold these locks.

The table belongs to the migration runner, like ``schema_migrations``: the runner
locks its own row before the first migration exists, so it creates the table and
its rows (``ensure``) before anything else.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from aggregator.errors import LockMissingError

if TYPE_CHECKING:
    # Imported where asyncpg is not needed at run time (11 MB a process); only
    # ``ensure`` needs it.
    import asyncpg

MIGRATIONS = "migrations"  # one migration applied at a time (aggregator.storage.migrations)
ARRIVALS = "arrivals"  # outbox insert to commit: outbox ids commit in id order
RELAY = "relay"  # one outbox relay pass at a time
NAMES = (MIGRATIONS, ARRIVALS, RELAY)
# (Story assignment took a row "stories" here, from the candidate lookup to commit: one
# lock for every store worker. It now claims its articles' keys instead, see
# aggregator.storage.stories; a database migrated earlier keeps the unused row.)

_CREATE = "CREATE TABLE IF NOT EXISTS ingest_locks (name text PRIMARY KEY)"
_SEED = "INSERT INTO ingest_locks (name) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING"
_HOLD = "SELECT name FROM ingest_locks WHERE name = $1 FOR UPDATE"
_TRY_HOLD = "SELECT name FROM ingest_locks WHERE name = $1 FOR UPDATE SKIP LOCKED"


async def ensure(conn: asyncpg.Connection) -> None:
    """Create the table and the rows of every lock this version takes, if missing.

    Two processes starting at once may both create the table: the loser's CREATE
    fails on the catalog's unique index once the winner commits, and the table is
    there all the same. Nothing is written when everything exists, so a role that
    may not create tables runs this too."""
    import asyncpg

    if await conn.fetchval("SELECT to_regclass('ingest_locks') IS NULL"):
        # The loser of a race with another process's CREATE finds the table made.
        with contextlib.suppress(asyncpg.UniqueViolationError, asyncpg.DuplicateTableError):
            await conn.execute(_CREATE)
    present = await conn.fetchval(
        "SELECT count(*) FROM ingest_locks WHERE name = ANY ($1::text[])", NAMES
    )
    if present < len(NAMES):
        await conn.execute(_SEED, NAMES)


async def hold(conn: asyncpg.Connection, name: str) -> None:
    """Wait for the lock ``name`` and hold it until the current transaction ends."""
    if await conn.fetchval(_HOLD, name) is None:
        raise _missing(name)


async def try_hold(conn: asyncpg.Connection, name: str) -> bool:
    """Take the lock ``name`` until the transaction ends if no one holds it; else False."""
    if await conn.fetchval(_TRY_HOLD, name) is not None:
        return True
    if not await conn.fetchval("SELECT EXISTS (SELECT FROM ingest_locks WHERE name = $1)", name):
        raise _missing(name)
    return False


def _missing(name: str) -> LockMissingError:
    return LockMissingError(f"no row {name!r} in ingest_locks: run `aggregator migrate`")
