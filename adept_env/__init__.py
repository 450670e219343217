"""adept-env: offline RL against an adaptive diffusion world model, as Gymnasium environments.

``import adept_env`` registers the ``ADEPT-{halfcheetah,hopper,walker2d}-{dataset}`` ids.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

from adept_env.envs.registration import env_ids, register_envs  # noqa: E402
from adept_env.tasks import TASKS, get_task, normalized_score  # noqa: E402

register_envs()

_SUBMODULES = ("sb3", "data", "envs", "diffusion", "importance", "tasks", "agents", "training")

__all__ = ["TASKS", "__version__", "env_ids", "get_task", "normalized_score", "register_envs"]


def __getattr__(name: str) -> Any:
    if name == "evaluate":
        from adept_env.training.evaluation import evaluate

        return evaluate
    if name in _SUBMODULES:
        return importlib.import_module(f"adept_env.{name}")
    raise AttributeError(f"module 'adept_env' has no attribute {name!r}")
