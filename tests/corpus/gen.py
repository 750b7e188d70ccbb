#!/usr/bin/env python3
"""Deterministic generator for the project's own feed corpus (tests/corpus/).

Adapted from the fixture generator of the shared reference corpus
(shared/fixtures/feeds/gen.py): same structure, same input formats, same
ground_truth.json schema.  Changes against the reference generator:
  * "stub" bodies: a placement may set "body": "stub"; the feed then carries
    only the outlet's stub text (e.g. "Continue reading…") as description /
    summary / content_text.  Stubs are labelled body_kind "summary".
  * short bodies (< SHORT_BODY characters after normalisation) are grouped by
    (body, title, canonical_url) instead of by body alone, because the
    project's content hash includes the title and canonical URL for such
    bodies; body_sha256 is still the hash of the normalised body itself.
  * any non-stub body shorter than SHORT_BODY is refused (it would be an
    accident of the plan, not an intended test case).

Inputs (next to this file):
  articles.txt   every article and brief text (plain UTF-8)
  plan.json      random seed, outlets and their boilerplate, feeds, templated
                 daily series, and the syndication plan (which outlet carries
                 which story, in which feeds, with which edits)
Outputs (next to this file):
  raw/           the feed documents, byte-exact as an HTTP fetch would return them
  ground_truth.json  per-item labels (story_id, exact_dup_group, edits, ...)

  python3 gen.py            regenerate raw/ and ground_truth.json
  python3 gen.py --check    regenerate into a temp dir, compare byte-for-byte with
                            what is on disk, parse every feed and print item counts
  python3 gen.py --seed N   override plan.json's random_seed (cosmetic choices only)

Standard library only, Python 3.9+.
"""
from __future__ import annotations

import argparse
import datetime as dt
import email.utils
import hashlib
import html
import json
import random
import re
import shutil
import sys
import tempfile
import unicodedata
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from html.entities import codepoint2name
from pathlib import Path
from urllib.parse import quote, urljoin

HERE = Path(__file__).resolve().parent
UTC = dt.timezone.utc
SHORT_BODY = 50            # bodies shorter than this are grouped with title + canonical URL

# A dateline is "CITY, Country (SOURCE) — " at the start of the first paragraph.
DATELINE_RE = re.compile(r"^[^\n—()]{2,60}\([^()\n]{1,40}\)\s—\s+")
FA_DIGITS = str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹")
TR_ASCII = str.maketrans({"ı": "i", "İ": "I", "ş": "s", "Ş": "S", "ğ": "g", "Ğ": "G",
                          "ç": "c", "Ç": "C", "ö": "o", "Ö": "O", "ü": "u", "Ü": "U"})


# --------------------------------------------------------------------------
# normalisation used for the ground truth (documented in README.md)
# --------------------------------------------------------------------------
def norm_body(paras):
    text = unicodedata.normalize("NFC", " ".join(paras))
    return " ".join(text.split())


def body_sha256(paras):
    return hashlib.sha256(norm_body(paras).encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------
# input parsing
# --------------------------------------------------------------------------
@dataclass
class Story:
    id: str
    lang: str
    kind: str
    title: str
    published: dt.datetime
    paragraphs: list
    author: str = ""
    author_title: str = ""
    agency: str = ""
    agency_short: str = ""
    summary: str = ""
    tags: list = field(default_factory=list)
    slug: str = ""
    category: str = "news"
    note: str = ""


def parse_dt(s):
    d = dt.datetime.fromisoformat(s)
    if d.tzinfo is None:
        raise ValueError(f"timestamp without zone: {s}")
    return d


def tz_of(s):
    m = re.fullmatch(r"([+-])(\d\d):?(\d\d)", s)
    sign = -1 if m.group(1) == "-" else 1
    return dt.timezone(sign * dt.timedelta(hours=int(m.group(2)), minutes=int(m.group(3))))


def parse_articles(text):
    stories = {}
    for block in re.split(r"^=== ", text, flags=re.M)[1:]:
        head, sep, body = block.partition("\n---\n")
        if not sep:
            raise ValueError(f"story block without '---': {block[:60]!r}")
        lines = head.splitlines()
        sid = lines[0].strip()
        meta = {}
        for ln in lines[1:]:
            if not ln.strip() or ln.lstrip().startswith("#"):
                continue
            k, _, v = ln.partition(":")
            meta[k.strip()] = v.strip()
        body = "\n".join(ln for ln in body.splitlines() if not ln.startswith("#"))
        paras = []
        for chunk in re.split(r"\n[ \t]*\n", body.strip()):
            p = " ".join(x.strip() for x in chunk.splitlines() if x.strip())
            if p:
                paras.append(p)
        if sid in stories:
            raise ValueError(f"duplicate story id {sid}")
        stories[sid] = Story(
            id=sid, lang=meta["lang"], kind=meta.get("kind", "article"), title=meta["title"],
            published=parse_dt(meta["published"]), paragraphs=paras,
            author=meta.get("author", ""), author_title=meta.get("author_title", ""),
            agency=meta.get("agency", ""), agency_short=meta.get("agency_short", ""),
            summary=meta.get("summary", ""),
            tags=[t.strip() for t in meta.get("tags", "").split(",") if t.strip()],
            slug=meta.get("slug", ""), category=meta.get("category", "news"),
            note=meta.get("note", ""))
    return stories


def fmt_num(v, dec):
    return f"{v:,.{dec}f}" if dec else f"{int(round(v)):,}"


def expand_series(spec, seed):
    """Templated daily items (market closes, weather...): one story per day."""
    rng = random.Random(f"{seed}:series:{spec['id']}")
    state, prev_choice, out = {}, {}, []
    tz = tz_of(spec["tz"])
    for day in spec["days"]:
        date = dt.date.fromisoformat(day)
        ctx = {"weekday": spec["weekdays"][date.weekday()], "day": str(date.day),
               "month": spec["months"][date.month - 1], "year": str(date.year)}
        for name, v in spec["vars"].items():
            kind = v[0]
            if kind == "walk":
                start, step, dec = v[1], v[2], v[3]
                prev = state.get(name, start)
                chg = round(rng.uniform(-step, step), dec) or 10 ** -dec
                new = round(prev + chg, dec)
                state[name] = new
                ctx[name] = fmt_num(new, dec)
                ctx[name + "_chg"] = fmt_num(abs(chg), dec)
                ctx[name + "_pct"] = f"{abs(chg) / prev * 100:.2f}"
                ctx[name + "_up"] = chg > 0
            elif kind == "int":
                ctx[name] = str(rng.randint(v[1], v[2]))
            elif kind == "scale":                 # derived from a walk: value * factor
                ctx[name] = fmt_num(state[v[1]] * v[2], v[3])
            elif kind == "add":
                ctx[name] = str(int(ctx[v[1]]) + rng.randint(v[2], v[3]))
            elif kind == "choice":
                options = [o for o in v[1] if o != prev_choice.get(name)] or v[1]
                ctx[name] = prev_choice[name] = rng.choice(options)
            elif kind == "pick":
                ctx[name] = v[2] if ctx[v[1] + "_up"] else v[3]
            else:
                raise ValueError(kind)

        def fill(t):
            s = t.format(**ctx)
            if spec.get("digits") == "fa":
                s = re.sub(r"(?<=\d)\.(?=\d)", "٫", s).replace(",", "٬").translate(FA_DIGITS)
            return s

        hh, mm = map(int, spec["time"].split(":"))
        out.append(Story(
            id=f"{spec['id']}-{date:%m%d}", lang=spec["lang"], kind="series",
            title=fill(spec["title"]),
            published=dt.datetime(date.year, date.month, date.day, hh, mm, tzinfo=tz),
            paragraphs=[fill(p) for p in spec["paragraphs"]],
            author=spec.get("author", ""), agency=spec.get("agency", ""),
            agency_short=spec.get("agency_short", ""), summary=fill(spec.get("summary", "")),
            tags=list(spec.get("tags", [])), slug=f"{spec.get('slug', spec['id'].lower())}-{date:%Y-%m-%d}",
            category=spec.get("category", "business"),
            note=f"templated daily item ({spec['id']}); each day is its own story"))
    return out


# --------------------------------------------------------------------------
# edits: each republication may carry edits to the wire/original copy
# --------------------------------------------------------------------------
def apply_edits(story, edits):
    paras = list(story.paragraphs)
    kinds = ["body"] * len(paras)
    title = story.title
    notes, ops = [], []

    def first_body():
        return kinds.index("body")

    for e in edits:
        op = e["op"]
        ops.append(op)
        if op == "retitle":
            title = e["title"]
            notes.append(f"headline changed (was: {story.title!r})")
        elif op == "trim_last":
            n = e.get("n", 1)
            paras, kinds = paras[:-n], kinds[:-n]
            notes.append(f"last {n} paragraph{'s' if n > 1 else ''} cut")
        elif op == "truncate":
            k = e["keep"]
            notes.append(f"cut to the first {k} of {len(paras)} paragraphs")
            paras, kinds = paras[:k], kinds[:k]
        elif op == "drop":
            idx = set(e["index"])
            notes.append(f"paragraph(s) {sorted(i + 1 for i in idx)} of {len(paras)} dropped")
            paras = [p for i, p in enumerate(paras) if i not in idx]
            kinds = [k for i, k in enumerate(kinds) if i not in idx]
        elif op == "editor_note":
            where = e.get("where", "top")
            if where == "top":
                paras.insert(0, e["text"]); kinds.insert(0, "note")
            else:
                paras.append(e["text"]); kinds.append("note")
            notes.append(f"editor's note added at the {where}")
        elif op == "strip_dateline":
            i = first_body()
            new = DATELINE_RE.sub("", paras[i], count=1)
            assert new != paras[i], f"{story.id}: no dateline to strip"
            paras[i] = new
            notes.append("dateline removed from the first paragraph")
        elif op in ("replace", "correct"):
            changes = []
            for old, new in e["pairs"]:
                n = sum(p.count(old) for p in paras) + title.count(old) * 0
                assert n, f"{story.id}: {old!r} not found for {op}"
                paras = [p.replace(old, new) for p in paras]
                changes.append(f"{old!r} -> {new!r} ({n}x)")
            what = "correction" if op == "correct" else "wording changes"
            notes.append(f"{what}: " + "; ".join(changes))
        elif op == "insert":
            after = e["after"]
            paras.insert(after + 1, e["text"]); kinds.insert(after + 1, "added")
            notes.append(f"new paragraph of local context inserted after paragraph {after + 1}")
        elif op == "append":
            paras.append(e["text"]); kinds.append("added")
            notes.append("new closing paragraph appended")
        elif op == "rewrite":
            i = e["index"]
            paras[i] = e["text"]; kinds[i] = "rewritten"
            notes.append(f"paragraph {i + 1} rewritten by the outlet")
        elif op == "reorder":
            order = e["order"]
            assert sorted(order) == list(range(len(paras))), f"{story.id}: bad reorder"
            paras = [paras[i] for i in order]
            kinds = [kinds[i] for i in order]
            notes.append("paragraphs reordered (same text, new order: "
                         + ",".join(str(i + 1) for i in order) + ")")
        elif op == "fa_arabic_letters":
            paras = [p.replace("ی", "ي").replace("ک", "ك") for p in paras]
            title = title.replace("ی", "ي").replace("ک", "ك")
            notes.append("Persian yeh/keheh (U+06CC/U+06A9) replaced by Arabic yeh/kaf (U+064A/U+0643)")
        elif op == "zwnj_space":
            n = sum(p.count("\u200c") for p in paras)
            assert n, f"{story.id}: no ZWNJ"
            paras = [p.replace("\u200c", " ") for p in paras]
            notes.append(f"zero-width non-joiners (U+200C) replaced by spaces ({n}x)")
        else:
            raise ValueError(f"unknown edit op {op}")
        if e.get("why"):
            notes[-1] += f" [{e['why']}]"
    return title, paras, kinds, notes, ops


# --------------------------------------------------------------------------
# plan expansion: articles per outlet, items per feed
# --------------------------------------------------------------------------
@dataclass
class Article:                      # one story as published by one outlet
    outlet: str
    story: Story
    title: str
    paras: list
    kinds: list
    notes: list
    ops: list
    published: dt.datetime
    placement: dict
    number: int = 0
    link_base: str = ""             # canonical URL (no tracking)
    guid: str | None = None
    guid_permalink: bool | None = None
    uuid: str = ""


@dataclass
class Item:                         # one article in one feed
    article: Article
    feed: dict
    body_kind: str                  # "full" | "summary" | "stub"
    index: int = 0
    link: str = ""
    external_url: str | None = None
    body_paras: list = field(default_factory=list)
    body_source: str = ""


def slugify(s):
    s = re.sub(r"['’]", "", s.translate(TR_ASCII))
    s = unicodedata.normalize("NFKD", s).encode("ascii", "ignore").decode()
    s = re.sub(r"[^a-zA-Z0-9]+", "-", s).strip("-").lower()
    return "-".join(s.split("-")[:9])


def lead_of(paras, kinds):
    for p, k in zip(paras, kinds):
        if k != "note":
            return DATELINE_RE.sub("", p, count=1)
    return DATELINE_RE.sub("", paras[0], count=1)


def truncate_words(text, max_chars, ellipsis):
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars].rsplit(" ", 1)[0].rstrip(",;:—-")
    return cut + ellipsis


def summary_text(article, style):
    st = article.story
    lead = lead_of(article.paras, article.kinds)
    if style == "field" and st.summary:
        return st.summary
    if style in ("field", "lead"):
        return lead
    if style.startswith("trunc:"):
        return truncate_words(lead, int(style[6:]), " …")
    if style.startswith("wp:"):
        words = lead.split()
        n = int(style[3:])
        return " ".join(words[:n]) + " […]" if len(words) > n else lead
    raise ValueError(style)


def build_articles(plan, stories, seed):
    outlets = plan["outlets"]
    feeds = {f["file"]: f for f in plan["feeds"]}
    rng = random.Random(f"{seed}:articles")
    arts, items_by_feed = {}, {f: [] for f in feeds}
    placements = []
    for pl in plan["placements"]:
        if "series" in pl:
            ids = sorted(s for s in stories if s.startswith(pl["series"] + "-"))
            days = pl.get("days", "all")
            chosen = ids if days == "all" else [ids[i] for i in days]
            for sid in chosen:
                q = dict(pl); q.pop("series"); q.pop("days", None); q["story"] = sid
                placements.append(q)
        else:
            placements.append(pl)
    for pl in placements:
        st = stories[pl["story"]]
        # "instance" lets one outlet carry a story twice (e.g. a first version and an update)
        key = (pl["outlet"], st.id, pl.get("instance", ""))
        if key in arts:
            raise ValueError(f"story {st.id} placed twice at {pl['outlet']}")
        title, paras, kinds, notes, ops = apply_edits(st, pl.get("edits", []))
        jitter = rng.randint(0, 59) if outlets[pl["outlet"]].get("seconds", True) else 0
        published = st.published + dt.timedelta(minutes=pl.get("delay", 0), seconds=jitter)
        arts[key] = Article(pl["outlet"], st, title, paras, kinds, notes, ops, published, pl)
        for f in pl["feeds"]:
            fname, body = (f, None) if isinstance(f, str) else (f["file"], f.get("body"))
            fd = feeds[fname]
            assert fd["outlet"] == pl["outlet"], (fname, pl)
            kind = body or pl.get("body") or fd.get("body_default", "full")
            items_by_feed[fname].append(Item(arts[key], fd, kind))
    # numbering, links and guids, per outlet in publication order
    for oid, o in outlets.items():
        mine = sorted((a for a in arts.values() if a.outlet == oid), key=lambda a: (a.published, a.story.id))
        n = rng.randint(1200, 48000)
        for a in mine:
            n += rng.randint(1, 41)
            a.number = n
            a.uuid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            oc = outlet_cfg(plan, a)
            a.link_base = make_link(oc, a)
            a.guid, a.guid_permalink = make_guid(oc, a, rng)
    return arts, items_by_feed


def make_link(o, a):
    st, d = a.story, a.published.astimezone(tz_of(o["tz"]))
    slug_style = o.get("slug", "ascii")
    if slug_style == "ascii":
        slug = st.slug or slugify(a.title) or str(a.number)
    elif slug_style == "raw":
        slug = "-".join(a.title.replace("\u200c", "-").split()[:8])
        slug = re.sub(r"[\"'،:؟?«»“”!.,]", "", slug)
    elif slug_style == "pct":
        raw = re.sub(r"[\"'،:؟?«»“”!.,]", "", "-".join(a.title.split()[:8]))
        slug = quote(raw, safe="-")
    else:
        slug = ""
    path = o["url"].format(y=f"{d:%Y}", m=f"{d:%m}", d=f"{d:%d}", id=a.number, slug=slug,
                           cat=st.category, lang=st.lang)
    return f"https://{o['domain']}{path}"


def make_guid(o, a, rng):
    style = o.get("guid", "permalink")
    d = a.published.astimezone(tz_of(o["tz"]))
    if style == "mixed":                       # CMS migration: some items lost their guid
        style = "none" if rng.random() < 0.3 else "permalink"
    if style == "permalink":
        return a.link_base, True
    if style == "short_permalink":
        return f"https://{o['domain']}{o['short_url'].format(id=a.number)}", True
    if style == "opaque":
        return f"{o['id_prefix']}-{d:%Y%m%d}-{a.number:05d}", False
    if style == "wp":
        return f"https://{o['domain']}/?p={a.number}", False
    if style == "none":
        return None, None
    if style == "tag":
        return f"tag:{o['domain']},{d:%Y-%m-%d}:/news/{a.number}", False
    if style == "urn":
        return f"urn:uuid:{a.uuid}", False
    if style == "about":
        return a.link_base, None
    if style == "json":
        return f"{o['id_prefix']}-{a.number}", False
    raise ValueError(style)


def add_tracking(o, feed, url, a):
    t = o.get("tracking")
    if not t:
        return url
    d = a.published.astimezone(tz_of(o["tz"]))
    t = t.format(section=feed.get("section", ""), date=f"{d:%Y-%m-%d}", n=a.number % 97)
    if t.startswith("#"):
        return url + t
    return url + ("&" if "?" in url else "?") + t


# --------------------------------------------------------------------------
# HTML rendering of one article body with the outlet's boilerplate
# --------------------------------------------------------------------------
def esc(s):
    return html.escape(s, quote=False)


def esc_attr(s):
    return html.escape(s, quote=True)


def entity_style(s, style):
    """s is already HTML-escaped; re-express non-ASCII characters."""
    if style == "literal":
        return s
    out = []
    for ch in s:
        cp = ord(ch)
        if cp < 128:
            out.append(ch)
        elif style == "named" and cp in codepoint2name:
            out.append(f"&{codepoint2name[cp]};")
        elif style == "numeric" or (style == "numeric_punct" and 0x2000 <= cp <= 0x206F):
            out.append(f"&#{cp};")
        else:
            out.append(ch)
    return "".join(out)


def render_inline(text, hs, links):
    """One paragraph as HTML. Cosmetic options never change the extracted text."""
    m = DATELINE_RE.match(text)
    if m:
        dl = esc(m.group(0).rstrip()[:-1].rstrip())       # "ANKARA, Turkey (AP)"
        if hs.get("dateline_strong"):
            dl = f"<strong>{dl}</strong>"
        head = dl + ("\u00a0" if hs.get("nbsp_dateline") else " ") + "— "
        rest = esc(text[m.end():])
    else:
        head, rest = "", esc(text)
    for term, href in links:
        t = esc(term)
        if t in rest:
            rest = rest.replace(t, f'<a href="{esc_attr(href)}">{t}</a>', 1)
            break
    return entity_style(head + rest, hs.get("entities", "literal"))


def outlet_cfg(plan, a, feed=None):
    """Outlet settings, with per-language ("by_lang") and per-feed ("html") overrides."""
    o = dict(plan["outlets"][a.outlet])
    o.update(o.get("by_lang", {}).get(a.story.lang, {}))
    if feed and feed.get("html"):
        o["html"] = {**o.get("html", {}), **feed["html"]}
    return o


class Renderer:
    def __init__(self, plan, arts, seed):
        self.plan, self.arts, self.seed = plan, arts, seed
        self.outlets = plan["outlets"]

    def others(self, a, k, rng):
        pool = [b for b in self.arts.values() if b.outlet == a.outlet and b is not a
                and b.story.lang == a.story.lang
                and b.story.id.split("-")[0] != a.story.id.split("-")[0]]
        pool.sort(key=lambda b: (b.published, b.story.id))
        pick = rng.sample(pool, min(k, len(pool)))
        return sorted(pick, key=lambda b: (b.published, b.story.id), reverse=True)

    def trailer_entries(self, a, block, rng):
        if block.get("items"):
            return [(t, s, None) for t, s in block["items"]]
        res = []
        for b in self.others(a, block.get("count", 4), rng):
            snip = truncate_words(lead_of(b.paras, b.kinds), 110, "...")
            res.append((b.title, snip, b.link_base))
        return res

    def content_html(self, a, feed, rng, xhtml=False):
        """Full item HTML: header boilerplate + body + trailer blocks + footer."""
        o = outlet_cfg(self.plan, a, feed)
        hs = dict(o.get("html", {}))
        if xhtml:
            assert hs.get("entities", "literal") in ("literal", "numeric"), "no named entities in xhtml"
        st = a.story
        fmtv = {"agency": st.agency, "agency_short": st.agency_short, "author": st.author,
                "author_title": st.author_title, "outlet": o["name"], "title": a.title}
        parts = []
        rtl = ' dir="rtl"' if o["lang"] in ("ar", "fa") else ""
        if o.get("header_title"):
            parts.append(f"<header><h1>{esc(a.title)}</h1></header>")
        if o.get("figure"):
            img = f"https://img.{o['domain']}/{a.published:%Y/%m}/{a.number}.jpg"
            cap = o["figure"].format(**fmtv, credit=st.agency_short or o["name"])
            parts.append(f'<figure><img src="{img}" alt="" /><figcaption>{esc(cap)}</figcaption></figure>')
        t = o.get("teaser")
        if t and (not t.get("agency_only") or st.agency):
            prefix = t.get("prefix", "")
            prefix = "" if ("{agency_short}" in prefix and not st.agency_short) else prefix.format(**fmtv)
            text = prefix + summary_text(a, t.get("source", "lead"))
            cls = f' class="{t["class"]}"' if t.get("class") else ""
            parts.append(f"<p{cls}>{render_inline(text, hs, [])}</p>")
        cr = o.get("credit")
        if cr:
            lines = []
            if cr.get("agency_line") and st.agency:
                lines.append(st.agency)
            if st.author:
                key = "byline_agency" if st.agency and cr.get("byline_agency") else "byline"
                bl = cr[key].format(**fmtv)
                if st.author_title and cr.get("title_sep"):
                    bl += cr["title_sep"].format(**fmtv)
                lines.append(bl)
            cls = f' class="{cr["class"]}"' if cr.get("class") else ""
            parts.extend(f"<p{cls}>{render_inline(x, hs, [])}</p>" for x in lines)
        links = [(term, urljoin(f"https://{o['domain']}/", href)) for term, href in o.get("linkify", [])]
        body = [render_inline(p, hs, links) for p in a.paras]
        if o.get("note_style") == "em":
            body = [f"<em>{b}</em>" if k == "note" else b for b, k in zip(body, a.kinds)]
        if hs.get("para") == "br":
            parts.append(f'<div class="entry-content"{rtl}>' + "<br /><br />\n".join(body) + "</div>")
        else:
            inner = "\n".join(f"<p>{b}</p>" for b in body)
            wrap = hs.get("wrap_class")
            parts.append(f'<div class="{wrap}"{rtl}>\n{inner}\n</div>' if wrap else inner)
        for block in o.get("trailer", []):
            entries = self.trailer_entries(a, block, rng)
            h = esc(block["heading"])
            style = block.get("style", "h3")
            if style == "h3":       # heading + title/snippet paragraphs (scraped-site look)
                seg = [f"<h3>{h}</h3>"]
                for title, snip, href in entries:
                    seg.append(f'<p><a href="{esc_attr(href)}">{esc(title)}</a></p>' if href else f"<p>{esc(title)}</p>")
                    if snip:
                        seg.append(f"<p>{esc(snip)}</p>")
                parts.append("\n".join(seg))
            elif style == "p":      # bare heading lines, nothing else
                parts.append(f"<p>{h}</p>")
            elif style in ("list", "div", "aside"):
                lis = "".join(f'<li><a href="{esc_attr(href or "#")}">{esc(title)}</a></li>' for title, _, href in entries)
                seg = f"<h4>{h}</h4><ul>{lis}</ul>"
                if style == "div":
                    seg = f'<div class="{block.get("class", "related")}">{seg}</div>'
                elif style == "aside":
                    seg = f"<aside>{seg}</aside>"
                parts.append(seg)
            else:
                raise ValueError(style)
        for foot in o.get("footer", []):
            parts.append(self.footer(foot, a, o))
        out = ("\n" if hs.get("newlines", True) else "").join(parts)
        if hs.get("entities") == "numeric":     # trailer and footer too: every non-ASCII char of the HTML
            out = entity_style(out, "numeric")
        return out

    def footer(self, foot, a, o):
        if foot == "wp":
            return (f'<p>The post <a rel="nofollow" href="{esc_attr(a.link_base)}">{esc(a.title)}</a> appeared first on '
                    f'<a rel="nofollow" href="https://{o["domain"]}">{esc(o["name"])}</a>.</p>')
        if foot == "copyright":
            return f"<p>© {a.published.year} {esc(o['name'])}. {esc(o.get('rights', 'All rights reserved.'))}</p>"
        if foot == "share":
            return f'<div class="share">{esc(o.get("share_label", "Share"))}: <a href="#">Facebook</a> <a href="#">X</a> <a href="#">WhatsApp</a> <a href="#">Telegram</a></div>'
        if foot == "newsletter":
            return f'<p class="newsletter">{esc(o.get("newsletter", "Get the morning briefing by email."))}</p>'
        raise ValueError(foot)

    def summary_html(self, a, feed=None, stub=False):
        """(html, intended body paragraphs) of the feed's description/summary."""
        o = outlet_cfg(self.plan, a, feed)
        if stub:
            return o["stub_text"], [o["stub_text"]]
        hs = o.get("html", {})
        text = summary_text(a, o.get("summary", "lead"))
        if o.get("description") == "wp":
            return (f"<p>{render_inline(text, hs, [])}</p>\n" + self.footer("wp", a, o)), [text]
        if o.get("description") == "html":
            return f"<p>{render_inline(text, hs, [])}</p>", [text]
        return text, [text]


# --------------------------------------------------------------------------
# feed serialisation
# --------------------------------------------------------------------------
def cdata(s):
    return "<![CDATA[" + s.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def fmt_date(d, style, tz):
    local = d.astimezone(tz)
    if style == "rfc822":
        return email.utils.format_datetime(local)
    if style == "rfc822_gmt":
        return email.utils.format_datetime(d.astimezone(UTC), usegmt=True)
    if style == "iso":
        return local.isoformat()
    if style == "iso_z":
        return d.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if style == "w3cdtf_min":
        return local.isoformat(timespec="minutes")
    raise ValueError(style)


def feed_url(o, fd):
    return f"https://{o['domain']}{fd['path']}"


def render_feed(fd, items, plan, rend, seed):
    o = plan["outlets"][fd["outlet"]]
    rng = random.Random(f"{seed}:feed:{fd['file']}")
    tz = tz_of(o["tz"])
    fmt = fd["format"]
    wrap = fd.get("wrap", "cdata")
    dates = fd.get("dates", "rfc822")
    newest = max(it.article.published for it in items)
    x = esc

    def html_payload(s):
        return cdata(s) if wrap == "cdata" else x(s)

    for it in items:
        a = it.article
        it.link = add_tracking(outlet_cfg(plan, a, fd), fd, a.link_base, a)
        if fd.get("external_from"):
            src = plan["outlets"].get(a.placement.get("source_outlet", ""))
            if src:
                it.external_url = add_tracking({"tracking": fd["external_from"], "tz": o["tz"]}, fd,
                                               rend.arts[(a.placement["source_outlet"], a.story.id, "")].link_base, a)

    out = []
    if fmt == "rss2":
        ns = ['xmlns:content="http://purl.org/rss/1.0/modules/content/"',
              'xmlns:dc="http://purl.org/dc/elements/1.1/"', 'xmlns:atom="http://www.w3.org/2005/Atom"']
        if o.get("media"):
            ns.append('xmlns:media="http://search.yahoo.com/mrss/"')
        out.append(f'<?xml version="1.0" encoding="{fd.get("encoding", "utf-8")}"?>')
        out.append(f'<rss version="2.0" {" ".join(ns)}>')
        out.append("<channel>")
        out.append(f"  <title>{x(fd['title'])}</title>")
        out.append(f"  <link>https://{o['domain']}/</link>")
        out.append(f"  <description>{x(fd['description'])}</description>")
        out.append(f"  <language>{fd.get('language', o['lang'])}</language>")
        out.append(f"  <lastBuildDate>{fmt_date(newest, dates, tz)}</lastBuildDate>")
        out.append(f'  <atom:link href="{esc_attr(feed_url(o, fd))}" rel="self" type="application/rss+xml" />')
        if o.get("generator"):
            out.append(f"  <generator>{x(o['generator'])}</generator>")
        out.append(f"  <ttl>{fd.get('ttl', 15)}</ttl>")
        for it in items:
            a = it.article
            out.append("  <item>")
            oa = outlet_cfg(plan, a, fd)
            out.append(f"    <title>{x(a.title + oa.get('title_suffix', ''))}</title>")
            out.append(f"    <link>{x(it.link)}</link>")
            if a.guid is not None:
                attr = ""
                if a.guid_permalink is False:
                    attr = ' isPermaLink="false"'
                elif o.get("guid_attr_true"):
                    attr = ' isPermaLink="true"'
                out.append(f"    <guid{attr}>{x(a.guid)}</guid>")
            out.append(f"    <pubDate>{fmt_date(a.published, dates, tz)}</pubDate>")
            if o.get("rss_author"):
                out.append(f"    <author>{x(o['rss_author'])}</author>")
            elif a.story.author:
                out.append(f"    <dc:creator>{cdata(a.story.author) if wrap == 'cdata' else x(a.story.author)}</dc:creator>")
            for tag in a.story.tags:
                out.append(f"    <category>{x(tag)}</category>")
            full = it.body_kind == "full"
            if full and oa.get("description") == "full":
                h = rend.content_html(a, fd, rng)
                out.append(f"    <description>{html_payload(h)}</description>")
                it.body_paras, it.body_source = list(a.paras), "description"
            else:
                sh, sparas = rend.summary_html(a, fd, stub=it.body_kind == "stub")
                out.append(f"    <description>{html_payload(sh)}</description>")
                if full:
                    h = rend.content_html(a, fd, rng)
                    out.append(f"    <content:encoded>{html_payload(h)}</content:encoded>")
                    it.body_paras, it.body_source = list(a.paras), "content:encoded"
                else:
                    it.body_paras, it.body_source = sparas, "description"
            if o.get("media"):
                out.append(f'    <media:content url="https://img.{o["domain"]}/{a.published:%Y/%m}/{a.number}.jpg" medium="image" />')
            out.append("  </item>")
        out.append("</channel>")
        out.append("</rss>")
    elif fmt == "rss1":
        out.append(f'<?xml version="1.0" encoding="{fd.get("encoding", "utf-8")}"?>')
        out.append('<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/" '
                   'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:content="http://purl.org/rss/1.0/modules/content/">')
        out.append(f'  <channel rdf:about="{esc_attr(feed_url(o, fd))}">')
        out.append(f"    <title>{x(fd['title'])}</title>")
        out.append(f"    <link>https://{o['domain']}/</link>")
        out.append(f"    <description>{x(fd['description'])}</description>")
        out.append(f"    <dc:language>{fd.get('language', o['lang'])}</dc:language>")
        out.append(f"    <dc:date>{fmt_date(newest, dates, tz)}</dc:date>")
        out.append("    <items>\n      <rdf:Seq>")
        for it in items:
            out.append(f'        <rdf:li rdf:resource="{esc_attr(it.article.guid)}" />')
        out.append("      </rdf:Seq>\n    </items>\n  </channel>")
        for it in items:
            a = it.article
            out.append(f'  <item rdf:about="{esc_attr(a.guid)}">')
            out.append(f"    <title>{x(a.title)}</title>")
            out.append(f"    <link>{x(it.link)}</link>")
            sh, sparas = rend.summary_html(a, fd, stub=it.body_kind == "stub")
            out.append(f"    <description>{x(sh)}</description>")
            out.append(f"    <dc:date>{fmt_date(a.published, dates, tz)}</dc:date>")
            if a.story.author:
                out.append(f"    <dc:creator>{x(a.story.author)}</dc:creator>")
            for tag in a.story.tags:
                out.append(f"    <dc:subject>{x(tag)}</dc:subject>")
            if it.body_kind == "full":
                out.append(f"    <content:encoded>{html_payload(rend.content_html(a, fd, rng))}</content:encoded>")
                it.body_paras, it.body_source = list(a.paras), "content:encoded"
            else:
                it.body_paras, it.body_source = sparas, "description"
            out.append("  </item>")
        out.append("</rdf:RDF>")
    elif fmt == "atom":
        lang = fd.get("language", o["lang"])
        base = fd.get("xml_base")
        base_attr = f' xml:base="{esc_attr(base)}"' if base else ""
        out.append(f'<?xml version="1.0" encoding="{fd.get("encoding", "utf-8")}"?>')
        out.append(f'<feed xmlns="http://www.w3.org/2005/Atom" xml:lang="{lang}"{base_attr}>')
        out.append(f"  <id>tag:{o['domain']},2000:feed:{fd.get('section', 'main')}</id>")
        out.append(f"  <title>{x(fd['title'])}</title>")
        out.append(f"  <subtitle>{x(fd['description'])}</subtitle>")
        out.append(f"  <updated>{fmt_date(newest, dates, tz)}</updated>")
        out.append(f'  <link rel="self" type="application/atom+xml" href="{esc_attr(feed_url(o, fd))}" />')
        out.append(f'  <link rel="alternate" type="text/html" href="{esc_attr(base and "./" or "https://" + o["domain"] + "/")}" />')
        out.append(f"  <author><name>{x(o['name'])}</name></author>")
        if o.get("generator"):
            out.append(f"  <generator>{x(o['generator'])}</generator>")
        for it in items:
            a = it.article
            href = it.link
            if base and href.startswith(base):
                href = href[len(base):]
            out.append("  <entry>")
            out.append(f"    <id>{x(a.guid)}</id>")
            out.append(f'    <title type="text">{x(a.title)}</title>')
            out.append(f'    <link rel="alternate" type="text/html" href="{esc_attr(href)}" />')
            out.append(f"    <published>{fmt_date(a.published, dates, tz)}</published>")
            upd = a.published + dt.timedelta(minutes=a.placement.get("updated_after", 0))
            out.append(f"    <updated>{fmt_date(upd, dates, tz)}</updated>")
            if a.story.author:
                out.append(f"    <author><name>{x(a.story.author)}</name></author>")
            for tag in a.story.tags:
                out.append(f'    <category term="{esc_attr(tag)}" />')
            sh, sparas = rend.summary_html(a, fd, stub=it.body_kind == "stub")
            out.append(f'    <summary type="{"html" if sh.startswith("<") else "text"}">{x(sh)}</summary>')
            if it.body_kind == "full":
                if fd.get("content_type") == "xhtml":
                    h = rend.content_html(a, fd, rng, xhtml=True)
                    out.append('    <content type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml">'
                               f"{h}</div></content>")
                else:
                    out.append(f'    <content type="html">{x(rend.content_html(a, fd, rng))}</content>')
                it.body_paras, it.body_source = list(a.paras), "content"
            else:
                it.body_paras, it.body_source = sparas, "summary"
            out.append("  </entry>")
        out.append("</feed>")
    elif fmt == "json":
        doc = {"version": "https://jsonfeed.org/version/1.1", "title": fd["title"],
               "home_page_url": f"https://{o['domain']}/", "feed_url": feed_url(o, fd),
               "description": fd["description"], "language": fd.get("language", o["lang"]),
               "authors": [{"name": o["name"]}], "items": []}
        for it in items:
            a = it.article
            ent = {"id": a.guid, "url": it.link}
            if it.external_url:
                ent["external_url"] = it.external_url
            ent["title"] = a.title
            sh, sparas = rend.summary_html(a, fd, stub=it.body_kind == "stub")
            mode = a.placement.get("json_body", "html")
            if it.body_kind == "full" and mode == "text":
                ent["content_text"] = "\n\n".join(a.paras) + (
                    "\n\n" + o["text_trailer"].format(link=it.external_url or it.link) if o.get("text_trailer") else "")
                it.body_paras, it.body_source = list(a.paras), "content_text"
            elif it.body_kind == "full":
                ent["content_html"] = rend.content_html(a, fd, rng)
                it.body_paras, it.body_source = list(a.paras), "content_html"
            else:
                ent["content_text"] = sh
                it.body_paras, it.body_source = sparas, "content_text"
            ent["summary"] = sh
            ent["date_published"] = fmt_date(a.published, dates, tz)
            if a.story.author:
                ent["authors"] = [{"name": a.story.author}]
            if a.story.tags:
                ent["tags"] = list(a.story.tags)
            if a.story.lang != doc["language"]:
                ent["language"] = a.story.lang
            doc["items"].append(ent)
        return (json.dumps(doc, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
    else:
        raise ValueError(fmt)
    text = "\n".join(out) + "\n"
    data = text.encode(fd.get("encoding", "utf-8"), errors="strict")
    if fd.get("bom"):
        data = b"\xef\xbb\xbf" + data
    return data


# --------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------
def generate(outdir: Path, seed=None):
    plan = json.loads((HERE / "plan.json").read_text(encoding="utf-8"))
    seed = plan["random_seed"] if seed is None else seed
    stories = parse_articles((HERE / "articles.txt").read_text(encoding="utf-8"))
    for spec in plan.get("series", []):
        for st in expand_series(spec, seed):
            stories[st.id] = st
    arts, items_by_feed = build_articles(plan, stories, seed)
    rend = Renderer(plan, arts, seed)
    raw = outdir / "raw"
    if raw.exists():
        shutil.rmtree(raw)
    raw.mkdir(parents=True)
    feeds_meta, all_items = [], []
    for fd in plan["feeds"]:
        items = items_by_feed[fd["file"]]
        items.sort(key=lambda it: (it.article.published, it.article.story.id),
                   reverse=fd.get("order", "desc") == "desc")
        for i, it in enumerate(items):
            it.index = i
        data = render_feed(fd, items, plan, rend, seed)
        (raw / fd["file"]).write_bytes(data)
        o = plan["outlets"][fd["outlet"]]
        n = len(items)
        if not 10 <= n <= 40:
            raise SystemExit(f"{fd['file']}: {n} items (want 10-40)")
        feeds_meta.append({
            "file": "raw/" + fd["file"], "outlet": fd["outlet"], "format": {
                "rss2": "RSS 2.0", "rss1": "RSS 1.0 (RDF)", "atom": "Atom 1.0", "json": "JSON Feed 1.1"}[fd["format"]],
            "encoding": fd.get("encoding", "utf-8") + (" (with BOM)" if fd.get("bom") else ""),
            "content_type": fd["content_type_header"], "language": fd.get("language", o["lang"]),
            "feed_url": feed_url(o, fd), "date_format": fd.get("dates", "rfc822"),
            "item_count": n, "bytes": len(data), "note": fd.get("note", "")})
        all_items.extend(items)
    gt = ground_truth(plan, stories, arts, all_items, feeds_meta, seed)
    (outdir / "ground_truth.json").write_text(json.dumps(gt, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return gt


def ground_truth(plan, stories, arts, items, feeds_meta, seed):
    groups, rows = {}, []
    for it in items:
        h = body_sha256(it.body_paras)
        nchars = len(norm_body(it.body_paras))
        gkey = h
        if nchars < SHORT_BODY:
            if it.body_kind != "stub":
                raise SystemExit(f"{it.feed['file']}: {it.article.story.id} has a {nchars}-char body but is not a stub")
            gkey = (h, it.article.title, it.article.link_base)
        if gkey not in groups:
            groups[gkey] = {"id": f"X{len(groups) + 1:03d}", "story": it.article.story.id, "items": []}
        g = groups[gkey]
        if g["story"] != it.article.story.id:
            raise SystemExit(f"identical body across stories {g['story']} / {it.article.story.id}")
        a, fd = it.article, it.feed
        o = plan["outlets"][a.outlet]
        key = a.guid if a.guid is not None else it.link
        note = []
        if a.story.kind == "series":
            note.append(a.story.note)
        note += a.notes
        if it.body_kind == "summary":
            note.append("summary only: the feed carries no full text for this item")
        if it.body_kind == "stub":
            note.append(f"stub body ({nchars} chars, same stub text as other unrelated items): "
                        "exact group keyed by body + title + canonical_url")
        if a.placement.get("note"):
            note.append(a.placement["note"])
        if not a.notes and it.body_kind == "full":
            note.insert(0, "full copy, body unchanged")
        item_id = f"{fd['file']}#{it.index}"
        g["items"].append(item_id)
        rows.append({
            "item_id": item_id, "feed": "raw/" + fd["file"], "index": it.index, "key": key,
            "guid": a.guid, "guid_is_permalink": a.guid_permalink if fd["format"] == "rss2" and a.guid else None,
            "instance": a.placement.get("instance") or None,
            "link": it.link, "canonical_url": a.link_base, "external_url": it.external_url,
            "outlet": a.outlet, "language": a.story.lang, "title": a.title,
            "published_utc": a.published.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "story_id": a.story.id, "exact_dup_group": g["id"],
            "body_source": it.body_source, "body_kind": "summary" if it.body_kind == "stub" else it.body_kind,
            "body_sha256": h, "body_chars": nchars,
            "edits": a.ops, "note": "; ".join(note)})
    members = {}
    for r in rows:
        members.setdefault(r["exact_dup_group"], []).append(r["item_id"])
    for r in rows:
        others = [m for m in members[r["exact_dup_group"]] if m != r["item_id"]]
        r["note"] += ("; body identical to " + ", ".join(others)) if others else "; no other item has this exact body"
    story_rows = []
    for sid in sorted({r["story_id"] for r in rows}):
        st = stories[sid]
        mine = [r for r in rows if r["story_id"] == sid]
        story_rows.append({
            "story_id": sid, "language": st.lang, "kind": st.kind, "title": st.title,
            "source": st.agency or (mine[0]["outlet"] if st.kind != "series" else ""),
            "items": len(mine), "outlets": sorted({r["outlet"] for r in mine}),
            "exact_dup_groups": sorted({r["exact_dup_group"] for r in mine}),
            "words": sum(len(p.split()) for p in st.paragraphs), "note": st.note})
    return {
        "corpus": plan["corpus"], "description": plan["description"],
        "random_seed": seed, "generator": "tests/corpus/gen.py (reads articles.txt + plan.json; adapted from the shared fixture generator)",
        "normalisation": ("body text = article paragraphs after removing markup and boilerplate (see README); "
                          "then Unicode NFC, all whitespace runs (str.isspace) collapsed to one space, stripped; "
                          "body_sha256 = sha256 of that string in UTF-8; bodies shorter than 50 chars (stubs) form exact groups "
                          "by body + title + canonical_url"),
        "counts": {"feeds": len(feeds_meta), "items": len(rows), "stories": len(story_rows),
                   "exact_dup_groups": len(groups),
                   "exact_dup_groups_with_2plus_items": sum(1 for g in groups.values() if len(g["items"]) > 1),
                   "stories_with_2plus_items": sum(1 for s in story_rows if s["items"] > 1)},
        "hard_cases": plan.get("hard_cases", []),
        "outlets": [{"id": k, "name": v["name"], "domain": v["domain"], "language": v["lang"],
                     "boilerplate": v.get("boilerplate_note", "")} for k, v in plan["outlets"].items()],
        "feeds": feeds_meta,
        "stories": story_rows,
        "exact_dup_groups": [{"exact_dup_group": g["id"], "story_id": g["story"], "items": g["items"]}
                             for g in groups.values()],
        "items": rows,
    }


def check():
    with tempfile.TemporaryDirectory() as tmp:
        gt = generate(Path(tmp))
        ok = True
        for rel in [f["file"] for f in gt["feeds"]] + ["ground_truth.json"]:
            a, b = (Path(tmp) / rel).read_bytes(), (HERE / rel)
            if not b.exists() or b.read_bytes() != a:
                print(f"DIFFERS from a fresh run: {rel}")
                ok = False
    on_disk = sorted(p.name for p in (HERE / "raw").iterdir())
    if on_disk != sorted(Path(f["file"]).name for f in gt["feeds"]):
        print("raw/ holds files the plan does not make:", on_disk)
        ok = False
    total = 0
    for f in gt["feeds"]:
        data = (HERE / f["file"]).read_bytes()
        if f["file"].endswith(".json"):
            n = len(json.loads(data.decode("utf-8"))["items"])
        else:
            root = ET.fromstring(data)
            n = sum(1 for el in root.iter() if el.tag.split("}")[-1] in ("item", "entry"))
        total += len(data)
        flag = "" if n == f["item_count"] else "  <-- MISMATCH"
        ok &= not flag
        print(f"{f['file']:44s} {f['format']:15s} {f['encoding']:18s} items={n:3d}{flag}")
    size = sum(p.stat().st_size for p in HERE.rglob("*") if p.is_file())
    print(f"{gt['counts']}\nfeed bytes={total}  folder bytes={size}")
    if size > 2_000_000:
        print("folder is over 2 MB")
        ok = False
    print("check:", "OK" if ok else "FAILED")
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--seed", type=int)
    args = ap.parse_args()
    if args.check:
        sys.exit(0 if check() else 1)
    gt = generate(HERE, args.seed)
    print(json.dumps(gt["counts"]))


if __name__ == "__main__":
    main()
