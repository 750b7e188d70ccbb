"""Real processes for fault tests: the CLI daemon and standalone arq workers."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from typing import IO

from aggregator.settings import Settings


def service_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment a child process needs to use the test's services."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGGREGATOR_")}
    env |= {
        "AGGREGATOR_DATABASE_URL": settings.database_url or "",
        "AGGREGATOR_REDIS_URL": settings.redis_url or "",
        "AGGREGATOR_ALLOW_PRIVATE_NETWORKS": "true",
        "AGGREGATOR_PARSE_PROCESSES": "1",
        "AGGREGATOR_POLL_DELAY": "0.05",
        "AGGREGATOR_HOST_RATE": "1000",  # every test feed lives on 127.0.0.1: one host
        "AGGREGATOR_HOST_CONCURRENCY": "50",
    }
    return env | extra


def spawn(args: Sequence[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start a child whose stdout and stderr go to one temporary file (see ``output``)."""
    log = tempfile.TemporaryFile()  # noqa: SIM115 (closed by output())
    process = subprocess.Popen(list(args), env=env, stdout=log, stderr=subprocess.STDOUT)
    _logs[process] = log
    return process


def output(process: subprocess.Popen[bytes]) -> str:
    """Everything an exited child printed."""
    log = _logs.pop(process)
    with log:
        log.seek(0)
        return log.read().decode("utf-8", "replace")


# Keyed by the process object, not its pid: pids come round again (pid_max is 32768 on
# many machines, and a loaded one spawning PostgreSQL backends wraps it within an hour).
_logs: dict[subprocess.Popen[bytes], IO[bytes]] = {}


def arq_worker(settings_path: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return spawn([sys.executable, "-m", "arq", settings_path], env)


def aggregator(args: Sequence[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return spawn([sys.executable, "-m", "aggregator", *args], env)


async def wait_exit(process: subprocess.Popen[bytes], timeout: float) -> int:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while process.poll() is None:
        if loop.time() > deadline:
            process.kill()
            raise TimeoutError(f"process {process.args} did not exit in {timeout}s")
        await asyncio.sleep(0.05)
    return process.returncode


def sigkill(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait()


async def run_cli(
    args: Sequence[str], env: dict[str, str], *, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """Run the CLI to completion without blocking the event loop (a test's feed server
    lives on it)."""
    return await run([sys.executable, "-m", "aggregator", *args], env, timeout=timeout)


async def run(
    command: Sequence[str], env: dict[str, str], *, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """Run any command to completion without blocking the event loop."""
    args = list(command)
    process = await asyncio.create_subprocess_exec(
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return subprocess.CompletedProcess(
        list(args), process.returncode, stdout.decode(), stderr.decode()
    )
