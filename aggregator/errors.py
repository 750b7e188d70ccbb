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


class FeedError(AggregatorError):
    """Fetching or parsing one feed failed; recorded on the feed's row."""

    kind = "error"

    def __init__(self, message: str, *, kind: str | None = None) -> None:
        super().__init__(message)
        if kind is not None:
            self.kind = kind


class FetchError(FeedError):
    """The HTTP exchange failed: network, status, size or address policy."""

    kind = "network"


class BlockedAddressError(FetchError):
    """The feed's host resolved to an address the settings do not allow."""

    kind = "blocked_address"


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
