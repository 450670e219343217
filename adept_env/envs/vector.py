"""``WorldModelVectorEnv``: N synthetic episodes stepped in one model call (gym.make_vec)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from adept_env.data.dataset import OfflineDataset
from adept_env.envs.core import RefitJob, WorldModelCore
from adept_env.envs.episodes import EpisodeBatch, build_core
from adept_env.envs.world_model_env import action_space, observation_space


class WorldModelVectorEnv(VectorEnv):
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
        self._autoreset = np.zeros(num_envs, bool)
        self._started = False

    def reset(self, *, seed: int | list[int] | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        if isinstance(seed, list):
            seed = seed[0]
        if seed is not None:
            self._np_random, self._np_random_seed = gym.utils.seeding.np_random(seed)
        obs = self._episodes.reset(self.np_random)
        self._autoreset[:] = False
        self._started = True
        return obs, {}

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if not self._started:
            raise gym.error.ResetNeeded("call reset() before step()")
        resetting = self._autoreset.copy()
        active = ~resetting
        if resetting.any():
            self._episodes.reset(self.np_random, mask=resetting)
        if active.any():
            out = self._episodes.step(actions, self.np_random, mask=active)
            obs, rewards, terminated, truncated = out.observations, out.rewards, out.terminated, out.truncated
            raw = np.zeros(self.num_envs, np.float32)
            unc = np.zeros(self.num_envs, np.float32)
            halted = np.zeros(self.num_envs, bool)
            raw[active], unc[active], halted[active] = out.batch.raw_rewards, out.batch.uncertainty, out.batch.halted
            version = out.batch.model_version
        else:
            obs = self._episodes.observations.copy()
            rewards = np.zeros(self.num_envs, np.float32)
            terminated = np.zeros(self.num_envs, bool)
            truncated = np.zeros(self.num_envs, bool)
            raw, unc, halted = rewards.copy(), rewards.copy(), terminated.copy()
            version = self.core.model_version
        self._autoreset = terminated | truncated
        info = {
            "raw_reward": raw,
            "_raw_reward": active.copy(),
            "uncertainty": unc,
            "_uncertainty": active.copy(),
            "halted": halted,
            "_halted": active.copy(),
            "model_version": np.full(self.num_envs, version, np.int64),
            "_model_version": np.ones(self.num_envs, bool),
        }
        return obs, rewards, terminated, truncated, info

    @property
    def model_version(self) -> int:
        return self.core.model_version

    def update_policy(self, policy: Any) -> int:
        """Give the env the agent's current policy (see WorldModelCore.update_policy)."""
        return self.core.update_policy(policy)

    def refit(self, blocking: bool = False, steps: int | None = None, weighted: bool = True) -> RefitJob:
        """Importance-sampled refit towards the latest policy (see WorldModelCore.refit)."""
        return self.core.refit(blocking=blocking, steps=steps, weighted=weighted)
