"""The shared types: what one stage hands the next (an ``Article`` and its ``StoryPrint``).

They sit below every layer so that the pipeline, story matching, storage and the
queues speak of the same values without importing each other.
"""

from __future__ import annotations

import base64
from datetime import datetime

import numpy as np
from pydantic import BaseModel, ConfigDict


class StoryPrint(BaseModel):
    """What matching needs of an article's headline and text, computed once per text.

    The parse processes compute it at normalize time and the ``Article`` carries it
    to the store job (JSON on the queue), so the store job's event loop, the
    pipeline's serial step, neither folds words nor hashes shingles. Compact:
    the shingle hashes travel as one base64 string (about 1.5 bytes per character
    of text), the keys as plain integers.
    """

    model_config = ConfigDict(frozen=True)

    # Digest of the headline and text it was computed from: a print that no longer fits
    # its article (the full text replaced the feed's) is recomputed, never trusted.
    digest: str
    shingles: str  # sorted, unique shingle hashes: little-endian uint64, base64
    numbers: tuple[str, ...]  # the figures of the text and headline
    title: str  # the folded headline
    keys: tuple[int, ...] = ()  # lookup keys of the text and headline (an address's are added)

    @property
    def shingle_count(self) -> int:
        """How many shingles, read off the base64 length (decoding is for comparing)."""
        padding = self.shingles[-2:].count("=")
        return (len(self.shingles) * 3 // 4 - padding) // 8

    def shingle_set(self) -> frozenset[int]:
        raw = base64.b64decode(self.shingles)
        return frozenset(np.frombuffer(raw, dtype="<u8").tolist())


class Article(BaseModel):
    """One normalized item, as the store job receives it (JSON on the queue)."""

    model_config = ConfigDict(frozen=True)

    content_hash: str
    canonical_url: str | None
    url: str | None
    guid: str | None
    title: str
    summary: str
    content_html: str
    content_text: str
    author: str | None
    language: str | None
    region: str | None
    published_at: datetime
    # When the article's page supplied its full text (a --full-text feed), the hash of the
    # feed's own text for it: the seen cache remembers both, so the page is fetched once.
    feed_hash: str | None = None
    # What story matching needs of the title and text, computed here in the parse processes
    # so the store job's event loop does not (None: the store job computes it).
    story_print: StoryPrint | None = None
