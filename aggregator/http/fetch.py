"""Fetch: one HTTP GET of a feed, conditional, bounded and address-checked.

The address policy is enforced on the socket actually connected to (aiohttp's
``socket_factory`` sees every resolved address, redirects included), so a
host name that resolves to a private address is refused however it was
reached: there is no earlier lookup for DNS rebinding to fool. The body is
streamed and counted after decompression (aiohttp inflates in bounded steps),
so a gzip bomb stops at the cap. Connect, silence between bytes and the whole
fetch are each time-bounded, so a server that trickles bytes is cut off by the
total. Only http and https, redirects included.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver

from aggregator.errors import (
    BlockedAddressError,
    BodyTooLargeError,
    FetchError,
    FetchTimeoutError,
    HTTPStatusError,
    InvalidFeedURLError,
    TooManyRedirectsError,
)
from aggregator.polling import seconds_until
from aggregator.settings import Settings
from aggregator.storage.feeds import check_url

ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, application/rdf+xml;q=0.9, "
    "application/xml;q=0.9, text/xml;q=0.9, application/json;q=0.8, */*;q=0.5"
)
_BLOCKED_MESSAGE = "refused: not a public address"
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # a NAT64 gateway would reach the IPv4 inside


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


AddressPolicy = Callable[[str], bool]


def is_public_address(address: str) -> bool:
    """True for globally routable unicast addresses only.

    Loopback, private, link-local (169.254.0.0/16, the cloud metadata service),
    shared, multicast, reserved, unspecified (0.0.0.0, ::) and documentation
    ranges are not; an IPv6 address wrapping an IPv4 one (IPv4-mapped, 6to4,
    Teredo, NAT64) is judged by the IPv4 address inside it too."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None and not is_public_address(str(embedded)):
            return False
    return ip.is_global and not ip.is_multicast


def guarded_socket_factory(allowed: AddressPolicy) -> Callable[[Any], socket.socket]:
    """An aiohttp socket factory that refuses peers ``allowed`` rejects, before connecting."""

    def guarded_socket(addr_info: Any) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        if family in (socket.AF_INET, socket.AF_INET6) and not allowed(sockaddr[0]):
            raise AddressBlocked(errno.EACCES, f"{_BLOCKED_MESSAGE} ({sockaddr[0]})")
        return socket.socket(family=family, type=type_, proto=proto)

    return guarded_socket


def _fetchable(url: str) -> None:
    """``check_url`` for a URL met while polling (a stored feed, a link, a page's
    advertised feed): a refused one is that fetch's failure, recorded like any other."""
    try:
        check_url(url)
    except InvalidFeedURLError as exc:
        raise FetchError(str(exc), kind="invalid_url") from None


class Fetcher:
    """One aiohttp session shared by every fetch of a worker process.

    ``resolver`` and ``allow_address`` are seams for tests, not settings: a
    resolver that maps test host names to chosen addresses, and the address
    policy to use instead of the one ``allow_private_networks`` selects."""

    def __init__(
        self,
        settings: Settings,
        *,
        resolver: AbstractResolver | None = None,
        allow_address: AddressPolicy | None = None,
    ) -> None:
        self._settings = settings
        self._resolver = resolver
        if allow_address is None and not settings.allow_private_networks:
            allow_address = is_public_address
        self._allow_address = allow_address
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Fetcher:
        settings = self._settings
        connector = aiohttp.TCPConnector(
            limit=settings.poll_concurrency * 2,
            ttl_dns_cache=60,
            resolver=self._resolver,
            socket_factory=(
                guarded_socket_factory(self._allow_address) if self._allow_address else None
            ),
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(
                total=settings.fetch_timeout,
                connect=settings.connect_timeout,
                sock_connect=settings.connect_timeout,
                sock_read=settings.read_timeout,
            ),
            headers={"User-Agent": settings.http_user_agent, "Accept": ACCEPT},
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
        _fetchable(url)
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
            raise TooManyRedirectsError(
                f"more than {self._settings.max_redirects} redirects"
            ) from exc
        except aiohttp.NonHttpUrlRedirectClientError as exc:
            raise FetchError(
                f"redirected to a non-http(s) URL: {str(exc)[:200]}", kind="invalid_url"
            ) from exc
        except aiohttp.ClientConnectorDNSError as exc:
            raise FetchError(f"DNS lookup failed for {exc.host}", kind="dns") from exc
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, AddressBlocked) or _BLOCKED_MESSAGE in str(exc.os_error):
                raise BlockedAddressError(
                    f"{exc.host} resolves to a non-public address; "
                    "set AGGREGATOR_ALLOW_PRIVATE_NETWORKS=true to allow it"
                ) from exc
            raise FetchError(
                f"cannot connect to {exc.host}: {exc.os_error.strerror or exc.os_error}",
                kind="connection",
            ) from exc
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise FetchTimeoutError(f"timed out ({_which_timeout(exc)})") from exc
        except aiohttp.InvalidURL as exc:
            raise FetchError(f"invalid URL: {exc}", kind="invalid_url") from exc
        except (aiohttp.ClientError, UnicodeError, ValueError) as exc:
            raise FetchError(f"{type(exc).__name__}: {exc}", kind="network") from exc

    async def _read_capped(self, response: aiohttp.ClientResponse) -> bytes:
        cap = self._settings.max_body_bytes
        declared = response.content_length  # of the encoded body: never more than decoded
        if declared is not None and declared > cap:
            raise BodyTooLargeError(f"body larger than {cap} bytes ({declared} declared)")
        chunks: list[bytes] = []
        size = 0
        # Decoded bytes: aiohttp inflates gzip/deflate/br in bounded steps as we read.
        async for chunk in response.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > cap:
                raise BodyTooLargeError(f"body larger than {cap} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    @staticmethod
    def _result(response: aiohttp.ClientResponse, body: bytes | None) -> FetchResult:
        permanent = bool(response.history) and all(r.status in (301, 308) for r in response.history)
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

    async def post_form(self, url: str, data: dict[str, str]) -> tuple[int, str]:
        """POST a form (WebSub hub requests): same address policy and limits, no redirects.
        Returns the status and the start of the answer."""
        assert self._session is not None, "use Fetcher as an async context manager"
        _fetchable(url)
        try:
            async with self._session.post(url, data=data, allow_redirects=False) as response:
                body = await self._read_capped(response)
                return response.status, body[:300].decode("utf-8", "replace")
        except FetchError:
            raise
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, AddressBlocked):
                raise BlockedAddressError(f"{exc.host} resolves to a non-public address") from exc
            raise FetchError(f"cannot connect to {exc.host}", kind="connection") from exc
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise FetchError(f"{type(exc).__name__}: {exc}", kind="network") from exc


def _which_timeout(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return "connecting"
    if isinstance(exc, aiohttp.SocketTimeoutError):
        return "no data received for too long"
    return "the whole fetch took too long"


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    seconds = seconds_until(value, datetime.now(UTC))
    return None if seconds is None else max(0.0, seconds)


__all__ = [
    "AddressPolicy",
    "FetchResult",
    "Fetcher",
    "check_url",
    "guarded_socket_factory",
    "is_public_address",
    "retry_after_seconds",
]
