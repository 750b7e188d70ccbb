"""Stories: the edited copies of one news story, across outlets, grouped under one ``story_id``.

The content hash merges byte-identical bodies; this package groups what is left:
a wire story with a new headline, a trimmed ending, an editor's note, a
summary-only digest entry, a Persian copy typed with Arabic letters, a late
republication with a new dateline. Every newly stored article joins the story
of a matching article published within a window (default 7 days) or starts
its own story, whose id is the article's own id.

Finding candidates costs the same however many articles are stored: each
article leaves a few keys in ``story_keys`` (MinHash LSH bands of its whole
text and of its lead, its canonical URL, publisher-scoped guid and headline),
and a new article looks up only its own keys in that indexed table. Candidates
are then verified on their text, because similar text alone is not enough on
news:

* Templated bulletins (prices, weather) repeat their wording every issue.
  Their figures are the story: when the figures differ, two near-identical
  texts are different stories, unless exactly one figure changed in otherwise
  identical wording (a correction).
* A summary or a truncated copy is mostly *contained* in the full text, so
  containment counts, not only Jaccard similarity.
* The same canonical URL or guid, or the same headline within two days, ties a
  short copy (summary, "Continue reading" stub) to its story; two long texts
  at one address that say different things stay apart (a rolling page).

An article that matches a copy strongly (near-identical text, the same URL or
guid) and also matches another story shows that the two are one story (say, a
paraphrased summary stored before the full text that links it to the rest): the
later story merges into the older, and keeps its row with ``merged_into``.

Text is compared after its own normalization, separate from the content
hash's body-text rules: datelines are dropped, Arabic/Persian letter variants,
ZWNJ, diacritics, tatweel and Eastern digits are folded, case is folded
(Turkish dotted and dotless i alike).

Folding words and hashing shingles and MinHash keys is the costly part, and the
store job's event loop is the pipeline's serial step, so it does little of it:
each text's ``StoryPrint`` is computed once, in the parse processes at normalize
time, and travels in the ``Article``; the prints of stored articles that come
back as candidates are remembered per process, keyed by their text. The loop
mostly compares sets.

Store workers assign stories concurrently: a batch claims its articles' keys, after the
CPU work and until commit, so two workers storing copies of one text (which share
keys) take turns, and batches that share no key never wait (aggregator.storage.stories).

This module holds the prints (shingles, MinHash keys, fingerprints, the remembered
prints); the news rules are ``stories.match``, the assignment plan ``stories.plan``
and the SQL that reads candidates and writes the plan ``storage.stories``.
"""

from __future__ import annotations

import base64
import hashlib
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import numpy as np

from aggregator.model import Article, StoryPrint
from aggregator.stories.text import is_number, strip_dateline, words

if TYPE_CHECKING:
    # The parse processes use this module (each article's StoryPrint is computed there),
    # and they need no asyncpg (11 MB each).
    pass

SHINGLE_WORDS = 3
LEAD_WORDS = 40
MIN_TITLE_WORDS = 5
# Fewer shingles than this is a stub ("Continue reading..."): its text proves nothing.
STUB_SHINGLES = 8
# Fewer than this is a summary or brief; at least this on both sides, two texts are
# long enough to contradict a shared URL or headline.
SHORT_SHINGLES = 30


# MinHash: BODY_BANDS x BODY_ROWS hash functions over the whole text, and
# LEAD_BANDS x LEAD_ROWS over its first LEAD_WORDS words. A pair with Jaccard
# 0.5 shares a body band with probability 1 - (1 - 0.5**3)**20 = 0.93.
BODY_BANDS, BODY_ROWS = 20, 3
LEAD_BANDS, LEAD_ROWS = 10, 2
_PERMUTATIONS = BODY_BANDS * BODY_ROWS + LEAD_BANDS * LEAD_ROWS

_MASK64 = 0xFFFF_FFFF_FFFF_FFFF
_ODD = np.uint64(0x9E3779B97F4A7C15)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)
_SEEDS = np.random.default_rng(0x5EED).integers(0, 2**63, size=_PERMUTATIONS, dtype=np.uint64)


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer, elementwise: uint64 arithmetic wraps, as the mixer intends."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)  # type: ignore[no-any-return]


def _hash64(value: str) -> int:
    """A stable signed 64-bit hash (Postgres bigint); Python's hash() differs per process."""
    digest = hashlib.blake2b(value.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


@lru_cache(maxsize=1 << 16)
def _token_hash(token: str) -> int:
    """A word's hash; every number hashes alike, so templated text lines up."""
    return _hash64("0" if is_number(token) else token) & _MASK64


def shingle_hashes(tokens: Sequence[str], size: int = SHINGLE_WORDS) -> np.ndarray:
    """Hashed word shingles (unique, unsigned 64-bit), numbers masked."""
    if not tokens:
        return np.zeros(0, dtype=np.uint64)
    hashed = np.fromiter(
        map(_token_hash, tokens),
        dtype=np.uint64,
        count=len(tokens),
    )
    if len(hashed) < size:  # a text shorter than a shingle is one shingle
        hashed = np.concatenate([hashed, np.zeros(size - len(hashed), dtype=np.uint64)])
    count = len(hashed) - size + 1
    combined = hashed[:count].copy()
    for offset in range(1, size):
        combined = _mix(combined * _ODD + hashed[offset : offset + count])
    return _sorted_unique(combined)


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """``np.unique(values)`` for a 1-D array, without its general-case overhead (which
    was a tenth of printing a text)."""
    values = np.sort(values)
    if values.size < 2:
        return values
    keep = np.empty(values.size, dtype=bool)
    keep[0] = True
    np.not_equal(values[1:], values[:-1], out=keep[1:])
    return values[keep]


# --- MinHash ----------------------------------------------------------------------------------


def minhash(hashes: np.ndarray | Iterable[int], seeds: np.ndarray = _SEEDS) -> np.ndarray:
    """One minimum per seed of splitmix64(shingle ^ seed): a MinHash signature."""
    if isinstance(hashes, np.ndarray):
        values = hashes.astype(np.uint64, copy=False)
    else:
        values = np.fromiter((h & _MASK64 for h in hashes), dtype=np.uint64)
    if values.size == 0:
        return np.zeros(0, dtype=np.uint64)
    return _mix(values[None, :] ^ seeds[:, None]).min(axis=1)  # type: ignore[no-any-return]


def band_keys(kind: str, signature: np.ndarray, bands: int, rows: int) -> list[int]:
    """One key per band of ``rows`` signature values: equal keys, equal band."""
    if signature.size == 0:
        return []
    digits = signature.tobytes().hex()  # 16 hex digits per value
    width = 16 * rows
    return [_hash64(f"{kind}{b}:" + digits[b * width : (b + 1) * width]) for b in range(bands)]


# --- fingerprints and evidence ----------------------------------------------------------------


def text_digest(title: str, text: str) -> str:
    """The digest a ``StoryPrint`` of this headline and text carries."""
    material = f"{len(title)}:{title}{text}".encode("utf-8", "surrogatepass")
    return hashlib.blake2b(material, digest_size=16).hexdigest()


def story_print(title: str, text: str, *, with_keys: bool = True) -> StoryPrint:
    """The print of a headline and text; ``with_keys=False`` skips the MinHash keys
    (a stored candidate only needs to be compared)."""
    tokens = words(strip_dateline(text.strip()))
    title_tokens = words(title)
    hashes = shingle_hashes(tokens)
    keys: list[int] = []
    # A stub's text proves nothing, and every "Continue reading" would share its bands.
    if with_keys and len(hashes) >= STUB_SHINGLES:
        signature = minhash(hashes)
        keys += band_keys("b", signature[: BODY_BANDS * BODY_ROWS], BODY_BANDS, BODY_ROWS)
        lead = minhash(shingle_hashes(tokens[:LEAD_WORDS]), _SEEDS[BODY_BANDS * BODY_ROWS :])
        keys += band_keys("l", lead, LEAD_BANDS, LEAD_ROWS)
    folded_title = " ".join(title_tokens)
    if len(title_tokens) >= MIN_TITLE_WORDS:
        keys.append(_title_key(folded_title))
    return StoryPrint(
        digest=text_digest(title, text),
        shingles=base64.b64encode(hashes.astype("<u8", copy=False).tobytes()).decode("ascii"),
        # (t[0].isdigit() is _is_number, inlined: a call per word cost 0.1 ms a text)
        numbers=tuple(sorted({t for t in (*tokens, *title_tokens) if t[0].isdigit()})),
        title=folded_title,
        keys=tuple(dict.fromkeys(keys)),
    )


@dataclass(frozen=True)
class Fingerprint:
    """What story matching knows about one article: its text's print, when, and where.

    The sets that comparing needs are built from the print on first use: most new
    articles have no candidate, and are never compared.
    """

    text_print: StoryPrint
    published_at: datetime
    text: str = field(repr=False, compare=False)  # the compared text, for a word-by-word diff
    identity: frozenset[int] = frozenset()  # canonical URL and publisher-scoped guid keys
    keys: tuple[int, ...] = field(default=(), compare=False)

    @property
    def title(self) -> str:
        return self.text_print.title

    @cached_property
    def shingles(self) -> frozenset[int]:
        return self.text_print.shingle_set()

    @cached_property
    def numbers(self) -> frozenset[str]:
        return frozenset(self.text_print.numbers)

    @cached_property
    def tokens(self) -> tuple[str, ...]:
        """The text's folded words: only a figure-by-figure diff reads them, so they are
        neither kept nor carried for every article."""
        return tuple(words(strip_dateline(self.text.strip())))

    @property
    def is_stub(self) -> bool:
        return self.text_print.shingle_count < STUB_SHINGLES

    @property
    def is_short(self) -> bool:
        return self.text_print.shingle_count < SHORT_SHINGLES


def fingerprint(
    *,
    title: str,
    text: str,
    published_at: datetime,
    canonical_url: str | None = None,
    guid: str | None = None,
    with_keys: bool = True,
) -> Fingerprint:
    """What matching needs of an article; ``with_keys=False`` skips the MinHash keys."""
    return fingerprint_from(
        story_print(title, text, with_keys=with_keys),
        text=text,
        published_at=published_at,
        identity=frozenset(identity_keys(canonical_url, guid)),
    )


def article_print(article: Article) -> StoryPrint:
    """The print the article carries (computed at normalize time), or computed now when it
    carries none (a batch queued before prints were carried) or one of another text (a
    full-text page replaced the feed's)."""
    text = article.content_text or article.summary
    carried = article.story_print
    if carried is not None and carried.digest == text_digest(article.title, text):
        return carried
    return story_print(article.title, text)


def article_fingerprint(article: Article, computed: StoryPrint | None = None) -> Fingerprint:
    """The article's fingerprint, from its print when ``computed`` already holds it."""
    return fingerprint_from(
        computed if computed is not None else article_print(article),
        text=article.content_text or article.summary,
        published_at=article.published_at,
        identity=frozenset(identity_keys(article.canonical_url, article.guid)),
    )


def fingerprint_from(
    text_print: StoryPrint,
    *,
    text: str,
    published_at: datetime,
    identity: frozenset[int],
    keys: Iterable[int] | None = None,
) -> Fingerprint:
    """A fingerprint from a print; its keys are the print's and the address's, unless given."""
    if keys is None:
        keys = dict.fromkeys([*text_print.keys, *sorted(identity)])
    return Fingerprint(
        text_print=text_print,
        published_at=published_at,
        text=text,
        identity=identity,
        keys=tuple(keys),
    )


def _title_key(folded_title: str) -> int:
    return _hash64("t:" + folded_title)


def identity_keys(canonical_url: str | None, guid: str | None) -> Iterable[int]:
    host = ""
    if canonical_url:
        parts = urlsplit(canonical_url)
        host = parts.hostname or ""
        # A site's front page stands in for a missing link; it identifies nothing.
        if parts.path.strip("/") or parts.query:
            yield _hash64("u:" + canonical_url)
    if guid:
        # A guid is unique within its publisher only: "12345" at two sites is two items.
        if host:
            yield _hash64(f"g:{host}\x1f{guid}")
        elif "://" in guid or guid.startswith(("tag:", "urn:")):
            yield _hash64("g:\x1f" + guid)


# --- stored articles' prints ------------------------------------------------------------------

# Stored articles come back from Postgres as text. Their prints are kept here, so an
# article that keeps turning up as a candidate (a wire story, a bulletin series) is
# folded and hashed once per process, not on every lookup; the store seeds it with the
# prints of the articles it inserts. Keyed by the digest of the headline and text
# themselves, never by article id: ids come back after a TRUNCATE ... RESTART IDENTITY,
# and an entry can only ever answer for the very text it was computed from. Bounded by
# size, not count: a long text has many shingles.
REMEMBERED_PRINTS_BYTES = 64 << 20


class RememberedPrints:
    """The most recently used prints, by their digest, within a memory budget."""

    def __init__(
        self, max_bytes: int = REMEMBERED_PRINTS_BYTES, *, with_keys: bool = False
    ) -> None:
        self.max_bytes = max_bytes
        self.with_keys = with_keys  # what ``of`` computes: see ``story_print``
        self.size = 0  # about, in bytes: see _footprint
        self.hits = self.misses = 0
        self._prints: OrderedDict[str, StoryPrint] = OrderedDict()

    def __len__(self) -> int:
        return len(self._prints)

    def of(self, title: str, text: str) -> StoryPrint:
        """The print of a headline and text: remembered, else computed and kept."""
        found = self._prints.get(text_digest(title, text))
        if found is None:
            self.misses += 1
            found = story_print(title, text, with_keys=self.with_keys)
            self.add(found)
        else:
            self.hits += 1
            self._prints.move_to_end(found.digest)
        return found

    def add(self, text_print: StoryPrint) -> None:
        replaced = self._prints.pop(text_print.digest, None)
        if replaced is not None:
            self.size -= _footprint(replaced)
        self._prints[text_print.digest] = text_print
        self.size += _footprint(text_print)
        while self.size > self.max_bytes and self._prints:
            _, oldest = self._prints.popitem(last=False)
            self.size -= _footprint(oldest)

    def clear(self) -> None:
        self._prints.clear()
        self.size = self.hits = self.misses = 0


def _footprint(text_print: StoryPrint) -> int:
    """About how many bytes a remembered print holds (measured with tracemalloc: its
    strings, its integers, the model and the cache entry)."""
    return (
        len(text_print.shingles)
        + 4 * len(text_print.title)
        + 40 * (len(text_print.keys) + len(text_print.numbers))
        + 1_400
    )


# In the store job: the prints of stored candidates (compared, never looked up by key).
remembered_prints = RememberedPrints()
# In the parse processes: the prints of the latest texts normalized, keys and all, so
# the identical copies of a wire story that many outlets carry are printed once.
RECENT_PRINTS_BYTES = 8 << 20
recent_prints = RememberedPrints(RECENT_PRINTS_BYTES, with_keys=True)
