"""``WorldModelVectorEnv``: N synthetic episodes stepped in one model call (gym.make_vec)."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from adept_env.data.dataset import OfflineDataset
from adept_env.envs.core import FollowsAgent, WorldModelCore
from adept_env.envs.episodes import EpisodeBatch, build_core
from adept_env.envs.world_model_env import action_space, observation_space


class WorldModelVectorEnv(FollowsAgent, VectorEnv):
    """A native Gymnasium vector env over one world model, with next-step autoreset.

    As in Gymnasium's own vector envs, the step after an episode ends resets that sub-env:
    it returns the new start observation with reward 0 and both flags False. Vector ``info``
    holds arrays ``raw_reward``, ``uncertainty``, ``halted``, ``model_version`` (with ``_``-masks).
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(self, dataset: str | OfflineDataset = "halfcheetah-random", num_envs: int = 1, *,
                 core: WorldModelCore | None = None, progress: bool = True, **overrides: Any) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.core = core if core is not None else build_core(dataset, progress=progress, **overrides)
        task = self.core.task
        self.num_envs = num_envs
        self.single_observation_space = observation_space(task.obs_dim)
        self.single_action_space = action_space(task.act_dim)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._episodes = EpisodeBatch(self.core, num_envs)

    def reset(self, *, seed: int | list[int] | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed[0] if isinstance(seed, list) else seed)  # seeds self.np_random
        return self._episodes.reset(self.np_random), {}

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        out = self._episodes.step(actions, self.np_random, autoreset=AutoresetMode.NEXT_STEP)
        return out.observations, out.rewards, out.terminated, out.truncated, out.vector_info()
