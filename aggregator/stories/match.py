"""Match: the news rules that decide whether two prints are one story. Pure.

Similar text alone is not enough on news (see ``aggregator.stories.prints`` for the rules'
reasons): figures, containment, addresses and headlines weigh in.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import IntEnum
from typing import TYPE_CHECKING

from aggregator.stories.prints import MIN_TITLE_WORDS, Fingerprint
from aggregator.stories.text import is_number

if TYPE_CHECKING:
    # The parse processes use this module (each article's StoryPrint is computed there),
    # and they need no asyncpg (11 MB each).
    pass

# How long after a story's last copy a new one may still join it.
DEFAULT_WINDOW = timedelta(days=7)
# A shared headline is weaker evidence than shared text: recurring headlines exist.
TITLE_WINDOW = timedelta(days=2)

# Similarity thresholds (Jaccard J, containment C of the smaller text in the larger).
SAME_TEXT_JACCARD = 0.5
SAME_TEXT_CONTAINMENT = 0.7
# With a shared URL, guid or headline, a long text only has to agree this much.
LINKED_CONTAINMENT = 0.3
# Near-duplicates this close may merge two stories that a new copy bridges.
STRONG_JACCARD = 0.6
# Texts longer than this are not diffed word by word to tell a correction from a new issue.
MAX_DIFF_WORDS = 5_000


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
        if op == "replace" and not all(is_number(t) for t in (*a[i1:i2], *b[j1:j2])):
            return False
    return True
