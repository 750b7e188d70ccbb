"""Cut: a feed document shortened to whole entries, and closed again.

Two things cut a document at an entry boundary: a body that ends before its
document does (a truncated download, a server that gave up), whose last entry
is unfinished and must not be stored as if it were whole; and the memory
budget (``parse.ENTRY_COST``), past which entries are not read. Both keep
what precedes the cut and close the elements still open there, so the strict
fast path and feedparser read the same entries. Pure bytes in, bytes out; the
parsers that read the result never expand entities or fetch anything, and the
one here is configured the same way.
"""

from __future__ import annotations

import re

from lxml import etree

# Entry tags (RSS <item>, Atom <entry>, any prefix), with the comments and CDATA sections
# that may hide text looking like one.
_ENTRY_TAG = re.compile(
    rb"<!\[CDATA\[.*?(?:\]\]>|\Z)|<!--.*?(?:-->|\Z)"
    rb"|<(/?)(?:[A-Za-z_][\w.-]*:)?(?:item|entry)(?=[\s/>])[^<>]*(>|\Z)",
    re.S,
)
_PROLOG_ITEM = re.compile(rb"\s*(?:<\?.*?\?>|<!--.*?-->)", re.S)
_ROOT_NAME = re.compile(rb"\s*<([A-Za-z_][\w.:-]*)")
_CHUNK = 1 << 20

Span = tuple[int, int | None]  # an entry's start, and the end of its end tag (None: unclosed)


def root_name(body: bytes) -> bytes | None:
    position = 0
    while match := _PROLOG_ITEM.match(body, position):
        position = match.end()
    match = _ROOT_NAME.match(body, position)
    return match.group(1) if match else None


def is_whole(body: bytes) -> bool:
    """Whether the document's root element is closed at its end (the usual case, and cheap)."""
    name = root_name(body)
    if name is None:
        return True  # not XML we can judge: the parsers will say what it is
    end_tag = re.compile(rb"</" + re.escape(name) + rb"\s*>(?:\s*<!--.*?-->)*\s*\Z", re.S)
    return end_tag.search(body[-4096:].rstrip()) is not None


def entry_spans(body: bytes) -> list[Span]:
    """Every entry of the document, in order, with where it starts and ends."""
    spans: list[Span] = []
    open_: list[int] = []  # indexes into spans of the entries still open
    for match in _ENTRY_TAG.finditer(body):
        closing, end_mark = match.group(1), match.group(2)
        if end_mark is None:
            continue  # a comment or a CDATA section
        if end_mark != b">":
            break  # the body ends inside this tag
        if closing:
            if open_:
                index = open_.pop()
                spans[index] = (spans[index][0], match.end())
        elif match.group(0).endswith(b"/>"):
            spans.append((match.start(), match.end()))
        else:
            open_.append(len(spans))
            spans.append((match.start(), None))
    return spans


def closed(prefix: bytes) -> bytes:
    """``prefix`` with end tags for the elements still open at its end; unchanged if it
    is not well-formed up to there (feedparser's loose parser then reads it)."""
    parser = etree.XMLPullParser(
        events=("start", "end"),
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        recover=False,
    )
    stack: list[str] = []
    try:
        for start in range(0, len(prefix), _CHUNK):
            parser.feed(prefix[start : start + _CHUNK])
            for event, element in parser.read_events():
                if event == "start":
                    local = etree.QName(element).localname
                    stack.append(f"{element.prefix}:{local}" if element.prefix else local)
                else:
                    stack.pop()
                    element.clear()
    except etree.XMLSyntaxError:
        return prefix
    return prefix + "".join(f"</{name}>" for name in reversed(stack)).encode()


def drop_unclosed(body: bytes, warnings: list[str]) -> bytes:
    """A truncated document without the entry it ends inside, and closed again."""
    if is_whole(body):
        return body
    spans = entry_spans(body)
    if not spans:
        return body  # nothing to drop: the parsers say what is wrong with it
    unclosed = sum(1 for _, end in spans if end is None)
    ends = [end for _, end in spans if end is not None]
    name = root_name(body) or b""
    if not unclosed and body.rfind(b"</" + name, ends[-1]) >= 0:
        return body  # the root is closed, something else follows it: not a truncation
    first_open = next((start for start, end in spans if end is None), len(body))
    whole = [end for end in ends if end <= first_open]
    cut_at = whole[-1] if whole else first_open
    root = name.decode("ascii", "replace")
    if unclosed:
        warnings.append(
            f"truncated document (it ends before </{root}>): "
            f"{unclosed} unfinished entr{'y' if unclosed == 1 else 'ies'} dropped"
        )
    else:
        warnings.append(f"truncated document (it ends before </{root}>)")
    return closed(body[:cut_at])
