"""The content hash: what makes two items one article (Postgres' unique key).

The hash is sha256 of the normalized body text (see ``bodytext``). A body too
short to identify a story ("Read more", or nothing) is hashed together with the
title and canonical URL, so unrelated stubs never merge.
"""

from __future__ import annotations

import hashlib

SHORT_BODY_CHARS = 50
_SEPARATOR = "\x1f"  # unit separator: cannot occur in normalized text


def content_hash(body_text: str, *, title: str, canonical_url: str | None) -> str:
    """sha256 hex of the body text; short bodies are salted with title and URL."""
    material = body_text
    if len(body_text) < SHORT_BODY_CHARS:
        material = _SEPARATOR.join((body_text, title, canonical_url or ""))
    return hashlib.sha256(material.encode("utf-8")).hexdigest()
