"""``WorldModelEnv``: a Gymnasium environment whose dynamics are the learned world model."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from adept_env.data.dataset import OfflineDataset
from adept_env.envs.core import FollowsAgent, WorldModelCore
from adept_env.envs.episodes import EpisodeBatch, build_core


def observation_space(obs_dim: int) -> gym.spaces.Box:
    """Unbounded float32 observations, as MuJoCo's locomotion tasks declare them."""
    return gym.spaces.Box(-np.inf, np.inf, shape=(obs_dim,), dtype=np.float32)


def action_space(act_dim: int) -> gym.spaces.Box:
    """Actions in [-1, 1]^act_dim, the locomotion tasks' control range."""
    return gym.spaces.Box(-1.0, 1.0, shape=(act_dim,), dtype=np.float32)


class WorldModelEnv(FollowsAgent, gym.Env):
    """Short synthetic episodes from dataset states through the world model.

    Reward is r - penalty * u (u: the model's uncertainty, ``WorldModelConfig.uncertainty``); an
    episode is truncated at ``horizon`` steps and terminated by the task's termination function or when u passes
    ``uncertainty_threshold``. ``info`` carries ``raw_reward``, ``uncertainty``, ``halted``,
    ``model_version`` and ``next_samples``: the model's K draws of the next observation (K, obs_dim),
    whose mean is the observation returned (K: the ``n_samples`` option).
    """

    metadata = {"render_modes": []}

    def __init__(self, dataset: str | OfflineDataset = "halfcheetah-random", *, core: WorldModelCore | None = None,
                 progress: bool = True, **overrides: Any) -> None:
        self.core = core if core is not None else build_core(dataset, progress=progress, **overrides)
        task = self.core.task
        self.observation_space = observation_space(task.obs_dim)
        self.action_space = action_space(task.act_dim)
        self._episodes = EpisodeBatch(self.core, 1)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        obs = self._episodes.reset(self.np_random)[0]
        return obs, {"model_version": self.core.model_version}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        out = self._episodes.step(action, self.np_random)
        return (out.observations[0], float(out.rewards[0]), bool(out.terminated[0]), bool(out.truncated[0]),
                out.info(0))
