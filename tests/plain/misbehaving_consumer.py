"""Plain arq consumers that fail their deliveries, one way each (MODE). Imports only
arq and json, like a consumer written from the README: the tests run it with an
interpreter that cannot import the aggregator.

MODE: raise (the handler raises), timeout (longer than job_timeout), nofunction (no
``new_article``), noresult (keep_result=0), retry (raises arq.Retry until max_tries).
"""

import asyncio
import json
import os

from arq import Retry
from arq.connections import RedisSettings

MODE = os.environ["MODE"]


async def new_article(ctx, article):
    if MODE == "raise":
        raise ValueError(f"cannot handle article {article['id']}")
    if MODE == "timeout":
        await asyncio.sleep(30)
    if MODE == "retry":
        raise Retry(defer=0.05)
    print(article["id"], flush=True)
    return "done"


async def something_else(ctx, article):
    return "not the job function"


class WorkerSettings:
    functions = [something_else] if MODE == "nofunction" else [new_article]
    queue_name = "aggregator:subscriber:" + os.environ["SUBSCRIBER"]
    redis_settings = RedisSettings.from_dsn(os.environ["REDIS_URL"])
    job_deserializer = json.loads
    max_jobs = 1
    poll_delay = 0.05
    job_timeout = 1
    max_tries = 2
    keep_result = 0 if MODE == "noresult" else 3600
