"""The poll queue's worker: ``arq workers.poll.WorkerSettings``."""

from aggregator.queue import POLL_QUEUE
from workers.jobs import settings_class

WorkerSettings = type("WorkerSettings", (), settings_class(POLL_QUEUE))
