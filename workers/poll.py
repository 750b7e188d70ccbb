"""The poll queue's worker: ``arq workers.poll.WorkerSettings``.

A shim for the ``arq`` command: the jobs live in ``aggregator.app.jobs``. The class is
built on first access (when the worker starts), so importing this module reads no
environment and never exits.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "WorkerSettings":
        from aggregator.app.jobs import worker_settings
        from aggregator.queue import POLL_QUEUE

        return worker_settings(POLL_QUEUE)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
