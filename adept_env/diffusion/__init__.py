"""The diffusion world model: dynamics, reward, uncertainty, weighted refits, fast sampling."""

from adept_env.diffusion.config import ConfigMismatchError, WorldModelConfig
from adept_env.diffusion.world_model import FitReport, Prediction, WorldModel, WorldModelFileError

__all__ = ["ConfigMismatchError", "FitReport", "Prediction", "WorldModel", "WorldModelConfig", "WorldModelFileError"]
