"""Settings of an ADEPT environment; every field can be overridden in ``gym.make(id, **overrides)``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from adept_env.tasks import unknown_name

START_STATE_MODES = ("dataset", "initial")


@dataclass
class EnvConfig:
    """How synthetic episodes are run and how the model follows the agent's policy."""

    horizon: int = 5
    """Steps per synthetic episode before truncation (the paper's branched rollouts: H = 5)."""
    penalty: float = 1.0
    """lambda in r - lambda * u: how strongly model uncertainty is penalised."""
    uncertainty_threshold: float | None = None
    """End the episode (terminated, info['halted']) when u exceeds this; None: never."""
    n_samples: int | None = None
    """K next-state draws per step for the uncertainty; None: the model's default."""
    start_states: str = "dataset"
    """'dataset': episodes start from any dataset observation; 'initial': from episode starts only."""
    profile: str = "default"
    """World-model profile trained on first use: 'default' or 'quick' (small, well under a minute)."""
    model_path: str | None = None
    """Load this saved world model instead of the cached/trained one."""
    device: str = "cpu"
    """Torch device of the world model."""
    refit_every: int | None = None
    """Start an importance-sampled refit after every N policy updates; None: only on request."""
    refit_steps: int | None = None
    """Gradient steps of a refit; None: the model's default refit size."""
    weight_clip: float = 20.0
    """Importance ratios are clipped at this multiple of their median before normalising."""
    dataset_path: str | None = None
    """Read the dataset from this HDF5 file instead of resolving the id's dataset name."""

    def __post_init__(self) -> None:
        if self.horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {self.horizon}")
        if self.penalty < 0:
            raise ValueError(f"penalty must be >= 0, got {self.penalty}")
        if self.n_samples is not None and self.n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {self.n_samples}")
        if self.start_states not in START_STATE_MODES:
            raise unknown_name("start_states mode", self.start_states, START_STATE_MODES)
        if self.profile not in ("default", "quick"):
            raise unknown_name("profile", self.profile, ("default", "quick"))
        if self.refit_every is not None and self.refit_every < 1:
            raise ValueError(f"refit_every must be >= 1, got {self.refit_every}")
        if self.weight_clip <= 1:
            raise ValueError(f"weight_clip must be > 1, got {self.weight_clip}")

    @classmethod
    def from_overrides(cls, overrides: dict[str, Any]) -> EnvConfig:
        """Build a config from keyword overrides; an unknown key names the valid ones."""
        names = [f.name for f in dataclasses.fields(cls)]
        for key in overrides:
            if key not in names:
                raise unknown_name("environment option", key, names)
        return cls(**overrides)
