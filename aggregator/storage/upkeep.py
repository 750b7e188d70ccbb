"""Upkeep the daemon does itself instead of leaving it to autovacuum.

``story_key_claims`` only ever holds dead rows: every store transaction inserts its
new articles' story keys there and deletes them before it commits (see
``aggregator.storage.stories``), about 33 rows an article. Autovacuum clears them at
most once a minute per database, and not at all where it is switched off: over a
soak's first pass of 150,000 articles on such a server the table and its index grew
to 300 MB, 2 kB an article, for a table that is empty at rest. So the daemon vacuums
it whenever enough dead rows have piled up, and it stays a few megabytes however
many articles are stored. Where autovacuum got there first there is nothing to do;
where another process vacuums it at that moment, this pass skips it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg

from aggregator.reach import SERVICE_ERRORS

log = logging.getLogger(__name__)

# Checked this often; at the farm's cold-ingest rate (500 articles/s) about 250,000
# claims die between two checks: 20 MB of table and index, reused after each vacuum.
INTERVAL = 15.0
# Vacuumed past this many dead rows (about 3,000 articles' claims, 6 MB).
DEAD_ROWS = 100_000

_DEAD_ROWS = """
SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = 'story_key_claims'::regclass
"""


async def vacuum_claims(pool: asyncpg.Pool, *, dead_rows: int | None = None) -> bool:
    """Vacuum the key claims if more than ``dead_rows`` (:data:`DEAD_ROWS`) are dead, as
    the statistics say; whether it did."""
    async with pool.acquire() as conn:
        dead = await conn.fetchval(_DEAD_ROWS)
        if dead is None or dead <= (DEAD_ROWS if dead_rows is None else dead_rows):
            return False
        # Not in a transaction (VACUUM cannot be); SKIP_LOCKED: another vacuum of it,
        # autovacuum's or another daemon's, is as good as ours.
        await conn.execute("VACUUM (SKIP_LOCKED) story_key_claims")
        log.debug("vacuumed the story key claims (%d dead rows)", dead)
        return True


async def run_forever(pool: asyncpg.Pool, stop: asyncio.Event) -> None:
    """:func:`vacuum_claims` every :data:`INTERVAL` seconds until ``stop``."""
    failing = False
    while not stop.is_set():
        try:
            await vacuum_claims(pool)
            failing = False
        except (*SERVICE_ERRORS, asyncpg.PostgresError) as exc:
            if not failing:  # once per outage: the scheduler reports Postgres itself
                log.warning("vacuuming the story key claims failed (%s); trying again", exc)
            failing = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), INTERVAL)
