"""The zero-install path: commands with no service URLs run on embedded servers."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from aggregator.app.embedded import EmbeddedServices
from tests import processes
from tests.feedserver import FeedServer
from tests.groundtruth import OWN_CORPUS, Corpus

pytestmark = pytest.mark.slow


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Under /tmp, not pytest's private folder: as root the servers run as user "aggregator".
    path = Path(tempfile.mkdtemp(prefix="aggregator-embedded-"))
    path.chmod(0o755)  # like a data directory made by mkdir: the demo's lives inside it
    yield path
    for leftover in (path, path / "demo"):  # in case a failed test left servers running
        if (leftover / "postgres" / "postmaster.pid").exists():
            with EmbeddedServices(leftover):
                pass
    shutil.rmtree(path, ignore_errors=True)


def no_service_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGGREGATOR_")}
    return env | {"AGGREGATOR_DATA_DIR": str(data_dir), "AGGREGATOR_PARSE_PROCESSES": "1"} | extra


cli = processes.run_cli


async def count_articles(data_dir: Path) -> int:
    with EmbeddedServices(data_dir) as embedded:
        conn = await asyncpg.connect(embedded.database_url)
        try:
            return int(await conn.fetchval("SELECT count(*) FROM articles"))
        finally:
            await conn.close()


async def test_run_once_without_urls_uses_embedded_servers_and_keeps_data(
    data_dir: Path, feed_server: FeedServer
) -> None:
    corpus = Corpus.load(OWN_CORPUS)
    urls = corpus.serve(feed_server)
    env = no_service_env(data_dir, AGGREGATOR_ALLOW_PRIVATE_NETWORKS="true")
    # One command adds the four feeds (each command starts and stops the servers: the
    # suite's time goes to that, and run --once below is the second and third start).
    listing = data_dir / "feeds.toml"
    listing.write_text(
        "".join(f'[[feeds]]\nurl = "{url}"\n' for url in list(urls.values())[:4]),
        encoding="utf-8",
    )
    added = await cli(["feeds", "import", str(listing)], env)
    assert added.returncode == 0, added.stderr
    assert "4 new" in added.stdout
    assert "using embedded PostgreSQL and Redis" in added.stderr

    first = await cli(["run", "--once"], env)
    assert first.returncode == 0, first.stderr
    assert "feeds ok: 4, failed: 0" in first.stdout
    stored = await count_articles(data_dir)
    assert stored > 0
    assert f"articles new: {stored}," in first.stdout

    second = await cli(["run", "--once"], env)  # a new process: same data, nothing new
    assert second.returncode == 0, second.stderr
    assert "articles new: 0," in second.stdout
    status = json.loads((await cli(["status", "--json"], env)).stdout)
    assert [f["state"] for f in status["feeds"]] == ["ok"] * 4
    assert await count_articles(data_dir) == stored
    # Every command stopped the servers it started: nothing is left listening.
    assert not (data_dir / "postgres" / "postmaster.pid").exists()


async def test_private_parent_folder_is_refused_not_opened(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root runs the servers as another user")
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    mode_before = private.stat().st_mode
    result = await cli(["status"], no_service_env(private / "data"))
    assert result.returncode == 1
    assert "cannot enter" in result.stderr and result.stderr.count("\n") == 1
    assert private.stat().st_mode == mode_before


async def test_demo_prints_what_it_stored(data_dir: Path) -> None:
    result = await cli(["demo"], no_service_env(data_dir))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "feeds polled: 7 ok, 0 failed" in out
    assert "ingesting: 7/7 feeds polled, 39 articles stored" in out, "progress while ingesting"
    # The bundled samples: 46 items, 39 distinct stories (aggregator/samples/README.md).
    assert "items seen: 46; stored as 39 articles (7 duplicates merged across outlets)" in out

    with EmbeddedServices(data_dir / "demo") as embedded:
        conn = await asyncpg.connect(embedded.database_url)
        try:
            articles = await conn.fetchval("SELECT count(*) FROM articles")
            sightings = await conn.fetchval("SELECT count(*) FROM article_sources")
            per_feed = await conn.fetch(
                "SELECT f.title, count(*) AS items FROM feeds f "
                "JOIN article_sources s ON s.feed_id = f.id GROUP BY f.id"
            )
            languages = {
                r["language"] for r in await conn.fetch("SELECT DISTINCT language FROM articles")
            }
        finally:
            await conn.close()
    assert (articles, sightings) == (39, 46)
    assert {"en", "ar", "fa", "tr"} <= languages
    for row in per_feed:
        line = next(line for line in out.splitlines() if line.startswith(row["title"][:36]))
        assert line.split()[-2] == str(row["items"]), line

    # A second demo, run as the README says (.venv/bin/aggregator, not on the PATH), starts
    # fresh and prints the same, and its hints work when typed as printed.
    script = Path(sys.executable).parent / "aggregator"
    env = no_service_env(data_dir) | {"PATH": "/usr/bin:/bin"}
    again = await processes.run([str(script), "demo"], env)
    assert "stored as 39 articles" in again.stdout, again.stderr
    hints = [line.strip() for line in again.stdout.splitlines() if str(script) in line]
    assert hints and all(h.startswith(f"{script} ") for h in hints), again.stdout
    export = next(line.strip() for line in again.stdout.splitlines() if "export " in line)
    listed = await processes.run(["bash", "-c", f"{export}; {hints[-2]}"], env)
    assert listed.returncode == 0, listed.stderr
    assert len(listed.stdout.splitlines()) == 1 + 7, listed.stdout  # a header and the 7 feeds
    shown = await cli(
        ["psql", "-Atc", "SELECT count(*) FROM articles"], no_service_env(data_dir / "demo")
    )
    assert shown.stdout.strip() == "39", shown.stderr
