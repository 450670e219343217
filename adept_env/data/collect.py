"""Collect D4RL-protocol transitions from the real Gymnasium MuJoCo environment."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from tqdm.auto import tqdm

from adept_env.sim import make_real_env
from adept_env.tasks import Task


class ActingPolicy(Protocol):
    """A behaviour policy that can act: returns (action, log-probability of that action)."""

    name: str

    def act(self, observation: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float]: ...

    def checksum(self) -> str: ...


@dataclass
class UniformPolicy:
    """Uniform random actions in the box [low, high] (D4RL's ``random`` recipe)."""

    low: np.ndarray
    high: np.ndarray
    name: str = "uniform"

    def act(self, observation: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float]:
        action = rng.uniform(self.low, self.high).astype(np.float32)
        return action, self.log_prob_constant

    @property
    def log_prob_constant(self) -> float:
        """Log-density of any in-box action: -sum(log(high - low)); -act_dim*log 2 on [-1, 1]."""
        return -float(np.sum(np.log(self.high.astype(np.float64) - self.low.astype(np.float64))))

    def checksum(self) -> str:
        payload = np.concatenate([self.low, self.high]).astype(np.float64).tobytes()
        return hashlib.sha256(b"uniform" + payload).hexdigest()


def uniform_policy(task: Task) -> UniformPolicy:
    """Return the uniform policy over ``task``'s action box."""
    space = make_real_env(task.env_id).action_space
    return UniformPolicy(low=space.low.copy(), high=space.high.copy())


def collect(
    task: Task,
    policy: ActingPolicy,
    steps: int,
    seed: int,
    progress: bool = True,
    desc: str | None = None,
) -> dict[str, np.ndarray]:
    """Run ``policy`` in ``task``'s real environment for ``steps`` transitions.

    Episodes last at most ``task.max_episode_steps``; a time-limit cut is recorded in
    ``timeouts`` and a termination in ``terminals`` (the last transition is also marked as a
    timeout, since collection stops there). Returns D4RL-keyed arrays: observations, actions,
    rewards, terminals, timeouts, next_observations, infos/qpos, infos/qvel (state before the
    step) and infos/action_log_probs. Deterministic given ``seed``.
    """
    if steps <= 0:
        raise ValueError(f"steps must be positive, got {steps}")
    env = make_real_env(task.env_id, max_episode_steps=task.max_episode_steps)
    data = env.unwrapped.data  # type: ignore[attr-defined]
    rng = np.random.default_rng(seed)
    obs_dim, act_dim = task.obs_dim, task.act_dim
    out = {
        "observations": np.empty((steps, obs_dim), np.float32),
        "actions": np.empty((steps, act_dim), np.float32),
        "rewards": np.empty(steps, np.float32),
        "terminals": np.zeros(steps, bool),
        "timeouts": np.zeros(steps, bool),
        "next_observations": np.empty((steps, obs_dim), np.float32),
        "infos/qpos": np.empty((steps, task.nq), np.float32),
        "infos/qvel": np.empty((steps, task.nv), np.float32),
        "infos/action_log_probs": np.empty(steps, np.float32),
    }
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    for i in tqdm(range(steps), desc=desc or f"{task.name} {policy.name}", disable=not progress, mininterval=1.0):
        out["infos/qpos"][i] = data.qpos
        out["infos/qvel"][i] = data.qvel
        action, log_prob = policy.act(obs, rng)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        out["observations"][i] = obs
        out["actions"][i] = action
        out["rewards"][i] = reward
        out["terminals"][i] = terminated
        out["timeouts"][i] = truncated and not terminated
        out["next_observations"][i] = next_obs
        out["infos/action_log_probs"][i] = log_prob
        if terminated or truncated:
            obs, _ = env.reset()
        else:
            obs = next_obs
    out["timeouts"][-1] = not out["terminals"][-1]
    env.close()
    return out


def episode_returns(rewards: np.ndarray, terminals: np.ndarray, timeouts: np.ndarray) -> np.ndarray:
    """Return the undiscounted return of each complete or cut episode, in order."""
    ends = np.flatnonzero(np.asarray(terminals) | np.asarray(timeouts))
    if len(ends) == 0:
        return np.array([float(np.sum(rewards))]) if len(rewards) else np.zeros(0)
    cumulative = np.concatenate([[0.0], np.cumsum(rewards, dtype=np.float64)])
    starts = np.concatenate([[0], ends[:-1] + 1])
    return cumulative[ends + 1] - cumulative[starts]
