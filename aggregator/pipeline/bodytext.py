"""Body text: the story's own words, without markup or site boilerplate.

The content hash is computed on this text, so the rules here are a contract:
they follow "The body text and what counts as boilerplate" in the fixtures'
README (source field, dropped elements and classes, paragraph breaks, trailing
and leading boilerplate, NFC and whitespace). Pure functions, no I/O.
"""

from __future__ import annotations

import html as html_entities
import re
import unicodedata
from collections.abc import Iterable

import lxml.etree
import lxml.html
import nh3

# Elements dropped together with everything inside them.
DROPPED_TAGS = frozenset(
    [
        "script",
        "style",
        "noscript",
        "template",
        "iframe",
        "object",
        "embed",
        "form",
        "button",
        "nav",
        "aside",
        "header",
        "footer",
        "figure",
        "figcaption",
        "svg",
        "video",
        "audio",
        "picture",
        "head",
        "title",
    ]
)
# An element whose class has one of these tokens is boilerplate, content and all.
BOILERPLATE_CLASSES = frozenset(
    [
        "teaser",
        "standfirst",
        "kicker",
        "byline",
        "credit",
        "author",
        "meta",
        "related",
        "latest",
        "latest-news",
        "must-read",
        "recommended",
        "read-more",
        "share",
        "social",
        "newsletter",
        "promo",
        "ad",
        "advert",
        "tags",
        "copyright",
        "caption",
    ]
)
# Paragraph breaks come before and after these.
BLOCK_TAGS = frozenset(
    [
        "p",
        "div",
        "section",
        "article",
        "main",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "ul",
        "ol",
        "li",
        "blockquote",
        "pre",
        "table",
        "tr",
        "td",
        "th",
        "dl",
        "dt",
        "dd",
        "body",
        "html",
    ]
)
BREAK_TAGS = frozenset({"br", "hr"})

# A paragraph equal to one of these starts the trailing "more stories" block.
TRAILING_HEADINGS = frozenset(
    h.casefold()
    for h in (
        "Latest news",
        "Must read",
        "Related",
        "Related news",
        "Related stories",
        "Read more",
        "Read also",
        "Also read",
        "More on this story",
        "You might also like",
        "You might also likeRELATED",
        "Recommended to you",
        "More from this section",
        "اقرأ أيضا",
        "اقرأ أيضاً",
        "أخبار ذات صلة",
        "مواضيع ذات صلة",
        "الأكثر قراءة",
        "بیشتر بخوانید",
        "مطالب مرتبط",
        "اخبار مرتبط",
        "پربازدیدترین‌ها",
        "İlgili haberler",
        "Bunlar da ilginizi çekebilir",
        "Çok okunanlar",
        "Son dakika",
    )
)
_WORDPRESS_TRAILER = re.compile(r"^The post .+ appeared first on .+\.$", re.DOTALL)
_LEADING_LABEL = re.compile(r"^[^\s:]+(?: [^\s:]+){0,3}: (.*)$", re.DOTALL)
_SENTENCE_END = re.compile(r"[.!?؟…۔][\"'”’»)\]]*$")
_TEASER_LOOKAHEAD = 5
_HEADER_MAX_WORDS = 15
_LABELLED_TEASER_MIN_CHARS = 30

_BREAK = "\x00"  # never in text: control characters are removed before parsing
# ...but a character reference in the markup (&#1;) brings one back: removed from the text.
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")


def html_paragraphs(html: str) -> list[str]:
    """Split HTML into text paragraphs, dropping boilerplate elements."""
    if not html.strip():
        return []
    root = _html_tree(html)
    if root is None:
        return _markup_free_paragraphs(html)
    chunks: list[str] = []
    _walk(root, chunks)
    return _split("".join(chunks).split(_BREAK))


# lxml asserts ("too many bodies") on a fragment holding <html>, and refuses some input.
_LXML_FAILURES = (lxml.etree.ParserError, ValueError, AssertionError)


def _html_tree(html: str) -> lxml.html.HtmlElement | None:
    """The markup as a tree: as a fragment, else as a whole document (``head`` is dropped)."""
    try:
        return lxml.html.fragment_fromstring(html, create_parent="div")
    except _LXML_FAILURES:
        pass
    try:
        return lxml.html.document_fromstring(html)
    except _LXML_FAILURES:
        return None


def _markup_free_paragraphs(html: str) -> list[str]:
    """Last resort when lxml reads nothing: every tag removed (script and style with their
    content), never the raw markup kept as text."""
    return text_paragraphs(html_entities.unescape(nh3.clean(html, tags=set())))


def _walk(element: lxml.html.HtmlElement, out: list[str]) -> None:
    tag = element.tag
    if not isinstance(tag, str):  # comment or processing instruction: keep only its tail
        if element.tail:
            out.append(element.tail)
        return
    tag = tag.rpartition("}")[2].lower()
    classes = (element.get("class") or "").split()
    if tag in DROPPED_TAGS or not BOILERPLATE_CLASSES.isdisjoint(classes):
        if element.tail:
            out.append(element.tail)
        return
    block = tag in BLOCK_TAGS
    if block or tag in BREAK_TAGS:
        out.append(_BREAK)
    if element.text:
        out.append(element.text)
    for child in element:
        _walk(child, out)
    if block:
        out.append(_BREAK)
    if element.tail:
        out.append(element.tail)


def text_paragraphs(text: str) -> list[str]:
    """Plain text: one paragraph per line."""
    return _split(text.splitlines())


def _split(pieces: Iterable[str]) -> list[str]:
    paragraphs = (" ".join(_CONTROL_CHARS.sub("", piece).split()) for piece in pieces)
    return [p for p in paragraphs if p]


def strip_boilerplate(paragraphs: list[str]) -> list[str]:
    """Drop trailing "more stories" blocks and trailers, then leading teasers and header lines."""
    kept = list(paragraphs)
    for i, paragraph in enumerate(kept):
        if paragraph.rstrip(":").strip().casefold() in TRAILING_HEADINGS:
            del kept[i:]
            break
    while kept and _is_trailer(kept[-1]):
        kept.pop()
    while kept and (_is_teaser(kept) or _is_header_line(kept[0])):
        kept.pop(0)
    return kept


def _is_trailer(paragraph: str) -> bool:
    return (
        bool(_WORDPRESS_TRAILER.match(paragraph))
        or paragraph.startswith("©")
        or paragraph.startswith("Copyright")
    )


def _is_teaser(paragraphs: list[str]) -> bool:
    first, following = paragraphs[0], paragraphs[1 : 1 + _TEASER_LOOKAHEAD]
    if any(first in p for p in following):
        return True
    labelled = _LEADING_LABEL.match(first)
    if labelled and len(labelled[1]) >= _LABELLED_TEASER_MIN_CHARS:
        return any(labelled[1] in p for p in following)
    return False


def _is_header_line(paragraph: str) -> bool:
    return len(paragraph.split()) <= _HEADER_MAX_WORDS and not _SENTENCE_END.search(paragraph)


def normalize_text(paragraphs: Iterable[str]) -> str:
    """The hashed form: paragraphs joined by spaces, NFC, whitespace runs collapsed."""
    return " ".join(unicodedata.normalize("NFC", " ".join(paragraphs)).split())


def body_paragraphs(value: str, *, is_html: bool) -> list[str]:
    """The story's paragraphs from a feed's content field."""
    paragraphs = html_paragraphs(value) if is_html else text_paragraphs(value)
    return strip_boilerplate(paragraphs)


def html_to_text(html: str) -> str:
    """Plain text of a title or summary that may hold markup."""
    return normalize_text(html_paragraphs(html))


def page_paragraphs(html: bytes) -> list[str]:
    """An article page's main text (trafilatura) as body paragraphs; pure, runs in the
    parse processes. trafilatura is imported on first use: about 10 MB that a daemon
    without --full-text feeds never needs."""
    import trafilatura

    extracted = trafilatura.extract(
        html.decode("utf-8", "replace"),
        include_comments=False,
        include_tables=False,
        include_links=False,
        favor_precision=True,
    )
    return body_paragraphs(extracted or "", is_html=False)
