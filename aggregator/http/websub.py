"""WebSub: push subscriptions to a feed's hub, verification of intent, and signed pushes.

A feed whose document names a hub (``<link rel="hub">``, JSON Feed ``hubs``) is
subscribed when the operator has set ``AGGREGATOR_WEBSUB_CALLBACK_URL``: we ask
the hub (through the safe fetcher), the hub verifies by calling us back with a
challenge, and then POSTs new content signed with our per-feed secret. Pushed
content goes through the same parse, dedupe and store path as a poll. Polling
continues as the fallback, and each poll renews a subscription near its end.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from aggregator import logs
from aggregator.errors import FeedError
from aggregator.http.fetch import Fetcher
from aggregator.settings import Settings
from aggregator.storage.feeds import Feed

if TYPE_CHECKING:
    import asyncpg


class Clients(Protocol):
    """What WebSub needs of the process's shared clients (the ``Runtime`` has them)."""

    settings: Settings
    pool: asyncpg.Pool
    fetcher: Fetcher


log = logging.getLogger("aggregator.websub")

UNVERIFIED_RETRY = timedelta(hours=1)  # ask again if the hub never verified
_DIGESTS = {
    "sha1": hashlib.sha1,
    "sha256": hashlib.sha256,
    "sha384": hashlib.sha384,
    "sha512": hashlib.sha512,
}

_STATE = """
SELECT websub_hub, websub_topic, websub_secret, websub_state, websub_requested_at,
       websub_expires_at
FROM feeds WHERE id = $1
"""

_REQUESTED = """
UPDATE feeds SET websub_hub = $2, websub_topic = $3, websub_secret = $4,
    websub_state = 'requested', websub_requested_at = now()
WHERE id = $1
"""

_VERIFIED = """
UPDATE feeds SET websub_state = 'active', websub_expires_at = now() + make_interval(secs => $3)
WHERE id = $1 AND websub_topic = $2 AND websub_state IN ('requested', 'active')
RETURNING id
"""

_DENIED = "UPDATE feeds SET websub_state = 'denied' WHERE id = $1 AND websub_topic = $2"


def callback_url(base: str, feed_id: int) -> str:
    return f"{base.rstrip('/')}/{feed_id}"


async def renew_if_due(
    rt: Clients, feed: Feed, *, hub: str | None, topic: str | None, now: datetime
) -> bool:
    """Subscribe (or renew) when the feed names a hub and push is configured; True if asked.

    Without ``hub`` (a 304, say) the hub and topic already on record are used."""
    base = rt.settings.websub_callback_url
    if not base:
        return False
    flog = logs.for_feed(log, feed.id, feed.url)
    state = await rt.pool.fetchrow(_STATE, feed.id)
    if hub is None:
        hub, topic = state["websub_hub"], state["websub_topic"]
    if not hub:
        return False
    topic = topic or feed.url
    same = state["websub_hub"] == hub and state["websub_topic"] == topic
    if same and not _time_to_ask(state, now):
        return False
    secret = state["websub_secret"] if same and state["websub_secret"] else secrets.token_hex(32)
    await rt.pool.execute(_REQUESTED, feed.id, hub, topic, secret)
    form = {
        "hub.mode": "subscribe",
        "hub.topic": topic,
        "hub.callback": callback_url(base, feed.id),
        "hub.secret": secret,
        "hub.lease_seconds": str(int(rt.settings.websub_lease_seconds)),
    }
    try:
        status, answer = await rt.fetcher.post_form(hub, form)
    except FeedError as exc:
        flog.warning("WebSub hub %s unreachable: %s", hub, exc)
        return True
    if status >= 300:
        flog.warning(
            "WebSub hub %s refused (HTTP %d): %s",
            hub,
            status,
            answer,
        )
    else:
        flog.info("asked WebSub hub %s for push", hub)
    return True


def _time_to_ask(state: Mapping[str, Any], now: datetime) -> bool:
    """For the same hub and topic: renew in the last fifth of the lease the hub granted,
    retry a request the hub never verified after an hour, never ask again after a denial."""
    match state["websub_state"]:
        case "active":
            granted: timedelta = state["websub_expires_at"] - state["websub_requested_at"]
            return bool(state["websub_expires_at"] - now < granted * 0.2)
        case "requested":
            return bool(now - state["websub_requested_at"] >= UNVERIFIED_RETRY)
        case "denied":
            return False
    return True


async def verify_intent(
    rt: Clients, feed_id: int, *, mode: str, topic: str, lease_seconds: str | None
) -> bool:
    """The hub's verification call: confirm only a subscription we asked for."""
    if mode == "subscribe":
        try:
            lease = float(lease_seconds) if lease_seconds else rt.settings.websub_lease_seconds
        except ValueError:
            return False
        return await rt.pool.fetchval(_VERIFIED, feed_id, topic, lease) is not None
    if mode == "denied":
        await rt.pool.execute(_DENIED, feed_id, topic)
        return True
    return False  # unsubscribe: we never ask for one, so never confirm one


def signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    """Check ``X-Hub-Signature: <method>=<hex HMAC of the body>``."""
    method, _, signature = (header or "").partition("=")
    digest = _DIGESTS.get(method.strip().lower())
    if digest is None or not signature:
        return False
    expected = hmac.new(secret.encode(), body, digest).hexdigest()
    return hmac.compare_digest(expected, signature.strip().lower())


async def push_secret(rt: Clients, feed_id: int) -> str | None:
    """The secret of an active subscription, or None (pushes for it are ignored)."""
    state = await rt.pool.fetchrow(_STATE, feed_id)
    if state is None or state["websub_state"] != "active":
        return None
    secret: str | None = state["websub_secret"]
    return secret
