"""Language: what an article is written in, when its feed does not say, or says it wrongly.

A language a feed or item declares wins wherever the text does not contradict
it; many CMSs declare their default (WordPress: ``en-US``) on every feed, so a
declaration the detector finds all but impossible on a long enough text is
replaced. Items with no declaration get the detected language when the
detector is confident, else none.

Detection is py3langid's model, the maintained fork of langid.py: a naive Bayes
model over byte n-grams for 140+ languages (Arabic, Persian, Turkish, Urdu,
Kurdish, Azerbaijani, Hebrew, ...) that ships inside the package, so nothing is
downloaded and nothing leaves the machine. Measured on the project's and the
shared labelled corpora (248 items, en/ar/fa/tr, title and text): all correct.

py3langid finds the model's n-grams with a Python loop over the text's bytes,
one automaton step per byte. This module computes the very same probabilities,
bit for bit, with a few dozen numpy operations per text (``_scores``): about
0.1 ms an article instead of 0.2 ms. Its layout of the model takes 53 MB a
process instead of 74 MB, and loading it peaks at 53 MB instead of 103 MB. What
the layout assumes of the model is checked when it is loaded, and proven for
the model py3langid ships by tests/test_language.py, which also compares every
answer with py3langid's own on the corpora and on random text. A model this
module does not know (a py3langid release with a new one) is run by py3langid
itself: slower, never different. Pure; the model is loaded once per process,
on first use (about 0.5 s).
"""

from __future__ import annotations

import hashlib
import lzma
import math
import re
import shutil
import tempfile
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

# Shorter than this (letters in title and text), a guess is a guess: keep what was declared.
MIN_LETTERS = 30
# An undeclared item gets the detected language at this confidence or above.
MIN_CONFIDENCE = 0.5
# A declaration is overruled only by a detector this sure, that finds the declared
# language this unlikely.
OVERRULE_CONFIDENCE = 0.5
IMPLAUSIBLE = 1e-4
# 600 characters classify every labelled corpus article as 2,000 do (269 of 269), at a
# third of the cost; detection was a quarter of cold-ingest CPU (bench profile).
SAMPLE_CHARS = 600

# Varieties the model tells apart, reported as the language a feed would declare.
_MACROLANGUAGE = {"arz": "ar", "ary": "ar", "ckb": "ku", "sdh": "ku", "kmr": "ku", "uzs": "uz"}
_SUBTAG = re.compile(r"[-_]")

# py3langid's n-gram automaton forgets everything but the last few bytes it read: from
# any state, these many bytes lead to the state they lead to from the start. So the
# state after each byte of a text is a walk over just the bytes before it, and all of
# those walks can run side by side. Proven per model file, by its SHA-256, by
# tests/test_language.py::test_the_automaton_forgets_all_but_the_last_bytes.
PROVEN_WINDOWS = {"f4f4a2c3465ca1f081541037f9cac23021d68151c2f709c55ae5eedfca522963": 6}


def probabilities(text: str) -> dict[str, float]:
    """Language code -> probability that ``text`` is written in it (they sum to 1)."""
    model = _model()
    if model is None:
        totals: dict[str, float] = {}
        for code, probability in _rank(text):
            code = _MACROLANGUAGE.get(code, code)
            totals[code] = totals.get(code, 0.0) + probability
        return totals
    # As above, in one pass: codes in order of their best variety, and for a language
    # with several varieties (ar: ar, arz, ary) their sum, added best first as above.
    scores = _scores(model, text)[model.label_columns]
    order = np.argsort(-scores, kind="stable")
    totals = dict(zip(model.macrolanguages[order].tolist(), scores[order].tolist(), strict=True))
    for code, varieties in model.varieties:
        total = 0.0
        for i in sorted(varieties, key=lambda i: (-scores[i], i)):
            total += float(scores[i])
        totals[code] = total
    return totals


def detect(text: str) -> tuple[str, float] | None:
    """The most likely language of ``text`` and its probability; None for too little text."""
    sample = text[:SAMPLE_CHARS]
    if not _enough_letters(sample):
        return None
    probs = probabilities(sample)
    code = max(probs, key=probs.__getitem__)
    return None if code == "zxx" else (code, probs[code])  # zxx: "no linguistic content"


def article_language(declared: str | None, *, title: str, text: str) -> str | None:
    """The declared language where present and plausible, else the detected one, or None."""
    declared = (declared or "").strip().lower() or None
    return _language_of_sample(declared, f"{title}\n{text}"[:SAMPLE_CHARS])


# The copies of a wire story that many outlets carry are detected once (a key is at
# most 600 characters: the cache holds a few MB).
@lru_cache(maxsize=2048)
def _language_of_sample(declared: str | None, sample: str) -> str | None:
    if not _enough_letters(sample):
        return declared
    probs = probabilities(sample)
    best = max(probs, key=probs.__getitem__)  # the first of equals, as max(items) gives
    confidence = probs[best]
    if best == "zxx":
        return declared
    if declared is None:
        return best if confidence >= MIN_CONFIDENCE else None
    primary = _SUBTAG.split(declared, maxsplit=1)[0]
    primary = _MACROLANGUAGE.get(primary, primary)
    # A code the model does not know ("english") cannot be judged: it stays.
    overruled = (
        primary in probs and probs[primary] < IMPLAUSIBLE and confidence >= OVERRULE_CONFIDENCE
    )
    return best if overruled else declared


def _enough_letters(sample: str) -> bool:
    letters = 0
    for c in sample:  # stop as soon as there are enough, rather than count them all
        if c.isalpha():
            letters += 1
            if letters >= MIN_LETTERS:
                return True
    return False


# --- the model -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Model:
    """py3langid's model, its automaton laid out for walks that run side by side.

    The automaton's states are numbered so that all states entered on one byte value
    are consecutive: the state after byte ``c`` is ``byte_start[c]`` plus a number that
    fits in 16 bits, which halves the transition table (``moves``)."""

    window: int
    byte_start: npt.NDArray[np.intp]  # byte value -> first state entered on it
    moves: npt.NDArray[np.uint16]  # row * 256 + byte -> next state - byte_start[byte]
    row_of: npt.NDArray[np.intp]  # state -> its row in moves, times 256
    feature_of: npt.NDArray[np.int32]  # state -> the feature it counts, or -1
    weights: npt.NDArray[np.float16]  # feature -> log-probability per class
    prior: npt.NDArray[np.float32]  # class -> log prior
    classes: tuple[str, ...]  # class -> language code; a code may have two classes
    labels: npt.NDArray[np.object_]  # each code once, in the order of its first class
    macrolanguages: npt.NDArray[np.object_]  # each label's macrolanguage (arz -> ar)
    varieties: tuple[tuple[str, tuple[int, ...]], ...]  # macrolanguage -> several labels
    label_columns: npt.NDArray[np.intp]  # label -> its first class
    aliases: tuple[tuple[int, int], ...]  # (first class, second class) of one code


def _rank(text: str) -> list[tuple[str, float]]:
    """Every language code and its probability, most likely first: py3langid's
    ``LanguageIdentifier.rank`` with normalized probabilities, to the last bit."""
    model = _model()
    if model is None:
        return [(code, float(p)) for code, p in _identifier().rank(text)]
    scores = _scores(model, text)[model.label_columns]
    # Python's stable sort, best first, keeps ties in class order; so does this.
    order = np.argsort(-scores, kind="stable")
    return list(zip(model.labels[order].tolist(), scores[order].tolist(), strict=True))


def _scores(model: _Model, text: str) -> npt.NDArray[np.float32]:
    """Probability per class: py3langid's ``LanguageIdentifier._decide`` (norm_probs)."""
    if text.isupper():
        text = text.lower()
    data = unicodedata.normalize("NFC", text).encode("utf8", errors="surrogatepass")
    features = _features(model, np.frombuffer(data, dtype=np.uint8))
    if features.size:
        # Counted in order of first appearance, as py3langid's Counter does, so the
        # matrix product adds the same numbers in the same order.
        found, first, counts = np.unique(features, return_index=True, return_counts=True)
        order = np.argsort(first)
        weights = _half_to_single(model.weights[found[order]])
        scores = np.log1p(counts[order].astype(np.float32)) @ weights + model.prior
    else:
        scores = np.zeros(len(model.classes), dtype=np.float32)
    scores *= 1.0 / math.sqrt(len(data) or 1)
    np.exp(scores - scores.max(), out=scores)
    scores /= scores.sum()
    for first_class, second_class in model.aliases:
        scores[first_class] += scores[second_class]
        scores[second_class] = 0.0
    return scores


def _half_to_single(values: npt.NDArray[np.float16]) -> npt.NDArray[np.float32]:
    """Negative normal float16 numbers (all the model's weights) as float32, exactly: the
    exponent rebased from 15 to 127, the mantissa widened. numpy's conversion takes
    five times as long."""
    bits = values.view(np.uint16).astype(np.uint32)
    bits <<= 13
    bits &= 0x0FFFE000  # exponent and mantissa, without the sign that landed in bit 28
    bits += np.uint32((1 << 31) | (127 - 15) << 23)
    single: npt.NDArray[np.float32] = bits.view(np.float32)
    return single


def _features(model: _Model, data: npt.NDArray[np.uint8]) -> npt.NDArray[np.int32]:
    """The feature the automaton counts after each byte of ``data`` (where it counts one).

    py3langid steps one state per byte from the start. The state after byte ``i`` is
    also the one reached from the start over bytes ``i - window + 1`` to ``i`` alone,
    so each round below moves every position one byte along its own window."""
    n = data.size
    data = data.astype(np.intp)  # numpy indexes with intp: any other type is converted
    start = model.byte_start[data]
    states = np.zeros(n, dtype=np.intp)
    for back in range(min(model.window, n) - 1, -1, -1):
        # Positions from ``back`` on read the byte ``back`` places before them.
        at = states[back:]
        at[:] = model.moves[model.row_of[at] + data[: n - back]] + start[: n - back]
    features = model.feature_of[states]
    found: npt.NDArray[np.int32] = features[features >= 0]
    return found


@cache
def _model() -> _Model | None:
    """The model rearranged, or None for a model file the window was not proven for."""
    from py3langid.langid import MODEL_DIR, MODEL_FILE

    path = MODEL_DIR / MODEL_FILE
    window = PROVEN_WINDOWS.get(hashlib.sha256(path.read_bytes()).hexdigest())
    if window is None:
        return None
    # An LZMA-compressed .npz, streamed through a temporary file as py3langid does, and
    # its transition table read a slice at a time: the 37 MB table is never whole in
    # memory. Small buffers (64 kB) leave 5 MB less freed heap behind in the process.
    with tempfile.TemporaryFile(suffix=".npz") as npz:
        with lzma.open(path) as packed:
            shutil.copyfileobj(packed, npz, length=1 << 16)
        npz.seek(0)
        with np.load(npz, allow_pickle=False) as arrays:
            row = arrays["nextmove_row"].astype(np.intp)
            weights = arrays["ptc"]
            layout = _Layout.of(_table_slices(arrays.zip), states=row.size)
            moves = layout.table(_table_slices(arrays.zip)) if layout else None
            if layout is None or moves is None or not _negative_normal(weights):
                return None
            classes = tuple(str(c) for c in arrays["classes"].tolist())
            labels = tuple(dict.fromkeys(classes))
            macrolanguages = [_MACROLANGUAGE.get(code, code) for code in labels]
            return _Model(
                window=window,
                byte_start=layout.byte_start.astype(np.intp),
                moves=moves,
                row_of=row[layout.old_state] << 8,
                feature_of=arrays["out_feat"].astype(np.int32)[layout.old_state],
                weights=weights,
                prior=arrays["pc"].astype(np.float32),
                classes=classes,
                labels=np.array(labels, dtype=object),
                macrolanguages=np.array(macrolanguages, dtype=object),
                varieties=tuple(
                    (code, tuple(i for i, m in enumerate(macrolanguages) if m == code))
                    for code in dict.fromkeys(macrolanguages)
                    if macrolanguages.count(code) > 1
                ),
                label_columns=np.array([classes.index(code) for code in labels]),
                aliases=tuple(
                    (classes.index(code), i)
                    for i, code in enumerate(classes)
                    if classes.index(code) != i
                ),
            )


def _negative_normal(weights: npt.NDArray[np.float16]) -> bool:
    """Whether _half_to_single converts every weight: sign set, exponent neither 0 (zero,
    subnormal) nor 31 (infinite, NaN). Log-probabilities of a smoothed model are."""
    bits = weights.view(np.uint16)  # sign, 5 exponent bits, 10 mantissa bits
    return bool(bits.min() >= 0b1_00001_0000000000 and bits.max() <= 0b1_11110_1111111111)


def _table_slices(npz: Any, rows: int = 64) -> Iterator[npt.NDArray[np.uint32]]:
    """py3langid's transition table (row, byte -> next state), ``rows`` rows at a time."""
    with npz.open("nextmove.npy") as member:
        version = np.lib.format.read_magic(member)
        read_header = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, _, dtype = read_header(member)
        table_rows = shape[0] // 256
        for first in range(0, table_rows, rows):
            count = min(rows, table_rows - first) * 256
            block = np.frombuffer(member.read(count * dtype.itemsize), dtype=dtype)
            yield block.astype(np.uint32).reshape(-1, 256)


@dataclass(frozen=True)
class _Layout:
    """The automaton's states renumbered by the byte that enters them.

    Every state but the start is entered on one byte value only (the last byte of the
    n-gram prefix it stands for). The start is entered on many, so each byte's block
    of states begins with a copy of it (same row, same feature): a copy behaves as the
    start does, and every block stays one contiguous range of numbers."""

    byte_start: npt.NDArray[np.int32]  # byte -> its block's first number (the copy)
    block_size: npt.NDArray[np.int32]  # byte -> states in its block, the copy included
    new_state: npt.NDArray[np.int32]  # old number -> new (the start stays 0)
    old_state: npt.NDArray[np.intp]  # new number -> old (a copy -> the start, 0)
    rows: int  # rows in the transition table

    @classmethod
    def of(cls, table: Iterator[npt.NDArray[np.uint32]], *, states: int) -> _Layout | None:
        """None when a block needs more than 16 bits."""
        entered_on = np.full(states, -1, dtype=np.intp)
        rows = 0
        for block in table:
            entered_on[block] = np.arange(256)  # a second byte shows in table()
            rows += len(block)
        entered_on[0] = -1
        others = np.flatnonzero(entered_on >= 0)
        others = others[np.argsort(entered_on[others], kind="stable")]
        by_byte = entered_on[others]
        block_size = np.bincount(by_byte, minlength=256) + 1  # + the copy of the start
        if block_size.max() > 1 << 16:
            return None
        byte_start = np.cumsum(block_size) - block_size + 1
        within = np.arange(others.size) - np.searchsorted(by_byte, by_byte)
        new_state = np.zeros(states, dtype=np.int32)
        new_state[others] = byte_start[by_byte] + 1 + within
        old_state = np.zeros(1 + int(block_size.sum()), dtype=np.intp)
        old_state[new_state[others]] = others
        return cls(
            byte_start.astype(np.int32), block_size.astype(np.int32), new_state, old_state, rows
        )

    def table(self, table: Iterator[npt.NDArray[np.uint32]]) -> npt.NDArray[np.uint16] | None:
        """The transition table as next state - byte_start[byte] (0: the block's copy of
        the start), flat; None if a state is entered on two bytes: the model is not the
        kind of automaton this layout is for."""
        moves = np.empty((self.rows, 256), dtype=np.uint16)
        first = 0
        for block in table:
            local = self.new_state[block]
            local -= self.byte_start  # each column by its own byte
            local[block == 0] = 0
            # Another byte's state lands outside [1, block size) of this byte's block.
            if local.min() < 0 or (local >= self.block_size).any():
                return None
            moves[first : first + len(block)] = local
            first += len(block)
        return moves.ravel()


@cache
def _identifier() -> Any:
    """py3langid itself, for a model file whose window is not proven."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
