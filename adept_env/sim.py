"""Creating real MuJoCo environments, with MuJoCo's known-harmless warnings filtered."""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym
import mujoco

_HARMLESS = ("settotalmass",)  # Gymnasium's v5 XML files use an attribute MuJoCo 4 deprecates


def _forward_warning(message: str) -> None:
    if not any(text in message for text in _HARMLESS):
        warnings.warn(f"MuJoCo: {message}", RuntimeWarning, stacklevel=2)


def make_real_env(env_id: str, **kwargs: Any) -> gym.Env:
    """Return ``gym.make(env_id, **kwargs)`` for a MuJoCo task.

    MuJoCo's own warnings become Python RuntimeWarnings (instead of lines on stdout and a
    MUJOCO_LOG.TXT in the working directory), except the known-harmless deprecations.
    """
    mujoco.set_mju_user_warning(_forward_warning)
    return gym.make(env_id, **kwargs)
