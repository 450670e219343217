"""Evaluation in the real Gymnasium MuJoCo simulator, with D4RL-normalised scores."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from adept_env.sim import make_real_env
from adept_env.tasks import Task, get_task, normalized_score


@dataclass
class EvalResult:
    """Returns of real episodes and their D4RL-normalised scores (0 random, 100 expert)."""

    task: str
    returns: np.ndarray
    lengths: np.ndarray

    @property
    def scores(self) -> np.ndarray:
        return np.asarray(normalized_score(self.task, self.returns))

    @property
    def score_mean(self) -> float:
        return float(self.scores.mean())

    @property
    def score_std(self) -> float:
        return float(self.scores.std())

    @property
    def return_mean(self) -> float:
        return float(self.returns.mean())

    @property
    def return_std(self) -> float:
        return float(self.returns.std())

    def __str__(self) -> str:
        return (f"{self.task}: return {self.return_mean:.1f} ± {self.return_std:.1f}, normalised score "
                f"{self.score_mean:.1f} ± {self.score_std:.1f} over {len(self.returns)} episodes")


def _sb3_mean_action(model: Any):
    """obs -> the deterministic action of an SB3 actor-critic (SAC, TD3): what ``predict`` returns for a flat
    Box observation, without its per-call mode switch and preprocessing (most of an episode's cost)."""
    import torch

    actor = model.actor
    actor.set_training_mode(False)
    low, high = model.action_space.low, model.action_space.high

    def act(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            state = torch.as_tensor(obs, dtype=torch.float32, device=actor.device)[None]
            squashed = actor(state, deterministic=True)[0].cpu().numpy()
        return low + 0.5 * (squashed + 1.0) * (high - low)

    return act


def _actor(policy: Any, deterministic: bool):
    """Return obs (obs_dim,) -> action for an SB3 model, an agent with ``act``, or a callable."""
    if deterministic and hasattr(policy, "actor") and hasattr(policy, "predict"):
        return _sb3_mean_action(policy)
    if hasattr(policy, "predict"):
        return lambda obs: policy.predict(obs, deterministic=deterministic)[0]
    if hasattr(policy, "mean_action"):  # shipped behaviour actors
        return lambda obs: policy.mean_action(obs[None])[0]
    if hasattr(policy, "act"):
        return lambda obs: np.asarray(policy.act(obs[None], deterministic=deterministic))[0]
    if callable(policy):
        return policy
    raise TypeError(f"cannot evaluate {type(policy).__name__}: pass an SB3 model, an agent with act(), or a callable")


def evaluate(policy: Any, task: str | Task, episodes: int = 10, seed: int = 0,
             deterministic: bool = True) -> EvalResult:
    """Run ``episodes`` real episodes (episode i reset with seed + i); return returns and scores."""
    t = get_task(task)
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    act = _actor(policy, deterministic)
    env = make_real_env(t.env_id, max_episode_steps=t.max_episode_steps)
    returns, lengths = np.zeros(episodes), np.zeros(episodes, np.int64)
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        done = False
        while not done:
            action = np.clip(np.asarray(act(obs.astype(np.float32)), np.float32), -1.0, 1.0)
            obs, reward, terminated, truncated, _ = env.step(action)
            returns[i] += reward
            lengths[i] += 1
            done = terminated or truncated
    env.close()
    return EvalResult(t.name, returns, lengths)
