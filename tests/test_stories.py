"""Stories: near-duplicate clustering across outlets, through the real pipeline and on its own.

The corpus tests serve the labelled feeds from a local server, run the daemon
once and score the ``story_id`` each stored article got against the ground
truth, pairwise over items (the fixtures README, "How a test should score
dedupe"). The rest pin the news rules one by one on small texts, and prove that
concurrent store workers never split a story.
"""

from __future__ import annotations

import asyncio
import functools
import random
import subprocess
import sys
import time
import unicodedata
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from aggregator.model import Article
from aggregator.pipeline import contenthash, language
from aggregator.pipeline.normalize import FeedContext, normalize_feed
from aggregator.pipeline.parse import Body, Entry, ParsedFeed, parse_feed
from aggregator.runtime import Runtime
from aggregator.settings import Settings
from aggregator.storage.articles import StoreBatch, Validators, store_batch
from aggregator.stories import match as story_match
from aggregator.stories import plan as story_plan
from aggregator.stories import prints as story_prints
from aggregator.stories import text as story_text
from tests import processes
from tests.feedserver import FeedServer
from tests.groundtruth import Corpus, corpora, corpus_params, ingest, pairwise

CORPORA = corpus_params()
T0 = datetime(2015, 2, 16, 6, 0, tzinfo=UTC)


# --- the labelled corpora, through the real pipeline ------------------------------------------


async def stored_stories(rt: Runtime, corpus: Corpus, feed_ids: dict[str, int]) -> dict[str, int]:
    """item_id -> story_id of the article its sighting points at."""
    async with rt.pool.acquire() as conn:
        articles = await corpus.stored_groups(conn, feed_ids)
        rows = await conn.fetch("SELECT id, story_id FROM articles")
    story_of = {r["id"]: r["story_id"] for r in rows}
    assert None not in story_of.values(), "every stored article has a story"
    return {item: story_of[article] for item, article in articles.items()}


@pytest.mark.parametrize("root", CORPORA)
async def test_stories_match_ground_truth(
    root: Path, runtime: Runtime, feed_server: FeedServer
) -> None:
    corpus = Corpus.load(root)
    feed_ids = await ingest(runtime, feed_server, corpus)
    system = await stored_stories(runtime, corpus, feed_ids)
    async with runtime.pool.acquire() as conn:
        exact = await corpus.stored_groups(conn, feed_ids)

    truth = {i["item_id"]: i["story_id"] for i in corpus.items}
    precision, recall = pairwise(system, truth)
    exact_p, exact_r = pairwise(exact, {i["item_id"]: i["exact_dup_group"] for i in corpus.items})
    f1 = 2 * precision * recall / (precision + recall)
    print(
        f"{root}: stories precision={precision:.3f} recall={recall:.3f} f1={f1:.3f}; "
        f"exact groups precision={exact_p:.3f} recall={exact_r:.3f}"
    )
    assert (exact_p, exact_r) == (1.0, 1.0)
    assert precision >= 0.98 and recall >= 0.95
    async with runtime.pool.acquire() as conn:
        assert await conn.fetch(_STALE_STORY_ROWS) == []
        assert await conn.fetchval("SELECT count(*) FROM stories WHERE merged_into IS NULL") > 0


# A live story row must say what its articles say (a story written whole at creation
# and one refreshed after joins alike): count, representative, earliest times.
_STALE_STORY_ROWS = """
SELECT s.id FROM stories s
JOIN (
    SELECT story_id, count(*) AS articles, min(published_at) AS published_at,
           min(first_seen_at) AS first_seen_at,
           (array_agg(id ORDER BY length(content_text) DESC, published_at, id))[1] AS representative
    FROM articles GROUP BY story_id
) c ON c.story_id = s.id
WHERE s.merged_into IS NULL
  AND (s.article_count, s.representative_id, s.published_at, s.first_seen_at)
      IS DISTINCT FROM (c.articles::int, c.representative, c.published_at, c.first_seen_at)
"""


async def test_same_event_reports_stay_apart(runtime: Runtime, feed_server: FeedServer) -> None:
    """tests/corpus: two independent reports of one earthquake (Q1, Q2) and a third in
    Turkish (Q3) are three stories; Q1's republications are one."""
    corpus = Corpus.load(corpora()[0])
    feed_ids = await ingest(runtime, feed_server, corpus)
    system = await stored_stories(runtime, corpus, feed_ids)
    quake = {}
    for item in corpus.items:
        if item["story_id"] in ("Q1", "Q2", "Q3"):
            quake.setdefault(item["story_id"], set()).add(system[item["item_id"]])
    assert set(quake) == {"Q1", "Q2", "Q3"}
    assert all(len(ids) == 1 for ids in quake.values()), quake
    assert len(set().union(*quake.values())) == 3


async def test_stories_view_and_cli(
    runtime: Runtime, feed_server: FeedServer, settings: Settings
) -> None:
    corpus = Corpus.load(corpora()[0])
    await ingest(runtime, feed_server, corpus)
    async with runtime.pool.acquire() as conn:
        articles = await conn.fetchval("SELECT count(*) FROM articles")
        counted = await conn.fetchval("SELECT sum(article_count) FROM story_overview")
        by_view = await conn.fetch(
            "SELECT story_id, article_count, outlet_count, outlets, title FROM story_overview"
        )
        by_articles = dict(
            await conn.fetch("SELECT story_id, count(*) FROM articles GROUP BY story_id")
        )
    assert counted == articles
    assert {r["story_id"]: r["article_count"] for r in by_view} == by_articles
    widest = max(by_view, key=lambda r: (r["outlet_count"], r["article_count"]))
    # W01: one wire story carried by six outlets, one exact group of three among them.
    assert widest["outlet_count"] == 6 and widest["article_count"] == 4
    assert all(o.endswith(".example") for o in widest["outlets"])

    env = processes.service_env(settings)
    run = [sys.executable, "-m", "aggregator", "stories"]
    listing = subprocess.run(
        [*run, "--region", "test", "--since", "2015-02-16", "--limit", "500"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert listing.returncode == 0, listing.stderr
    assert widest["title"] in listing.stdout
    assert "6 outlets" in listing.stdout
    empty = subprocess.run([*run, "--region", "nowhere"], env=env, capture_output=True, text=True)
    assert empty.returncode == 0 and "no stories match" in empty.stdout
    later = subprocess.run([*run, "--since", "2030-01-01"], env=env, capture_output=True, text=True)
    assert "no stories match" in later.stdout
    bad = subprocess.run([*run, "--since", "soon"], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "not a time" in bad.stderr


# --- the news rules, on small texts -----------------------------------------------------------

WIRE = (
    "Iraq and Iran signed an agreement on Monday to build a rail line between the southern "
    "Iraqi city of Basra and the border crossing at Shalamcheh, linking Iraq to the Iranian "
    "rail network for the first time. The 32 km line is expected to cost about 150 million "
    "dollars and take two years to build, the Iraqi transport ministry said in a statement.\n\n"
    "Officials said the link would carry pilgrims travelling to the shrine cities of Najaf and "
    "Karbala as well as freight bound for the port of Umm Qasr. Traders in Basra welcomed the "
    "deal but said the border crossing itself needed new customs facilities to cope.\n\n"
    "Previous plans for the line stalled over funding and land disputes along the route."
)
OTHER_REPORT = (
    "A new railway will connect Basra with Iran, Iraqi officials announced, in a project they "
    "hope will ease the flow of religious tourists. Transport minister spokesman Karim Aziz "
    "told reporters the works would begin within months and that Chinese contractors were "
    "among the bidders. Local businessmen were sceptical, pointing to the many announcements "
    "of past years that never left the drawing board, and to flooding along the Shatt al-Arab."
)


def fp(
    text: str,
    *,
    title: str = "Iraq and Iran sign deal to link Basra to Iranian rail network",
    at: datetime = T0,
    url: str | None = None,
    guid: str | None = None,
) -> story_prints.Fingerprint:
    return story_prints.fingerprint(
        title=title, text=text, published_at=at, canonical_url=url, guid=guid
    )


def same(a: story_prints.Fingerprint, b: story_prints.Fingerprint) -> bool:
    return story_match.compare(a, b).evidence is not story_match.Evidence.NONE


def rial(when: str, weekday: str, rate: str, euro: str, coin: str, trend: str) -> str:
    return (
        f"TEHRAN (MP) — The Iranian rial {when} {weekday} at {rate} to the U.S. dollar on "
        f"Tehran's open market, {trend}, according to rates posted by exchange houses in the "
        f"city center.\n\nThe euro was quoted at {euro} rials and a full Bahar Azadi gold coin "
        f"at {coin} rials. Dealers said trading was light."
    )


def test_edited_copies_are_one_story() -> None:
    base = fp(WIRE)
    paragraphs = WIRE.split("\n\n")
    trimmed = fp("\n\n".join(paragraphs[:-1]), title="Basra to get rail link to Iran")
    noted = fp("Editor's note: This report is published as received.\n\n" + WIRE)
    dated = fp("BASRA, Iraq, Feb. 16 (KPA) — " + WIRE, at=T0 + timedelta(hours=34))
    lead = paragraphs[0].split(". ")[0] + "."
    summary = fp(lead, title="Basra–Iran rail deal signed")
    assert all(same(base, copy) for copy in (trimmed, noted, dated, summary))


def test_independent_reports_of_one_event_are_two_stories() -> None:
    assert not same(fp(WIRE), fp(OTHER_REPORT, title="Basra to be linked to Iran by rail"))


def test_templated_bulletins_split_on_their_figures() -> None:
    morning = fp(rial("opened", "Sunday", "33,258", "43,296", "9,066,490", "weaker"))
    closing = fp(
        rial("ended", "Sunday", "32,959", "43,558", "9,064,469", "weaker"),
        at=T0 + timedelta(hours=7),
    )
    next_day = fp(
        rial("ended", "Monday", "33,048", "43,447", "9,068,825", "weaker"),
        at=T0 + timedelta(hours=31),
    )
    second_outlet = fp(
        rial("ended", "Sunday", "32,959", "43,558", "9,064,469", "weaker"),
        at=T0 + timedelta(hours=7, minutes=40),
    )
    assert not same(morning, closing)
    assert not same(closing, next_day)
    assert same(closing, second_outlet)


def test_a_corrected_figure_is_the_same_story_a_changed_day_is_not() -> None:
    corrected = fp(WIRE.replace("32 km", "35 km"))
    assert same(fp(WIRE), corrected)
    # Only one figure and the weekday differ: a new issue, not a correction.
    weather = "Tehran on {day}: sunny, between {low} and 35 degrees. Air quality index {aqi}."
    monday = fp(weather.format(day="Monday", low=21, aqi=100) * 3)
    tuesday = fp(weather.format(day="Tuesday", low=21, aqi=80) * 3, at=T0 + timedelta(days=1))
    assert not same(monday, tuesday)


def test_letter_variants_zwnj_and_digits_fold() -> None:
    persian = (
        "ستاد احیای دریاچه ارومیه اعلام کرد از اوایل مهر ماه ۱۲ میلیون مترمکعب آب رهاسازی می‌شود"
    )
    arabic_letters = persian.translate(str.maketrans("یک۱۲", "يك١٢"))
    assert arabic_letters != persian
    assert story_text.words(persian) == story_text.words(arabic_letters)
    assert story_text.words("می‌شود") == story_text.words("می شود")
    assert "12" in story_text.words(persian)
    assert story_text.words("İSTANBUL'da ISPARTA") == story_text.words("istanbul'da ıspARTA")
    text = "\n\n".join([persian] * 3)
    variant = "\n\n".join([arabic_letters] * 3)
    assert same(fp(text, title="دریاچه ارومیه"), fp(variant, title="درياچه اروميه"))


@functools.cache
def _reference_marks() -> dict[int, None]:
    return {
        c: None for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) in ("Mn", "Cf")
    }


def _reference_fold(text: str) -> str:
    """``story_text.fold`` as first written, with ``str.translate``: the numpy tables must
    give the same text, character for character, or stored keys would stop matching."""
    marks = _reference_marks()
    if text.isascii():
        return text.translate(story_text._FOLD).casefold()
    text = unicodedata.normalize("NFKC", text).translate(story_text._FOLD).casefold()
    return unicodedata.normalize("NFKD", text).translate(marks)


_FOLD_SAMPLES = [
    "ستاد احیای دریاچه ارومیه اعلام کرد از اوایل مهر ماه ۱۲ میلیون مترمکعب آب رهاسازی می‌شود",
    "الرياض (الشرق) — أعلنت وزارة الطاقة السعودية إنتاج ١٢٫٥ مليون برميل يومياً، ــ تطويل",
    "İSTANBUL'da ISPARTA ıspARTA Şişli Çağlayan Straße ﬁnance Ｆｕｌｌ ｗｉｄｔｈ",
    "e\u0301te\u0301 \u200d\u200f\u202e bidi \ufeff bom \U0001d167 \U0001f600 \ud800 lone",
    "ﻻ ﷲ ﺍﻟﺴﻼﻡ presentation forms, ΣΊΣΥΦΟΣ ΌΣΟΣ, ǅ ǈ ǋ, ﬀ ﬃ, ⅻ ①",
]


def test_fold_is_the_reference_fold() -> None:
    rng = random.Random(5)
    alphabet = [chr(c) for c in range(0x20, 0x3000)] + ["\U0001d167", "\U000e0041", "\ud83d"]
    texts = _FOLD_SAMPLES + ["".join(rng.choices(alphabet, k=300)) for _ in range(50)]
    texts += [a.content_text for _, a in corpus_articles()[:200]]
    for text in texts:
        assert story_text.fold(text) == _reference_fold(text), text[:80]


def test_datelines_are_not_the_story() -> None:
    assert story_text.strip_dateline("AMMAN, Jordan, Sept. 11 (CWS) — Jordan will") == "Jordan will"
    assert story_text.strip_dateline("الرياض (الشرق) — أظهرت بيانات") == "أظهرت بيانات"
    assert story_text.strip_dateline("LONDON - Brent rose") == "Brent rose"
    sentence = "The minister — who resigned on Monday — said"
    assert story_text.strip_dateline(sentence) == sentence


def test_stubs_join_by_headline_or_address_only() -> None:
    stub = "Continue reading…"
    title = "Kuwait airport adds passport e-gates for residents"
    full = fp(WIRE, title=title)
    assert same(fp(stub, title=title, at=T0 + timedelta(minutes=35)), full)
    assert not same(fp(stub, title="Oman opens fishing harbour at Duqm"), full)
    # Two unrelated stubs share their text, and nothing else.
    assert not same(fp(stub, title="Oman opens fishing harbour at Duqm"), fp(stub, title=title))
    # A headline is weaker than text: two days is its window.
    assert not same(fp(stub, title=title, at=T0 + timedelta(days=3)), full)


def test_one_address_with_two_different_long_texts_is_two_stories() -> None:
    url = "https://site.example/live/markets"
    assert not same(fp(WIRE, url=url), fp(OTHER_REPORT, url=url))
    assert same(fp(WIRE, url=url), fp(WIRE.split(". ")[0] + ".", title="Rail deal", url=url))
    # The front page stands in for a missing link: it identifies nothing.
    front = "https://site.example/"
    assert not same(fp("Continue reading…", url=front), fp(WIRE, title="Other", url=front))


def test_guids_are_scoped_by_publisher() -> None:
    a = fp(WIRE, url="https://a.example/x/1", guid="12345")
    b = fp(OTHER_REPORT, title="Another", url="https://b.example/y/2", guid="12345")
    assert not a.identity & b.identity
    c = fp("Short.", title="Summary", url="https://a.example/feed-item", guid="12345")
    assert a.identity & c.identity


def test_the_window_bounds_matching() -> None:
    assert not same(fp(WIRE), fp(WIRE + " Update.", at=T0 + timedelta(days=8)))
    assert story_match.compare(
        fp(WIRE), fp(WIRE + " Update.", at=T0 + timedelta(days=8)), window=timedelta(days=10)
    ).evidence


def test_minhash_estimates_jaccard_and_bands_find_near_duplicates() -> None:
    rng = random.Random(7)
    universe = [rng.getrandbits(63) for _ in range(3000)]
    for overlap in (0.2, 0.5, 0.8):
        shared = universe[: int(1000 * overlap)]
        a = set(shared + universe[1000:2000][: 1000 - len(shared)])
        b = set(shared + universe[2000:3000][: 1000 - len(shared)])
        true = len(a & b) / len(a | b)
        sig_a, sig_b = story_prints.minhash(a), story_prints.minhash(b)
        estimate = float((sig_a == sig_b).mean())
        assert abs(estimate - true) < 0.15, (overlap, true, estimate)
    body_bands = story_prints.BODY_BANDS
    near = fp(WIRE.replace("two years", "three years"), title="A different headline")
    assert set(fp(WIRE).keys[:body_bands]) & set(near.keys[:body_bands])


def test_plan_stops_at_the_first_match_only_where_that_cannot_change_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every article of the corpora planned in one batch (many candidates per article,
    of one story and of several): the same plan as comparing every candidate."""
    pending = [
        (i, story_prints.article_fingerprint(a)) for i, (_, a) in enumerate(corpus_articles(), 1)
    ]
    known = [story_plan.Known(-i, -i, f) for i, f in pending[:40]]  # stored copies, too
    planned = story_plan.plan_stories(pending[40:], known)

    def every_candidate(fp, candidates, fingerprints, plan, story_of, window):  # type: ignore[no-untyped-def]
        found = [(story_match.compare(fp, fingerprints[c], window=window), c) for c in candidates]
        return [(m, c) for m, c in found if m.evidence is not story_match.Evidence.NONE]

    monkeypatch.setattr(story_plan, "_matches", every_candidate)
    assert story_plan.plan_stories(pending[40:], known) == planned
    assert len(set(planned.assigned.values())) < len(planned.assigned)  # stories did join


def test_plan_merges_stories_a_strong_copy_bridges() -> None:
    """A paraphrased summary stored first (same guid as the outlet's full text) and a
    retitled copy from another outlet start two stories; the full text joins both."""
    url = "https://gulf.example/news/cyprus-gas"
    summary = fp(
        "A consortium has confirmed a large gas reservoir off Cyprus.",
        title="Gas find off Cyprus",
        url=url,
        guid="gw-1",
    )
    other = fp(WIRE, title="Cyprus says well confirms find", url="https://levant.example/n/9")
    full = fp(WIRE, title="Appraisal well confirms gas find", url=url, guid="gw-1")
    known = [story_plan.Known(10, 10, summary), story_plan.Known(11, 11, other)]
    plan = story_plan.plan_stories([(12, full)], known)
    assert plan.assigned == {12: 10} and plan.merged == {11: 10}


# --- concurrency: real transactions on separate connections -------------------------------------


@pytest.fixture
async def connections(
    database_url: str, clean_services: None
) -> AsyncIterator[list[asyncpg.Connection]]:
    conns = [await asyncpg.connect(database_url) for _ in range(10)]
    yield conns
    await asyncio.gather(*(c.close() for c in conns))


def republication(i: int, story: str, slug: str) -> Article:
    text = f"{story}\n\nPublished by outlet {i} with its own closing paragraph number {i}."
    return Article(
        content_hash=contenthash.content_hash(text, title="t", canonical_url=None),
        canonical_url=f"https://outlet{i}.example/news/{slug}",
        url=None,
        guid=None,
        title=f"Outlet {i}'s headline for the story",
        summary="",
        content_html="",
        content_text=text,
        author=None,
        language="en",
        region="test",
        published_at=T0 + timedelta(minutes=i),
    )


async def test_concurrent_workers_store_one_story(
    connections: list[asyncpg.Connection],
) -> None:
    feed_ids = [
        await connections[0].fetchval(
            "INSERT INTO feeds (url) VALUES ($1) RETURNING id", f"https://outlet{i}.example/rss"
        )
        for i in range(10)
    ]
    for slug, story in (("rail-deal", WIRE), ("rail-plans", OTHER_REPORT)):
        batches = [
            StoreBatch(
                feed_id=feed_id,
                body_hash=f"{i}" * 64,
                validators=Validators(body_hash=f"{i}" * 64),
                articles=[republication(i, story, slug)],
                fetched_at=datetime.now(UTC),
            )
            for i, feed_id in enumerate(feed_ids)
        ]
        results = await asyncio.gather(
            *(store_batch(conn, b) for conn, b in zip(connections, batches, strict=True))
        )
        assert sum(r.new for r in results) == 10
    rows = await connections[0].fetch(
        "SELECT story_id, count(*) AS n FROM articles GROUP BY story_id ORDER BY story_id"
    )
    assert [r["n"] for r in rows] == [10, 10], "each story stored by ten workers is one story"
    merged = await connections[0].fetchval(
        "SELECT count(*) FROM stories WHERE merged_into IS NOT NULL"
    )
    assert merged == 0, "one story from the start, not two stitched together"


# --- language detection -----------------------------------------------------------------------


def corpus_articles() -> list[tuple[str, Article]]:
    """(labelled language, article) for every item of every corpus, normalized for real
    but with no language declared anywhere."""
    found = []
    for root in corpora():
        corpus = Corpus.load(root)
        by_feed: dict[str, list[dict[str, object]]] = {}
        for item in corpus.items:
            by_feed.setdefault(item["feed"], []).append(item)
        for feed in corpus.feeds:
            url = "http://127.0.0.1/" + Path(feed["file"]).name
            parsed = parse_feed(
                (root / feed["file"]).read_bytes(), url=url, content_type=feed["content_type"]
            )
            parsed.language = None
            for entry in parsed.entries:
                entry.language = None
            articles = normalize_feed(parsed, FeedContext(url=url), now=datetime.now(UTC))
            items = sorted(by_feed[feed["file"]], key=lambda i: int(str(i["index"])))
            assert len(items) == len(articles)
            found += [(str(i["language"]), a) for i, a in zip(items, articles, strict=True)]
    return found


def test_undeclared_languages_are_detected() -> None:
    labelled = corpus_articles()
    started = time.perf_counter()
    detected = [
        language.article_language(None, title=a.title, text=a.content_text) for _, a in labelled
    ]
    per_article = (time.perf_counter() - started) / len(labelled)
    right = sum(d == lang for d, (lang, _) in zip(detected, labelled, strict=True))
    normalized = sum(a.language == lang for lang, a in labelled)
    print(
        f"language detection: {right}/{len(labelled)} right, {per_article * 1000:.2f} ms an "
        f"article; through normalize: {normalized}/{len(labelled)}"
    )
    assert right / len(labelled) >= 0.98 and normalized == right


def test_declared_language_wins_unless_the_text_contradicts_it() -> None:
    arabic = "أظهرت بيانات رسمية أن معدل التضخم السنوي في السعودية استقر عند 2.7 في المئة في آب"
    persian = "ستاد احیای دریاچه ارومیه اعلام کرد از اوایل مهر ماه بخشی از آب ذخیره‌شده رها می‌شود"
    english = "Jordan will cut piped water deliveries to large parts of Amman to one day a week"
    # Declared and plausible: kept as declared, region subtag and all.
    assert language.article_language("ar-SA", title="", text=arabic) == "ar-sa"
    assert language.article_language("en", title="", text=english) == "en"
    # A CMS default on a feed in another script is overruled.
    assert language.article_language("en-us", title="", text=arabic) == "ar"
    assert language.article_language("ar", title="", text=persian) == "fa"
    assert language.article_language("fa", title="", text=english) == "en"
    # Too little text to judge: the declaration stands, or nothing is claimed.
    assert language.article_language("en", title="", text="ارتفاع الذهب") == "en"
    assert language.article_language(None, title="Gold up", text="") is None
    # A code the detector does not know is not second-guessed.
    assert language.article_language("english", title="", text=english) == "english"


def test_normalize_detects_an_undeclared_item_in_a_declared_feed() -> None:
    arabic = (
        "بدأت الكويت يوم الثلاثاء تشغيل المرحلة الأولى من مجمع الشقايا للطاقة المتجددة في "
        "الصحراء الغربية للبلاد، بقدرة إجمالية تبلغ 70 ميغاواط."
    )
    entries = [
        Entry(
            guid="1",
            link="https://x.example/1",
            title="الكويت",
            body=Body(arabic, False, "description"),
        ),
        Entry(
            guid="2",
            link="https://x.example/2",
            title="Kuwait",
            body=Body(WIRE, False, "description"),
        ),
    ]
    undeclared = normalize_feed(
        ParsedFeed(entries=entries), FeedContext(url="https://x.example/rss"), now=T0
    )
    assert [a.language for a in undeclared] == ["ar", "en"]
    wordpress_default = normalize_feed(
        ParsedFeed(language="en-US", entries=entries),
        FeedContext(url="https://x.example/rss"),
        now=T0,
    )
    assert [a.language for a in wordpress_default] == ["ar", "en-us"]


def test_the_language_model_ships_in_the_package() -> None:
    """Nothing is downloaded: the model is a file of the installed package (and the
    network guard refuses any connection beyond loopback during every test)."""
    import py3langid.langid

    model = Path(py3langid.langid.MODEL_DIR) / py3langid.langid.MODEL_FILE
    assert model.is_file()
    assert (
        language.detect("Gaziantep okullarında Suriyeli çocuklar için öğleden sonra ek ders")
        is not None
    )


def article(
    text: str, *, title: str, url: str, guid: str | None = None, minutes: int = 0
) -> Article:
    return Article(
        content_hash=contenthash.content_hash(text, title=title, canonical_url=url),
        canonical_url=url,
        url=url,
        guid=guid,
        title=title,
        summary="",
        content_html="",
        content_text=text,
        author=None,
        language="en",
        region="test",
        published_at=T0 + timedelta(minutes=minutes),
    )


async def store(conn: asyncpg.Connection, feed_id: int, *articles: Article) -> None:
    await store_batch(
        conn,
        StoreBatch(
            feed_id=feed_id,
            body_hash="0" * 64,
            validators=Validators(body_hash="0" * 64),
            articles=list(articles),
            fetched_at=datetime.now(UTC),
        ),
    )


async def test_a_bridging_copy_merges_two_stored_stories(
    connections: list[asyncpg.Connection],
) -> None:
    conn = connections[0]
    feed = await conn.fetchval(
        "INSERT INTO feeds (url) VALUES ('https://g.example/rss') RETURNING id"
    )
    url = "https://gulf.example/news/rail-deal"
    summary = article(
        "Iraq and Iran agreed to link Basra by rail.", title="Rail", url=url, guid="g1"
    )
    other = article(
        WIRE, title="Basra to get rail link", url="https://levant.example/n/9", minutes=5
    )
    full = article(WIRE + "\n\nMore to follow.", title="Rail deal", url=url, guid="g1", minutes=9)
    await store(conn, feed, summary)
    await store(conn, feed, other)
    assert await conn.fetchval("SELECT count(DISTINCT story_id) FROM articles") == 2
    await store(conn, feed, full)

    rows = await conn.fetch("SELECT id, story_id FROM articles ORDER BY id")
    assert {r["story_id"] for r in rows} == {rows[0]["id"]}, "one story, the oldest id"
    merged = await conn.fetchrow(
        "SELECT merged_into, article_count FROM stories WHERE id = $1", rows[1]["id"]
    )
    assert merged["merged_into"] == rows[0]["id"]
    view = await conn.fetch("SELECT story_id, article_count, title FROM story_overview")
    assert [(v["story_id"], v["article_count"]) for v in view] == [(rows[0]["id"], 3)]
    assert view[0]["title"] == "Rail deal", "the fullest text represents the story"


async def test_the_view_counts_what_is_left_after_pruning(
    connections: list[asyncpg.Connection],
) -> None:
    conn = connections[0]
    feed = await conn.fetchval(
        "INSERT INTO feeds (url) VALUES ('https://g.example/rss') RETURNING id"
    )
    await store(conn, feed, article(WIRE, title="Rail", url="https://a.example/1"))
    await store(conn, feed, article(WIRE + " Update.", title="Rail", url="https://b.example/2"))
    assert await conn.fetchval("SELECT article_count FROM story_overview") == 2
    first = await conn.fetchval("SELECT min(id) FROM articles")
    await conn.execute("DELETE FROM articles WHERE id = $1", first)
    assert await conn.fetchval("SELECT article_count FROM story_overview") == 1
    assert await conn.fetchval("SELECT count(*) FROM story_keys WHERE article_id = $1", first) == 0
    await conn.execute("DELETE FROM articles")
    assert await conn.fetchval("SELECT count(*) FROM story_overview") == 0


_WORDS = st.sampled_from(
    [
        "oil",
        "rose",
        "fell",
        "Tehran",
        "ریال",
        "دلار",
        "ي",
        "ك",
        "İstanbul",
        "ılık",
        "7",
        "٣٣",
        "2.5",
    ]
)


@given(
    a=st.lists(_WORDS, min_size=0, max_size=60),
    b=st.lists(_WORDS, min_size=0, max_size=60),
    gap=st.integers(min_value=0, max_value=10 * 24 * 60),
)
@hypothesis_settings(max_examples=200, deadline=None)
def test_matching_is_symmetric_and_a_text_matches_itself(
    a: list[str], b: list[str], gap: int
) -> None:
    first = fp(" ".join(a))
    second = fp(" ".join(b), at=T0 + timedelta(minutes=gap))
    assert story_match.compare(first, second) == story_match.compare(second, first)
    if not first.is_stub:
        assert story_match.compare(first, first).evidence is story_match.Evidence.STRONG


@given(text=st.text(alphabet=st.sampled_from("یکيك۱١1 \u200cاأإآةهـَ"), max_size=80))
def test_folding_is_idempotent_and_letter_variants_agree(text: str) -> None:
    folded = story_text.fold(text)
    assert story_text.fold(folded) == folded
    arabic = text.translate(str.maketrans("یک۱", "يك١"))
    assert story_text.words(arabic) == story_text.words(text)


@given(st.lists(st.integers(0, 2**64 - 1), max_size=300), st.booleans())
@hypothesis_settings(max_examples=200, deadline=None)
def test_sorted_unique_is_numpys_unique(values: list[int], repeat: bool) -> None:
    import numpy as np

    array = np.array(values + values[: len(values) // 2] if repeat else values, dtype=np.uint64)
    assert np.array_equal(story_prints._sorted_unique(array), np.unique(array))
