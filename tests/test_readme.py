"""The README stays true: its configuration reference is the settings class's, and CI
runs its test command as written."""

from __future__ import annotations

import re
from pathlib import Path

from aggregator.settings import Settings, reference

README = Path(__file__).resolve().parent.parent / "README.md"


def test_configuration_reference_matches_the_settings_class() -> None:
    text = README.read_text(encoding="utf-8")
    block = re.search(r"<!-- settings:start -->\n(.*?)<!-- settings:end -->", text, re.DOTALL)
    assert block, "README lost its settings markers"
    assert block[1] == reference(), "run `aggregator settings` and paste it into the README"
    for name in Settings.model_fields:
        assert f"`AGGREGATOR_{name.upper()}`" in block[1]


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    text = README.read_text(encoding="utf-8")
    commands = re.findall(r"```sh\n(python3 -m venv [^\n]*)\n```", text)
    assert len(commands) == 2, commands  # the demo's, then the tests'
    demo, tests = commands
    assert demo.endswith("&& aggregator demo") and ". .venv/bin/activate" in demo
    # Python 3.11's own pip warns that lxml "does not provide the extra 'html_clean'" (it
    # compares jusText's extra name unnormalized); a current pip does not.
    assert all(c.startswith("python3 -m venv --upgrade-deps .venv ") for c in commands)
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert tests in ci.splitlines()
