"""Plan: which story each article of a batch joins, decided in memory. Pure.

The SQL that reads the candidates and writes the plan is ``aggregator.storage.stories``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from aggregator.stories.match import DEFAULT_WINDOW, Evidence, Match, compare
from aggregator.stories.prints import Fingerprint

if TYPE_CHECKING:
    # The parse processes use this module (each article's StoryPrint is computed there),
    # and they need no asyncpg (11 MB each).
    pass

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
