"""The ADEPT Gymnasium environments (classes are imported lazily: registration stays light)."""

from __future__ import annotations

import importlib
from typing import Any

from adept_env.envs.registration import env_ids, register_envs

_LAZY = {
    "EnvConfig": "adept_env.envs.config",
    "BatchStep": "adept_env.envs.core",
    "RefitJob": "adept_env.envs.core",
    "WorldModelCore": "adept_env.envs.core",
    "WorldModelVectorEnv": "adept_env.envs.vector",
    "WorldModelEnv": "adept_env.envs.world_model_env",
}

__all__ = ["env_ids", "register_envs", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'adept_env.envs' has no attribute {name!r}")
