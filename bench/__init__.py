"""The benchmark: our daemon and its peers on one local feed farm (``python -m bench``)."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def module_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """An environment in which ``python -m bench.<module>`` works from any folder."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(ROOT), env.get("PYTHONPATH"))))
    return env
