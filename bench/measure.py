"""Measuring processes: CPU seconds and peak RSS of every process a run involves.

A ``Watch`` samples, in a background thread, the processes of named roles
(the system under test and its children, the Postgres backends serving its
database, the Redis server, the feed farm) every ``interval`` seconds with
psutil. A process's CPU time is read at each sample, so one that exits
between samples loses at most one interval; the system under test's own CPU
is also taken exactly from ``getrusage(RUSAGE_CHILDREN)`` when it is a child
that this process waited for. The machine's whole CPU use is recorded too,
so a run that shared the cores with something else says so.
"""

from __future__ import annotations

import resource
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import psutil

PidSource = Callable[[], Iterable[int]]


def tree(pid: int) -> PidSource:
    """A process and all its descendants (the daemon and its parse processes)."""

    def pids() -> list[int]:
        try:
            root = psutil.Process(pid)
            return [pid, *(c.pid for c in root.children(recursive=True))]
        except psutil.Error:
            return []

    return pids


def postgres_backends(database: str) -> PidSource:
    """Postgres backends connected to ``database``: their process title names it."""
    marker = f" {database} "

    def pids() -> list[int]:
        found = []
        for proc in psutil.process_iter(["name", "cmdline"]):
            cmdline = " ".join(proc.info.get("cmdline") or ())
            if cmdline.startswith("postgres:") and marker in cmdline:
                found.append(proc.pid)
        return found

    return pids


def named(name: str) -> PidSource:
    """Every process with this executable name (e.g. ``redis-server``)."""

    def pids() -> list[int]:
        return [p.pid for p in psutil.process_iter(["name"]) if p.info.get("name") == name]

    return pids


def fixed(*pids: int) -> PidSource:
    return lambda: list(pids)


@dataclass
class RoleUsage:
    cpu_seconds: float = 0.0
    peak_rss_mb: float = 0.0  # the largest single process of the role (PSS if proportional)
    peak_total_rss_mb: float = 0.0  # the largest sum over the role's processes at one sample
    processes: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "cpu_seconds": round(self.cpu_seconds, 3),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            "peak_total_rss_mb": round(self.peak_total_rss_mb, 1),
            "processes": self.processes,
        }


@dataclass
class Watch:
    roles: dict[str, PidSource]
    interval: float = 0.2
    # Roles whose processes share memory (Postgres backends map shared_buffers): their
    # RSS counts shared pages once per process, so PSS (each shared page split among
    # the processes mapping it) is recorded instead.
    proportional: frozenset[str] = frozenset({"postgres"})
    usage: dict[str, RoleUsage] = field(default_factory=dict)
    wall_seconds: float = 0.0
    machine_busy_cpu_seconds: float = 0.0
    _first_cpu: dict[int, float] = field(default_factory=dict)
    _last_cpu: dict[tuple[str, int], float] = field(default_factory=dict)
    _procs: dict[int, psutil.Process] = field(default_factory=dict)
    _seen: dict[str, set[int]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _children_cpu: float = 0.0

    def add_role(self, name: str, source: PidSource) -> None:
        self.roles[name] = source

    def __enter__(self) -> Watch:
        self.usage = {name: RoleUsage() for name in self.roles}
        self._started = time.perf_counter()
        self._machine = _busy_seconds()
        self._children_cpu = _children_cpu()
        self._sample(baseline=True)
        self._thread = threading.Thread(target=self._run, name="bench-watch", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample(baseline=False)
        self.wall_seconds = time.perf_counter() - self._started
        self.machine_busy_cpu_seconds = _busy_seconds() - self._machine
        for role, usage in self.usage.items():
            usage.processes = len(self._seen.get(role, ()))

    def children_cpu_seconds(self) -> float:
        """CPU of the child processes this process reaped since the watch began (exact)."""
        return _children_cpu() - self._children_cpu

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample(baseline=False)

    def _sample(self, *, baseline: bool) -> None:
        for role, source in list(self.roles.items()):
            usage = self.usage.setdefault(role, RoleUsage())
            total_rss = 0
            for pid in source():
                proc = self._procs.get(pid)
                try:
                    if proc is None:
                        proc = self._procs[pid] = psutil.Process(pid)
                    with proc.oneshot():
                        cpu = proc.cpu_times()
                        if role in self.proportional:
                            rss = proc.memory_full_info().pss
                        else:
                            rss = proc.memory_info().rss
                except psutil.Error:
                    continue
                seconds = cpu.user + cpu.system
                if baseline:
                    self._first_cpu[pid] = seconds  # work done before the run is not ours
                start = self._first_cpu.get(pid, 0.0)
                key = (role, pid)
                previous = self._last_cpu.get(key)
                self._last_cpu[key] = seconds - start
                usage.cpu_seconds += (seconds - start) - (previous or 0.0)
                self._seen.setdefault(role, set()).add(pid)
                usage.peak_rss_mb = max(usage.peak_rss_mb, rss / 2**20)
                total_rss += rss
            usage.peak_total_rss_mb = max(usage.peak_total_rss_mb, total_rss / 2**20)

    def report(self) -> dict[str, Any]:
        return {
            "wall_seconds": round(self.wall_seconds, 3),
            "machine_busy_cpu_seconds": round(self.machine_busy_cpu_seconds, 2),
            "roles": {name: usage.as_dict() for name, usage in self.usage.items()},
        }


def _busy_seconds() -> float:
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
