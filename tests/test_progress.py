"""Progress: a bar on a terminal, plain lines elsewhere."""

from __future__ import annotations

import io

from aggregator.app.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_gets_one_redrawn_bar() -> None:
    out = Terminal()
    bar = Progress("importing", 4, stream=out)
    for done in range(1, 5):
        bar.update(done)
    bar.close()
    text = out.getvalue()
    assert text.count("\r") == 4 and text.endswith("\n") and text.count("\n") == 1
    assert "[" + "#" * 28 + "] 4/4" in text


def test_plain_stream_gets_lines_without_carriage_returns() -> None:
    out = io.StringIO()
    bar = Progress("importing", 1000, stream=out)
    for done in range(1, 1001):
        bar.update(done)
    bar.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert lines[0] == "importing: 1/1000" and lines[-1] == "importing: 1000/1000"
    assert len(lines) < 10, "throttled, not a line per item"
