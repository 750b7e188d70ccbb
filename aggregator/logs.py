"""Logs: structured lines, JSON when stderr is not a terminal, readable when it is.

The code logs with the standard library; structlog renders every record, ours
and our dependencies', the same way. A line about a feed carries ``feed_id``
and ``feed_url`` as fields (see ``for_feed``), so a log system can filter by feed.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import MutableMapping
from typing import Any

import structlog


def setup(*, verbose: bool = False, json: bool | None = None) -> None:
    """Configure the root logger once per process; ``json`` defaults to "not a terminal"."""
    if json is None:
        json = not sys.stderr.isatty()
    renderer: Any = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if json
        else structlog.dev.ConsoleRenderer(colors=False, pad_event_to=0)
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.ExtraAdder(),
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
        ],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    # arq logs every job at INFO; its warnings and errors still come through.
    logging.getLogger("arq").setLevel(logging.INFO if verbose else logging.WARNING)


class FeedLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A logger whose every line carries the feed's id and URL as fields."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**(self.extra or {}), **kwargs.get("extra", {})}
        return msg, kwargs


def for_feed(logger: logging.Logger, feed_id: int, url: str) -> FeedLog:
    return FeedLog(logger, {"feed_id": feed_id, "feed_url": url})


class Outage:
    """Logs a repeating failure (a service down, retried every tick) as one warning
    when it starts and one info line when it ends; the retries between are debug."""

    def __init__(self, logger: logging.Logger, what: str) -> None:
        self.log = logger
        self.what = what
        self.since: float | None = None

    def failed(self, exc: BaseException, consequence: str) -> None:
        if self.since is None:
            self.since = time.monotonic()
            self.log.warning("%s failed (%s); %s", self.what, _reason(exc), consequence)
        else:
            self.log.debug("%s failed again (%s)", self.what, _reason(exc))

    def succeeded(self) -> None:
        if self.since is not None:
            self.log.info("%s works again after %.0fs", self.what, time.monotonic() - self.since)
            self.since = None


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
