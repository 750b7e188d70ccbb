"""WebSub end to end with a local hub: subscribe, verification, signed pushes, renewal."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import socket
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from aggregator import queue
from aggregator.app import daemon
from aggregator.app import web as daemon_web
from aggregator.runtime import open_runtime
from aggregator.settings import Settings
from tests.feedserver import FeedServer
from tests.test_faults import eventually
from tests.test_polling import add_feed, poll, rss


@dataclass
class Hub:
    """A minimal WebSub hub: accepts subscriptions, verifies intent, pushes on demand."""

    requests: list[dict[str, str]] = field(default_factory=list)
    verified: list[str] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hub", self._subscribe)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/hub"

    async def _subscribe(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        self.requests.append({k: str(v) for k, v in form.items()})
        challenge = secrets.token_hex(8)
        params = {
            "hub.mode": "subscribe",
            "hub.topic": str(form["hub.topic"]),
            "hub.challenge": challenge,
            "hub.lease_seconds": "600",
        }
        async with (
            aiohttp.ClientSession() as session,
            session.get(str(form["hub.callback"]), params=params) as answer,
        ):
            if answer.status == 200 and await answer.text() == challenge:
                self.verified.append(str(form["hub.callback"]))
        return web.Response(status=202)

    async def push(self, body: bytes, *, secret: str | None = None) -> int:
        last = self.requests[-1]
        key = (secret or last["hub.secret"]).encode()
        signature = "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                last["hub.callback"],
                data=body,
                headers={"Content-Type": "application/rss+xml", "X-Hub-Signature": signature},
            ) as answer,
        ):
            return answer.status

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def with_hub(body: bytes, hub: str, topic: str) -> bytes:
    links = (f'<atom:link rel="hub" href="{hub}"/><atom:link rel="self" href="{topic}"/>').encode()
    body = body.replace(
        b'<rss version="2.0">', b'<rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom">'
    )
    return body.replace(b"<channel>", b"<channel>" + links)


async def test_websub_subscribe_verify_push_and_renew(
    settings: Settings, clean_services: None, feed_server: FeedServer
) -> None:
    hub = Hub()
    await hub.start()
    port = free_port()
    settings = settings.model_copy(
        update={
            "http_port": port,
            "websub_callback_url": f"http://127.0.0.1:{port}/websub",
        }
    )
    topic = feed_server.url("pushed.xml")
    feed_server.add("pushed.xml", with_hub(rss(2), hub.url, topic))
    try:
        async with open_runtime(settings) as rt, daemon_web.serve(rt):
            feed_id = await add_feed(rt, topic)
            await poll(rt, feed_id)
            assert [r["hub.topic"] for r in hub.requests] == [topic]
            assert hub.requests[0]["hub.callback"] == f"http://127.0.0.1:{port}/websub/{feed_id}"
            assert hub.verified == [hub.requests[0]["hub.callback"]]
            state = await rt.pool.fetchrow("SELECT * FROM feeds WHERE id = $1", feed_id)
            assert state["websub_state"] == "active"

            # Another poll does not ask again while the lease is young.
            await poll(rt, feed_id)
            assert len(hub.requests) == 1

            # A push with a new item goes through the same store path.
            stores = daemon.Workers(rt, queues=(queue.STORE_QUEUE,))
            stores.start()
            await daemon.wait_drained(rt, timeout=30, queues=(queue.STORE_QUEUE,))
            before = await rt.pool.fetchval("SELECT count(*) FROM articles")
            pushed = with_hub(rss(3), hub.url, topic)  # item 2 is new
            assert await hub.push(pushed) == 202

            async def stored() -> bool:
                return await rt.pool.fetchval("SELECT count(*) FROM articles") == before + 1

            await eventually(stored, 30, "the pushed article to be stored")
            sighting = await rt.pool.fetchval(
                "SELECT count(*) FROM article_sources WHERE feed_id = $1", feed_id
            )
            assert sighting == 3

            # A forged push is ignored.
            forged = with_hub(rss(4), hub.url, topic)
            assert await hub.push(forged, secret="not-the-secret") == 202
            await daemon.wait_drained(rt, timeout=30, queues=(queue.STORE_QUEUE,))
            assert await rt.pool.fetchval("SELECT count(*) FROM articles") == before + 1
            await stores.stop()

            # Near the end of the lease, the next poll renews, with the same secret.
            await rt.pool.execute(
                "UPDATE feeds SET websub_requested_at = now() - interval '9 minutes', "
                "websub_expires_at = now() + interval '1 minute' WHERE id = $1",
                feed_id,
            )
            await poll(rt, feed_id)
            assert len(hub.requests) == 2
            assert hub.requests[1]["hub.secret"] == hub.requests[0]["hub.secret"]
    finally:
        await hub.stop()


async def test_unknown_verification_is_refused(settings: Settings, clean_services: None) -> None:
    port = free_port()
    settings = settings.model_copy(update={"http_port": port})
    async with open_runtime(settings) as rt, daemon_web.serve(rt) as base:
        params = {"hub.mode": "subscribe", "hub.topic": "https://x.example/", "hub.challenge": "c"}
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/websub/1", params=params) as answer:
                assert answer.status == 404
            async with session.get(f"{base}/healthz") as answer:
                assert answer.status == 200
