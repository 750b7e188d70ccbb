"""Stories: the edited copies of one news story, across outlets, grouped under one ``story_id``.

The content hash merges byte-identical bodies; this module groups what is left:
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

Store workers assign stories under one lock (a row lock, see aggregator.locks),
taken after the CPU work and held to commit, so two workers storing copies of one
story at once cannot each start a story of their own.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import re
import sys
import unicodedata
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import IntEnum
from functools import cache, cached_property, lru_cache
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import numpy as np
from pydantic import BaseModel, ConfigDict

from aggregator import locks, textfold

if TYPE_CHECKING:
    # normalize imports this module (it computes each article's StoryPrint in the parse
    # processes), which need neither asyncpg (11 MB each) nor a circular import.
    import asyncpg

    from aggregator.normalize import Article

DEFAULT_WINDOW = timedelta(days=7)
# A shared headline is weaker evidence than shared text: recurring headlines exist.
TITLE_WINDOW = timedelta(days=2)

SHINGLE_WORDS = 3
LEAD_WORDS = 40
MIN_TITLE_WORDS = 5
# Fewer shingles than this is a stub ("Continue reading..."): its text proves nothing.
STUB_SHINGLES = 8
# Fewer than this is a summary or brief; at least this on both sides, two texts are
# long enough to contradict a shared URL or headline.
SHORT_SHINGLES = 30

# Similarity thresholds (Jaccard J, containment C of the smaller text in the larger).
SAME_TEXT_JACCARD = 0.5
SAME_TEXT_CONTAINMENT = 0.7
# With a shared URL, guid or headline, a long text only has to agree this much.
LINKED_CONTAINMENT = 0.3
# Near-duplicates this close may merge two stories that a new copy bridges.
STRONG_JACCARD = 0.6
# Texts longer than this are not diffed word by word to tell a correction from a new issue.
MAX_DIFF_WORDS = 5_000

# MinHash: BODY_BANDS x BODY_ROWS hash functions over the whole text, and
# LEAD_BANDS x LEAD_ROWS over its first LEAD_WORDS words. A pair with Jaccard
# 0.5 shares a body band with probability 1 - (1 - 0.5**3)**20 = 0.93.
BODY_BANDS, BODY_ROWS = 20, 3
LEAD_BANDS, LEAD_ROWS = 10, 2
_PERMUTATIONS = BODY_BANDS * BODY_ROWS + LEAD_BANDS * LEAD_ROWS

# --- text normalization -----------------------------------------------------------------------

# The letter rules shared with search live in textfold; the story fold adds NFKC, case
# folding and drops every nonspacing mark and format character (see ``fold``).
_FOLD = str.maketrans(textfold.LETTERS)
_TOKEN = re.compile(r"\d+(?:[.,]\d+)*|[^\W\d_]+")
# "AMMAN, Jordan, Sept. 11 (CWS) — ", "الرياض (الشرق) — ", "LONDON - ": where, when and
# which agency, which outlets add, drop or rewrite independently of the story.
_DATELINE = re.compile(r"^(?P<place>[^\n—–]{1,80}?)\s*(?:—|–|--|-)\s+")


def fold(text: str) -> str:
    """Text with the differences that outlets introduce but readers ignore removed."""
    if text.isascii():
        return text.translate(_FOLD).casefold()
    text = unicodedata.normalize("NFKC", text)
    codes = _code_points(text)
    bmp = codes < 0x10000
    folded = np.where(bmp, _fold_table()[codes & 0xFFFF], codes)
    text = _from_code_points(folded[folded != _DROP]).casefold()
    # NFKD splits hamza forms and Latin accents into base letter + mark; marks and
    # format characters (ZWJ, bidi controls) go.
    codes = _code_points(unicodedata.normalize("NFKD", text))
    return _from_code_points(codes[~_marks_and_format()[codes]])


# ``str.translate`` with a dict looks every character up in Python (about 20 ns each,
# two thirds of folding a 3 kB text); these tables do the same lookups in numpy.
_DROP = np.uint32(0xFFFF_FFFF)


def _code_points(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def _from_code_points(codes: np.ndarray) -> str:
    return codes.tobytes().decode("utf-32-le", "surrogatepass")


@cache
def _fold_table() -> np.ndarray:
    """``_FOLD`` over the Basic Multilingual Plane (where all its letters are)."""
    table = np.arange(0x10000, dtype=np.uint32)
    for code, to in _FOLD.items():
        table[code] = _DROP if to is None else ord(to)
    return table


@cache
def _marks_and_format() -> np.ndarray:
    """True for every nonspacing mark and format character, by code point."""
    drop = np.zeros(sys.maxunicode + 1, dtype=bool)
    for c in range(sys.maxunicode + 1):
        if unicodedata.category(chr(c)) in ("Mn", "Cf"):
            drop[c] = True
    return drop


def words(text: str) -> list[str]:
    """Folded word and number tokens; a number keeps its separators ("33,048", "2.7")."""
    return _TOKEN.findall(fold(text))


def strip_dateline(text: str) -> str:
    """The text without a leading dateline (a place, a date or an agency, then a dash)."""
    match = _DATELINE.match(text)
    if match is None:
        return text
    place = match["place"]
    if place.endswith(")") or _is_upper(place):
        return text[match.end() :]
    return text


def _is_upper(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    return len(letters) >= 3 and all(c.isupper() for c in letters)


def _is_number(token: str) -> bool:
    return token[0].isdigit()


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
    return _hash64("0" if _is_number(token) else token) & _MASK64


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
    return _fingerprint(
        story_print(title, text, with_keys=with_keys),
        text=text,
        published_at=published_at,
        identity=frozenset(_identity_keys(canonical_url, guid)),
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
    return _fingerprint(
        computed if computed is not None else article_print(article),
        text=article.content_text or article.summary,
        published_at=article.published_at,
        identity=frozenset(_identity_keys(article.canonical_url, article.guid)),
    )


def _fingerprint(
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


def _identity_keys(canonical_url: str | None, guid: str | None) -> Iterable[int]:
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


class Evidence(IntEnum):
    NONE = 0
    LINKED = 1  # the same story: join it
    STRONG = 2  # a copy (near-identical text, or the same address): firmly placed, so any
    # other story the article matches is this one too, and merges into it


@dataclass(frozen=True, slots=True)
class Match:
    evidence: Evidence
    score: float


NO_MATCH = Match(Evidence.NONE, 0.0)


def compare(new: Fingerprint, old: Fingerprint, *, window: timedelta = DEFAULT_WINDOW) -> Match:
    """Whether two articles tell the same story, and how sure that is."""
    gap = abs(new.published_at - old.published_at)
    if gap > window:
        return NO_MATCH
    match = _text_match(new, old, gap)
    # Figures can only veto a match; their word-by-word diff is the costly part, so it
    # runs only for pairs the text would otherwise match.
    if match is NO_MATCH or not figures_agree(new, old):
        return NO_MATCH
    return match


def _text_match(new: Fingerprint, old: Fingerprint, gap: timedelta) -> Match:
    common = len(new.shingles & old.shingles)
    union = len(new.shingles) + len(old.shingles) - common
    smaller = min(len(new.shingles), len(old.shingles))
    jaccard = common / union if union else 0.0
    containment = common / smaller if smaller else 0.0
    linked = bool(new.identity & old.identity) or (
        len(new.title.split()) >= MIN_TITLE_WORDS and new.title == old.title and gap <= TITLE_WINDOW
    )
    score = max(jaccard, containment)

    if not (new.is_stub or old.is_stub):
        if jaccard >= STRONG_JACCARD:
            return Match(Evidence.STRONG, score)
        if jaccard >= SAME_TEXT_JACCARD or containment >= SAME_TEXT_CONTAINMENT:
            return Match(Evidence.LINKED, score)
    if not linked:
        return NO_MATCH
    if new.is_short or old.is_short or containment >= LINKED_CONTAINMENT:
        # The same address or headline: a summary or stub of the story, or an update.
        strength = Evidence.STRONG if new.identity & old.identity else Evidence.LINKED
        return Match(strength, score)
    return NO_MATCH  # two long, different texts at one address: a rolling page


def figures_agree(a: Fingerprint, b: Fingerprint) -> bool:
    """False when the figures say these are two issues of a templated item.

    Every figure of the text with fewer figures must appear in the other (a summary
    quotes the story's figures), except one corrected figure in otherwise identical
    wording. A new issue of a bulletin changes figures and words (the weekday, "rose"
    for "fell") together.
    """
    few, many = sorted((a.numbers, b.numbers), key=len)
    missing = len(few - many)
    if missing != 1:
        return missing == 0
    # Only now the words (see Fingerprint.tokens). difflib's alignment depends on argument
    # order: fix one, so compare(a, b) == compare(b, a).
    first, second = sorted((list(a.tokens), list(b.tokens)))
    return _only_figures_replaced(first, second)


def _only_figures_replaced(a: Sequence[str], b: Sequence[str]) -> bool:
    """True when the texts differ only by inserted or removed passages and replaced numbers."""
    if max(len(a), len(b)) > MAX_DIFF_WORDS:
        return False  # a diff this long costs too much; without it, assume a new story
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "replace" and not all(_is_number(t) for t in (*a[i1:i2], *b[j1:j2])):
            return False
    return True


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


# --- assignment -------------------------------------------------------------------------------


@dataclass
class Plan:
    """What one batch's assignment writes: pure data, decided in memory."""

    assigned: dict[int, int] = field(default_factory=dict)  # article id -> story id
    created: dict[int, datetime] = field(default_factory=dict)  # new story id -> published_at
    merged: dict[int, int] = field(default_factory=dict)  # story id -> the story it joins
    keys: list[tuple[int, int, datetime]] = field(default_factory=list)  # (key, article, time)

    def story(self, story_id: int) -> int:
        """The story a story id stands for now, after this batch's merges."""
        while story_id in self.merged:
            story_id = self.merged[story_id]
        return story_id


@dataclass(frozen=True, slots=True)
class Known:
    """A stored article found through a shared key."""

    article_id: int
    story_id: int
    fingerprint: Fingerprint


def plan_stories(
    pending: Sequence[tuple[int, Fingerprint]],
    known: Iterable[Known],
    *,
    window: timedelta = DEFAULT_WINDOW,
) -> Plan:
    """Decide the story of each new article, oldest first, against stored ones and each other.

    An article joins the story of its best match. When it matches a copy strongly
    (near-identical text, or the same URL or guid) it is firmly placed, and any
    other story it matches is the same story arrived by another path (a summary
    stored before the full text that links them): those stories merge into the
    oldest.
    """
    plan = Plan()
    fingerprints: dict[int, Fingerprint] = {}
    story_of: dict[int, int] = {}
    by_key: defaultdict[int, set[int]] = defaultdict(set)

    def index(article_id: int, keys: Iterable[int]) -> None:
        for key in keys:
            by_key[key].add(article_id)

    for k in known:
        fingerprints[k.article_id] = k.fingerprint
        story_of[k.article_id] = k.story_id
        index(k.article_id, k.fingerprint.keys)

    for article_id, fp in sorted(pending, key=lambda p: (p[1].published_at, p[0])):
        candidates = set().union(*(by_key.get(key, ()) for key in fp.keys)) - {article_id}
        matches = _matches(fp, sorted(candidates), fingerprints, plan, story_of, window)
        if not matches:
            story = article_id
            plan.created[story] = fp.published_at
        else:
            _, best = max(
                matches,
                key=lambda mc: (
                    mc[0].evidence,
                    mc[0].score,
                    -abs(fingerprints[mc[1]].published_at - fp.published_at),
                ),
            )
            story = plan.story(story_of[best])
            if any(m.evidence is Evidence.STRONG for m, _ in matches):
                matched = {plan.story(story_of[c]) for _, c in matches}
                story = min(matched)
                for other in matched - {story}:
                    plan.merged[other] = story
        plan.assigned[article_id] = story
        story_of[article_id] = story
        fingerprints[article_id] = fp
        index(article_id, fp.keys)
        plan.keys += [(key, article_id, fp.published_at) for key in fp.keys]

    plan.assigned = {a: plan.story(s) for a, s in plan.assigned.items()}
    plan.merged = {s: plan.story(s) for s in plan.merged}
    return plan


def _matches(
    fp: Fingerprint,
    candidates: list[int],
    fingerprints: dict[int, Fingerprint],
    plan: Plan,
    story_of: dict[int, int],
    window: timedelta,
) -> list[tuple[Match, int]]:
    """The candidates ``fp`` matches, with how; when they all belong to one story, the
    first match alone: that story is the answer whichever copy matches best, and no
    merge can follow. (A wire story's copies are dozens of candidates of one story.)"""
    if len({plan.story(story_of[c]) for c in candidates}) == 1:
        for c in candidates:
            match = compare(fp, fingerprints[c], window=window)
            if match.evidence is not Evidence.NONE:
                return [(match, c)]
        return []
    found = [(compare(fp, fingerprints[c], window=window), c) for c in candidates]
    return [(m, c) for m, c in found if m.evidence is not Evidence.NONE]


# Each key reads at most this many stored articles (the latest in the window): a
# bound on the cost of one lookup however many copies of a template pile up.
MAX_CANDIDATES_PER_KEY = 100

_CANDIDATES = """
WITH hits AS (
    SELECT k.article_id, array_agg(DISTINCT q.key) AS keys
    FROM unnest($1::bigint[], $2::timestamptz[], $3::timestamptz[]) AS q(key, lo, hi)
    CROSS JOIN LATERAL (
        SELECT sk.article_id FROM story_keys sk
        WHERE sk.key = q.key AND sk.published_at BETWEEN q.lo AND q.hi
        ORDER BY sk.published_at DESC
        LIMIT $4
    ) k
    GROUP BY k.article_id
)
SELECT a.id, a.story_id, a.title, a.content_text, a.summary, a.canonical_url, a.published_at,
       h.keys
FROM hits h JOIN articles a ON a.id = h.article_id
WHERE a.story_id IS NOT NULL
  AND a.id <> ALL($5::bigint[])  -- this batch's own articles: the pending ones
"""

# A story one new article starts alone is written whole: what _REFRESH_STORIES would set.
_CREATE_STORIES = """
INSERT INTO stories (id, first_seen_at, published_at, updated_at, representative_id)
SELECT s.id, $3, s.published_at, $3, CASE WHEN s.alone THEN s.id END
FROM unnest($1::bigint[], $2::timestamptz[], $4::boolean[]) AS s(id, published_at, alone)
"""

_SET_STORIES = """
UPDATE articles a SET story_id = u.story_id
FROM unnest($1::bigint[], $2::bigint[]) AS u(id, story_id)
WHERE a.id = u.id
"""

_MOVE_MERGED = """
UPDATE articles a SET story_id = m.target
FROM unnest($1::bigint[], $2::bigint[]) AS m(story_id, target)
WHERE a.story_id = m.story_id
"""

_MARK_MERGED = """
UPDATE stories s SET merged_into = m.target, article_count = 0, representative_id = NULL,
                     updated_at = $3
FROM unnest($1::bigint[], $2::bigint[]) AS m(story_id, target)
WHERE s.id = m.story_id OR s.merged_into = m.story_id
"""

_INSERT_KEYS = """
INSERT INTO story_keys (key, article_id, published_at)
SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::timestamptz[])
"""

# The representative is the fullest text (a summary never wins over the story), then the
# earliest published.
_REFRESH_STORIES = """
UPDATE stories s
SET article_count = c.articles, representative_id = c.representative,
    published_at = c.published_at, first_seen_at = c.first_seen_at, updated_at = $2
FROM (
    SELECT story_id, count(*) AS articles, min(published_at) AS published_at,
           min(first_seen_at) AS first_seen_at,
           (array_agg(id ORDER BY length(content_text) DESC, published_at, id))[1] AS representative
    FROM articles WHERE story_id = ANY($1::bigint[])
    GROUP BY story_id
) c
WHERE s.id = c.story_id
"""


async def assign_stories(
    conn: asyncpg.Connection,
    new: Sequence[tuple[int, Article]],
    *,
    seen_at: datetime,
    window: timedelta = DEFAULT_WINDOW,
) -> dict[int, int]:
    """Give each newly inserted article its story; call inside the store transaction.

    Returns article id -> story id.
    """
    if not new:
        return {}
    prints = [article_print(a) for _, a in new]  # carried from the parse processes, mostly
    pending = [
        (article_id, article_fingerprint(a, p))
        for (article_id, a), p in zip(new, prints, strict=True)
    ]
    # Serialize assignment across workers until this transaction commits: a worker
    # then sees every copy another worker stored before it, and never starts a
    # second story for the same text. The CPU work above stays outside the lock.
    await _lock_assignment(conn)
    known = await _known_candidates(conn, pending, window)
    plan = plan_stories(pending, known, window=window)
    await _write(conn, plan, seen_at)
    for p in prints:  # the candidates of the articles to come
        remembered_prints.add(p)
    return plan.assigned


async def _lock_assignment(conn: asyncpg.Connection) -> None:
    """Wait until no other transaction is assigning stories; hold that until commit.

    One lock for every store worker (the read-only role cannot take it)."""
    await locks.hold(conn, locks.STORIES)


async def _known_candidates(
    conn: asyncpg.Connection, pending: Sequence[tuple[int, Fingerprint]], window: timedelta
) -> list[Known]:
    keys, lows, highs = [], [], []
    for _, fp in pending:
        for key in fp.keys:
            keys.append(key)
            lows.append(fp.published_at - window)
            highs.append(fp.published_at + window)
    if not keys:
        return []
    pending_ids = [article_id for article_id, _ in pending]
    rows = await conn.fetch(_CANDIDATES, keys, lows, highs, MAX_CANDIDATES_PER_KEY, pending_ids)
    identities = frozenset().union(*(fp.identity for _, fp in pending))
    known = []
    for row in rows:
        matched = frozenset(row["keys"])
        text = row["content_text"] or row["summary"]
        # The stored row has no guid; the keys it matched carry its identity.
        identity = frozenset(_identity_keys(row["canonical_url"], None)) | (matched & identities)
        fp = _fingerprint(
            remembered_prints.of(row["title"], text),
            text=text,
            published_at=row["published_at"],
            identity=identity,
            keys=matched,
        )
        known.append(Known(row["id"], row["story_id"], fp))
    return known


async def _write(conn: asyncpg.Connection, plan: Plan, seen_at: datetime) -> None:
    # Articles were inserted as their own story: only those joining another one move.
    moved = {a: s for a, s in plan.assigned.items() if a != s}
    alone = set(plan.created) - set(moved.values()) - set(plan.merged.values())
    if plan.created:
        await conn.execute(
            _CREATE_STORIES,
            list(plan.created),
            list(plan.created.values()),
            seen_at,
            [story in alone for story in plan.created],
        )
    if moved:
        await conn.execute(_SET_STORIES, list(moved), list(moved.values()))
    if plan.merged:
        olds, targets = list(plan.merged), list(plan.merged.values())
        await conn.execute(_MOVE_MERGED, olds, targets)
        await conn.execute(_MARK_MERGED, olds, targets, seen_at)
    if plan.keys:
        await conn.execute(_INSERT_KEYS, *map(list, zip(*plan.keys, strict=True)))
    refresh = sorted(set(plan.assigned.values()) - alone)
    if refresh:
        await conn.execute(_REFRESH_STORIES, refresh, seen_at)


# --- reading stories --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StorySummary:
    """One line of ``aggregator stories``: a row of the ``story_overview`` view."""

    story_id: int
    published_at: datetime
    first_seen_at: datetime
    title: str | None
    article_count: int
    outlets: list[str]


_LIST_STORIES = """
SELECT story_id, published_at, first_seen_at, title, article_count, outlets
FROM story_overview
WHERE ($1::text IS NULL OR $1 = ANY(regions))
  AND ($2::timestamptz IS NULL OR published_at >= $2)
ORDER BY published_at DESC, story_id DESC
LIMIT $3
"""


async def latest_stories(
    conn: asyncpg.Connection,
    *,
    region: str | None = None,
    since: datetime | None = None,
    limit: int = 50,
) -> list[StorySummary]:
    """The most recently published stories, newest first."""
    rows = await conn.fetch(_LIST_STORIES, region, since, limit)
    return [StorySummary(**dict(row)) for row in rows]
