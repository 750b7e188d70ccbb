"""Folding: the spelling differences of the region's scripts that readers ignore, in one place.

Two consumers take their rules from here:

* the story matcher (``fold``, at the end of this module) compares texts across outlets;
* full-text search folds every article (``articles.search_vector``) and every query
  (``article_search_query``) in Postgres, through the SQL function
  ``article_search_fold(text)`` that migration ``sql/010_search_fold.sql`` defines.
  :func:`search_fold` is that function in Python, the reference the SQL is generated
  from and tested against (tests/test_search.py).

Where they agree they share :data:`LETTERS`. They differ only where changing the
story fold would change the story prints already stored in Postgres (their keys
must survive an upgrade): search also folds the hamza seats (``ئ ؤ``) and alef
wasla, and strips the article ``ال`` with its proclitics; stories do neither.

The search fold, step by step (each step is one SQL call, in this order):

1. ``ۀ`` (heh with yeh above) becomes ``ه``: NFKD would turn it into ``ە``, the
   Kurdish letter ae, which is a different letter.
2. NFKD: compatibility forms (Arabic presentation forms, ligatures, fullwidth Latin)
   become their letters, and accented letters (``Ş``, ``أ``, ``İ``) a base letter
   and a combining mark.
3. The marks go: Latin combining diacritics (U+0300-U+036F), Arabic harakat,
   shadda, tanween, sukun and hamza marks (U+064B-U+065F) and the superscript alef
   (U+0670). Only these: the vowel signs of Indic scripts are letters to their readers.
4. :data:`LETTERS` and :data:`SEARCH_LETTERS`, character for character.
5. The article: ``ال`` and ``وال بال فال کال لل`` at the start of a word go when at
   least two letters remain (Lucene's ArabicStemmer rule), except in ``الله``,
   ``الذي``, ``التي`` and ``الان`` (what remains, ``له ذي تي ان``, is another common
   word), and except in words with a Persian-only letter (``الگو``: Arabic's
   article never precedes one).

Case is not folded here: ``to_tsvector`` and ``websearch_to_tsquery`` lowercase both
sides alike. Only the Turkish ``İ`` and ``ı``, which no locale lowercases to ``i``,
become ``i``; so ``ŞIRNAK``, ``Şırnak`` and ``sirnak`` index as one word.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from functools import cache

import numpy as np

# Shared by the story matcher and search. None drops the character.
LETTERS: dict[str, str | None] = {
    "\u064a": "\u06cc",  # Arabic yeh -> Persian yeh
    "\u0649": "\u06cc",  # alef maksura
    "\u0643": "\u06a9",  # Arabic kaf -> keheh
    "\u0629": "\u0647",  # teh marbuta -> heh
    "\u06c0": "\u0647",  # heh with yeh above
    "\u0640": None,  # tatweel
    "\u200c": " ",  # ZWNJ: typed as a space (or nothing) by many outlets
    "\u066b": ".",  # Arabic decimal separator
    "\u066c": ",",  # Arabic thousands separator
    "\u0131": "i",  # Turkish dotless i; with İ and I below, every i is one letter
    "\u0130": "i",
    "I": "i",
    **{chr(0x0660 + d): str(d) for d in range(10)},  # Arabic-Indic digits
    **{chr(0x06F0 + d): str(d) for d in range(10)},  # Persian digits
}

# Search only: the story prints stored in Postgres were computed without these.
SEARCH_LETTERS: dict[str, str | None] = {
    "\u0671": "\u0627",  # alef wasla -> alef (the hamza forms of alef lose their mark in NFKD)
    "\u0626": "\u06cc",  # yeh with hamza: its NFKD base is the Arabic yeh, folded above
}

# The ASCII "I" is the tsvector's to lowercase, in SQL as in Python: the search fold
# leaves ASCII text as it is, which lets the SQL function skip all work on it. NFKD
# has already made "İ" an "I" and a dot above, and "ۀ" is step 1's.
_SEARCH_TABLE: dict[str, str | None] = {
    k: v for k, v in {**LETTERS, **SEARCH_LETTERS}.items() if k not in "I\u0130\u06c0"
}

# Marks the search fold removes after NFKD: Latin combining diacritics, Arabic harakat,
# shadda, tanween, sukun, hamza above and below, superscript alef.
SEARCH_MARKS = "[\u0300-\u036f\u064b-\u065f\u0670]"

# Arabic-script letters, as the search fold leaves them (the word-start test of the
# article rule): hamza to yeh, the Persian, Urdu and Kurdish letters, and the
# Arabic Supplement block.
_LETTER = "\u0621-\u064a\u066e\u066f\u0671-\u06d3\u06d5\u06ee\u06ef\u06fa-\u06fc\u06ff\u0750-\u077f"
# ال and its proclitics, as the fold writes them (the kaf already folded to keheh).
_ARTICLE_START = (
    f"(?<![{_LETTER}])"  # at the start of a word
    "(?:[\u0648\u0628\u0641\u06a9]?\u0627\u0644|\u0644\u0644)"  # [و ب ف ک]ال or لل
    f"(?=[{_LETTER}]{{2}})"  # at least two letters remain
    f"(?!(?:\u0644\u0647|\u0630\u06cc|\u062a\u06cc|\u0627\u0646)(?![{_LETTER}]))"  # له ذی تی ان
)
_PERSIAN_ONLY = "[\u067e\u0686\u0698\u06af]"  # پ چ ژ گ
ARTICLE = _ARTICLE_START + f"(?![{_LETTER}]*{_PERSIAN_ONLY})"  # no Persian-only letter in the word

# One str.replace() per letter of the table: translate() looks every character up in
# Python (20 ns each), replace() scans in C; no replacement is another one's letter, so
# the order does not matter.
_REPLACEMENTS = tuple((k, v or "") for k, v in _SEARCH_TABLE.items())
assert not any(v in _SEARCH_TABLE for _, v in _REPLACEMENTS if v)
_MARKS = re.compile(SEARCH_MARKS)
_ARTICLE = re.compile(ARTICLE)


def search_fold(text: str) -> str:
    """What ``article_search_fold(text)`` returns in Postgres (see the module docstring)."""
    if text.isascii():
        return text
    text = unicodedata.normalize("NFKD", text.replace("\u06c0", "\u0647"))
    text = _MARKS.sub("", text)
    for letter, replacement in _REPLACEMENTS:
        if letter in text:
            text = text.replace(letter, replacement)
    return _ARTICLE.sub("", text)


# The body's part of an article's search vector: its first 100,000 characters (a
# tsvector is limited to 1 MB), as ``article_search_vector()`` takes it.
SEARCH_BODY_CHARS = 100_000


def search_folded(title: str, summary: str, body: str) -> tuple[str | None, str | None, str | None]:
    """What ``article_search_vector(title, summary, body, language)`` folds in Postgres,
    folded here: each is None where the fold leaves its text as it is (the store's INSERT
    then takes the text itself, and the queue carries nothing twice)."""
    head = body[:SEARCH_BODY_CHARS]
    folded_body = search_fold(head)[:SEARCH_BODY_CHARS]
    return (
        _changed(title, search_fold(title)),
        _changed(summary, search_fold(summary)),
        _changed(head, folded_body),
    )


def _changed(text: str, folded: str) -> str | None:
    return None if folded == text else folded


def sql_fold_body() -> str:
    """The PL/pgSQL body of ``article_search_fold(input text)``: :func:`search_fold`
    step by step, written for speed on the store path. Each ``replace()`` maps one
    character (``translate()`` compares every character of a text with every
    character of its table: 3 times the cost on Arabic news text), and each group of
    replacements runs only in a text that has one of its characters; the check of
    the article for a Persian-only letter, the dearest part, only in a text that has
    such a letter. None of this changes the result."""
    groups: dict[str, list[tuple[str, str]]] = {"arabic": [], "rare": [], "digit": []}
    for k, v in _SEARCH_TABLE.items():
        group = "digit" if v is not None and v.isdigit() else "arabic" if k in "يىكة" else "rare"
        groups[group].append((k, v or ""))
    lines = [
        "DECLARE",
        "    folded text;",
        "BEGIN",
        "    IF octet_length(input) = length(input) THEN",
        "        RETURN input;  -- ASCII: nothing to fold (lowercasing is the text search's)",
        "    END IF;",
        f"    folded := normalize(replace(input, {sql_literal(chr(0x6C0))}, "
        f"{sql_literal(chr(0x647))}), NFKD);",
        f"    folded := regexp_replace(folded, {sql_literal(SEARCH_MARKS)}, '', 'g');",
    ]
    for pairs in groups.values():
        chars = "".join(k for k, _ in pairs)
        lines.append(f"    IF folded ~ {sql_literal('[' + chars + ']')} THEN")
        for k, v in pairs:
            name = unicodedata.name(k).lower()
            lines.append(
                f"        folded := replace(folded, {sql_literal(k)}, {sql_literal(v)});  -- {name}"
            )
        lines.append("    END IF;")
    lines += [
        f"    IF folded ~ {sql_literal(_PERSIAN_ONLY)} THEN",
        f"        RETURN regexp_replace(folded, {sql_literal(ARTICLE)}, '', 'g');",
        "    END IF;",
        f"    RETURN regexp_replace(folded, {sql_literal(_ARTICLE_START)}, '', 'g');",
        "END",
    ]
    return "\n".join(lines) + "\n"


def sql_literal(text: str) -> str:
    """``text`` as a Postgres Unicode-escape literal (``U&'...'``): every non-ASCII
    character as ``\\XXXX``, so invisible ones (ZWNJ, tatweel) can be read and diffed."""
    out = []
    for char in text:
        code = ord(char)
        if char == "\\":
            out.append("\\\\")
        elif char == "'":
            out.append("''")
        elif 0x20 <= code < 0x7F:
            out.append(char)
        elif code <= 0xFFFF:
            out.append(f"\\{code:04X}")
        else:
            out.append(f"\\+{code:06X}")
    return "U&'" + "".join(out) + "'"


# --- text normalization -----------------------------------------------------------------------

# The letter rules shared with search live in textfold; the story fold adds NFKC, case
# folding and drops every nonspacing mark and format character (see ``fold``).
_FOLD = str.maketrans(LETTERS)
_TOKEN = re.compile(r"\d+(?:[.,]\d+)*|[^\W\d_]+")
# "AMMAN, Jordan, Sept. 11 (CWS) — ", "الرياض (الشرق) — ", "LONDON - ": where, when and
# which agency, which outlets add, drop or rewrite independently of the story.
_DATELINE = re.compile(r"^(?P<place>[^\n—–]{1,80}?)\s*(?:—|–|--|-)\s+")


def fold(text: str) -> str:
    """Text with the differences that outlets introduce but readers ignore removed."""
    if text.isascii():
        # Of LETTERS only "I" is ASCII, and it becomes the "i" that lowercasing makes of
        # it; casefold() is lower() on ASCII. (translate() cost 20 ns a character.)
        return text.lower()
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


def is_number(token: str) -> bool:
    return token[0].isdigit()
