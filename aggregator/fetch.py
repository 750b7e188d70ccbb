"""Fetch: one HTTP GET of a feed, conditional, bounded and address-checked.

The address policy is enforced on the socket actually connected to (aiohttp's
``socket_factory`` sees every resolved address, redirects included), so a
host name that resolves to a private address is refused however it was
reached. The body is streamed and counted after decompression, so a gzip
bomb stops at the cap.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any

import aiohttp
import yarl

from aggregator.errors import (
    BlockedAddressError,
    FetchError,
    HTTPStatusError,
    InvalidFeedURLError,
)
from aggregator.settings import Settings

ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, application/rdf+xml;q=0.9, "
    "application/xml;q=0.9, text/xml;q=0.9, application/json;q=0.8, */*;q=0.5"
)
_BLOCKED_MESSAGE = "refused: not a public address"


@dataclass(frozen=True, slots=True)
class FetchResult:
    """What the server answered. ``body`` is None on 304 Not Modified."""

    url: str
    status: int
    body: bytes | None
    content_type: str | None
    etag: str | None
    last_modified: str | None
    # The final URL when every redirect on the way was permanent (301/308), else None.
    moved_to: str | None = None
    cache_control: str | None = None
    expires: str | None = None

    @property
    def not_modified(self) -> bool:
        return self.status == 304


class AddressBlocked(OSError):
    """Raised inside the socket factory; surfaces as ``BlockedAddressError``."""


def is_public_address(address: str) -> bool:
    """True for globally routable unicast addresses only."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def guarded_socket(addr_info: Any) -> socket.socket:
    """aiohttp socket factory: refuse loopback, private, link-local and reserved peers."""
    family, type_, proto, _, sockaddr = addr_info
    if family in (socket.AF_INET, socket.AF_INET6) and not is_public_address(sockaddr[0]):
        raise AddressBlocked(errno.EACCES, f"{_BLOCKED_MESSAGE} ({sockaddr[0]})")
    return socket.socket(family=family, type=type_, proto=proto)


def check_url(url: str) -> str:
    """Raise ``InvalidFeedURLError`` unless ``url`` is an absolute http(s) URL."""
    try:
        parsed = yarl.URL(url)
    except (ValueError, TypeError) as exc:
        raise InvalidFeedURLError(f"invalid feed URL {url!r}: {exc}") from None
    if parsed.scheme not in ("http", "https"):
        raise InvalidFeedURLError(f"invalid feed URL {url!r}: only http and https are allowed")
    if not parsed.host:
        raise InvalidFeedURLError(f"invalid feed URL {url!r}: no host")
    return url


class Fetcher:
    """One aiohttp session shared by every fetch of a worker process."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Fetcher:
        settings = self._settings
        connector = aiohttp.TCPConnector(
            limit=settings.poll_concurrency * 2,
            ttl_dns_cache=60,
            socket_factory=None if settings.allow_private_networks else guarded_socket,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(
                total=settings.fetch_timeout,
                connect=settings.connect_timeout,
                sock_read=settings.read_timeout,
            ),
            headers={"User-Agent": settings.user_agent, "Accept": ACCEPT},
            max_line_size=16 * 1024,
            max_field_size=16 * 1024,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def fetch(
        self, url: str, *, etag: str | None = None, last_modified: str | None = None
    ) -> FetchResult:
        """GET ``url``; raise a ``FetchError`` subclass on anything but 2xx or 304."""
        assert self._session is not None, "use Fetcher as an async context manager"
        check_url(url)
        headers = {}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        try:
            async with self._session.get(
                url, headers=headers, max_redirects=self._settings.max_redirects
            ) as response:
                if response.status == 304:
                    return self._result(response, None)
                if response.status >= 300:
                    raise HTTPStatusError(
                        f"HTTP {response.status} {response.reason or ''}".strip(),
                        status=response.status,
                        retry_after=retry_after_seconds(response.headers.get("Retry-After")),
                    )
                body = await self._read_capped(response)
                return self._result(response, body)
        except FetchError:
            raise
        except aiohttp.TooManyRedirects as exc:
            raise FetchError(
                f"more than {self._settings.max_redirects} redirects", kind="redirects"
            ) from exc
        except aiohttp.ClientConnectorDNSError as exc:
            raise FetchError(f"DNS lookup failed for {exc.host}", kind="dns") from exc
        except aiohttp.ClientConnectorError as exc:
            if _BLOCKED_MESSAGE in str(exc.os_error):
                raise BlockedAddressError(
                    f"{exc.host} resolves to a non-public address; "
                    "set AGGREGATOR_ALLOW_PRIVATE_NETWORKS=true to allow it"
                ) from exc
            raise FetchError(
                f"cannot connect to {exc.host}: {exc.os_error.strerror or exc.os_error}",
                kind="connection",
            ) from exc
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise FetchError("timed out", kind="timeout") from exc
        except aiohttp.InvalidURL as exc:
            raise FetchError(f"invalid URL: {exc}", kind="invalid_url") from exc
        except (aiohttp.ClientError, UnicodeError, ValueError) as exc:
            raise FetchError(f"{type(exc).__name__}: {exc}", kind="network") from exc

    async def _read_capped(self, response: aiohttp.ClientResponse) -> bytes:
        cap = self._settings.max_body_bytes
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > cap:
                raise FetchError(f"body larger than {cap} bytes", kind="too_large")
            chunks.append(chunk)
        return b"".join(chunks)

    @staticmethod
    def _result(response: aiohttp.ClientResponse, body: bytes | None) -> FetchResult:
        permanent = bool(response.history) and all(
            r.status in (301, 308) for r in response.history
        )
        return FetchResult(
            url=str(response.url),
            status=response.status,
            body=body,
            content_type=response.headers.get("Content-Type"),
            etag=response.headers.get("ETag"),
            last_modified=response.headers.get("Last-Modified"),
            moved_to=str(response.url) if permanent else None,
            cache_control=response.headers.get("Cache-Control"),
            expires=response.headers.get("Expires"),
        )


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


__all__ = ["FetchResult", "Fetcher", "check_url", "is_public_address", "retry_after_seconds"]
