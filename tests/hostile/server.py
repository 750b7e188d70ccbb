"""Local servers that misbehave on purpose, a sentinel that must never be reached, and a
resolver that maps test host names to chosen addresses (no DNS query ever leaves).

The hostile server listens on 127.0.0.2: the tests' address policy treats that
one address as "the public internet", so everything else on loopback stays as
forbidden as it is by default. The sentinel listens on 127.0.0.1 and [::1] and
counts TCP connections, not just requests: refusing a private address means
never connecting to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

PUBLIC_STAND_IN = "127.0.0.2"
_MIB = 1024 * 1024


@dataclass(frozen=True)
class Places:
    """Where the servers listen; answer templates use these names (``{hostile}/x``)."""

    hostile: str
    hostile_port: int
    sentinel4: str
    sentinel4_port: int
    sentinel6: str
    sentinel6_port: int

    def fill(self, template: str) -> str:
        return template.format(**self.__dict__)


# --- how the hostile server answers -----------------------------------------------------------

BodySource = bytes | Callable[[Places], bytes]


@dataclass(frozen=True)
class Body:
    """A plain answer. ``content_encoding`` compresses the body on the way out."""

    body: BodySource
    content_type: str = "application/rss+xml"
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    content_encoding: str | None = None


@dataclass(frozen=True)
class Redirect:
    to: str  # a Places template
    status: int = 302


@dataclass(frozen=True)
class Chain:
    """``hops`` redirects (to the same path, ?hop=n), then ``then``."""

    hops: int
    then: Body


@dataclass(frozen=True)
class Trickle:
    """Headers at once, then one byte every ``every`` seconds, for ever."""

    every: float = 0.5


@dataclass(frozen=True)
class Stall:
    """Say nothing (``before_headers``), or send headers and a few bytes, then nothing."""

    before_headers: bool = False


@dataclass(frozen=True)
class Endless:
    """Stream bytes without end; optionally declare a (huge) Content-Length first."""

    declared_length: int | None = None


@dataclass(frozen=True)
class Bomb:
    """A small compressed body that inflates to ``decoded_bytes`` of zeros."""

    encoding: str  # "gzip" or "deflate"
    decoded_bytes: int


Answer = Body | Redirect | Chain | Trickle | Stall | Endless | Bomb


@functools.cache
def bomb_bytes(encoding: str, decoded_bytes: int) -> bytes:
    """Zeros compressed at level 9: about 1/1000 of their size."""
    wbits = 31 if encoding == "gzip" else 15
    compressor = zlib.compressobj(9, zlib.DEFLATED, wbits)
    block = bytes(_MIB)
    parts = [compressor.compress(block) for _ in range(decoded_bytes // _MIB)]
    return b"".join([*parts, compressor.flush()])


def compress(body: bytes, encoding: str) -> bytes:
    wbits = 31 if encoding == "gzip" else 15
    compressor = zlib.compressobj(6, zlib.DEFLATED, wbits)
    return compressor.compress(body) + compressor.flush()


class HostileServer:
    """Plays an ``Answer`` per path and logs every path asked for."""

    def __init__(self) -> None:
        self.routes: dict[str, Answer] = {}
        self.requests: list[str] = []
        self.places: Places | None = None
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    def paths_requested(self, path: str) -> int:
        return sum(1 for p in self.requests if p == path)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        # Short shutdown: stalled handlers are woken by _closing anyway.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, PUBLIC_STAND_IN, 0).start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self.requests.append(path)
        answer = self.routes.get(path.lstrip("/"))
        if answer is None:
            return web.Response(status=404, text="no such case")
        return await self._answer(request, answer)

    async def _answer(self, request: web.Request, answer: Answer) -> web.StreamResponse:
        assert self.places is not None
        match answer:
            case Body():
                return self._body(answer)
            case Redirect(to=to, status=status):
                return web.Response(status=status, headers={"Location": self.places.fill(to)})
            case Chain(hops=hops, then=then):
                hop = int(request.query.get("hop", "0"))
                if hop < hops:
                    location = f"{request.path}?hop={hop + 1}"
                    return web.Response(status=302, headers={"Location": location})
                return self._body(then)
            case Trickle(every=every):
                response = await self._stream(request, {"Content-Type": "application/rss+xml"})
                with contextlib.suppress(ConnectionError):  # the fetcher hangs up, as it should
                    await response.write(b"<?xml version='1.0'?><rss version='2.0'><channel>")
                    while not self._closing.is_set():
                        await response.write(b" ")
                        await self._sleep(every)
                return response
            case Stall(before_headers=True):
                await self._sleep(60)
                return web.Response(status=204)
            case Stall():
                response = await self._stream(request, {"Content-Type": "application/rss+xml"})
                with contextlib.suppress(ConnectionError):
                    await response.write(b"<?xml version='1.0'?><rss")
                    await self._sleep(60)
                return response
            case Endless(declared_length=declared):
                headers = {"Content-Type": "application/rss+xml"}
                if declared is not None:
                    headers["Content-Length"] = str(declared)
                response = await self._stream(request, headers)
                chunk = b"<item><title>more</title></item>" * 2048
                with contextlib.suppress(ConnectionError):
                    await response.write(b"<?xml version='1.0'?><rss version='2.0'><channel>")
                    while not self._closing.is_set():
                        await response.write(chunk)
                return response
            case Bomb(encoding=encoding, decoded_bytes=size):
                headers = {"Content-Type": "application/rss+xml", "Content-Encoding": encoding}
                return web.Response(body=bomb_bytes(encoding, size), headers=headers)
        raise AssertionError(f"unknown answer {answer!r}")

    def _body(self, answer: Body) -> web.Response:
        assert self.places is not None
        body = answer.body(self.places) if callable(answer.body) else answer.body
        headers = {"Content-Type": answer.content_type, **answer.headers}
        if answer.content_encoding:
            body = compress(body, answer.content_encoding)
            headers["Content-Encoding"] = answer.content_encoding
        return web.Response(status=answer.status, body=body, headers=headers)

    @staticmethod
    async def _stream(request: web.Request, headers: dict[str, str]) -> web.StreamResponse:
        response = web.StreamResponse(headers=headers)
        await response.prepare(request)
        return response

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)


# --- the sentinel: private addresses nobody may reach -------------------------------------------

SENTINEL_FEED = (
    b"<?xml version='1.0'?><rss version='2.0'><channel><title>sentinel</title><item>"
    b"<title>LEAKED</title><description>The fetcher reached a private address it must "
    b"refuse; this item must never be stored.</description></item></channel></rss>"
)


class Sentinel:
    """Counts TCP connections on 127.0.0.1 and [::1]; answers any request with a feed, so a
    leak would also show up as stored articles."""

    def __init__(self) -> None:
        self.connections: list[Any] = []
        self._servers: list[asyncio.Server] = []
        self.port4 = self.port6 = 0

    async def start(self) -> None:
        server4 = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        server6 = await asyncio.start_server(self._serve, "::1", 0, family=socket.AF_INET6)
        self._servers = [server4, server6]
        self.port4 = server4.sockets[0].getsockname()[1]
        self.port6 = server6.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
            await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections.append(writer.get_extra_info("peername"))
        try:
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\nConnection: close\r\n"
                + f"Content-Length: {len(SENTINEL_FEED)}\r\n\r\n".encode()
                + SENTINEL_FEED
            )
            await writer.drain()
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


# --- a resolver for test host names -------------------------------------------------------------


class MappedResolver(AbstractResolver):
    """Host name -> successive answers (the last one repeats); anything else does not exist.

    Successive answers play DNS rebinding: a name that is public on the first
    lookup and private on the next."""

    def __init__(self, answers: Mapping[str, Sequence[Sequence[str]]]) -> None:
        self._answers = {host.lower(): list(seq) for host, seq in answers.items()}
        self.lookups: dict[str, int] = {}

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        name = host.lower().rstrip(".")
        answers = self._answers.get(name)
        if not answers:
            raise OSError(socket.EAI_NONAME, f"{host}: no such test host")
        count = self.lookups.get(name, 0)
        self.lookups[name] = count + 1
        addresses = answers[min(count, len(answers) - 1)]
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in addresses
        ]

    async def close(self) -> None:
        pass
