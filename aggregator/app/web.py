"""The daemon's HTTP server: health, Prometheus metrics and WebSub callbacks.

``/healthz`` says whether this process is alive and consuming: each of its arq
workers recorded its own health lately or is busy with a job, and the daemon's
scheduler loop turns (see ``aggregator.health``); ``/readyz`` only when Postgres
and Redis answer and the schema is current; ``/metrics`` is Prometheus' text
format. The daemon and each standalone worker serve it; only the daemon reports
the gauges of shared state (queue depths, feeds by state, the outbox), so that a
dashboard summing the fleet counts them once.

Bound to ``AGGREGATOR_HTTP_HOST`` (127.0.0.1 by default) on
``AGGREGATOR_HTTP_PORT``; without a port, no server runs. Reach the WebSub
path from the internet through a reverse proxy, as
``AGGREGATOR_WEBSUB_CALLBACK_URL``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import redis.exceptions
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from aggregator import logs, metrics, refresh
from aggregator.errors import FeedError
from aggregator.http import websub
from aggregator.runtime import Runtime
from aggregator.storage import feeds, migrations

log = logging.getLogger("aggregator.web")

READY_TIMEOUT = 2.0
RUNTIME: web.AppKey[Runtime] = web.AppKey("runtime", Runtime)
SHARED_METRICS: web.AppKey[bool] = web.AppKey("shared_metrics", bool)


def create_app(rt: Runtime, *, shared_metrics: bool = True) -> web.Application:
    app = web.Application(client_max_size=rt.settings.max_body_bytes)
    app[RUNTIME] = rt
    app[SHARED_METRICS] = shared_metrics
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/websub/{feed_id:\\d+}", _websub_verify)
    app.router.add_post("/websub/{feed_id:\\d+}", _websub_push)
    return app


async def _healthz(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            alive, lines = await rt.liveness.check(rt.redis)
    except TimeoutError:
        alive, lines = False, ["Redis did not answer in time"]
    return web.Response(
        status=200 if alive else 503,
        text="\n".join(["ok" if alive else "not alive", *lines]) + "\n",
    )


async def _readyz(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    problems = []
    try:
        async with asyncio.timeout(READY_TIMEOUT), rt.pool.acquire() as conn:
            waiting = await migrations.pending(conn)
        if waiting:
            problems.append(f"migrations pending: {', '.join(str(m.version) for m in waiting)}")
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        problems.append(f"postgres: {type(exc).__name__}: {exc}")
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            await rt.redis.ping()
    except (OSError, TimeoutError, redis.exceptions.RedisError) as exc:
        problems.append(f"redis: {type(exc).__name__}: {exc}")
    if problems:
        return web.Response(status=503, text="\n".join(problems) + "\n")
    return web.Response(text="ready\n")


async def _metrics(request: web.Request) -> web.Response:
    body = await metrics.exposition(request.app[RUNTIME], shared=request.app[SHARED_METRICS])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _websub_verify(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    feed_id = int(request.match_info["feed_id"])
    query = request.query
    confirmed = await websub.verify_intent(
        rt,
        feed_id,
        mode=query.get("hub.mode", ""),
        topic=query.get("hub.topic", ""),
        lease_seconds=query.get("hub.lease_seconds"),
    )
    if not confirmed:
        return web.Response(status=404, text="no such subscription\n")
    feed = await feeds.get(rt.pool, feed_id)
    url = feed.url if feed else ""
    logs.for_feed(log, feed_id, url).info("WebSub hub confirmed %s", query.get("hub.mode"))
    return web.Response(text=query.get("hub.challenge", ""), content_type="text/plain")


async def _websub_push(request: web.Request) -> web.Response:
    """A hub's push. Always 2xx (so a hub does not retry what we chose to ignore)."""
    rt = request.app[RUNTIME]
    feed_id = int(request.match_info["feed_id"])
    body = await request.read()
    secret = await websub.push_secret(rt, feed_id)
    feed = await feeds.get(rt.pool, feed_id)
    if secret is None or feed is None or feed.disabled:
        return web.Response(status=202)
    if not websub.signature_ok(secret, body, request.headers.get("X-Hub-Signature")):
        logs.for_feed(log, feed.id, feed.url).warning("ignored a WebSub push: bad signature")
        return web.Response(status=202)
    try:
        queued = await refresh.ingest_push(rt, feed, body, request.headers.get("Content-Type"))
    except FeedError as exc:
        logs.for_feed(log, feed.id, feed.url).warning("pushed content unreadable: %s", exc)
        return web.Response(status=202)
    logs.for_feed(log, feed.id, feed.url).info("WebSub push, %d new articles queued", queued)
    return web.Response(status=202)


@asynccontextmanager
async def serve(rt: Runtime, *, shared_metrics: bool = True) -> AsyncIterator[str | None]:
    """Run the server while the block runs; yield its base URL (None without a port)."""
    if rt.settings.http_port is None:
        yield None
        return
    runner = web.AppRunner(create_app(rt, shared_metrics=shared_metrics), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, rt.settings.http_host, rt.settings.http_port)
    await site.start()
    host, port = runner.addresses[0][:2]
    log.info("HTTP server on http://%s:%d", host, port)
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()
