"""Liveness: whether *this* process is alive and consuming its queues (``/healthz``).

Every arq worker we run, in the daemon or standalone (``arq workers.poll.WorkerSettings``),
records arq's health key under a name of its own, ``<queue>:health-check:<host>:<pid>``,
from its main loop every ``HEALTH_INTERVAL`` seconds; the key expires a second after the
next one is due. So the key says that this process's loop still polls its queue in
Redis, which arq's shared ``<queue>:health-check`` key (written by every worker of the
queue, the daemon's included) cannot say. A worker whose every slot holds a long job does
not get round to its loop, so a job starting or ending in this process counts as a sign
of life too. The daemon's scheduler loop beats once per pass.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

HEALTH_INTERVAL = 10  # seconds between a worker's health records (arq's health_check_interval)


def health_key(queue_name: str) -> str:
    """This process's health key for one queue (arq writes it; ``/healthz`` reads it)."""
    return f"{queue_name}:health-check:{socket.gethostname()}:{os.getpid()}"


@dataclass
class Liveness:
    """The loops this process runs and when each last showed life."""

    job_timeout: float
    queues: set[str] = field(default_factory=set)
    loops: dict[str, float] = field(default_factory=dict)  # name -> longest silence allowed
    _jobs: dict[str, float] = field(default_factory=dict)
    _beats: dict[str, float] = field(default_factory=dict)

    def watch_queue(self, queue_name: str) -> None:
        self.queues.add(queue_name)

    def watch_loop(self, name: str, max_silence: float) -> None:
        self.loops[name] = max_silence
        self.beat(name)

    def beat(self, name: str) -> None:
        self._beats[name] = time.monotonic()

    def job_event(self, queue_name: str) -> None:
        self._jobs[queue_name] = time.monotonic()

    async def check(self, redis: Any) -> tuple[bool, list[str]]:
        """(alive, one line per loop saying why)."""
        now = time.monotonic()
        alive = True
        lines = []
        for queue_name in sorted(self.queues):
            try:
                record = await redis.get(health_key(queue_name))
            except Exception as exc:  # Redis down: this process cannot consume either
                record = None
                lines.append(f"{queue_name}: cannot read Redis ({type(exc).__name__})")
            job_age = now - self._jobs.get(queue_name, float("-inf"))
            if record:
                lines.append(f"{queue_name}: polling; {record.decode(errors='replace')}")
            elif job_age < self.job_timeout + HEALTH_INTERVAL:
                lines.append(f"{queue_name}: busy; a job started or ended {job_age:.0f}s ago")
            else:
                alive = False
                lines.append(
                    f"{queue_name}: not consuming: no health record in {HEALTH_INTERVAL + 1}s "
                    "and no job started or ended"
                )
        for name, max_silence in sorted(self.loops.items()):
            silence = now - self._beats.get(name, float("-inf"))
            if silence <= max_silence:
                lines.append(f"{name}: last pass {silence:.0f}s ago")
            else:
                alive = False
                lines.append(f"{name}: stuck: no pass for {silence:.0f}s")
        return alive, lines
