"""Language detection: the vectorized model answers as py3langid does, to the last bit.

``language._model()`` is the fast path; with it patched to None the module runs
py3langid's own ``LanguageIdentifier`` (its fallback), which is the reference.
"""

from __future__ import annotations

import hashlib
import time
import tomllib
import unicodedata
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from aggregator.pipeline import language, normalize
from aggregator.pipeline.normalize import FeedContext, normalize_feed
from aggregator.pipeline.parse import parse_feed
from bench import synthetic
from tests.groundtruth import Corpus, corpora

SAMPLES = Path(normalize.__file__).parents[1] / "samples"
SYNTHETIC_FEEDS = 40  # 800 items, all four languages


@pytest.fixture(scope="module")
def py3langid() -> Any:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


@pytest.fixture
def reference(monkeypatch: pytest.MonkeyPatch) -> Callable[[Callable[[], Any]], Any]:
    """Run a call with py3langid itself doing the detection."""

    def run(call: Callable[[], Any]) -> Any:
        with monkeypatch.context() as patched:
            patched.setattr(language, "_model", lambda: None)
            return call()

    return run


# --- the automaton --------------------------------------------------------------------------


def automaton(identifier: Any) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """py3langid's transition table (row, byte -> state) and each state's row."""
    table = np.frombuffer(identifier.tk_nextmove, dtype=f"u{identifier.tk_nextmove.itemsize}")
    row = np.frombuffer(identifier.tk_row, dtype=f"u{identifier.tk_row.itemsize}")
    return table.astype(np.int64).reshape(-1, 256), row.astype(np.int64)


def forgetting_window(table: npt.NDArray[np.int64], row: npt.NDArray[np.int64]) -> int | None:
    """The least k such that any k bytes lead every state to the state they lead the
    start to; None if there is none up to 16. Then the state after a text depends on its
    last k bytes only. Follows every pair (state, start) byte by byte until the two
    agree, whatever the bytes."""
    states = row.size
    pairs = np.arange(1, states, dtype=np.int64) * states  # (q, start) as q * states + 0
    for k in range(1, 17):
        following = []
        # Two states' successors depend on their rows only: follow each pair of rows once.
        row_pairs = np.unique(row[pairs // states] * states + row[pairs % states])
        for chunk in np.array_split(row_pairs, max(1, row_pairs.size // 8192)):
            a, b = table[chunk // states], table[chunk % states]
            apart = a != b
            following.append(np.unique(a[apart] * states + b[apart]))
        pairs = np.unique(np.concatenate(following))
        if pairs.size == 0:
            return k
    return None


def test_the_automaton_forgets_all_but_the_last_bytes(py3langid: Any) -> None:
    """The proof behind language.PROVEN_WINDOWS, for the model py3langid ships."""
    from py3langid.langid import MODEL_DIR, MODEL_FILE

    digest = hashlib.sha256((MODEL_DIR / MODEL_FILE).read_bytes()).hexdigest()
    window = forgetting_window(*automaton(py3langid))
    assert window is not None, "py3langid's model is not an automaton of the kind assumed"
    assert language.PROVEN_WINDOWS.get(digest) == window, (
        f"a new py3langid model: add {digest!r}: {window} to language.PROVEN_WINDOWS"
    )
    assert language._model() is not None, "the proven model is not used"


def test_the_rearranged_automaton_is_py3langids(py3langid: Any) -> None:
    """Walking both automatons side by side from the start, over every byte from every
    pair of states met, the two always sit in states with the same row and feature."""
    model = language._model()
    assert model is not None
    table, row = automaton(py3langid)
    feature = np.asarray(py3langid.tk_output)
    states = len(model.row_of)
    every_byte = np.arange(256)
    met = frontier = np.array([0], dtype=np.int64)  # (old * states + new): the two starts
    while frontier.size:
        old, new = frontier // states, frontier % states
        assert np.array_equal(row[old] << 8, model.row_of[new])
        assert np.array_equal(feature[old], model.feature_of[new])
        old_next = table[row[old]]
        new_next = model.moves[model.row_of[new][:, None] + every_byte] + model.byte_start
        pairs = np.unique(old_next * states + new_next)
        frontier = np.setdiff1d(pairs, met, assume_unique=True)
        met = np.union1d(met, frontier)
    assert np.unique(met // states).size == len(row), "every state of py3langid's is met"
    assert np.array_equal(model.weights, py3langid.nb_ptc)
    assert np.array_equal(model.prior, py3langid.nb_pc)


# --- the answers ----------------------------------------------------------------------------

LETTERS = {
    "latin": "abcdefghijklmnopqrstuvwxyzçğıöşüéèàâêîôû",
    "arabic": "ابتثجحخدذرزسشصضطظعغفقكلمنهويءآأؤإئةى",
    "persian": "پچژکگیۀ‌ ابتسشرمنوهی",
    "cyrillic": "абвгдеёжзийклмнопрстуфхцчшщъыьэюя",
    "cjk": "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年",
    "digits": "0123456789٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹",
    "punctuation": " .,;:!?-—'\"()«»،؛؟\n\t",
}
words = st.lists(
    st.sampled_from(list(LETTERS.values())).flatmap(
        lambda letters: st.text(st.sampled_from(letters), min_size=1, max_size=12)
    ),
    max_size=80,
).map(" ".join)
any_text = st.text(st.characters(exclude_categories=()), max_size=700)  # lone surrogates too
texts = st.one_of(
    any_text,
    words,
    words.map(str.upper),  # all-caps text is lowercased first
    words.map(lambda t: unicodedata.normalize("NFD", t)),  # and everything is NFC'd
)


@settings(max_examples=400, deadline=None)
@given(texts)
@example("")
@example(" ")
@example("a")
@example("ab")  # shorter than the window
@example("\x00\x00\x00")
@example("\ud800 lone surrogate")
@example("ÇOK BÜYÜK HARFLI BIR BAŞLIK VE METIN")
def test_rank_is_py3langids_to_the_last_bit(py3langid: Any, text: str) -> None:
    assert language._rank(text) == [(code, float(p)) for code, p in py3langid.rank(text)]


@settings(max_examples=200, deadline=None)
@given(texts)
def test_probabilities_are_py3langids_summed_by_macrolanguage(py3langid: Any, text: str) -> None:
    expected: dict[str, float] = {}
    for code, probability in py3langid.rank(text):
        code = language._MACROLANGUAGE.get(code, code)
        expected[code] = expected.get(code, 0.0) + float(probability)
    found = language.probabilities(text)
    assert list(found.items()) == list(expected.items())  # values, and order for max()


# --- every labelled article -----------------------------------------------------------------


Call = tuple[str | None, str, str]  # (declared, title, text) as normalize passes them


def labelled_articles(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str, Call]]:
    """(set, labelled language, call) for every item of the labelled corpora, the demo's
    samples and some of the bench's synthetic feeds, as normalize calls article_language."""
    calls: list[Call] = []

    def record(declared: str | None, *, title: str, text: str) -> str | None:
        calls.append((declared, title, text))
        return None

    monkeypatch.setattr(normalize, "article_language", record)
    now = datetime.now(UTC)

    def run(body: bytes, url: str, content_type: str, feed_language: str | None = None) -> None:
        calls.clear()
        parsed = parse_feed(body, url=url, content_type=content_type)
        normalize_feed(parsed, FeedContext(url=url, language=feed_language), now=now)

    for root in corpora():
        corpus = Corpus.load(root)
        for feed in corpus.feeds:
            items = sorted(
                (i for i in corpus.items if i["feed"] == feed["file"]),
                key=lambda i: int(str(i["index"])),
            )
            url = "http://127.0.0.1/" + Path(feed["file"]).name
            run((root / feed["file"]).read_bytes(), url, feed["content_type"])
            assert len(calls) == len(items)
            yield from (
                (root.name, str(i["language"]), c) for i, c in zip(items, calls, strict=True)
            )
    manifest = tomllib.loads((SAMPLES / "manifest.toml").read_text(encoding="utf-8"))
    for feed in manifest["feeds"]:
        url = "http://127.0.0.1" + feed["path"]
        run((SAMPLES / feed["file"]).read_bytes(), url, feed["content_type"], feed["language"])
        yield from (("samples", c[0] or feed["language"], c) for c in calls)
    for number in range(SYNTHETIC_FEEDS):
        body = synthetic.render_feed(
            number, 0, items=20, new_per_change=5, published_at={}, epoch=1.7e9
        )
        run(body, f"http://127.0.0.1/{number}", "application/rss+xml")
        yield from (("synthetic", synthetic.language_of(number), c) for c in calls)


def test_every_labelled_article_gets_py3langids_decision(
    monkeypatch: pytest.MonkeyPatch, reference: Callable[[Callable[[], Any]], Any]
) -> None:
    with monkeypatch.context() as recording:
        articles = list(labelled_articles(recording))
    assert {s for s, _, _ in articles} >= {"corpus", "samples", "synthetic"}
    # As declared, undeclared, a CMS default, and each other language of the corpora.
    calls = [
        (declared, title, text)
        for _, label, (as_declared, title, text) in articles
        for declared in dict.fromkeys([as_declared, None, "en-US", "ar", "fa", "tr", label])
    ]

    def decide() -> list[str | None]:
        return [language.article_language(d, title=t, text=x) for d, t, x in calls]

    # Each way once, timed as it goes (the figure is printed, not asserted: the machine
    # is shared; `python -m bench` measures speed).
    started = time.process_time()
    fast = decide()
    after = (time.process_time() - started) / len(calls)
    started = time.process_time()
    slow = reference(decide)
    before = (time.process_time() - started) / len(calls)
    assert fast == slow
    undeclared = [language.article_language(None, title=t, text=x) for _, _, (_, t, x) in articles]
    assert undeclared == [label for _, label, _ in articles]
    print(
        f"language detection over {len(articles)} labelled articles ({len(calls)} calls): "
        f"py3langid {before * 1e6:.0f} us a call, vectorized {after * 1e6:.0f} us "
        f"({before / after:.1f}x)"
    )


def test_detect_is_py3langids(reference: Callable[[Callable[[], Any]], Any]) -> None:
    texts = [
        "أظهرت بيانات رسمية أن معدل التضخم السنوي في السعودية استقر عند 2.7 في المئة",
        "ستاد احیای دریاچه ارومیه اعلام کرد از اوایل مهر ماه بخشی از آب رها می‌شود",
        "Jordan will cut piped water deliveries to large parts of Amman to one day a week",
        "İstanbul Borsası günü yüzde 0,17 yükselişle tamamladı; bankacılık endeksi öne çıktı",
        "1234 5678 9012 3456 7890 1234 5678 9012 3456 7890 1234",
        "too short",
    ]
    assert [language.detect(t) for t in texts] == reference(
        lambda: [language.detect(t) for t in texts]
    )
