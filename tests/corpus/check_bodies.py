#!/usr/bin/env python3
"""Independent check of ground_truth.json's body hashes.

Parses every feed in raw/ with feedparser (XML) or json (JSON Feed), extracts
the body text with lxml.html following the rules in the reference README
("The body text and what counts as boilerplate"), and asserts that its
sha256 equals the item's body_sha256.  It shares no code with gen.py.

Also checks item counts, titles, links and published_utc against the parsed
feeds, and that exact_dup_group is consistent with the rules (same body =>
same group, except bodies < 50 chars, which are grouped by body + title +
canonical_url).

    /tmp/v1/bin/python tests/corpus/check_bodies.py [DIR]   (needs feedparser, lxml)

DIR defaults to this folder; any corpus with the same layout can be checked.
"""
from __future__ import annotations

import calendar
import hashlib
import json
import re
import sys
import time
import unicodedata
from pathlib import Path

import feedparser
import lxml.html
from lxml import etree

HERE = Path(__file__).resolve().parent

DROP_TAGS = set("script style noscript template iframe object embed form button nav aside header footer "
                "figure figcaption svg video audio picture".split())
DROP_CLASSES = set("teaser standfirst kicker byline credit author meta related latest latest-news must-read "
                   "recommended read-more share social newsletter promo ad advert tags copyright caption".split())
BLOCK_TAGS = set("p div section article main h1 h2 h3 h4 h5 h6 ul ol li blockquote pre table tr td th "
                 "dl dt dd".split())
BREAK_TAGS = {"br", "hr"}
HEADINGS = ["Latest news", "Must read", "Related", "Related news", "Related stories", "Read more", "Read also",
            "Also read", "More on this story", "You might also like", "You might also likeRELATED",
            "Recommended to you", "More from this section", "اقرأ أيضا", "اقرأ أيضاً", "أخبار ذات صلة",
            "مواضيع ذات صلة", "الأكثر قراءة", "بیشتر بخوانید", "مطالب مرتبط", "اخبار مرتبط",
            "پربازدیدترین‌ها", "İlgili haberler", "Bunlar da ilginizi çekebilir", "Çok okunanlar", "Son dakika"]
HEADING_KEYS = {h.rstrip(":").casefold() for h in HEADINGS}
WP_RE = re.compile(r"^The post .+ appeared first on .+\.$")
END_PUNCT_RE = re.compile(r"[.!?؟…۔][\"'”’»)\]]*$")
BREAK = object()


def local_tag(el):
    tag = el.tag
    if not isinstance(tag, str):
        return None                      # comment / processing instruction
    return tag.rsplit("}", 1)[-1].lower()


def dropped(el, tag):
    if tag in DROP_TAGS:
        return True
    return bool(set((el.get("class") or "").split()) & DROP_CLASSES)


def walk(el, out):
    tag = local_tag(el)
    if tag is not None and not dropped(el, tag):
        if tag in BREAK_TAGS:
            out.append(BREAK)
        else:
            block = tag in BLOCK_TAGS
            if block:
                out.append(BREAK)
            if el.text:
                out.append(el.text)
            for child in el:
                walk(child, out)
            if block:
                out.append(BREAK)
    if el.tail:
        out.append(el.tail)


def html_paragraphs(markup):
    if not markup.strip():
        return []
    root = lxml.html.fragment_fromstring(markup, create_parent="div")
    out = []
    if root.text:
        out.append(root.text)
    for child in root:
        walk(child, out)
    paras, cur = [], []
    for piece in out + [BREAK]:
        if piece is BREAK:
            p = " ".join("".join(cur).split())
            if p:
                paras.append(p)
            cur = []
        else:
            cur.append(piece)
    return paras


def text_paragraphs(text):
    return [" ".join(ln.split()) for ln in text.splitlines() if ln.strip()]


def strip_boilerplate(paras):
    paras = list(paras)
    # 3. trailing: cut at the first heading, then WordPress / copyright lines from the end
    for i, p in enumerate(paras):
        if p.rstrip(":").strip().casefold() in HEADING_KEYS:
            paras = paras[:i]
            break
    while paras and (WP_RE.match(paras[-1]) or paras[-1].startswith("©") or paras[-1].startswith("Copyright")):
        paras.pop()
    # 4. leading: teaser / header line, repeated
    while paras:
        first, nxt = paras[0], paras[1:6]
        if any(first in q for q in nxt):
            paras.pop(0)
            continue
        teaser = False
        for k in range(1, 5):
            m = re.match(r"^(\S+(?:\s+\S+){%d}): (.*)$" % (k - 1), first, flags=re.S)
            if m and len(m.group(2)) >= 30 and any(m.group(2) in q for q in nxt):
                teaser = True
                break
        if teaser:
            paras.pop(0)
            continue
        if len(first.split()) <= 15 and not END_PUNCT_RE.search(first):
            paras.pop(0)
            continue
        break
    return paras


def normalise(paras):
    text = unicodedata.normalize("NFC", " ".join(paras))
    return " ".join(text.split())


def fp_body(entry):
    """(source field name, paragraphs) for a feedparser entry."""
    for key in ("content", "summary_detail"):
        det = entry.get(key)
        if key == "content":
            det = det[0] if det else None
        if det and det.get("value", "").strip():
            src = "content" if key == "content" else "summary"
            if det.get("type") == "text/plain":
                return src, text_paragraphs(det["value"])
            return src, html_paragraphs(det["value"])
    return None, []


def json_body(item):
    if item.get("content_html", "").strip():
        return "content_html", html_paragraphs(item["content_html"])
    if item.get("content_text", "").strip():
        return "content_text", text_paragraphs(item["content_text"])
    return "summary", text_paragraphs(item.get("summary", ""))


SOURCE_MAP = {  # ground truth body_source -> the field feedparser exposes it as
    "content:encoded": "content", "content": "content", "description": "summary", "summary": "summary"}


def main():
    global HERE
    if len(sys.argv) > 1:
        HERE = Path(sys.argv[1]).resolve()
    gt = json.loads((HERE / "ground_truth.json").read_text(encoding="utf-8"))
    by_feed = {}
    for it in gt["items"]:
        by_feed.setdefault(it["feed"], []).append(it)
    errors, checked = [], 0
    computed = {}
    for fd in gt["feeds"]:
        data = (HERE / fd["file"]).read_bytes()
        rows = sorted(by_feed[fd["file"]], key=lambda r: r["index"])
        if fd["file"].endswith(".json"):
            doc = json.loads(data.decode("utf-8"))
            entries = doc["items"]
            parsed = []
            for e in entries:
                src, paras = json_body(e)
                parsed.append((src, paras, e["title"], e["url"], e["date_published"]))
        else:
            d = feedparser.parse(data)
            if d.bozo:
                errors.append(f"{fd['file']}: feedparser bozo: {d.bozo_exception!r}")
            entries = d.entries
            parsed = []
            for e in entries:
                src, paras = fp_body(e)
                tp = e.get("published_parsed") or e.get("updated_parsed")
                when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(calendar.timegm(tp))) if tp else None
                parsed.append((src, paras, e.get("title"), e.get("link"), when))
        if len(parsed) != len(rows) or len(rows) != fd["item_count"]:
            errors.append(f"{fd['file']}: {len(parsed)} parsed items, {len(rows)} in ground truth")
            continue
        for row, (src, paras, title, link, when) in zip(rows, parsed):
            body = normalise(strip_boilerplate(paras))
            h = hashlib.sha256(body.encode("utf-8")).hexdigest()
            computed[row["item_id"]] = (h, body)
            checked += 1
            if h != row["body_sha256"] or len(body) != row["body_chars"]:
                errors.append(f"{row['item_id']}: body sha256 mismatch ({len(body)} chars vs {row['body_chars']}): "
                              f"{body[:120]!r}")
            want_src = row["body_source"] if fd["file"].endswith(".json") else SOURCE_MAP[row["body_source"]]
            if src != want_src:
                errors.append(f"{row['item_id']}: body taken from {src}, ground truth says {row['body_source']}")
            if title != row["title"]:
                errors.append(f"{row['item_id']}: title {title!r} != {row['title']!r}")
            if link != row["link"]:
                errors.append(f"{row['item_id']}: link {link!r} != {row['link']!r}")
            if fd["file"].endswith(".json"):
                when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.strptime(when, "%Y-%m-%dT%H:%M:%SZ"))
            if when != row["published_utc"]:
                errors.append(f"{row['item_id']}: published {when} != {row['published_utc']}")
    # exact groups follow from the bodies (short bodies: + title + canonical_url)
    key_to_group, group_to_key = {}, {}
    for row in gt["items"]:
        if row["item_id"] not in computed:
            continue
        h, body = computed[row["item_id"]]
        key = h if len(body) >= 50 else (h, row["title"], row["canonical_url"])
        g = row["exact_dup_group"]
        if key_to_group.setdefault(key, g) != g or group_to_key.setdefault(g, key) != key:
            errors.append(f"{row['item_id']}: exact_dup_group {g} inconsistent with the computed bodies")
    for e in errors:
        print("ERROR", e)
    print(f"checked {checked} items in {len(gt['feeds'])} feeds; "
          f"{len(set(key_to_group.values()))} exact groups from computed bodies; "
          f"feedparser {feedparser.__version__}, lxml {etree.__version__}")
    print("check_bodies:", "FAILED" if errors else "OK")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
