"""Full text for summary-only feeds: fetch the article's page and keep its main text.

Opt-in per feed (``feeds add --full-text``). Pages come through the same safe
fetcher as feeds (address policy, size and time caps, host politeness), and
only for articles the feed has not delivered before. The main text is found by
trafilatura (measured on this machine: about 0.6 ms per page; it drops
navigation, related-story boxes and footers), then goes through the same
body-text rules as feed content, so the content hash and the story clustering
work on the full story. A page that cannot be fetched or read leaves the
article as the feed gave it: nothing is lost.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor
from typing import Protocol

from aggregator import logs
from aggregator.errors import FeedError, HostBusyError
from aggregator.http.fetch import Fetcher
from aggregator.http.politeness import HostLimiter
from aggregator.model import Article
from aggregator.pipeline import bodytext
from aggregator.pipeline.contenthash import content_hash
from aggregator.storage.feeds import Feed
from aggregator.stories import prints as story_prints


class Clients(Protocol):
    """What fetching full text needs of the process's shared clients (the ``Runtime``)."""

    fetcher: Fetcher
    hosts: HostLimiter
    parser: Executor


log = logging.getLogger("aggregator.fulltext")

MAX_PAGES_PER_POLL = 50  # a feed that suddenly lists hundreds of items gets the rest next time
MIN_GAIN_CHARS = 50  # a page whose text is not longer than the feed's is not worth keeping


async def complete(rt: Clients, feed: Feed, articles: list[Article]) -> list[Article]:
    """The articles with their pages' full text where it could be had."""
    flog = logs.for_feed(log, feed.id, feed.url)
    completed = []
    for index, article in enumerate(articles):
        page = article.url or article.canonical_url
        if page is None or index >= MAX_PAGES_PER_POLL:
            completed.append(article)
            continue
        try:
            async with rt.hosts.slot(page):
                response = await rt.fetcher.fetch(page)
            paragraphs = await asyncio.get_running_loop().run_in_executor(
                rt.parser, bodytext.page_paragraphs, response.body or b""
            )
        except (FeedError, HostBusyError) as exc:
            flog.info("kept the feed's text of %s: page not fetched (%s)", page, exc)
            completed.append(article)
            continue
        completed.append(with_text(article, paragraphs))
    return completed


def with_text(article: Article, paragraphs: list[str]) -> Article:
    """The article with the page's text as its body, rehashed; unchanged if no better."""
    text = bodytext.normalize_text(paragraphs)
    feed_text = bodytext.normalize_text(article.content_text.split("\n\n"))
    if len(text) < len(feed_text) + MIN_GAIN_CHARS:
        return article
    content_text = "\n\n".join(paragraphs)
    return article.model_copy(
        update={
            "content_text": content_text,
            "content_hash": content_hash(
                text, title=article.title, canonical_url=article.canonical_url
            ),
            "feed_hash": article.content_hash,
            "story_print": story_prints.story_print(article.title, content_text),
        }
    )
