"""The ground-truth oracle: replay any (observation, action) batch in the real simulator.

MuJoCo locomotion dynamics do not depend on the x position that observations leave out, so
setting qpos = (0, obs[:nq-1]) and qvel = obs[nq-1:] and stepping the real environment gives the
true next observation and reward. This measures a world model's error on any state-action
distribution, including an evolving policy's.
"""

from __future__ import annotations

from typing import NamedTuple

import mujoco
import numpy as np

from adept_env.sim import make_real_env
from adept_env.tasks import Task, get_task


class OracleStep(NamedTuple):
    """The simulator's answer for a batch: arrays with one row per (observation, action)."""

    next_observations: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    recoverable: np.ndarray
    """False where a velocity in the observation sat at Gymnasium's clip bound (Hopper, Walker2d
    clip qvel to +-10): the true state, hence the replay, is then uncertain."""


class GroundTruth:
    """A real environment kept open for repeated batched replays of one task."""

    def __init__(self, task: str | Task) -> None:
        self.task = get_task(task)
        self.env = make_real_env(self.task.env_id).unwrapped
        self.env.reset(seed=0)
        self._model = self.env.model  # type: ignore[attr-defined]
        self._data = self.env.data  # type: ignore[attr-defined]

    def step(self, observations: np.ndarray, actions: np.ndarray) -> OracleStep:
        """Replay each (observation, action) from a freshly reset simulator state."""
        obs = np.atleast_2d(np.asarray(observations, np.float64))
        act = np.atleast_2d(np.asarray(actions, np.float64))
        task = self.task
        if obs.shape[1] != task.obs_dim or act.shape[1] != task.act_dim or len(obs) != len(act):
            raise ValueError(
                f"{task.name} needs observations (N, {task.obs_dim}) and actions (N, {task.act_dim}); "
                f"got {obs.shape} and {act.shape}"
            )
        qpos, qvel = task.split_observation(obs)
        n = len(obs)
        next_obs = np.empty((n, task.obs_dim), np.float64)
        rewards = np.empty(n, np.float64)
        terminated = np.empty(n, bool)
        for i in range(n):
            mujoco.mj_resetData(self._model, self._data)
            self.env.set_state(qpos[i], qvel[i])  # type: ignore[attr-defined]
            next_obs[i], rewards[i], terminated[i], _, _ = self.env.step(act[i])
        return OracleStep(next_obs, rewards, terminated, ~task.observation_clipped(obs))

    def close(self) -> None:
        self.env.close()


def true_step(task: str | Task, observations: np.ndarray, actions: np.ndarray) -> OracleStep:
    """Return the real simulator's next observations, rewards and termination for a batch.

    Also returns ``recoverable``: False for pairs whose observation has a clipped velocity,
    where the replay may differ from what the environment really did.
    """
    oracle = GroundTruth(task)
    try:
        return oracle.step(observations, actions)
    finally:
        oracle.close()
