"""A local feed server for tests: serves bytes on 127.0.0.1 with ETag and
Last-Modified, answers conditional requests with 304, and logs every request."""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass, field

from aiohttp import web

LAST_MODIFIED = "Wed, 10 Sep 2014 12:00:00 GMT"


@dataclass
class Served:
    body: bytes
    content_type: str
    status: int = 200
    validators: bool = True
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering


@dataclass
class Request:
    path: str
    if_none_match: str | None
    if_modified_since: str | None
    status: int
    at: float = field(default_factory=time.monotonic)  # when it was answered
    arrived: float = 0.0  # when it came in (before any delay or hold)


@dataclass
class FeedServer:
    routes: dict[str, Served] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    base_url: str = ""
    in_flight: int = 0
    max_in_flight: int = 0
    held: int = 0  # requests waiting for release()
    _runner: web.AppRunner | None = None
    _gate: asyncio.Event | None = None

    def hold(self) -> None:
        """Answer nothing until ``release()``: fetches that come in stay in flight (fault
        tests use this to be sure polls are running when the fault strikes)."""
        if self._gate is None:
            self._gate = asyncio.Event()

    def release(self) -> None:
        if self._gate is not None:
            self._gate.set()
            self._gate = None

    def add(
        self, path: str, body: bytes, content_type: str = "application/rss+xml", **kw: object
    ) -> str:
        self.routes[path] = Served(body, content_type, **kw)  # type: ignore[arg-type]
        return self.url(path)

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def hits(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == "/" + path.lstrip("/")]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        arrived = time.monotonic()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            served = self.routes.get(request.path.lstrip("/"))
            if served is not None and served.delay:
                await asyncio.sleep(served.delay)
            gate = self._gate
            if gate is not None:
                self.held += 1
                try:
                    await gate.wait()
                finally:
                    self.held -= 1
            return self._answer(request, served, arrived)
        finally:
            self.in_flight -= 1

    def _answer(
        self, request: web.Request, served: Served | None, arrived: float
    ) -> web.StreamResponse:
        inm, ims = request.headers.get("If-None-Match"), request.headers.get("If-Modified-Since")
        if served is None:
            self.requests.append(Request(request.path, inm, ims, 404, arrived=arrived))
            return web.Response(status=404, text="not found")
        headers = {"Content-Type": served.content_type, **served.headers}
        if served.validators:
            etag = '"' + hashlib.sha1(served.body).hexdigest() + '"'
            headers |= {"ETag": etag, "Last-Modified": LAST_MODIFIED}
            if inm == etag or (inm is None and ims == LAST_MODIFIED):
                self.requests.append(Request(request.path, inm, ims, 304, arrived=arrived))
                return web.Response(status=304, headers={"ETag": etag})
        self.requests.append(Request(request.path, inm, ims, served.status, arrived=arrived))
        return web.Response(status=served.status, body=served.body, headers=headers)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        self.release()
        if self._runner is not None:
            await self._runner.cleanup()
