"""Where adept-env keeps its generated datasets, models and runs."""

from __future__ import annotations

import os
from pathlib import Path


def adept_home() -> Path:
    """Return ``$ADEPT_HOME`` (default ``~/.cache/adept-env``), created if missing."""
    root = Path(os.environ.get("ADEPT_HOME") or Path.home() / ".cache" / "adept-env").expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def datasets_dir() -> Path:
    """Return the folder of generated datasets under ``adept_home()``."""
    path = adept_home() / "datasets"
    path.mkdir(parents=True, exist_ok=True)
    return path
