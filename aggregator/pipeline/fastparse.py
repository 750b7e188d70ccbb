"""Fast path for well-formed RSS, RDF and Atom: lxml's tree read the way feedparser reads it.

feedparser spends most of its time in per-element Python (its SAX handler,
deep copies, a ``urljoin`` per element, an SGML round trip of every HTML
field). For a document that lxml parses strictly this module produces the
same feed and entry values (feedparser's own keys, so ``parse.py`` maps both
paths' results with one function) in a fraction of the time.

It is a port, kept close to feedparser 6's ``_FeedParserMixin`` (method names
say which of its handlers each one mirrors), restricted to what it can
reproduce exactly; everything else is *declined* (``read_feed`` returns None)
and feedparser reads the document. Declining is always safe, so the rules are
strict: no element whose feedparser handler is not ported here, no markup
inside a text field unless it is Atom XHTML content, no unusual content type,
no more than ``max_entries`` entries, and no document lxml finds ill-formed
(feedparser's expat would have too, and gone on with its loose parser).
Where feedparser calls a library function (dates, URL joins, the
looks-like-HTML guess) this module calls the same one.

Bodies are hostile: the parser below never expands an entity, never loads a
DTD, never touches the network and keeps libxml2's size and depth limits.
It only ever sees bodies ``parse.defuse_xml`` already rewrote (UTF-8, no
DOCTYPE), as feedparser does.

Nothing but ``aggregator.pipeline.parse`` imports this module: the rest of the
project sees only ``parse_feed`` and its ``ParsedFeed``, whichever path read it.

Because it ports feedparser's private handlers, ``pyproject.toml`` pins
``feedparser<6.1``. To re-verify it against another feedparser (before widening
that pin), install that version and run the differential tests, one command::

    pip install 'feedparser==NEW' && python -m pytest -m feedparser

They (``tests/test_fastparse.py``) read every corpus through both paths and
require equal results wherever this module accepts a document. A difference
means a handler to port again, or a construct to decline here.
"""

from __future__ import annotations

import contextlib
import html.entities
import re
import threading
import xml.sax.saxutils
from collections.abc import Callable
from typing import Any, NamedTuple

import feedparser
import feedparser.api
import feedparser.util
from feedparser.datetimes import _parse_date
from feedparser.html import _cp1252
from feedparser.mixin import _FeedParserMixin
from feedparser.urls import RelativeURIResolver, _urljoin, make_safe_absolute_uri
from feedparser.urls import resolve_relative_uris as _feedparser_resolve_relative_uris
from lxml import etree

# Strict and inert. resolve_entities=False: an entity reference is never
# substituted (there is no DTD left to declare one; an undeclared one makes the
# document ill-formed, and we decline). no_network / load_dtd=False: nothing is
# ever fetched or read besides the body. huge_tree=False keeps libxml2's limits
# (depth 256, 10 MB text nodes). recover=False: any well-formedness error
# raises, so only documents expat also accepts get through. Comments and PIs
# are dropped (feedparser's SAX handler ignores them) so the text around them
# merges as SAX reports it; CDATA becomes plain text, as SAX reports it.
_PARSER_SETTINGS: dict[str, Any] = dict(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    dtd_validation=False,
    attribute_defaults=False,
    huge_tree=False,
    recover=False,
    remove_comments=True,
    remove_pis=True,
    strip_cdata=True,
    remove_blank_text=False,
    collect_ids=False,
)
_parsers = threading.local()  # a parser's error log is its last run's: one parser per thread


def _parser() -> etree.XMLParser:
    parser: etree.XMLParser | None = getattr(_parsers, "parser", None)
    if parser is None:
        parser = _parsers.parser = etree.XMLParser(**_PARSER_SETTINGS)
    return parser


# The feedparser this ports (its 6.0 releases): another one may read documents otherwise,
# so until tests/test_fastparse.py has compared the two again, it reads them all.
_PORTED = feedparser.__version__.startswith("6.0.")
_MATCH_NAMESPACES = {uri.lower(): prefix for uri, prefix in _FeedParserMixin.namespaces.items()}
_XLINK = "http://www.w3.org/1999/xlink"
# feedparser's element handlers, by the name it looks them up with ('dc_creator').
_FEEDPARSER_METHODS = dir(feedparser.api.StrictFeedParser)
_FEEDPARSER_STARTS = frozenset(
    n.removeprefix("_start_") for n in _FEEDPARSER_METHODS if n.startswith("_start_")
)
_FEEDPARSER_ENDS = frozenset(
    n.removeprefix("_end_") for n in _FEEDPARSER_METHODS if n.startswith("_end_")
)
_CAN_BE_RELATIVE_URI = _FeedParserMixin.can_be_relative_uri
_CAN_CONTAIN_RELATIVE_URIS = _FeedParserMixin.can_contain_relative_uris
_HTML_TYPES = _FeedParserMixin.html_types
# An absolute http(s) URL that urllib's urlsplit/urlunsplit give back unchanged: scheme in
# lowercase, a plain host, no ';' (path parameters), no empty '?' or '#', nothing to strip.
# feedparser's _urljoin and make_safe_absolute_uri return such a URL as it is.
_PLAIN_HTTP_URL = re.compile(
    r"https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?"
    r"(?:/[-A-Za-z0-9._~!$&'()*+,=:@%/]*)?"
    r"(?:\?[-A-Za-z0-9._~!$&'()*+,;=:@%/?]+)?"
    r"(?:#[-A-Za-z0-9._~!$&'()*+,;=:@%/?#]+)?\Z"
)
# Content types whose handling here matches feedparser's; any other one is declined.
_KNOWN_CONTENT_TYPES = frozenset({"text/plain", "text/html", "application/xhtml+xml"})
_CP1252_MAPPED = re.compile("[{}]".format("".join(map(chr, _cp1252))))
_LINK_REFERENCE = re.compile("&([A-Za-z0-9_]+);")
_AUTHOR_EMAIL = re.compile(
    r"""(([a-zA-Z0-9\_\-\.\+]+)@((\[[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.)|(([a-zA-Z0-9\-]+\.)+))([a-zA-Z]{2,4}|[0-9]{1,3})(\]?))(\?subject=\S+)?"""
)
_looks_like_html = _FeedParserMixin.looks_like_html
_map_content_type = _FeedParserMixin.map_content_type


class _Names(NamedTuple):
    tag: str  # what feedparser's strict parser calls it: 'dc:creator', 'title'
    handler: str  # what it looks handlers up by: 'dc_creator'
    prefixed: bool  # whether that keeps a namespace prefix
    suffix: str  # the local part: 'creator'


class _Declined(Exception):
    """The document needs something this port does not reproduce exactly."""


def read_feed(
    body: bytes, *, url: str, max_entries: int
) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """feedparser's ``(feed, entries)`` for a defused, well-formed body, or None to decline.

    ``url`` is what feedparser gets as Content-Location (the base of relative
    URLs). More than ``max_entries`` entries are declined: feedparser's path
    keeps the first ones and says so."""
    if not _PORTED or not feedparser.RESOLVE_RELATIVE_URIS:
        return None
    parser = _parser()
    try:
        root = etree.fromstring(body, parser)
    except (etree.XMLSyntaxError, ValueError):
        return None  # ill-formed: feedparser's loose parser decides what it still says
    if len(parser.error_log):
        return None  # a warning libxml2 let through may be an error to expat
    if sum(1 for _ in root.iter("{*}item", "{*}entry")) > max_entries:
        return None  # counted in C, before any per-element work
    base = make_safe_absolute_uri("", url) or make_safe_absolute_uri(url) or ""
    if not base:
        return None
    reader = _Reader(base, max_entries)
    try:
        reader.walk(root)
    except _Declined:
        return None
    except Exception:
        # Where feedparser's handler raises the same error (a KeyError on a misplaced
        # textinput, say) its own path raises it again; an AttributeError it would
        # swallow and go another way. Either way feedparser gives the answer.
        return None
    if not reader.accepted_version() or len(reader.entries) > max_entries:
        return None
    return reader.feeddata, reader.entries


class _Reader:
    """The state of feedparser's ``_FeedParserMixin`` and the handlers that move it."""

    def __init__(self, baseuri: str, max_entries: int) -> None:
        self.max_entries = max_entries
        self.feeddata: dict[str, Any] = {}
        self.entries: list[dict[str, Any]] = []
        self.version = ""
        self.namespaces_in_use: dict[str, str] = {}
        self.namespacemap: dict[str | None, str] = {}
        self.infeed = self.inentry = self.incontent = 0
        self.intextinput = self.inimage = self.insource = 0
        self.inauthor = self.incontributor = 0
        self.sourcedata: dict[str, Any] = {}
        self.contentparams: dict[str, Any] = {}
        self.summary_key: str | None = None
        self.elementstack: list[tuple[str, int, list[str]]] = []
        # Per open element: its base URL, its language, and whether it is markup inside
        # XHTML content (feedparser's basestack and langstack).
        self.open: list[tuple[str, str | None, bool]] = []
        self.title_depth = -1
        self.depth = 0
        self.has_content = 0
        self.guidislink = False
        self.lang: str | None = None
        self.baseuri = baseuri
        self.root_name = ""
        self.property_depth: dict[int, dict[str, int]] = {}
        self.names: dict[str, _Names] = {}  # by Clark name; cleared on a namespace declaration
        # URL joins memoized per document: the same base is joined with itself per element.
        self.safe_joins: dict[tuple[str, str], str] = {}
        self.plain_joins: dict[tuple[str, str], str] = {}
        self.plain_urls: dict[str, bool] = {}

    def accepted_version(self) -> bool:
        if self.root_name == "rss":
            return self.version.startswith("rss")
        if self.root_name == "feed":
            return self.version == "atom10"
        if self.root_name == "rdf:rdf":
            return self.version in ("rss10", "rss090")
        return False

    # --- walking lxml's tree in SAX order ----------------------------------------------------

    def walk(self, root: Any) -> None:
        for event, node in etree.iterwalk(root, events=("start-ns", "start", "end")):
            if event == "start":
                clark = node.tag
                if not isinstance(clark, str):
                    raise _Declined  # an entity reference left in the tree
                names = self.names.get(clark) or self.element_names(clark)
                items = node.items()
                attrs = self.attributes(node, items) if items else None
                self.unknown_starttag(names, attrs, node)
                if node.text:
                    self.handle_data(node.text)
            elif event == "end":
                self.unknown_endtag(self.names.get(node.tag) or self.element_names(node.tag))
                if node.tail and node is not root:
                    self.handle_data(node.tail)
            else:
                self.start_prefix_mapping(*node)

    def start_prefix_mapping(self, prefix: str | None, uri: str) -> None:
        if not uri:
            return
        if uri == _XLINK or any(c.isspace() for c in uri):
            raise _Declined  # feedparser adds xlink declarations as attributes; spaces split names
        if prefix and not prefix.isascii():
            raise _Declined  # see element_names
        self.names.clear()
        self.track_namespace(prefix or None, uri)

    def track_namespace(self, prefix: str | None, uri: str) -> None:
        loweruri = uri.lower()
        if not self.version:
            if (prefix, loweruri) == (None, "http://my.netscape.com/rdf/simple/0.9/"):
                self.version = "rss090"
            elif loweruri == "http://purl.org/rss/1.0/":
                self.version = "rss10"
            elif loweruri == "http://www.w3.org/2005/atom":
                self.version = "atom10"
        if "backend.userland.com/rss" in loweruri:
            raise _Declined  # feedparser rewrites these namespaces on start but not on end
        if loweruri in _MATCH_NAMESPACES:
            self.namespacemap[prefix] = _MATCH_NAMESPACES[loweruri]
            self.namespaces_in_use[_MATCH_NAMESPACES[loweruri]] = uri
        else:
            self.namespaces_in_use[prefix or ""] = uri

    def element_names(self, clark: str) -> _Names:
        """How feedparser names an element, from its Clark name ('{uri}local').

        Valid until the next namespace declaration (which clears the cache)."""
        if clark[0] == "{":
            namespace, local = clark[1:].split("}", 1)
        else:
            namespace, local = "", clark
        if not local.isascii():
            # libxml2 takes thousands of name characters (XML 1.0, fifth edition) that
            # expat refuses, sending feedparser to its loose parser; in ASCII they agree.
            raise _Declined
        lowernamespace = namespace.lower()
        if "backend.userland.com/rss" in lowernamespace:
            raise _Declined
        local = local.lower()
        prefix = _MATCH_NAMESPACES.get(lowernamespace)
        if prefix:
            local = prefix.lower() + ":" + local
        elif namespace:
            for known, value in self.namespaces_in_use.items():
                if known and value == namespace:
                    local = known + ":" + local
                    break
        tag = local.lower()  # what its strict parser hands unknown_starttag: 'dc:creator'
        prefix, colon, suffix = tag.partition(":")
        if colon:
            prefix = self.namespacemap.get(prefix, prefix)
            handler = prefix + "_" + suffix if prefix else suffix
        else:
            suffix, handler = tag, tag
        names = _Names(tag, handler, handler != suffix, suffix)
        self.names[clark] = names
        return names

    @staticmethod
    def attributes(node: Any, items: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """feedparser's attribute list, normalized: first the names its SAX handler makes
        ('xml:lang', a known namespace's prefix, else the bare local name), then the
        qualified names expat reports ('f:bar' with the document's own prefix)."""
        found: dict[str, str] = {}
        qnames: list[tuple[str, str]] = []
        for clark, value in items:
            if clark[0] == "{":
                namespace, local = clark[1:].split("}", 1)
                prefix = _MATCH_NAMESPACES.get(namespace.lower(), "")
                found[(prefix + ":" + local if prefix else local).lower()] = value
                qnames.append((_attribute_prefix(node, namespace) + ":" + local, value))
            else:
                local = clark
                found[local.lower()] = value
                qnames.append((local, value))
            if not local.isascii():
                raise _Declined  # see element_names
        for qname, value in qnames:
            found[qname.lower()] = value
        return [
            (key, (key in ("rel", "type") and value.lower()) or value)
            for key, value in found.items()
        ]

    # --- feedparser's _FeedParserMixin core ---------------------------------------------------

    def join(self, base: str, uri: str, safe: bool) -> str:
        """``make_safe_absolute_uri`` (``safe``) or ``_urljoin``, as feedparser calls them."""
        if self.is_plain(uri) and self.is_plain(base):
            return uri  # what both return for such a URL (tests/test_fastparse.py checks)
        key = (base, uri)
        cache = self.safe_joins if safe else self.plain_joins
        joined = cache.get(key)
        if joined is None:
            joined = make_safe_absolute_uri(base, uri) if safe else _urljoin(base, uri)
            cache[key] = joined
        return joined

    def is_plain(self, url: str) -> bool:
        plain = self.plain_urls.get(url)
        if plain is None:
            plain = self.plain_urls[url] = _PLAIN_HTTP_URL.match(url) is not None
        return plain

    def unknown_starttag(
        self, names: _Names, attrs: list[tuple[str, str]] | None, node: Any
    ) -> None:
        tag = names.tag
        self.depth += 1
        if not self.root_name:
            self.root_name = tag
        if attrs:
            attrs_d = dict(attrs)
            baseuri = attrs_d.get("xml:base", attrs_d.get("base")) or self.baseuri
            lang = attrs_d.get("xml:lang", attrs_d.get("lang"))
        else:
            attrs_d, baseuri, lang = {}, self.baseuri, None
        if self.baseuri:
            self.baseuri = self.join(self.baseuri, baseuri, True) or self.baseuri
        else:
            self.baseuri = _urljoin(self.baseuri, baseuri)
        if lang == "":
            lang = None
        elif lang is None:
            lang = self.lang
        if lang and tag in ("feed", "rss", "rdf:RDF"):
            self.feeddata["language"] = lang.replace("_", "-")
        self.lang = lang

        if self.incontent:
            if not self.contentparams.get("type", "xml").endswith("xml"):
                raise _Declined  # markup inside escaped content: feedparser's guesswork
            if self.contentparams.get("type") == "application/xhtml+xml":
                # XHTML content: feedparser re-serializes the markup and dispatches no
                # handler for it, except on the end tag: decline the tags that have one.
                if names.suffix in ("svg", "math") or names.handler in _FEEDPARSER_ENDS:
                    raise _Declined
                self.open.append((self.baseuri, lang, True))
                self.handle_data(f"<{names.suffix}{_strattrs(attrs or [])}>", escape=False)
                return
        self.open.append((self.baseuri, lang, False))

        if not names.prefixed:
            if tag not in ("title", "link", "description", "name"):
                self.intextinput = 0
            if tag not in ("title", "link", "description", "url", "href", "width", "height"):
                self.inimage = 0
        name = names.handler
        handler = _STARTS.get(name)
        if handler is not None:
            handler(self, attrs_d, node)
        elif name in _FEEDPARSER_STARTS or (name in _FEEDPARSER_ENDS and name not in _ENDS):
            raise _Declined  # a feedparser handler this port does not have
        elif not attrs_d:
            self.push(name, 1)
        else:
            self.get_context()[name] = attrs_d

    def unknown_endtag(self, names: _Names) -> None:
        name = names.handler
        if self.open.pop()[2]:
            # Markup inside XHTML content: feedparser looks up an end handler (there is
            # none, or we decline), then pops nothing (no such element on its stack:
            # the content element's own name has a handler) and re-serializes the tag.
            if name in _FEEDPARSER_ENDS:
                raise _Declined
            self.handle_data(f"</{names.tag.rpartition(':')[2]}>", escape=False)
        else:
            handler = _ENDS.get(name)
            if handler is not None:
                handler(self)
            elif name in _FEEDPARSER_ENDS:
                raise _Declined
            else:
                self.pop(name)
            if self.incontent:
                raise _Declined  # an element ending inside content that was not markup
        if self.open:
            # feedparser's basestack and langstack: back to the parent's base and language.
            baseuri, self.lang, _ = self.open[-1]
            if baseuri:
                self.baseuri = baseuri
        self.depth -= 1

    def handle_data(self, text: str, escape: bool = True) -> None:
        if not self.elementstack:
            return
        if escape and self.contentparams.get("type") == "application/xhtml+xml":
            text = xml.sax.saxutils.escape(text)
        self.elementstack[-1][2].append(text)

    def push(self, element: str, expecting_text: int) -> None:
        self.elementstack.append((element, expecting_text, []))

    def pop_discard(self, element: str) -> None:
        """``pop`` for an element whose value nothing here reads."""
        if self.elementstack and self.elementstack[-1][0] == element:
            self.elementstack.pop()

    def pop(self, element: str) -> str | None:
        if not self.elementstack or self.elementstack[-1][0] != element:
            return None
        element, expecting_text, pieces = self.elementstack.pop()

        if (
            self.version == "atom10"
            and self.contentparams.get("type", "text") == "application/xhtml+xml"
        ):
            # Remove an enclosing <div>, but only if all the content is nested in it.
            while pieces and len(pieces) > 1 and not pieces[-1].strip():
                del pieces[-1]
            while pieces and len(pieces) > 1 and not pieces[0].strip():
                del pieces[0]
            if (
                pieces
                and (pieces[0] == "<div>" or pieces[0].startswith("<div "))
                and pieces[-1] == "</div>"
            ):
                depth = 0
                for piece in pieces[:-1]:
                    if piece.startswith("</"):
                        depth -= 1
                        if depth == 0:
                            break
                    elif piece.startswith("<") and not piece.endswith("/>"):
                        depth += 1
                else:
                    pieces = pieces[1:-1]

        output = "".join(pieces).strip()
        if not expecting_text:
            return output
        if (
            element in _CAN_BE_RELATIVE_URI
            and output
            and (element != "id" or self.guidislink)  # a guid that says it is no permalink
        ):
            output = self.join(self.baseuri or "", output, False)
        if (
            not self.version.startswith("atom")
            and self.contentparams.get("type") == "text/plain"
            and _looks_like_html(output)
        ):
            self.contentparams["type"] = "text/html"  # RSS text that looks like HTML is HTML

        content_type = self.contentparams.get("type", "text/html")
        if _map_content_type(content_type) in _HTML_TYPES and element in _CAN_CONTAIN_RELATIVE_URIS:
            output = self.resolve_relative_uris(output, content_type)

        if not output.isascii():
            # feedparser's repair of UTF-8 read as Latin-1, then of cp1252's C1 characters.
            with contextlib.suppress(UnicodeEncodeError, UnicodeDecodeError):
                output = output.encode("iso-8859-1").decode("utf-8")
            if _CP1252_MAPPED.search(output):  # translate() is slow; most text has none
                output = output.translate(_cp1252)

        if element in ("category", "tags", "itunes_keywords"):
            return output
        if element == "title" and -1 < self.title_depth <= self.depth:
            return output

        if self.inentry and not self.insource:
            entry = self.entries[-1]
            if element == "content":
                entry.setdefault("content", [])
                entry["content"].append({**self.contentparams, "value": output})
            elif element == "link":
                if not self.inimage:
                    output = output.replace("&amp;", "&")
                    output = _LINK_REFERENCE.sub(r"&\g<1>", output)
                    entry["link"] = output
                    if output:
                        entry["links"][-1]["href"] = output
            else:
                if element == "description":
                    element = "summary"
                depths = self.property_depth.setdefault(id(entry), {})
                old_value_depth = depths.get(element)
                if old_value_depth is None or self.depth <= old_value_depth:
                    depths[element] = self.depth
                    _set(entry, element, output)
                if self.incontent:
                    _set(entry, element + "_detail", {**self.contentparams, "value": output})
        elif self.infeed or self.insource:
            context = self.get_context()
            if element == "description":
                element = "subtitle"
            _set(context, element, output)
            if element == "link":
                output = _LINK_REFERENCE.sub(r"&\g<1>", output)
                context[element] = output
                context["links"][-1]["href"] = output
            elif self.incontent:
                _set(context, element + "_detail", {**self.contentparams, "value": output})
        return output

    def resolve_relative_uris(self, html_source: str, content_type: str) -> str:
        return _resolve_relative_uris(html_source, self.baseuri, content_type, self.safe_joins)

    def push_content(
        self, tag: str, attrs_d: dict[str, str], default_content_type: str, expecting_text: int
    ) -> None:
        self.incontent += 1
        if self.incontent > 1:
            raise _Declined
        if self.lang:
            self.lang = self.lang.replace("_", "-")
        content_type = _map_content_type(attrs_d.get("type", default_content_type))
        if content_type not in _KNOWN_CONTENT_TYPES or "mode" in attrs_d:
            raise _Declined  # base64, XML and other types: feedparser's own rules
        self.contentparams = {"type": content_type, "language": self.lang, "base": self.baseuri}
        self.push(tag, expecting_text)

    def pop_content(self, tag: str) -> str | None:
        value = self.pop(tag)
        self.incontent -= 1
        self.contentparams.clear()
        return value

    def get_context(self) -> dict[str, Any]:
        if self.insource:
            return self.sourcedata
        if self.inimage and "image" in self.feeddata:
            image: dict[str, Any] = self.feeddata["image"]
            return image
        if self.intextinput:
            textinput: dict[str, Any] = self.feeddata["textinput"]
            return textinput
        if self.inentry:
            return self.entries[-1]
        return self.feeddata

    def save(self, key: str, value: Any, overwrite: bool = False) -> None:
        context = self.get_context()
        if overwrite:
            context[key] = value
        else:
            context.setdefault(key, value)

    def save_author(self, key: str, value: Any, prefix: str = "author") -> None:
        context = self.get_context()
        context.setdefault(prefix + "_detail", {})
        context[prefix + "_detail"][key] = value
        self.sync_author_detail()
        context.setdefault("authors", [{}])
        context["authors"][-1][key] = value

    def save_contributor(self, key: str, value: Any) -> None:
        context = self.get_context()
        context.setdefault("contributors", [{}])
        context["contributors"][-1][key] = value

    def sync_author_detail(self, key: str = "author") -> None:
        context = self.get_context()
        detail = context.get(f"{key}s", [{}])[-1]
        if detail:
            name = detail.get("name")
            email = detail.get("email")
            if name and email:
                context[key] = f"{name} ({email})"
            elif name:
                context[key] = name
            elif email:
                context[key] = email
            return
        author, email = context.get(key), None
        if not author:
            return
        emailmatch = _AUTHOR_EMAIL.search(author)
        if emailmatch:
            email = emailmatch.group(0)
            author = author.replace(email, "")
            author = author.replace("()", "")
            author = author.replace("<>", "")
            author = author.replace("&lt;&gt;", "")
            author = author.strip()
            if author and (author[0] == "("):
                author = author[1:]
            if author and (author[-1] == ")"):
                author = author[:-1]
            author = author.strip()
        if author or email:
            context.setdefault(f"{key}_detail", detail)
        if author:
            detail["name"] = author
        if email:
            detail["email"] = email

    # --- element handlers (feedparser's namespaces/_base.py, dc.py, mediarss.py) -------------

    def _start_rss(self, attrs_d: dict[str, str], node: Any) -> None:
        versionmap = {"0.91": "rss091u", "0.92": "rss092", "0.93": "rss093", "0.94": "rss094"}
        if not self.version or not self.version.startswith("rss"):
            attr_version = attrs_d.get("version", "")
            version = versionmap.get(attr_version)
            if version:
                self.version = version
            elif attr_version.startswith("2."):
                self.version = "rss20"
            else:
                self.version = "rss"

    def _start_channel(self, attrs_d: dict[str, str], node: Any) -> None:
        self.infeed = 1
        self._cdf_common(attrs_d)

    @staticmethod
    def _cdf_common(attrs_d: dict[str, str]) -> None:
        if "lastmod" in attrs_d or "href" in attrs_d:
            raise _Declined  # CDF attributes feedparser turns into elements

    def _start_feed(self, attrs_d: dict[str, str], node: Any) -> None:
        self.infeed = 1
        if not self.version:
            versions = {"0.1": "atom01", "0.2": "atom02", "0.3": "atom03"}
            self.version = versions.get(attrs_d.get("version", ""), "atom")

    def _end_channel(self) -> None:
        self.infeed = 0

    def _start_image(self, attrs_d: dict[str, str], node: Any) -> None:
        context = self.get_context()
        if not self.inentry:
            context.setdefault("image", {})
        self.inimage = 1
        self.title_depth = -1
        self.push("image", 0)

    def _end_image(self) -> None:
        self.pop("image")
        self.inimage = 0

    def _start_textinput(self, attrs_d: dict[str, str], node: Any) -> None:
        context = self.get_context()
        context.setdefault("textinput", {})
        self.intextinput = 1
        self.title_depth = -1
        self.push("textinput", 0)

    def _end_textinput(self) -> None:
        self.pop("textinput")
        self.intextinput = 0

    def _start_author(self, attrs_d: dict[str, str], node: Any) -> None:
        self.inauthor = 1
        self.push("author", 1)
        context = self.get_context()
        context.setdefault("authors", [])
        context["authors"].append({})

    def _end_author(self) -> None:
        self.pop("author")
        self.inauthor = 0
        self.sync_author_detail()

    def _start_contributor(self, attrs_d: dict[str, str], node: Any) -> None:
        self.incontributor = 1
        context = self.get_context()
        context.setdefault("contributors", [])
        context["contributors"].append({})
        self.push("contributor", 0)

    def _end_contributor(self) -> None:
        self.pop("contributor")
        self.incontributor = 0

    def _start_dc_contributor(self, attrs_d: dict[str, str], node: Any) -> None:
        self.incontributor = 1
        context = self.get_context()
        context.setdefault("contributors", [])
        context["contributors"].append({})
        self.push("name", 0)

    def _end_dc_contributor(self) -> None:
        self._end_name()
        self.incontributor = 0

    def _start_name(self, attrs_d: dict[str, str], node: Any) -> None:
        self.push("name", 0)

    def _end_name(self) -> None:
        value = self.pop("name")
        if self.inauthor:
            self.save_author("name", value)
        elif self.incontributor:
            self.save_contributor("name", value)
        elif self.intextinput:
            self.get_context()["name"] = value

    def _start_url(self, attrs_d: dict[str, str], node: Any) -> None:
        self.push("href", 1)

    def _end_url(self) -> None:
        value = self.pop("href")
        if self.inauthor:
            self.save_author("href", value)
        elif self.incontributor:
            self.save_contributor("href", value)

    def _start_email(self, attrs_d: dict[str, str], node: Any) -> None:
        self.push("email", 0)

    def _end_email(self) -> None:
        value = self.pop("email")
        if self.inauthor:
            self.save_author("email", value)
        elif self.incontributor:
            self.save_contributor("email", value)

    def _start_subtitle(self, attrs_d: dict[str, str], node: Any) -> None:
        self.push_content("subtitle", attrs_d, "text/plain", 1)

    def _end_subtitle(self) -> None:
        self.pop_content("subtitle")

    def _start_rights(self, attrs_d: dict[str, str], node: Any) -> None:
        self.push_content("rights", attrs_d, "text/plain", 1)

    def _end_rights(self) -> None:
        self.pop_content("rights")

    def _start_item(self, attrs_d: dict[str, str], node: Any) -> None:
        self.entries.append({})
        self.push("item", 0)
        self.inentry = 1
        self.guidislink = False
        self.title_depth = -1
        about = attrs_d.get(self._map_to_standard_prefix("rdf:about"))
        if about:
            self.get_context()["id"] = about
        self._cdf_common(attrs_d)

    def _end_item(self) -> None:
        self.pop("item")
        self.inentry = 0
        self.has_content = 0

    def _map_to_standard_prefix(self, name: str) -> str:
        prefix, colon, suffix = name.partition(":")
        if not colon:
            return name
        return self.namespacemap.get(prefix, prefix) + ":" + suffix

    def _start_language(self, attrs_d: dict[str, str], node: Any) -> None:
        self.push("language", 1)

    def _end_language(self) -> None:
        self.lang = self.pop("language")

    def _start_webmaster(self, attrs_d: dict[str, str], node: Any) -> None:
        self.push("publisher", 1)

    def _end_webmaster(self) -> None:
        self.pop("publisher")
        self.sync_author_detail("publisher")

    def _start_published(self, attrs_d: dict[str, str], node: Any) -> None:
        self.push("published", 1)

    def _end_published(self) -> None:
        value = self.pop("published")
        self.save("published_parsed", _parse_date(value), overwrite=True)

    def _start_updated(self, attrs_d: dict[str, str], node: Any) -> None:
        self.push("updated", 1)

    def _end_updated(self) -> None:
        value = self.pop("updated")
        self.save("updated_parsed", _parse_date(value), overwrite=True)

    def _start_created(self, attrs_d: dict[str, str], node: Any) -> None:
        self.push("created", 1)

    def _end_created(self) -> None:
        value = self.pop("created")
        self.save("created_parsed", _parse_date(value), overwrite=True)

    def _start_link(self, attrs_d: dict[str, str], node: Any) -> None:
        attrs_d.setdefault("rel", "alternate")
        if attrs_d["rel"] == "self":
            attrs_d.setdefault("type", "application/atom+xml")
        else:
            attrs_d.setdefault("type", "text/html")
        context = self.get_context()
        attrs_d = _enforce_href(attrs_d)
        if "href" in attrs_d:
            attrs_d["href"] = self.join(self.baseuri or "", attrs_d["href"], False)
        expecting_text = self.infeed or self.inentry or self.insource
        context.setdefault("links", [])
        if not (self.inentry and self.inimage):
            context["links"].append(dict(attrs_d))
        if "href" in attrs_d:
            if (
                attrs_d.get("rel") == "alternate"
                and _map_content_type(attrs_d.get("type")) in _HTML_TYPES
            ):
                context["link"] = attrs_d["href"]
        else:
            self.push("link", expecting_text)

    def _end_link(self) -> None:
        self.pop("link")

    def _start_guid(self, attrs_d: dict[str, str], node: Any) -> None:
        self.guidislink = attrs_d.get("ispermalink", "true") == "true"
        self.push("id", 1)

    def _end_guid(self) -> None:
        value = self.pop("id")
        self.save("guidislink", self.guidislink and "link" not in self.get_context())
        if self.guidislink:
            self.save("link", value)

    def _start_title(self, attrs_d: dict[str, str], node: Any) -> None:
        expecting_text = self.infeed or self.inentry or self.insource
        self.push_content("title", attrs_d, "text/plain", expecting_text)

    def _end_title(self) -> None:
        value = self.pop_content("title")
        if not value:
            return
        self.title_depth = self.depth

    def _end_media_title(self) -> None:
        title_depth = self.title_depth
        self._end_title()
        self.title_depth = title_depth

    def _start_description(self, attrs_d: dict[str, str], node: Any) -> None:
        context = self.get_context()
        if "summary" in context and not self.has_content:
            self.summary_key = "content"
            self._start_content(attrs_d, node)
        else:
            expecting_text = self.infeed or self.inentry or self.insource
            self.push_content("description", attrs_d, "text/html", expecting_text)

    def _end_description(self) -> None:
        if self.summary_key == "content":
            self._end_content()
        else:
            self.pop_content("description")
        self.summary_key = None

    def _start_generator(self, attrs_d: dict[str, str], node: Any) -> None:
        if attrs_d:
            attrs_d = _enforce_href(attrs_d)
            if "href" in attrs_d:
                attrs_d["href"] = self.join(self.baseuri or "", attrs_d["href"], False)
        self.get_context()["generator_detail"] = dict(attrs_d)
        self.push("generator", 1)

    def _end_generator(self) -> None:
        value = self.pop("generator")
        context = self.get_context()
        if "generator_detail" in context:
            context["generator_detail"]["name"] = value

    def _start_summary(self, attrs_d: dict[str, str], node: Any) -> None:
        context = self.get_context()
        if "summary" in context and not self.has_content:
            self.summary_key = "content"
            self._start_content(attrs_d, node)
        else:
            self.summary_key = "summary"
            self.push_content(self.summary_key, attrs_d, "text/plain", 1)

    def _end_summary(self) -> None:
        if self.summary_key == "content":
            self._end_content()
        else:
            self.pop_content(self.summary_key or "summary")
        self.summary_key = None

    def _start_enclosure(self, attrs_d: dict[str, str], node: Any) -> None:
        attrs_d = _enforce_href(attrs_d)
        context = self.get_context()
        attrs_d["rel"] = "enclosure"
        context.setdefault("links", []).append(attrs_d)

    def _start_source(self, attrs_d: dict[str, str], node: Any) -> None:
        if "url" in attrs_d:
            self.sourcedata["href"] = attrs_d["url"]
        self.push("source", 1)
        self.insource = 1
        self.title_depth = -1

    def _end_source(self) -> None:
        self.insource = 0
        value = self.pop("source")
        if value:
            self.sourcedata["title"] = value
        self.get_context()["source"] = _deep_copy(self.sourcedata)
        self.sourcedata.clear()

    def _start_content(self, attrs_d: dict[str, str], node: Any) -> None:
        self.has_content = 1
        self.push_content("content", attrs_d, "text/plain", 1)
        if attrs_d.get("src"):
            raise _Declined  # out-of-line content
        self.push("content", 1)  # sic: feedparser pushes twice and pops once

    def _start_content_encoded(self, attrs_d: dict[str, str], node: Any) -> None:
        self.has_content = 1
        self.push_content("content", attrs_d, "text/html", 1)

    def _end_content(self) -> None:
        copy_to_summary = _map_content_type(self.contentparams.get("type")) in (
            {"text/plain"} | _HTML_TYPES
        )
        value = self.pop_content("content")
        if copy_to_summary:
            self.save("summary", value)

    # Elements whose values nothing here reads (categories, media credits, image sizes):
    # the same entry on the element stack as feedparser's handler pushes, popped unread.
    # Only leaves: the context such a handler writes to must not change under it.

    @staticmethod
    def _leaf(node: Any) -> None:
        if len(node):
            raise _Declined

    def _start_category(self, attrs_d: dict[str, str], node: Any) -> None:
        self._leaf(node)
        self.push("category", 1)

    def _end_category(self) -> None:
        self.pop_discard("category")

    def _start_width(self, attrs_d: dict[str, str], node: Any) -> None:
        self._leaf(node)
        self.push("width", 0)

    def _end_width(self) -> None:
        self.pop_discard("width")

    def _start_height(self, attrs_d: dict[str, str], node: Any) -> None:
        self._leaf(node)
        self.push("height", 0)

    def _end_height(self) -> None:
        self.pop_discard("height")

    def _start_media_keywords(self, attrs_d: dict[str, str], node: Any) -> None:
        self._leaf(node)
        if attrs_d:
            raise _Declined  # feedparser's end handler then pops nothing and fails
        self.push("media_keywords", 1)

    def _end_media_keywords(self) -> None:
        self.pop_discard("media_keywords")

    def _start_media_thumbnail(self, attrs_d: dict[str, str], node: Any) -> None:
        self._leaf(node)
        self.push("url", 1)

    def _end_media_thumbnail(self) -> None:
        self.pop_discard("url")

    def _start_media_player(self, attrs_d: dict[str, str], node: Any) -> None:
        self._leaf(node)
        self.push("media_player", 0)

    def _end_media_player(self) -> None:
        self.pop_discard("media_player")

    def _start_ignored(self, attrs_d: dict[str, str], node: Any) -> None:
        """cloud, media:content, media:group: feedparser stores attributes, pushes nothing."""


def _pushing_leaf(element: str) -> tuple[Callable[..., None], Callable[[_Reader], None]]:
    def start(reader: _Reader, attrs_d: dict[str, str], node: Any) -> None:
        reader._leaf(node)
        reader.push(element, 1)

    def end(reader: _Reader) -> None:
        reader.pop_discard(element)

    return start, end


_R = _Reader
_STARTS: dict[str, Callable[..., None]] = {
    "rss": _R._start_rss,
    "channel": _R._start_channel,
    "feed": _R._start_feed,
    "image": _R._start_image,
    "textinput": _R._start_textinput,
    "author": _R._start_author,
    "managingeditor": _R._start_author,
    "dc_author": _R._start_author,
    "dc_creator": _R._start_author,
    "contributor": _R._start_contributor,
    "dc_contributor": _R._start_dc_contributor,
    "name": _R._start_name,
    "url": _R._start_url,
    "homepage": _R._start_url,
    "uri": _R._start_url,
    "email": _R._start_email,
    "subtitle": _R._start_subtitle,
    "tagline": _R._start_subtitle,
    "rights": _R._start_rights,
    "copyright": _R._start_rights,
    "dc_rights": _R._start_rights,
    "item": _R._start_item,
    "entry": _R._start_item,
    "language": _R._start_language,
    "dc_language": _R._start_language,
    "webmaster": _R._start_webmaster,
    "dc_publisher": _R._start_webmaster,
    "published": _R._start_published,
    "issued": _R._start_published,
    "pubdate": _R._start_published,
    "dcterms_issued": _R._start_published,
    "updated": _R._start_updated,
    "modified": _R._start_updated,
    "lastbuilddate": _R._start_updated,
    "dc_date": _R._start_updated,
    "dcterms_modified": _R._start_updated,
    "created": _R._start_created,
    "dcterms_created": _R._start_created,
    "link": _R._start_link,
    "guid": _R._start_guid,
    "id": _R._start_guid,
    "title": _R._start_title,
    "dc_title": _R._start_title,
    "media_title": _R._start_title,
    "description": _R._start_description,
    "dc_description": _R._start_description,
    "media_description": _R._start_description,
    "generator": _R._start_generator,
    "summary": _R._start_summary,
    "enclosure": _R._start_enclosure,
    "source": _R._start_source,
    "content": _R._start_content,
    "content_encoded": _R._start_content_encoded,
    "category": _R._start_category,
    "keywords": _R._start_category,
    "dc_subject": _R._start_category,
    "media_category": _R._start_category,
    "width": _R._start_width,
    "height": _R._start_height,
    "media_keywords": _R._start_media_keywords,
    "media_thumbnail": _R._start_media_thumbnail,
    "media_player": _R._start_media_player,
    "cloud": _R._start_ignored,
    "media_content": _R._start_ignored,
    "media_group": _R._start_ignored,
}
_ENDS: dict[str, Callable[[_Reader], None]] = {
    "channel": _R._end_channel,
    "feed": _R._end_channel,
    "image": _R._end_image,
    "textinput": _R._end_textinput,
    "author": _R._end_author,
    "managingeditor": _R._end_author,
    "dc_author": _R._end_author,
    "dc_creator": _R._end_author,
    "contributor": _R._end_contributor,
    "dc_contributor": _R._end_dc_contributor,
    "name": _R._end_name,
    "url": _R._end_url,
    "homepage": _R._end_url,
    "uri": _R._end_url,
    "email": _R._end_email,
    "subtitle": _R._end_subtitle,
    "tagline": _R._end_subtitle,
    "rights": _R._end_rights,
    "copyright": _R._end_rights,
    "dc_rights": _R._end_rights,
    "item": _R._end_item,
    "entry": _R._end_item,
    "language": _R._end_language,
    "dc_language": _R._end_language,
    "webmaster": _R._end_webmaster,
    "dc_publisher": _R._end_webmaster,
    "published": _R._end_published,
    "issued": _R._end_published,
    "pubdate": _R._end_published,
    "dcterms_issued": _R._end_published,
    "updated": _R._end_updated,
    "modified": _R._end_updated,
    "lastbuilddate": _R._end_updated,
    "dc_date": _R._end_updated,
    "dcterms_modified": _R._end_updated,
    "created": _R._end_created,
    "dcterms_created": _R._end_created,
    "link": _R._end_link,
    "guid": _R._end_guid,
    "id": _R._end_guid,
    "title": _R._end_title,
    "dc_title": _R._end_title,
    "media_title": _R._end_media_title,
    "description": _R._end_description,
    "dc_description": _R._end_description,
    "media_description": _R._end_description,
    "generator": _R._end_generator,
    "summary": _R._end_summary,
    "source": _R._end_source,
    "content": _R._end_content,
    "content_encoded": _R._end_content,
    "category": _R._end_category,
    "keywords": _R._end_category,
    "dc_subject": _R._end_category,
    "media_category": _R._end_category,
    "width": _R._end_width,
    "height": _R._end_height,
    "media_keywords": _R._end_media_keywords,
    "media_thumbnail": _R._end_media_thumbnail,
    "media_player": _R._end_media_player,
}
for _element, _pushed in (
    ("media_credit", "credit"),
    ("media_rating", "rating"),
    ("media_restriction", "restriction"),
    ("media_license", "license"),
):
    _STARTS[_element], _ENDS[_element] = _pushing_leaf(_pushed)


# FeedParserDict's aliases for the keys it stores under ('url' is kept as 'href').
_KEYMAP = {
    key: (value[0] if isinstance(value, list) else value)
    for key, value in feedparser.util.FeedParserDict.keymap.items()
}


def _set(context: dict[str, Any], key: str, value: Any) -> None:
    context[_KEYMAP.get(key, key)] = value


_XML_NAMESPACE = "http://www.w3.org/XML/1998/namespace"


def _attribute_prefix(node: Any, namespace: str) -> str:
    """The prefix a namespaced attribute was written with (lxml keeps only its namespace)."""
    if namespace == _XML_NAMESPACE:
        return "xml"
    prefixes = [p for p, uri in node.nsmap.items() if uri == namespace and p]
    if len(prefixes) != 1:
        raise _Declined  # two prefixes for one namespace: which one was written is lost
    return str(prefixes[0])


def _enforce_href(attrs_d: dict[str, str]) -> dict[str, str]:
    href = attrs_d.get("url", attrs_d.get("uri", attrs_d.get("href")))
    if href:
        attrs_d.pop("url", None)
        attrs_d.pop("uri", None)
        attrs_d["href"] = href
    return attrs_d


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


def _strattrs(attrs: list[tuple[str, str]]) -> str:
    return "".join(
        f' {key}="{xml.sax.saxutils.escape(value, {chr(34): "&quot;"})}"' for key, value in attrs
    )


# --- feedparser's relative URI resolution inside HTML, without the SGML parser -------------

# feedparser runs every HTML field through an sgmllib-based re-serializer
# (feedparser.urls.RelativeURIResolver) that lowercases tags, sorts and
# requotes attributes, drops end tags of void elements and resolves URLs. The
# tokenizer below accepts only markup on which that re-serializer's behaviour
# is simple and known (tags with quoted attributes, references ending in ';');
# anything else goes to feedparser's own function.
_HTML_TOKEN = re.compile(
    r"""
    (?P<text>(?:
        [^<&]++
      | &\#(?:[0-9]{1,16}|[xX][0-9a-fA-F]{1,16});
      | &[a-zA-Z][-.a-zA-Z0-9]*+;
      | &(?![a-zA-Z\#])
    )++)
  | <(?P<start>[a-zA-Z][a-zA-Z0-9]*)
     (?P<attrs>(?:\s+[a-zA-Z_][-:.a-zA-Z_0-9]*\s*=\s*(?:"[^"<>]*"|'[^'<>]*'))*)
     \s*(?P<slash>/)?>
  | </(?P<end>[a-zA-Z][a-zA-Z0-9]*)\s*>
    """,
    re.VERBOSE,
)
# The references in a text run that the re-serializer writes differently: hex ones
# (lowercased), cp1252's C1 code points (as the characters cp1252 means), unknown names.
# (Decimal ones outside 120-159 come out as they are written: not worth a call each.)
_TEXT_REFERENCE = re.compile(r"&#(0*1[2-5][0-9]|[xX][0-9a-fA-F]{1,16});|&([a-zA-Z][-.a-zA-Z0-9]*);")
# Text and lowercase tags without attributes, none of them void (feedparser writes <br />
# and drops </br>): markup feedparser's re-serializer gives back unchanged.
_VOID_NAMES = "|".join(sorted(RelativeURIResolver.elements_no_end_tag))
# Possessive quantifiers: a failed match never backtracks (hostile input, linear time).
_UNCHANGED_MARKUP = re.compile(rf"(?:[^<&]++|</?(?!(?:{_VOID_NAMES})>)[a-z][a-z0-9]*+>)*+")
_HTML_ATTRIBUTE = re.compile(r"""\s+([a-zA-Z_][-:.a-zA-Z_0-9]*)\s*=\s*("[^"]*"|'[^']*')""")
_SHORT_TAG = re.compile(r"<([^<>\s]+?)\s*/>")
_ENTITY_OR_CHARREF = re.compile("&(?:([a-zA-Z][-.a-zA-Z0-9]*)|#([0-9]+))(;?)")
_BARE_AMPERSAND = re.compile(r"&(?!#\d+;|#x[0-9a-fA-F]+;|\w+;)")
_VOID_ELEMENTS = RelativeURIResolver.elements_no_end_tag
_URI_ATTRIBUTES = RelativeURIResolver.relative_uris
_HTML_ENTITIES = frozenset(html.entities.name2codepoint) | {"apos"}


class _Fallback(Exception):
    """Markup whose re-serialization only feedparser's SGML parser knows."""


def _resolve_relative_uris(
    html_source: str, base: str, content_type: str, cache: dict[tuple[str, str], str]
) -> str:
    """``feedparser.urls.resolve_relative_uris(html_source, base, 'utf-8', content_type)``."""
    if "&" not in html_source and (
        "<" not in html_source or _UNCHANGED_MARKUP.fullmatch(html_source)
    ):
        return html_source  # text and plain tags: the re-serializer returns it as it came
    try:
        return _reserialize(html_source, base, content_type, cache)
    except _Fallback:
        return str(_feedparser_resolve_relative_uris(html_source, base, "utf-8", content_type))


def _short_tag(match: re.Match[str]) -> str:
    tag = match.group(1)
    if tag in _VOID_ELEMENTS:
        return "<" + tag + " />"
    return "<" + tag + "></" + tag + ">"


def _convert_ref(match: re.Match[str]) -> str:
    if match.group(2):
        return f"&#{match.group(2)};"
    if match.group(3):
        return f"&{match.group(1)};"
    return f"&{match.group(1)}"


def _reserialize(
    source: str, base: str, content_type: str, cache: dict[tuple[str, str], str]
) -> str:
    if "<!" in source:
        raise _Fallback  # declarations, comments, CDATA: the SGML parser's business
    data = _SHORT_TAG.sub(_short_tag, source)
    data = data.replace("&#39;", "'").replace("&#34;", '"')
    xhtml = content_type == "application/xhtml+xml"
    pieces: list[str] = []
    position, size = 0, len(data)
    match_token = _HTML_TOKEN.match
    while position < size:
        token = match_token(data, position)
        if token is None:
            raise _Fallback
        position = token.end()
        text, start, end = token.group("text", "start", "end")
        if text is not None:
            pieces.append(_TEXT_REFERENCE.sub(_text_reference, text) if "&" in text else text)
        elif start is not None:
            tag = start.lower()
            pieces.append(_start_tag(tag, token.group("attrs"), base, cache))
            if xhtml and token.group("slash") and tag not in _VOID_ELEMENTS:
                pieces.append(f"</{tag}>")  # feedparser closes <x/> itself in XHTML
        else:
            tag = end.lower()
            if tag not in _VOID_ELEMENTS:
                pieces.append(f"</{tag}>")
    return "".join(pieces)


def _text_reference(match: re.Match[str]) -> str:
    """A reference in text as feedparser's handle_charref / handle_entityref write it."""
    ref, name = match.group(1, 2)
    if ref is None:
        return match.group(0) if name in _HTML_ENTITIES else f"&amp;{name}"
    ref = ref.lower()
    value = int(ref[1:], 16) if ref.startswith("x") else int(ref)
    if value in _cp1252:
        return f"&#{hex(ord(_cp1252[value]))[1:]};"
    return f"&#{ref};"


def _start_tag(tag: str, source: str | None, base: str, cache: dict[tuple[str, str], str]) -> str:
    if not source:
        return f"<{tag} />" if tag in _VOID_ELEMENTS else f"<{tag}>"
    found: dict[str, str] = {}
    for name, quoted in _HTML_ATTRIBUTE.findall(source):
        found[name.lower()] = _ENTITY_OR_CHARREF.sub(_convert_ref, quoted[1:-1])
    attributes = []
    for key, value in sorted(found.items()):
        if key in ("rel", "type"):
            value = value.lower() or value
        if (tag, key) in _URI_ATTRIBUTES:
            stripped = value.strip()
            resolved = cache.get((base, stripped))
            if resolved is None:
                resolved = cache[(base, stripped)] = make_safe_absolute_uri(base, stripped)
            value = resolved or value
        value = value.replace(">", "&gt;").replace("<", "&lt;").replace('"', "&quot;")
        attributes.append(f' {key}="{_BARE_AMPERSAND.sub("&amp;", value)}"')
    text = "".join(attributes)
    return f"<{tag}{text} />" if tag in _VOID_ELEMENTS else f"<{tag}{text}>"
