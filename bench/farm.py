"""The feed farm: N synthetic regional feeds served by aiohttp on 127.0.0.1.

Runs as its own process (``python -m bench.farm``) so that serving feeds does
not take turns with the system under test on one event loop. It answers
conditional requests (ETag, Last-Modified) with 304, can delay every answer,
and is steered over HTTP by the bench:

* ``POST /_farm/advance`` ``{"feeds": [..]}`` or ``{"share": 0.05, "seed": 1}``:
  those feeds publish ``new_per_change`` new items now; the answer lists the new
  items' guids with their publishing time (for the freshness scenario);
* ``POST /_farm/warm`` ``{"first": 0, "count": 2000}`` or ``{"feeds": [..]}``: render now,
  so rendering never runs while a system is being timed;
* ``GET /_farm/state`` ``?feeds=0-1999``: each feed's current ETag and
  Last-Modified (to seed a steady state), and request counters.

Feeds live at ``/feeds/<n>.xml``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime
from typing import Any

from aiohttp import web

from bench import module_env, synthetic


@dataclass
class Farm:
    feeds: int
    items: int = 20
    new_per_change: int = 2
    delay: float = 0.0
    cache_size: int = 4_000  # bodies (about 80 kB each) kept rendered
    epoch: float = field(default_factory=time.time)
    versions: dict[int, int] = field(default_factory=dict)
    changed_at: dict[int, float] = field(default_factory=dict)
    published: dict[int, dict[int, float]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=lambda: {"200": 0, "304": 0, "404": 0})
    _bodies: OrderedDict[tuple[int, int], bytes] = field(default_factory=OrderedDict)

    def etag(self, feed: int) -> str:
        return f'"{feed}-{self.versions.get(feed, 0)}"'

    def last_modified(self, feed: int) -> str:
        return formatdate(self.changed_at.get(feed, self.epoch), usegmt=True)

    def body(self, feed: int) -> bytes:
        key = (feed, self.versions.get(feed, 0))
        cached = self._bodies.get(key)
        if cached is not None:
            self._bodies.move_to_end(key)
            return cached
        body = synthetic.render_feed(
            feed,
            key[1],
            items=self.items,
            new_per_change=self.new_per_change,
            published_at=self.published.get(feed, {}),
            epoch=self.epoch,
        )
        self._bodies[key] = body
        if len(self._bodies) > self.cache_size:
            self._bodies.popitem(last=False)
        return body

    def advance(self, feeds: list[int]) -> list[tuple[int, str, float]]:
        """Publish new items on ``feeds`` now; return (feed, guid, published) per item."""
        now = time.time()
        out = []
        for feed in feeds:
            version = self.versions.get(feed, 0) + 1
            self.versions[feed] = version
            self.changed_at[feed] = now
            newest = synthetic.newest_position(
                version, items=self.items, new_per_change=self.new_per_change
            )
            stamps = self.published.setdefault(feed, {})
            for position in range(newest - self.new_per_change + 1, newest + 1):
                stamps[position] = now
                out.append((feed, synthetic.item_guid(feed, position), now))
        return out

    def not_modified(self, feed: int, request: web.Request) -> bool:
        if_none_match = request.headers.get("If-None-Match")
        if if_none_match is not None:  # RFC 9110: it wins over If-Modified-Since
            return self.etag(feed) in [t.strip() for t in if_none_match.split(",")]
        since = request.headers.get("If-Modified-Since")
        if since is None:
            return False
        try:
            return parsedate_to_datetime(since).timestamp() >= int(
                self.changed_at.get(feed, self.epoch)
            )
        except (TypeError, ValueError):
            return False


def _feed_range(text: str | None, total: int) -> list[int]:
    if not text:
        return list(range(total))
    first, _, last = text.partition("-")
    return list(range(int(first), int(last or first) + 1))


def make_app(farm: Farm) -> web.Application:
    async def serve_feed(request: web.Request) -> web.Response:
        if farm.delay:
            await asyncio.sleep(farm.delay)
        try:
            feed = int(request.match_info["feed"])
        except ValueError:
            feed = -1
        if not 0 <= feed < farm.feeds:
            farm.counts["404"] += 1
            raise web.HTTPNotFound()
        headers = {"ETag": farm.etag(feed), "Last-Modified": farm.last_modified(feed)}
        if farm.not_modified(feed, request):
            farm.counts["304"] += 1
            return web.Response(status=304, headers=headers)
        farm.counts["200"] += 1
        return web.Response(
            body=farm.body(feed), headers=headers, content_type="application/rss+xml"
        )

    async def advance(request: web.Request) -> web.Response:
        spec: dict[str, Any] = await request.json()
        feeds = spec.get("feeds")
        if feeds is None:
            pool = _feed_range(spec.get("range"), farm.feeds)
            count = round(len(pool) * float(spec["share"]))
            feeds = sorted(random.Random(spec.get("seed", 0)).sample(pool, count))
        published = farm.advance([int(f) for f in feeds])
        return web.json_response({"changed": feeds, "published": published})

    async def warm(request: web.Request) -> web.Response:
        spec: dict[str, Any] = await request.json()
        started = time.perf_counter()
        feeds = spec.get("feeds") or range(spec["first"], spec["first"] + spec["count"])
        for feed in feeds:
            farm.body(int(feed))
        return web.json_response({"seconds": time.perf_counter() - started})

    async def state(request: web.Request) -> web.Response:
        feeds = (
            _feed_range(request.query.get("feeds"), farm.feeds) if "feeds" in request.query else []
        )
        return web.json_response(
            {
                "counts": farm.counts,
                "validators": {f: [farm.etag(f), farm.last_modified(f)] for f in feeds},
            }
        )

    async def set_delay(request: web.Request) -> web.Response:
        farm.delay = float((await request.json())["delay"])
        return web.json_response({"delay": farm.delay})

    app = web.Application()
    app.router.add_get("/feeds/{feed}.xml", serve_feed)
    app.router.add_post("/_farm/advance", advance)
    app.router.add_post("/_farm/warm", warm)
    app.router.add_post("/_farm/delay", set_delay)
    app.router.add_get("/_farm/state", state)
    return app


async def serve(farm: Farm, port: int) -> None:
    runner = web.AppRunner(make_app(farm), access_log=None, handle_signals=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=4096)
    await site.start()
    bound = runner.addresses[0][1]
    print(f"listening {bound}", flush=True)  # the parent reads this line
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, required=True)
    parser.add_argument("--items", type=int, default=20)
    parser.add_argument("--new-per-change", type=int, default=2)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    farm = Farm(
        feeds=args.feeds, items=args.items, new_per_change=args.new_per_change, delay=args.delay
    )
    try:
        asyncio.run(serve(farm, args.port))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()


class FarmProcess:
    """The bench's handle on a farm running in its own process."""

    def __init__(self, feeds: int, *, items: int = 20, new_per_change: int = 2, delay: float = 0.0):
        self.args = [
            "--feeds",
            str(feeds),
            "--items",
            str(items),
            "--new-per-change",
            str(new_per_change),
            "--delay",
            str(delay),
        ]
        self.feeds = feeds
        self.base_url = ""
        self.pid = 0

    async def __aenter__(self) -> FarmProcess:
        import aiohttp

        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.farm",
            *self.args,
            stdout=asyncio.subprocess.PIPE,
            env=module_env(),
        )
        assert self._proc.stdout is not None
        line = (await asyncio.wait_for(self._proc.stdout.readline(), 60)).decode()
        if not line.startswith("listening "):
            raise RuntimeError(f"the feed farm did not start: {line!r}")
        self.base_url = f"http://127.0.0.1:{int(line.split()[1])}"
        self.pid = self._proc.pid
        self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._session.close()
        self._proc.terminate()
        await self._proc.wait()

    def url(self, feed: int) -> str:
        return f"{self.base_url}/feeds/{feed}.xml"

    async def _post(self, path: str, spec: dict[str, Any]) -> Any:
        async with self._session.post(self.base_url + path, json=spec) as response:
            response.raise_for_status()
            return await response.json()

    async def advance(self, feeds: list[int]) -> list[tuple[int, str, float]]:
        """Publish new items on these feeds now: (feed, guid, published) per item."""
        answer = await self._post("/_farm/advance", {"feeds": feeds})
        return [tuple(item) for item in answer["published"]]

    async def warm(self, first: int = 0, count: int = 0, feeds: list[int] | None = None) -> float:
        """Render these bodies now (a range, or a list), so no timed run waits for rendering."""
        spec = {"first": first, "count": count, "feeds": feeds}
        return float((await self._post("/_farm/warm", spec))["seconds"])

    async def set_delay(self, delay: float) -> None:
        await self._post("/_farm/delay", {"delay": delay})

    async def state(self, feeds: str | None = None) -> dict[str, Any]:
        query = f"?feeds={feeds}" if feeds else ""
        async with self._session.get(f"{self.base_url}/_farm/state{query}") as response:
            return await response.json()  # type: ignore[no-any-return]
