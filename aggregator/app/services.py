"""Services: where Postgres and Redis are for this command.

With ``AGGREGATOR_DATABASE_URL`` and ``AGGREGATOR_REDIS_URL`` set, those
servers are used as they are. Whatever is unset comes from the embedded
servers under ``AGGREGATOR_DATA_DIR`` (see ``aggregator.app.embedded``), started
for the command and stopped when the last command using them ends: only the
one that is unset (a real PostgreSQL and an embedded Redis is a fine pair).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from aggregator.app.embedded import EmbeddedServices
from aggregator.settings import Settings


@dataclass(frozen=True)
class ServiceURLs:
    database_url: str
    redis_url: str
    embedded: EmbeddedServices | None = None


@asynccontextmanager
async def services(
    settings: Settings, *, data_dir: Path | None = None, redis: bool = True
) -> AsyncIterator[ServiceURLs]:
    """``redis=False``: the command needs only Postgres, so a set database URL is enough
    (a read-only login usually has nothing else) and no embedded server starts."""
    if settings.database_url and (settings.redis_url or not redis):
        yield ServiceURLs(settings.database_url, settings.redis_url or "")
        return
    embedded = EmbeddedServices(
        data_dir or settings.data_dir,
        postgres=not settings.database_url,
        redis=not settings.redis_url,
    )
    await asyncio.to_thread(embedded.start)
    try:
        yield ServiceURLs(
            settings.database_url or embedded.database_url,
            settings.redis_url or embedded.redis_url,
            embedded,
        )
    finally:
        await asyncio.to_thread(embedded.stop)
