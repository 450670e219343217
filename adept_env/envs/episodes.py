"""N synthetic episodes advanced together: current observations, step counts, horizon."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from adept_env.data.dataset import OfflineDataset, load_dataset
from adept_env.envs.config import EnvConfig
from adept_env.envs.core import BatchStep, WorldModelCore


@dataclass
class EpisodeStep:
    """What N episodes saw in one step (before any automatic reset)."""

    observations: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    batch: BatchStep


class EpisodeBatch:
    """The state of ``n`` episodes stepped through one core with a single model call."""

    def __init__(self, core: WorldModelCore, n: int) -> None:
        self.core = core
        self.n = n
        self.observations = np.zeros((n, core.task.obs_dim), np.float32)
        self.steps = np.zeros(n, np.int64)

    def reset(self, rng: np.random.Generator, mask: np.ndarray | None = None) -> np.ndarray:
        """Start new episodes (all, or where ``mask``) from dataset states; return all observations."""
        index = np.arange(self.n) if mask is None else np.flatnonzero(mask)
        if len(index):
            self.observations[index] = self.core.start_states(len(index), rng)
            self.steps[index] = 0
        return self.observations.copy()

    def step(self, actions: np.ndarray, rng: np.random.Generator, mask: np.ndarray | None = None) -> EpisodeStep:
        """Step the episodes (all, or where ``mask``) with ``actions`` of shape (n, act_dim)."""
        actions = check_actions(actions, self.n, self.core.task.act_dim)
        index = np.arange(self.n) if mask is None else np.flatnonzero(mask)
        seed = int(rng.integers(0, 2**31 - 1))
        batch = self.core.step(self.observations[index], actions[index], seed=seed)
        self.observations[index] = batch.next_observations
        self.steps[index] += 1
        rewards = np.zeros(self.n, np.float32)
        terminated = np.zeros(self.n, bool)
        truncated = np.zeros(self.n, bool)
        rewards[index] = batch.rewards
        terminated[index] = batch.terminated
        truncated[index] = (self.steps[index] >= self.core.config.horizon) & ~batch.terminated
        return EpisodeStep(self.observations.copy(), rewards, terminated, truncated, batch)


def check_actions(actions: Any, n: int, act_dim: int) -> np.ndarray:
    """Return ``actions`` as float32 (n, act_dim) clipped to [-1, 1]; reject wrong shapes and NaN/inf."""
    array = np.asarray(actions, dtype=np.float32)
    if array.shape == (act_dim,) and n == 1:
        array = array[None]
    if array.shape != (n, act_dim):
        raise ValueError(f"actions must have shape ({n}, {act_dim}) (or ({act_dim},) for one env); got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError("actions contain NaN or inf")
    return np.clip(array, -1.0, 1.0)


def build_core(dataset: str | OfflineDataset, progress: bool = True, **overrides: Any) -> WorldModelCore:
    """Build a core for ``dataset`` (a name, a path, or an OfflineDataset) with config overrides.

    The world model comes from ``model_path``, the cache, or is trained now (progress bar).
    """
    from adept_env.envs.model_store import load_or_train

    config = EnvConfig.from_overrides(overrides)
    if not isinstance(dataset, OfflineDataset):
        dataset = load_dataset(config.dataset_path or dataset, progress=progress)
    model = load_or_train(dataset, config.profile, config.model_path, progress=progress)
    if hasattr(model, "to"):
        model.to(config.device)
    return WorldModelCore(dataset, model, config)
