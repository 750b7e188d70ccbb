"""A new user's first ten minutes: bad settings, half-set services, feeds that can never be
fetched, and tables that stay aligned with Arabic and Persian titles."""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aggregator.app import columns, demo, status
from aggregator.app.embedded import EmbeddedServices
from aggregator.errors import ConfigError, InvalidFeedURLError
from aggregator.settings import Settings, load_settings
from aggregator.storage.feeds import Feed, FeedSpec
from tests import processes
from tests.feedserver import FeedServer

cli = processes.run_cli


@pytest.fixture
def listener() -> Iterator[tuple[int, socket.socket]]:
    """A TCP port that accepts connections and remembers them (nothing should come)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.setblocking(False)
    yield server.getsockname()[1], server
    server.close()


def accepted(server: socket.socket) -> int:
    count = 0
    while True:
        try:
            conn, _ = server.accept()
        except BlockingIOError:
            return count
        conn.close()
        count += 1


BAD_URLS = [
    ("AGGREGATOR_REDIS_URL", "http://x", "not a Redis URL"),
    ("AGGREGATOR_REDIS_URL", "redis://127.0.0.1:6379/99", "database '99'"),
    ("AGGREGATOR_REDIS_URL", "redis://127.0.0.1:port/0", "port 'port'"),
    ("AGGREGATOR_REDIS_URL", "unix:///run/redis.sock?db=x", "database 'x'"),
    ("AGGREGATOR_DATABASE_URL", "mysql://u@127.0.0.1/x", "not a PostgreSQL URL"),
    ("AGGREGATOR_DATABASE_URL", "postgresql://u:pw@127.0.0.1:54x2/x", "port '54x2'"),
    ("AGGREGATOR_DATABASE_URL", "postgresql://u@my host:5432/x", "invalid host 'my host'"),
]


@pytest.mark.parametrize(("name", "value", "says"), BAD_URLS)
def test_bad_service_url_is_a_setting_error(name: str, value: str, says: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(_env_file=None, **{name.removeprefix("AGGREGATOR_").lower(): value})
    message = str(raised.value)
    assert message.startswith(f"invalid setting: {name}: ") and says in message, message
    assert "pw" not in message, "a password is never echoed"


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/15", "rediss://u:p@cache.example:6380/0", "unix:///r.sock?db=3"]
)
def test_good_redis_urls_pass(url: str) -> None:
    assert load_settings(_env_file=None, redis_url=url).redis_url == url


@pytest.mark.parametrize(("name", "value", "says"), [BAD_URLS[0], BAD_URLS[5]])
async def test_the_command_stops_with_exit_2_before_anything_connects(
    listener: tuple[int, socket.socket], name: str, value: str, says: str
) -> None:
    port, server = listener
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGGREGATOR_")}
    env |= {  # the other service "is" our listener: a connection to it would show
        "AGGREGATOR_DATABASE_URL": f"postgresql://u@127.0.0.1:{port}/x",
        "AGGREGATOR_REDIS_URL": f"redis://127.0.0.1:{port}/0",
        name: value,
    }
    result = await cli(["status"], env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: invalid setting: {name}: "), lines
    assert says in lines[0]
    assert accepted(server) == 0, "nothing connected before the setting was refused"


async def test_standalone_worker_refuses_a_bad_url_with_exit_2() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGGREGATOR_")}
    env["AGGREGATOR_REDIS_URL"] = "redis://127.0.0.1:6379/99"
    result = await processes.run([sys.executable, "-m", "arq", "workers.poll.WorkerSettings"], env)
    assert result.returncode == 2
    assert "AGGREGATOR_REDIS_URL" in result.stderr and "Traceback" not in result.stderr


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Under /tmp, not pytest's private folder: as root the servers run as user "aggregator".
    path = Path(tempfile.mkdtemp(prefix="aggregator-first-run-"))
    yield path
    if (path / "run" / "redis.sock").exists():  # a failed test left the server running
        with EmbeddedServices(path, postgres=False):
            pass
    shutil.rmtree(path, ignore_errors=True)


async def test_only_the_missing_service_is_embedded(
    settings: Settings, clean_services: None, data_dir: Path
) -> None:
    env = processes.service_env(settings, AGGREGATOR_DATA_DIR=str(data_dir))
    del env["AGGREGATOR_REDIS_URL"]
    result = await cli(["subscribers", "list"], env)  # a command that needs both services
    assert result.returncode == 0, result.stderr
    said = [line for line in result.stderr.splitlines() if "using embedded" in line]
    assert len(said) == 1 and "using embedded Redis in" in said[0], result.stderr
    assert "PostgreSQL" not in said[0]
    assert not (data_dir / "postgres").exists(), "no embedded PostgreSQL was set up"
    assert not (data_dir / "run" / "redis.sock").exists(), "the embedded Redis was stopped"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://exa mple.com/rss", "contains a space"),
        ("https://news..example/rss", "empty label"),
        ("https://.news.example/rss", "empty label"),
        ("http://news.example:99999/rss", "Port out of range"),
        ("http://news.example:0/rss", "port 0"),
        ("http://news<example.com/rss", "no host name can hold"),
        ("http://news.example/\x00rss", "control characters"),
        ("http://" + "a" * 64 + ".example/rss", "longer than 63"),
    ],
)
def test_urls_that_can_never_be_fetched_are_refused(url: str, reason: str) -> None:
    with pytest.raises(InvalidFeedURLError, match=reason):
        FeedSpec(url=url)


@pytest.mark.parametrize(
    "url",
    [
        "http://news.example/rss?q=a b",  # a space in the path is sent encoded
        "http://ex_ample.com/rss",
        "http://خبر.example/rss",  # an IDN host
        "http://[::1]:8080/rss",
        "http://NEWS.example./rss",
    ],
)
def test_urls_that_may_work_are_accepted(url: str) -> None:
    assert FeedSpec(url=url).url == url


async def test_feeds_add_refuses_it_with_one_line(settings: Settings, clean_services: None) -> None:
    env = processes.service_env(settings)
    result = await cli(["feeds", "add", "http://exa mple.com/rss"], env)
    assert result.returncode == 1, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "invalid feed URL" in lines[0] and "contains a space" in lines[0]
    assert "added" not in result.stdout


async def test_feeds_add_keeps_a_feed_that_fails_today_with_a_warning(
    settings: Settings, clean_services: None, feed_server: FeedServer
) -> None:
    env = processes.service_env(settings)
    missing = feed_server.url("not-there.xml")  # a 404 today; it may exist tomorrow
    result = await cli(["feeds", "add", missing], env)
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith(f"warning: could not fetch {missing}")
    assert f"added feed 1: {missing}" in result.stdout
    listed = await cli(["feeds", "list"], env)
    assert listed.stdout.splitlines()[1].split()[1] == "new", listed.stdout


# --- tables a terminal shows ----------------------------------------------------------------

NOW = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)


def feed(id_: int, title: str | None, **changes: object) -> Feed:
    base = Feed(
        id=id_,
        url=f"https://news{id_}.example/rss",
        title=title,
        site_url=None,
        region="gulf",
        language="ar",
        etag=None,
        last_modified=None,
        last_body_hash=None,
        poll_interval=None,
        next_poll_at=NOW,
        last_polled_at=NOW - timedelta(minutes=5),
        last_success_at=NOW - timedelta(minutes=5),
        error_count=0,
        last_error=None,
        last_error_kind=None,
        disabled=False,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


TITLES = [
    "Gulf Daily",
    "الشَّرْق الأَوْسَط",  # Arabic with harakat: 18 code points, 12 cells
    "خبرگزاری\u200cها",  # Persian with a ZWNJ
    "اخبار ایران و جهان، آخرین خبرهای سیاسی و اقتصادی امروز",  # longer than the column
    "東京新聞",  # wide characters: two cells each
]


def test_feeds_list_has_a_header_and_aligns_by_display_width() -> None:
    lines = status.feed_lines([feed(i, t) for i, t in enumerate(TITLES, 1)])
    assert lines[0].split()[:5] == ["id", "state", "region", "lang", "title"]
    # The URL column starts at the same cell on every line, whatever the title's script.
    starts = {columns.width(line[: line.index("https://")]) for line in lines[1:]}
    header_url = columns.width(lines[0][: lines[0].index("url")])
    assert starts == {header_url}, lines
    long_title = next(line for line in lines if "اخبار" in line)
    assert columns.ELLIPSIS in long_title, "a long title is cut, with a sign of it"


def test_status_gives_never_polled_feeds_their_own_state() -> None:
    never = feed(1, "Never polled", last_polled_at=None, last_success_at=None)
    polled = feed(2, "Polled")
    assert (never.state, polled.state) == ("new", "ok")
    assert feed(3, None, last_error="boom", last_error_kind="network").state == "failing"
    assert feed(4, None, disabled=True, last_error="gone").state == "disabled"
    rows = [
        status.FeedHealth(
            id=f.id,
            url=f.url,
            title=t,
            region=r,
            state=f.state,
            last_success_at=f.last_success_at,
            last_error_kind=None,
            last_error=None,
            error_count=0,
            disabled_reason=None,
            last_warning=None,
            next_poll_at=NOW,
            articles_24h=0,
        )
        for f, t, r in [(never, TITLES[1], "خلیج فارس"), (polled, TITLES[2], "gulf")]
    ]
    lines = status.render(rows, [], now=NOW)
    assert lines[1].split()[1] == "new" and lines[2].split()[1] == "ok"
    # The region column holds Persian text and the columns after it still line up.
    assert len({columns.width(line[: line.index("due")]) for line in lines[1:3]}) == 1, lines


def test_width_counts_cells() -> None:
    assert columns.width("الشَّرْق") == 5  # five letters (ا ل ش ر ق); the three marks take none
    assert columns.width("a\u200cb") == 2
    assert columns.width("東京") == 4
    assert columns.cut("東京新聞", 5) == "東京…"
    assert columns.left("ab", 4) == "ab  " and columns.right("ab", 4) == "  ab"
    marked = columns.cut("شَّرْقِيّة", 3)
    assert columns.width(marked) <= 3 and marked.startswith("شَّ"), "marks stay on their letter"


def test_demo_hints_name_the_command_as_it_was_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "aggregator"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert demo.invoked_as(".venv/bin/aggregator") == ".venv/bin/aggregator"
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    assert demo.invoked_as(str(script)) == "aggregator"
    assert demo.invoked_as("/x/aggregator/__main__.py").endswith(" -m aggregator")
