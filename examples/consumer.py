"""A subscriber's consumer: print each new article it receives.

    aggregator subscribers add gulf --region gulf
    AGGREGATOR_REDIS_URL=redis://127.0.0.1:6379/0 python examples/consumer.py gulf

Runs until Ctrl-C. A handler that raises is retried, then dead-lettered
(`aggregator subscribers list` shows it).
"""

import sys

from aggregator.consumer import NewArticle, run


async def handle(article: NewArticle) -> None:
    print(f"{article.published_at:%Y-%m-%d %H:%M} [{article.region}] {article.title}", flush=True)


if __name__ == "__main__":
    run(sys.argv[1] if len(sys.argv) > 1 else "example", handle)
