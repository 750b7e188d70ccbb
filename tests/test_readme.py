"""The README stays true: its configuration reference is the settings class's."""

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
