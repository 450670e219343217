"""Whether to show progress bars and chatty logs: not in CI (``CI`` set to 1, true or yes)."""

from __future__ import annotations

import os

CI_VALUES = ("1", "true", "yes")
"""Values of the ``CI`` environment variable (any case) that mean "running in CI"."""


def in_ci() -> bool:
    """True when the ``CI`` environment variable says this runs in continuous integration."""
    return os.environ.get("CI", "").strip().lower() in CI_VALUES


def show_progress(progress: bool) -> bool:
    """Whether to draw a progress bar the caller asked for (``progress``): never in CI."""
    return progress and not in_ci()
