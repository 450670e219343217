"""The diffusion world model: dynamics, reward, uncertainty, weighted refits, fast sampling.

The model classes load lazily, so ``adept_env.diffusion.config`` stays importable without torch.
"""

from typing import Any

from adept_env.diffusion.config import ConfigMismatchError, WorldModelConfig

__all__ = ["ConfigMismatchError", "FitReport", "Prediction", "WorldModel", "WorldModelConfig", "WorldModelFileError"]


def __getattr__(name: str) -> Any:
    if name in ("FitReport", "Prediction", "WorldModel", "WorldModelFileError"):
        from adept_env.diffusion import world_model

        return getattr(world_model, name)
    raise AttributeError(f"module 'adept_env.diffusion' has no attribute {name!r}")
