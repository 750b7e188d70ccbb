"""The store queue's worker: ``arq workers.store.WorkerSettings``."""

from aggregator.queue import STORE_QUEUE
from workers.jobs import settings_class

WorkerSettings = type("WorkerSettings", (), settings_class(STORE_QUEUE))
