"""Body text: the story's words stay, the site's boilerplate goes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from aggregator.pipeline import bodytext
from aggregator.pipeline.normalize import FeedContext, articles_from_document
from tests.groundtruth import SHARED_FIXTURES, SHARED_MISSING, Corpus, corpus_params

SEED_BOILERPLATE = (
    "AP National Security Writer",
    "By Lara Jakes",
    "Latest news",
    "Must read",
    "You might also like",
    "Recommended to you",
    "AP: Even as",
)


@pytest.mark.skipif(not (SHARED_FIXTURES / "ground_truth.json").exists(), reason=SHARED_MISSING)
def test_seed_republications_keep_the_story_and_drop_the_boilerplate() -> None:
    corpus = Corpus.load(SHARED_FIXTURES)
    seed_items = [i for i in corpus.items if i["story_id"] == "S00"]
    assert len(seed_items) == 4
    checked = 0
    for feed in corpus.feeds:
        items = [i for i in seed_items if i["feed"] == feed["file"]]
        if not items:
            continue
        _, articles = articles_from_document(
            (corpus.root / feed["file"]).read_bytes(),
            url=feed["feed_url"],
            content_type=feed["content_type"],
            feed=FeedContext(url=feed["feed_url"]),
            now=datetime.now(UTC),
        )
        for item in items:
            text = articles[item["index"]].content_text
            assert text.startswith("ANKARA, Turkey (AP) — Even as it discouraged Iran") or (
                "Editor" in text.split("\n\n")[0]
            ), text[:200]
            assert "Secretary of State John Kerry, in Turkey to press its leaders" in text
            for phrase in SEED_BOILERPLATE:
                assert phrase not in text, (item["item_id"], phrase)
            # The credit line goes; an editor's note that names the agency is content.
            assert "The Associated Press" not in text.split("\n\n"), item["item_id"]
            checked += 1
    assert checked == 4


@pytest.mark.parametrize("root", corpus_params())
def test_every_body_hash_matches_the_ground_truth(root) -> None:  # type: ignore[no-untyped-def]
    """The body-text rules reproduce the corpus' body_sha256 for every item."""
    import hashlib

    corpus = Corpus.load(root)
    for feed in corpus.feeds:
        _, articles = articles_from_document(
            (corpus.root / feed["file"]).read_bytes(),
            url=feed["feed_url"],
            content_type=feed["content_type"],
            feed=FeedContext(url=feed["feed_url"]),
            now=datetime.now(UTC),
        )
        items = [i for i in corpus.items if i["feed"] == feed["file"]]
        assert len(articles) == len(items)
        for item in items:
            article = articles[item["index"]]
            body = bodytext.normalize_text(article.content_text.split("\n\n"))
            assert hashlib.sha256(body.encode()).hexdigest() == item["body_sha256"], item["item_id"]
            assert article.canonical_url == item["canonical_url"], item["item_id"]


def test_teaser_with_label_byline_and_trailing_blocks_are_dropped() -> None:
    lead = (
        "BEIRUT (AP) — The central bank said on Monday that reserves had fallen for a third month."
    )
    html = f"""
      <p class="kicker">Economy</p>
      <p>AP: {lead[14:]}</p>
      <p>By Jane Doe – Staff Writer</p>
      <p>{lead}</p>
      <p>Officials expect a recovery next year.</p>
      <div class="share">Share on X</div>
      <h3>Related</h3><ul><li>Another story entirely.</li></ul>
    """
    paragraphs = bodytext.body_paragraphs(html, is_html=True)
    assert paragraphs == [lead, "Officials expect a recovery next year."]


def test_script_and_style_never_reach_text() -> None:
    html = "<p>Story.<script>alert(1)</script><style>p{}</style></p>"
    assert bodytext.body_paragraphs(html, is_html=True) == ["Story."]


def test_wordpress_and_copyright_trailers_are_dropped() -> None:
    text = "A sentence that ends.\nThe post Title appeared first on Site.\n© 2014 Site"
    assert bodytext.body_paragraphs(text, is_html=False) == ["A sentence that ends."]


def test_editorial_note_is_content() -> None:
    text = "Editor's note: this story was updated.\nThe story itself, in full."
    assert len(bodytext.body_paragraphs(text, is_html=False)) == 2
