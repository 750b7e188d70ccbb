"""Which service failed, where it is, and what happened.

Every failure talking to PostgreSQL or Redis reaches a user as one line that names
the service and its address (never a password) and tells apart what they can act
on: refused connection, unknown host, timeout, a login refused, no such database,
permission denied. ``SERVICE_ERRORS`` are the failures a daemon waits out.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import parse_qs, urlsplit

import asyncpg
import redis.exceptions

from aggregator.errors import (
    AggregatorError,
    ServiceError,
    ServiceRefusedError,
    ServiceUnavailableError,
)

__all__ = ["SERVICE_ERRORS", "naming", "service_error", "where"]

# Postgres or Redis unreachable or restarting: wait it out and retry, never exit.
SERVICE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # ConnectionError, TimeoutError
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    # A connection lost inside a WATCH pipeline (arq's enqueue) surfaces as a WatchError.
    redis.exceptions.WatchError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.AdminShutdownError,
    # A connection the outage broke mid-operation, found out when the pool resets it:
    # "cannot switch to state 15; another operation (2) is in progress".
    asyncpg.InternalClientError,
)


@contextmanager
def naming(service: str, url: str | None) -> Iterator[None]:
    """A failure talking to ``service`` becomes one line that names it, where it is (never
    its password) and what happened: "cannot reach PostgreSQL at 127.0.0.1:5432/news:
    connection refused", "permission denied by PostgreSQL at ...". Only that service's
    own errors are caught, so nested blocks (PostgreSQL, then Redis) name the right one."""
    caught = _POSTGRES_ERRORS if service == "PostgreSQL" else _REDIS_ERRORS
    try:
        yield
    except AggregatorError:
        raise  # already says what happened (an inner block named its service)
    except caught as exc:
        raise service_error(service, url, exc) from exc


_POSTGRES_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)
_REDIS_ERRORS = (OSError, redis.exceptions.RedisError)


def service_error(service: str, url: str | None, exc: BaseException) -> ServiceError:
    """The one-line error for ``exc``, raised talking to ``service`` at ``url``."""
    at = f"{service} at {where(url)}" if url else service
    detail = " ".join((str(exc) or type(exc).__name__).split())
    if isinstance(exc, asyncpg.InsufficientPrivilegeError | redis.exceptions.NoPermissionError):
        user = urlsplit(url).username if url else None
        return ServiceRefusedError(
            f"permission denied by {at}" + (f" to role {user}" if user else "") + f": {detail}"
        )
    if isinstance(
        exc,
        asyncpg.InvalidAuthorizationSpecificationError  # bad password, unknown role, pg_hba
        | redis.exceptions.AuthenticationError
        | redis.exceptions.AuthenticationWrongNumberOfArgsError,
    ):
        return ServiceRefusedError(f"{at} refused the login: {detail}")
    if isinstance(exc, asyncpg.InvalidCatalogNameError) or (
        isinstance(exc, redis.exceptions.ResponseError) and "DB index" in detail
    ):
        return ServiceRefusedError(f"{at} has no such database: {detail}")
    if isinstance(exc, TimeoutError | redis.exceptions.TimeoutError):
        return ServiceUnavailableError(f"cannot reach {at}: no answer (timed out)")
    if _refused(exc):
        return ServiceUnavailableError(f"cannot reach {at}: connection refused (is it running?)")
    if isinstance(exc, socket.gaierror) or isinstance(exc.__cause__, socket.gaierror):
        return ServiceUnavailableError(f"cannot reach {at}: unknown host ({detail})")
    if isinstance(exc, SERVICE_ERRORS):
        return ServiceUnavailableError(f"cannot reach {at}: {detail}")
    if isinstance(exc, asyncpg.TooManyConnectionsError):
        return ServiceUnavailableError(f"{at} has no free connection: {detail}")
    return ServiceError(f"{at} failed: {type(exc).__name__}: {detail}")


def _refused(exc: BaseException) -> bool:
    """Connection refused, however wrapped (asyncio joins one error per address tried)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError) or getattr(seen, "errno", None) in (
            errno.ECONNREFUSED,
        ):
            return True
        text = str(seen)
        if "Connection refused" in text or f"[Errno {errno.ECONNREFUSED}]" in text:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def where(url: str) -> str:
    """A service URL as a log line may show it: host, port and path, no credentials."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    if host:
        return host + parts.path
    sockets = ",".join(parse_qs(parts.query).get("host") or [])
    return f"{sockets} ({parts.path.lstrip('/')})" if sockets else parts.path  # a unix socket
