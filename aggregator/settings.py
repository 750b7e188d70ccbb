"""Settings: one pydantic-settings class, read from ``AGGREGATOR_*`` and ``.env``.

Built once at start-up and passed down (into arq's ``ctx``); never a global.
``load_settings`` turns a validation failure into a one-line ``ConfigError``
naming the environment variable, so a typo never shows a traceback.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated
from urllib.parse import parse_qs, urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from aggregator.errors import ConfigError

ENV_PREFIX = "AGGREGATOR_"

Seconds = Annotated[float, Field(gt=0)]


def default_data_dir() -> Path:
    """``/var/lib/aggregator`` for root, else the XDG data folder (see ``app.embedded``)."""
    if os.geteuid() == 0:
        return Path("/var/lib/aggregator")
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "share"
    )
    return Path(base) / "aggregator"


class Settings(BaseSettings):
    """Everything the daemon can be told. Each field is ``AGGREGATOR_<NAME>``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )

    database_url: str | None = Field(
        None,
        description="PostgreSQL DSN (postgresql://user@host:port/db). Unset: an embedded server.",
    )
    redis_url: str | None = Field(
        None,
        description="Redis URL (redis://host:port/db, rediss:// or unix:///path?db=N; "
        "db 0-15). Unset: embedded.",
    )
    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Where the embedded PostgreSQL and Redis keep their data "
        "(/var/lib/aggregator for root, else ~/.local/share/aggregator).",
    )
    allow_private_networks: bool = Field(
        False,
        description="Allow feeds on loopback, private and link-local addresses (intranets, tests).",
    )

    poll_interval: Seconds = Field(900, description="Default seconds between polls of a feed.")
    min_interval: Seconds = Field(60, description="No feed is polled more often than this.")
    max_interval: Seconds = Field(86400, description="No feed waits longer than this.")
    max_backoff: Seconds = Field(21600, description="Longest wait after repeated failures.")
    lease_seconds: Seconds = Field(
        300, description="A leased feed becomes due again if its poll never reports back."
    )
    scheduler_tick: Seconds = Field(1.0, description="Seconds between scheduler passes.")
    scheduler_batch: int = Field(500, gt=0, description="Due feeds leased per scheduler pass.")

    poll_concurrency: int = Field(
        200, gt=0, description="Fetches in flight per worker process (at least two batches)."
    )
    poll_batch: int = Field(
        20,
        gt=0,
        le=1000,
        description="Feeds per poll job: claimed, fetched side by side and recorded together.",
    )
    store_concurrency: int = Field(4, gt=0, description="Store batches in flight per worker.")
    parse_processes: int = Field(
        0,
        ge=0,
        description="Processes that parse feeds; 0 means one per usable core but one "
        "(at least one): the event loop keeps a core of its own.",
    )
    job_timeout: Seconds = Field(120, description="A job running longer than this is cancelled.")
    max_tries: int = Field(
        5,
        gt=0,
        description="Attempts per poll job before arq gives up on it (the feed is polled "
        "again at its next lease). Store jobs retry through outages of more than a day.",
    )
    poll_delay: Seconds = Field(0.05, description="How often idle workers check their queue.")

    fetch_timeout: Seconds = Field(30, description="Total seconds allowed for one fetch.")
    connect_timeout: Seconds = Field(10, description="Seconds allowed to open a connection.")
    read_timeout: Seconds = Field(15, description="Longest silence between received bytes.")
    max_body_bytes: int = Field(
        10 * 1024 * 1024, gt=0, description="Largest feed body accepted, after decompression."
    )
    max_parse_memory: int = Field(
        256 * 1024 * 1024,
        gt=0,
        description=(
            "Memory one document's entries may take once read (each about its bytes plus "
            "10 kB); the oldest entries past it are not read, and the feed's row says so."
        ),
    )
    max_parse_seconds: Seconds = Field(
        60,
        description=(
            "Time one document's entries may take to normalize; the rest are read by the "
            "feed's next polls, and the feed's row says so."
        ),
    )
    max_redirects: int = Field(5, ge=0, description="Redirects followed per fetch.")
    contact_url: str = Field(
        "https://github.com/regional-news-aggregator/regional-news-aggregator",
        description="Where a feed's publisher can reach this installation's operator; "
        "sent in the User-Agent.",
    )
    user_agent: str | None = Field(
        None,
        description="The whole User-Agent header; unset builds one with AGGREGATOR_CONTACT_URL.",
    )
    host_concurrency: int = Field(
        2, gt=0, description="Requests in flight to one host, across every worker on every machine."
    )
    host_rate: float = Field(
        1.0, gt=0, description="Requests per second to one host, across every worker."
    )
    host_wait: Seconds = Field(
        30, description="Longest a poll waits for its host's turn before it is deferred."
    )
    host_penalty_seconds: Seconds = Field(
        600, description="How long a host that answered 429/503 gets half the rate and concurrency."
    )
    disable_after_failures: int = Field(
        10, gt=0, description="Consecutive failures before a feed is disabled..."
    )
    disable_after_seconds: Seconds = Field(
        3 * 86400, description="...provided the failures span at least this many seconds."
    )
    redirect_confirmations: int = Field(
        3, gt=0, description="Polls that must see the same permanent redirect before the URL moves."
    )
    seen_cache_days: Seconds = Field(
        30,
        description=(
            "Days the Redis cache of a feed's current entries (what its next polls skip) "
            "outlives the feed's last change; it holds the current window, not the history."
        ),
    )

    story_window_days: float = Field(
        7,
        gt=0,
        description="How far apart two copies of one story may be published and still "
        "be grouped as one story.",
    )
    retention_days: float | None = Field(
        None,
        gt=0,
        description="Delete articles first seen more than this many days ago, "
        "once a day (as `aggregator prune`); unset keeps everything.",
    )
    http_host: str = Field(
        "127.0.0.1",
        description="Address the daemon's HTTP server (health, metrics, WebSub) binds to.",
    )
    http_port: int | None = Field(
        None, ge=0, le=65535, description="Port of the daemon's HTTP server; unset: no server."
    )
    websub_callback_url: str | None = Field(
        None,
        description="Public URL that reaches the daemon's /websub path (through your proxy); "
        "set it to subscribe to feeds' WebSub hubs for push. Polling stays as the fallback.",
    )
    websub_lease_seconds: Seconds = Field(
        10 * 86400, description="Subscription lease asked of WebSub hubs; renewed before it ends."
    )

    @property
    def http_user_agent(self) -> str:
        from aggregator import __version__

        return self.user_agent or f"regional-news-aggregator/{__version__} (+{self.contact_url})"

    @field_validator("database_url")
    @classmethod
    def _database_url_usable(cls, url: str | None) -> str | None:
        if url:
            check_database_url(url)
        return url or None

    @field_validator("redis_url")
    @classmethod
    def _redis_url_usable(cls, url: str | None) -> str | None:
        if url:
            check_redis_url(url)
        return url or None

    @model_validator(mode="after")
    def _intervals_ordered(self) -> Settings:
        if self.min_interval > self.max_interval:
            raise ValueError(
                f"AGGREGATOR_MIN_INTERVAL ({self.min_interval}) is above "
                f"AGGREGATOR_MAX_INTERVAL ({self.max_interval})"
            )
        return self


REDIS_DATABASES = 16  # Redis' default `databases`; SELECT of a higher number fails


def check_database_url(url: str) -> None:
    """Raise ``ValueError`` unless ``url`` is a PostgreSQL DSN asyncpg can use, before any
    connection is tried (a typo must not look like an outage)."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError("not a PostgreSQL URL: it must start with postgresql://")
    hosts = parts.netloc.rpartition("@")[2]
    for host in hosts.split(",") if hosts else []:
        name, port = _host_and_port(host)
        if not name or any(c.isspace() or c in "/?#" for c in name):
            raise ValueError(f"invalid host {name!r}")
        if port is not None:
            _check_port(port)
    for port in parse_qs(parts.query).get("port", []):
        _check_port(port)


def check_redis_url(url: str) -> None:
    """Raise ``ValueError`` unless ``url`` is a Redis URL with a database Redis has."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError("not a Redis URL: it must start with redis://, rediss:// or unix://")
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError("a unix:// URL needs the socket's path: unix:///path/to/redis.sock")
        databases = parse_qs(parts.query).get("db", ["0"])
    else:
        name, port = _host_and_port(parts.netloc.rpartition("@")[2])
        if not name or any(c.isspace() for c in name):
            raise ValueError(f"invalid host {name!r}")
        if port is not None:
            _check_port(port)
        databases = [parts.path.strip("/") or "0"]
    for db in databases:
        if not (db.isdigit() and int(db) < REDIS_DATABASES):
            raise ValueError(
                f"database {db!r} is not a number from 0 to {REDIS_DATABASES - 1} "
                "(Redis' databases)"
            )


def _host_and_port(netloc: str) -> tuple[str, str | None]:
    if netloc.startswith("["):  # an IPv6 literal
        host, _, rest = netloc[1:].partition("]")
        return host, rest[1:] if rest.startswith(":") else None
    host, colon, port = netloc.partition(":")
    return host, port if colon else None


def _check_port(port: str) -> None:
    if not (port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"port {port!r} is not a number from 1 to 65535")


def load_settings(**overrides: object) -> Settings:
    """Build the settings, or raise ``ConfigError`` with one line naming the bad setting."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


_SECRET_IN_URL = re.compile(r"(://[^/@:]*:)[^/@]*@")


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        loc = error.get("loc") or ()
        if loc:
            name = ENV_PREFIX + str(loc[0]).upper()
            given = error.get("input")
            if isinstance(given, str):
                given = _SECRET_IN_URL.sub(r"\1***@", given)  # never echo a password
            shown = f" (got {given!r})" if isinstance(given, str | int | float) else ""
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"{name}: {message}{shown}")
        else:
            problems.append(str(error["msg"]).removeprefix("Value error, "))
    return "invalid setting: " + "; ".join(problems)


def reference() -> str:
    """The configuration reference as a Markdown table, generated from ``Settings``.

    The README's table is this text (a test keeps them equal), so it cannot drift."""
    rows = ["| setting | default | what it does |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        if field.default_factory is not None:
            default = "see description"
        elif field.default is None:
            default = "unset"
        else:
            default = f"`{field.default}`"
        description = (field.description or "").replace("|", "\\|")
        rows.append(f"| `{ENV_PREFIX}{name.upper()}` | {default} | {description} |")
    return "\n".join(rows) + "\n"
