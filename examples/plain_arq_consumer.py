"""A subscriber's consumer in plain arq: nothing from the aggregator, only arq and json.

    aggregator subscribers add gulf-desk --region gulf
    SUBSCRIBER=gulf-desk REDIS_URL=redis://127.0.0.1:6379/0 arq plain_arq_consumer.WorkerSettings

Prints each new article's id and title, one at a time in commit order.
"""

import json
import os

from arq import Retry
from arq.connections import RedisSettings

handled: set[int] = set()  # in real life: a unique key on the article id in your store


class NotReadyError(Exception):
    """Something your handler waits for (a service down): worth a retry."""


def handle(article):
    """Your code: the article is the JSON payload as a dict (see docs/sql.md for fields)."""
    print(article["id"], article["title"], flush=True)


async def new_article(ctx, article):
    # At least once: the same article can come again (a retry, a replay). Key on "id".
    if article["id"] in handled:
        return "duplicate"
    try:
        handle(article)
    except NotReadyError:
        # Retried with backoff; after max_tries (default 5) the daemon dead-letters it.
        raise Retry(defer=ctx["job_try"] * 5) from None
    handled.add(article["id"])
    return "done"


class WorkerSettings:
    functions = [new_article]  # the job function is called "new_article"
    queue_name = "aggregator:subscriber:" + os.environ.get("SUBSCRIBER", "gulf-desk")
    redis_settings = RedisSettings.from_dsn(os.environ.get("REDIS_URL", "redis://localhost:6379"))
    job_deserializer = json.loads  # payloads are JSON; arq's default (pickle) fails every job
    max_jobs = 1  # one article at a time: commit order
    poll_delay = 0.05  # with max_jobs=1 arq starts one job per poll: 20 a second, not 2
    # keep_result stays at its default (1 h): the daemon reads each job's result to
    # dead-letter the failures, and a job without a result counts as lost.
