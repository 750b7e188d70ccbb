"""Services: where Postgres and Redis are for this command.

With ``AGGREGATOR_DATABASE_URL`` and ``AGGREGATOR_REDIS_URL`` set, those
servers are used as they are.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aggregator.errors import ConfigError
from aggregator.settings import Settings


@dataclass(frozen=True)
class ServiceURLs:
    database_url: str
    redis_url: str


@asynccontextmanager
async def services(settings: Settings) -> AsyncIterator[ServiceURLs]:
    if not settings.database_url or not settings.redis_url:
        raise ConfigError("AGGREGATOR_DATABASE_URL and AGGREGATOR_REDIS_URL must be set")
    yield ServiceURLs(settings.database_url, settings.redis_url)
