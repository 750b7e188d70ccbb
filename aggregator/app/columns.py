"""Terminal columns: text cut and padded by the width a terminal gives it, not by ``len``.

An Arabic or Persian title carries marks that take no cell of their own (harakat,
shadda, hamza above), and zero-width joiners and direction marks (ZWNJ in Persian);
CJK characters take two cells. ``len`` counts each as one, so a table padded with
it has ragged columns after such a title.
"""

from __future__ import annotations

import unicodedata

ELLIPSIS = "…"


def char_width(char: str) -> int:
    """Cells one code point takes: 0 for combining marks and format characters
    (ZWNJ, ZWJ, RLM/LRM, BOM), 2 for wide and fullwidth East Asian characters, else 1."""
    if unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Me", "Cf"):
        return 0
    if unicodedata.east_asian_width(char) in ("W", "F"):
        return 2
    return 1


def width(text: str) -> int:
    """Cells ``text`` takes in a terminal."""
    return sum(char_width(c) for c in text)


def cut(text: str, cells: int) -> str:
    """``text`` in at most ``cells`` cells, ending in "…" when something was left out.
    Marks stay with the letter they sit on."""
    if width(text) <= cells:
        return text
    if cells <= 0:
        return ""
    kept: list[str] = []
    used = 0
    for char in text:
        w = char_width(char)
        if used + w > cells - 1:  # leave a cell for the ellipsis
            break
        kept.append(char)
        used += w
    return "".join(kept) + ELLIPSIS


def left(text: str, cells: int) -> str:
    """``text`` cut to ``cells`` and padded with spaces to exactly that many cells."""
    text = cut(text, cells)
    return text + " " * (cells - width(text))


def right(text: str, cells: int) -> str:
    text = cut(text, cells)
    return " " * (cells - width(text)) + text
