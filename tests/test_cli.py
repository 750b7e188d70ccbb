"""The command line as a user types it: real processes, real Postgres."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from aggregator.settings import Settings
from aggregator.storage import migrations
from tests import processes


def run_cli(
    args: list[str], env: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aggregator", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


@pytest.fixture
def env(settings: Settings, clean_services: None) -> dict[str, str]:
    return processes.service_env(settings)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("AGGREGATOR_MIN_INTERVAL", "soon", "AGGREGATOR_MIN_INTERVAL"),
        ("AGGREGATOR_POLL_CONCURRENCY", "-3", "AGGREGATOR_POLL_CONCURRENCY"),
        ("AGGREGATOR_ALLOW_PRIVATE_NETWORKS", "perhaps", "AGGREGATOR_ALLOW_PRIVATE_NETWORKS"),
        ("AGGREGATOR_MIN_INTERVAL", "99999999", "AGGREGATOR_MAX_INTERVAL"),
    ],
)
def test_bad_setting_is_one_line_naming_it(
    env: dict[str, str], name: str, value: str, expected: str
) -> None:
    result = run_cli(["status"], env | {name: value})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], (
        result.stderr
    )
    assert "Traceback" not in result.stderr


def test_bad_setting_in_dotenv_file(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("AGGREGATOR_FETCH_TIMEOUT=forever\n")
    result = run_cli(["status"], env, cwd=tmp_path)
    assert result.returncode == 2 and "AGGREGATOR_FETCH_TIMEOUT" in result.stderr


def test_unreachable_database_is_one_line(env: dict[str, str]) -> None:
    result = run_cli(
        ["feeds", "list"], env | {"AGGREGATOR_DATABASE_URL": "postgresql://postgres@127.0.0.1:9/x"}
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "error:" in result.stderr


async def test_migrate_twice_is_a_no_op(env: dict[str, str], database_url: str) -> None:
    first = run_cli(["migrate"], env)
    second = run_cli(["migrate"], env)
    assert first.returncode == 0 and second.returncode == 0
    assert "schema is up to date" in second.stdout
    conn = await asyncpg.connect(database_url)
    try:
        versions = [
            r["version"]
            for r in await conn.fetch("SELECT version FROM schema_migrations ORDER BY 1")
        ]
    finally:
        await conn.close()
    assert versions == [m.version for m in migrations.available()]


def test_feeds_add_list_remove(env: dict[str, str]) -> None:
    added = run_cli(
        [
            "feeds",
            "add",
            "https://news.example/rss",
            "--no-fetch",
            "--region",
            "gulf",
            "--language",
            "ar",
        ],
        env,
    )
    assert added.returncode == 0 and "added feed 1" in added.stdout
    again = run_cli(
        ["feeds", "add", "https://news.example/rss", "--no-fetch", "--interval", "120"], env
    )
    assert "updated feed 1" in again.stdout
    listed = run_cli(["feeds", "list"], env)
    assert "https://news.example/rss" in listed.stdout and "gulf" in listed.stdout
    removed = run_cli(["feeds", "remove", "https://news.example/rss"], env)
    assert removed.returncode == 0
    missing = run_cli(["feeds", "remove", "https://news.example/rss"], env)
    assert missing.returncode == 1 and missing.stderr.startswith("error: no feed")


@pytest.mark.parametrize(
    "url", ["ftp://x.example/feed", "javascript:alert(1)", "not a url", "http://"]
)
def test_feeds_add_refuses_bad_urls(env: dict[str, str], url: str) -> None:
    result = run_cli(["feeds", "add", url], env)
    assert result.returncode == 1 and "invalid feed URL" in result.stderr
    assert "Traceback" not in result.stderr


def test_import_toml_and_opml_then_export_round_trips(env: dict[str, str], tmp_path: Path) -> None:
    toml = tmp_path / "feeds.toml"
    toml.write_text(
        'language = "en"\n'
        '[[feeds]]\nurl = "https://a.example/rss"\nregion = "levant"\n'
        '[[feeds]]\nurl = "https://b.example/atom"\nregion = "iran"\nlanguage = "fa"\ninterval = 600\n'
    )
    assert "2 new" in run_cli(["feeds", "import", str(toml)], env).stdout
    opml = tmp_path / "feeds.opml"
    opml.write_text(
        '<?xml version="1.0"?><opml version="2.0"><head/><body>'
        '<outline text="Turkey"><outline text="C" xmlUrl="https://c.example/rss" region="turkey" language="tr"/></outline>'
        '<outline text="A again" xmlUrl="https://a.example/rss"/>'
        "</body></opml>"
    )
    imported = run_cli(["feeds", "import", str(opml)], env)
    assert "1 new, 1 updated" in imported.stdout, imported.stdout + imported.stderr

    exported = run_cli(["feeds", "export"], env)
    assert exported.returncode == 0
    out = tmp_path / "export.opml"
    out.write_text(exported.stdout)
    from aggregator.storage.feeds import parse_opml

    specs = {s.url: s for s in parse_opml(out.read_bytes())}
    assert set(specs) == {
        "https://a.example/rss",
        "https://b.example/atom",
        "https://c.example/rss",
    }
    assert specs["https://b.example/atom"].language == "fa"
    assert specs["https://b.example/atom"].interval == 600
    assert specs["https://c.example/rss"].region == "turkey"


def test_import_reports_bad_files_in_one_line(env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[feeds]]\nurl = "gopher://x.example"\n')
    result = run_cli(["feeds", "import", str(bad)], env)
    assert result.returncode == 1 and "feed #1" in result.stderr and "gopher" in result.stderr
    assert run_cli(["feeds", "import", str(tmp_path / "missing.toml")], env).returncode == 1
    assert "no feeds" in run_cli(["feeds", "list"], env).stdout, "nothing half-imported"


def test_run_once_prints_a_summary(env: dict[str, str], tmp_path: Path) -> None:
    import http.server
    import threading

    corpus = Path(__file__).parent / "corpus" / "raw"
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(corpus))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        for name in sorted(p.name for p in corpus.iterdir())[:3]:
            assert run_cli(["feeds", "add", f"http://127.0.0.1:{port}/{name}"], env).returncode == 0
        run_cli(["feeds", "add", f"http://127.0.0.1:{port}/missing.xml"], env)
        result = run_cli(["run", "--once"], env)
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 0, result.stderr
    assert "feeds ok: 3, failed: 1" in result.stdout
    assert "articles new: " in result.stdout and "missing.xml" in result.stdout
    # Not a terminal: every log line is JSON, and a line about a feed names it.
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    failure = next(line for line in lines if line.get("feed_url", "").endswith("/missing.xml"))
    assert failure["level"] == "warning" and failure["feed_id"] == 4
    assert failure["event"] == "failed (not_found): HTTP 404 File not found"
