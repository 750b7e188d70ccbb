"""The project's exceptions: one root, a few precise kinds.

Every error that can reach a user or a feed's row is an ``AggregatorError``.
Feed errors carry a short ``kind`` (stored in ``feeds.last_error_kind``) so
operators can group failures without parsing messages.
"""

from __future__ import annotations


class AggregatorError(Exception):
    """Root of every error this project raises on purpose."""


class ConfigError(AggregatorError, ValueError):
    """A setting has a value the daemon cannot run with."""


class InvalidFeedURLError(AggregatorError, ValueError):
    """A feed URL is malformed or uses a scheme other than http(s)."""


class FeedFileError(AggregatorError, ValueError):
    """A feeds file (TOML or OPML) cannot be read."""


class FeedNotFoundError(AggregatorError, LookupError):
    """No feed with that id or URL is registered."""


class ServiceError(AggregatorError):
    """PostgreSQL or Redis failed a request; the message names which, where, and what
    happened."""


class ServiceUnavailableError(ServiceError):
    """PostgreSQL or Redis did not answer (refused, timed out, restarting): worth waiting for."""


class ServiceRefusedError(ServiceError):
    """PostgreSQL or Redis answered and refused: the login, the database, or a permission."""


class SchemaBehindError(AggregatorError):
    """The database lacks migrations this version needs, and the command may not apply them."""


class FeedError(AggregatorError):
    """Fetching or parsing one feed failed; recorded on the feed's row.

    The message often quotes the feed (a status reason, a parser complaint), so
    it is made one bounded line without control characters before it is kept."""

    kind = "error"
    MAX_MESSAGE_CHARS = 500

    def __init__(self, message: str, *, kind: str | None = None) -> None:
        super().__init__(_one_line(message, self.MAX_MESSAGE_CHARS))
        if kind is not None:
            self.kind = kind


def _one_line(text: str, limit: int) -> str:
    """Whitespace and control characters collapsed to single spaces, then bounded."""
    printable = "".join(c if c.isprintable() else " " for c in text)
    return " ".join(printable.split())[:limit]


class FetchError(FeedError):
    """The HTTP exchange failed: network, status, size or address policy."""

    kind = "network"


class BlockedAddressError(FetchError):
    """The feed's host resolved to an address the settings do not allow."""

    kind = "blocked_address"


class FetchTimeoutError(FetchError):
    """Connecting, a silence between bytes, or the whole fetch took too long."""

    kind = "timeout"


class BodyTooLargeError(FetchError):
    """The body, counted after decompression, is larger than ``max_body_bytes``."""

    kind = "too_large"


class TooManyRedirectsError(FetchError):
    """More redirects than ``max_redirects`` (a loop, or a chain too long)."""

    kind = "redirects"


class HTTPStatusError(FetchError):
    """The server answered with a status that carries no feed."""

    kind = "http_status"

    def __init__(self, message: str, *, status: int, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        if status == 429:
            self.kind = "rate_limited"
        elif status >= 500:
            self.kind = "server_error"
        elif status in (401, 403):
            self.kind = "forbidden"
        elif status in (404, 410):
            self.kind = "not_found"


class ParseError(FeedError):
    """The body is not a feed we can read."""

    kind = "parse"


class NotAFeedError(ParseError):
    """The body is something else: an HTML page, an empty answer, JSON that is not a feed."""

    kind = "not_a_feed"


# --- the rest: commands, subscribers, storage and deferrals -------------------------------------


class LockMissingError(AggregatorError, LookupError):
    """A lock's row is not in ``ingest_locks``: the schema was not migrated by this version."""


class NoFeedFoundError(AggregatorError, ValueError):
    """The URL is a web page that advertises no feed."""


class SubscriberNotFoundError(AggregatorError, LookupError):
    """No subscriber has that name."""


class SubscriberFilterError(AggregatorError, ValueError):
    """A filter value that cannot be used."""


class SubscriberKindError(AggregatorError, ValueError):
    """A subscriber asked to change between an arq queue and a stream."""


class InvalidSubscriberNameError(AggregatorError, ValueError):
    """A subscriber name with characters that are not safe in a Redis key."""


class EmbeddedError(AggregatorError, RuntimeError):
    """An embedded server could not be set up or started."""


class MigrationLockError(AggregatorError):
    """A migration could not take its table locks: other sessions kept them too long."""


class HostBusyError(AggregatorError):
    """The host's turn did not come within ``host_wait``: the poll is deferred, not failed.

    Not a ``FeedError``: nothing is wrong with the feed, and no failure is counted."""
