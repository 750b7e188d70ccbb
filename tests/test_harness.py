"""The suite respects the machine it runs on: its Redis is its own (or the one named for
it), never one it found listening; the shared corpus is a visible skip when missing."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import redis

from tests import services

ROOT = Path(__file__).resolve().parent.parent


def test_the_session_redis_is_its_own_throwaway_server(redis_url: str) -> None:
    if services.named_redis_url():
        pytest.skip("AGGREGATOR_TEST_REDIS_URL names the Redis to use")
    client = redis.Redis.from_url(redis_url)
    try:
        folder = client.config_get("dir")["dir"]
        port = int(client.config_get("port")["port"])
    finally:
        client.close()
    assert Path(folder).name.startswith("aggregator-test-redis-"), folder
    assert Path(folder).parent == Path(tempfile.gettempdir())
    assert port != 6379 and port == int(redis_url.split(":")[2].split("/")[0])


def test_a_named_redis_is_used_as_named_and_nothing_else_is_found(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AGGREGATOR_TEST_REDIS_URL", "redis://127.0.0.1:1/7")
    assert services.named_redis_url() == "redis://127.0.0.1:1/7"
    monkeypatch.delenv("AGGREGATOR_TEST_REDIS_URL")
    assert services.named_redis_url() is None  # whatever listens on 6379


def test_a_throwaway_redis_starts_on_a_free_port_and_is_gone_after() -> None:
    server = services.ThrowawayRedis().start()
    try:
        assert services.listening("127.0.0.1", server.port)
    finally:
        server.stop()
    assert not services.listening("127.0.0.1", server.port)
    assert not server.folder.exists()


def test_missing_shared_corpus_is_reported_as_a_skip(tmp_path: Path) -> None:
    env = {"AGGREGATOR_SHARED_FIXTURES": str(tmp_path / "none"), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rs",
            "--collect-only",
            "-p",
            "no:cacheprovider",
            "tests/test_cleantext.py",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "test_every_body_hash_matches_the_ground_truth[fixtures/feeds]" in result.stdout, (
        result.stdout + result.stderr
    )
