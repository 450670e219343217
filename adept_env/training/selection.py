"""Offline checkpoint selection: score a policy by its return in the world model, not the real env.

Scores of model-trained policies swing from one checkpoint to the next (BENCHMARKS.md, "Why the SAC
runs swing"), and an offline user cannot ask the real simulator which checkpoint is good. The
world model can give an estimate: the policy's deterministic episodes in the model from dataset
episode starts, with the uncertainty-penalised reward. The training loop records it at every
evaluation and keeps the checkpoint that scored best (``model_return`` in the curve rows).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from adept_env.data.dataset import OfflineDataset
from adept_env.envs.config import EnvConfig


def model_return(act: Callable[[np.ndarray], np.ndarray], model: Any, dataset: OfflineDataset, episodes: int = 20,
                 horizon: int = 1000, penalty: float = EnvConfig.penalty, seed: int = 0, *,
                 uncertainty_threshold: float | None = None, n_samples: int | None = None,
                 step_penalty: Callable[[np.ndarray], np.ndarray] | None = None) -> float:
    """Mean return of ``act`` (a batch of observations -> actions in [-1, 1]) in ``model``.

    ``episodes`` episodes start from dataset episode starts (the same ones for a given seed) and
    run until the task's termination function fires, the uncertainty passes ``uncertainty_threshold``
    (None: never) or ``horizon`` steps; the reward of each step is ``r - penalty * uncertainty``, minus
    ``step_penalty(draws)`` when given: draws (B, K, obs_dim), the model's K next-state draws of the B
    pairs stepped (``n_samples`` K, at least 2; None: the model's default), -> B penalties (e.g. a run's
    value penalty). The model's draws use fixed seeds, so two policies are compared on the same noise.
    """
    if episodes < 1 or horizon < 1:
        raise ValueError(f"episodes and horizon must be >= 1, got {episodes} and {horizon}")
    from adept_env.envs.core import WorldModelCore
    from adept_env.envs.episodes import EpisodeBatch

    config = EnvConfig(horizon=horizon, penalty=penalty, start_states="initial",
                       uncertainty_threshold=uncertainty_threshold, n_samples=n_samples)
    core = WorldModelCore(dataset, model, config)
    batch, rng = EpisodeBatch(core, episodes), np.random.default_rng(seed)
    obs = batch.reset(rng)
    alive = np.ones(episodes, bool)
    total = np.zeros(episodes)
    for t in range(horizon):
        idx = np.flatnonzero(alive)
        actions = np.zeros((episodes, dataset.task.act_dim), np.float32)
        actions[idx] = np.asarray(act(obs[idx]), np.float32).reshape(len(idx), -1)
        out = batch.step(actions, rng, mask=alive, seed=seed * 1_000_003 + t)
        rewards = out.rewards[idx].astype(np.float64)
        if step_penalty is not None:
            if out.next_samples is None or out.next_samples.shape[0] < 2:
                shape = None if out.next_samples is None else out.next_samples.shape
                raise ValueError(f"step_penalty needs the model's next-state draws, at least 2 per step; got {shape}")
            draws = out.next_samples[:, idx].transpose(1, 0, 2)
            rewards -= np.asarray(step_penalty(draws), np.float64).reshape(len(idx))
        total[idx] += rewards
        obs = out.observations
        alive &= ~out.terminated
        if not alive.any():
            break
    return float(total.mean())


def best_row(curve: list[dict[str, float]]) -> dict[str, float] | None:
    """The curve row with the highest ``model_return`` (the first of equals), or None if none has one."""
    rows = [row for row in curve if "model_return" in row]
    return max(rows, key=lambda row: row["model_return"]) if rows else None


def is_new_best(curve: list[dict[str, float]], value: float) -> bool:
    """True if ``value`` beats every ``model_return`` already in ``curve`` (the checkpoint to keep)."""
    best = best_row(curve)
    return best is None or value > best["model_return"]
