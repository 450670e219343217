"""Check a world model against the real simulator: the figures ``adept-env model eval`` reports.

* held-out: the dataset rows the model's fit held out for early stopping (never a gradient step's data);
  one-step normalised next-state MSE, reward MSE and the rank correlation of the model's uncertainty with
  its own state error; the 5-step open-loop rollout error from held-out rows along the dataset's episodes;
* other policy: the same on pairs another policy collects in the real MuJoCo env (a shipped actor, or
  uniform actions), the distribution shift an agent trained in the model brings;
* speed: model steps (transitions) per second at batch 1024 with the model's own K draws.

The metrics are those of ``adept-env bench world-model`` (:mod:`adept_env.benchmarks.world_model`), computed by
the same functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from adept_env.benchmarks.world_model import (
    one_step_fidelity,
    rollout_error,
    rollout_starts,
    subset,
    transitions_per_second,
)
from adept_env.data.collect import ActingPolicy, collect, uniform_policy
from adept_env.data.dataset import OfflineDataset, from_d4rl_arrays
from adept_env.tasks import UnknownNameError, parse_dataset_name, unknown_name

POLICIES = ("auto", "random", "medium", "expert")
"""Other policies ``evaluate`` can collect with: a shipped actor, uniform actions (``random``), or ``auto``."""
OTHER_POLICY = {"random": "medium", "medium": "expert", "expert": "medium", "medium-replay": "expert",
                "medium-expert": "random"}
"""``auto``'s choice per dataset quality: a policy whose data the dataset does not hold."""


@dataclass(frozen=True)
class EvalBudget:
    """How much ``evaluate`` measures; the defaults take well under a minute for a quick or small model."""

    pairs: int = 2_000
    """Held-out pairs at most (the fit held out ``val_fraction`` of the rows, up to ``val_max``)."""
    other_pairs: int = 2_000
    """Pairs the other policy collects in the real env."""
    rollouts: int = 200
    """Open-loop rollouts at most, per set."""
    horizon: int = 5
    """Steps of each rollout."""
    speed_seconds: float = 2.0
    """Seconds of timed sampling."""
    speed_batch: int = 1_024
    """Pairs per timed ``sample`` call."""

    def __post_init__(self) -> None:
        for name in ("pairs", "other_pairs", "rollouts", "horizon", "speed_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.speed_seconds <= 0:
            raise ValueError(f"speed_seconds must be > 0, got {self.speed_seconds}")


def held_out_rows(n: int, config: Any, seed: int) -> np.ndarray:
    """The rows of an ``n``-row dataset that ``WorldModel.fit(dataset, seed=seed)`` held out for validation, in
    the fit's order: the first ``min(val_max, round(n * val_fraction))`` of its seeded permutation (the split
    in ``adept_env/diffusion/world_model.py: WorldModel.fit``; tests/test_model_cli.py checks they agree)."""
    order = np.random.default_rng(seed).permutation(n)
    return order[:min(config.val_max, max(1, int(round(n * config.val_fraction))))]


def other_policy(dataset: OfflineDataset, policy: str = "auto") -> tuple[str, ActingPolicy]:
    """``(label, policy)`` for the other-policy pairs of ``dataset``'s task; ``policy`` is one of POLICIES."""
    if policy not in POLICIES:
        raise unknown_name("policy", policy, POLICIES)
    task = dataset.task
    if policy == "auto":
        try:
            quality = parse_dataset_name(dataset.name)[1]
        except UnknownNameError:  # a file without a TASK-QUALITY name
            quality = "random"
        policy = OTHER_POLICY[quality]
    if policy == "random":
        return "uniform random actions", uniform_policy(task)
    from adept_env.data.behavior import shipped_actor

    return f"shipped {policy} actor", shipped_actor(task.name, policy)


def evaluate(model: Any, dataset: OfflineDataset, fit_seed: int = 0, policy: str = "auto",
             budget: EvalBudget | None = None, seed: int = 0) -> dict[str, Any]:
    """Evaluate ``model`` (fitted on ``dataset`` with ``fit_seed``) against the real simulator (see the module
    docstring); return the sizes used and ``metrics``: name -> value. State errors are per-dimension MSEs in
    units of the training rows' s' - s std (one step) or state std (rollouts); lower is better, rank
    correlations higher."""
    budget = budget or EvalBudget()
    task = dataset.task
    if model.task.name != task.name:
        raise ValueError(f"the world model is for {model.task.name}, the dataset for {task.name}")
    label, actor = other_policy(dataset, policy)
    rng = np.random.default_rng(seed)
    held = held_out_rows(len(dataset), model.config, fit_seed)
    train = np.ones(len(dataset), bool)
    train[held] = False
    delta_std = np.maximum((dataset.next_observations[train] - dataset.observations[train]).std(0), 1e-4)
    obs_std = np.maximum(dataset.observations[train].std(0), 1e-4)
    other = from_d4rl_arrays(collect(task, actor, budget.other_pairs, seed=seed + 1, progress=False), task)
    sets = {"held-out": subset(dataset, held[:budget.pairs]), "other policy": other}

    def predict(obs: np.ndarray, act: np.ndarray) -> tuple[Any, ...]:
        p = model.sample(obs, act, seed=seed)
        return p.next_observations, p.rewards, p.uncertainty, None

    metrics = one_step_fidelity(predict, sets, delta_std)
    horizon = budget.horizon
    starts = {"held-out": np.intersect1d(rollout_starts(dataset, horizon), held),
              "other policy": rollout_starts(other, horizon)}
    counts = {}
    for set_name, source in (("held-out", dataset), ("other policy", other)):
        chosen = starts[set_name]
        chosen = rng.choice(chosen, min(len(chosen), budget.rollouts), replace=False)
        counts[set_name] = len(chosen)
        key = f"rollout-{horizon} state" if set_name == "held-out" else f"{set_name} rollout-{horizon} state"
        metrics[key] = rollout_error(predict, source, chosen, horizon, obs_std) if len(chosen) else float("nan")
    rows = rng.choice(len(dataset), budget.speed_batch, replace=len(dataset) < budget.speed_batch)
    obs, act = dataset.observations[rows], dataset.actions[rows]
    metrics[f"steps/s at batch {budget.speed_batch}"] = transitions_per_second(
        lambda: model.sample(obs, act), budget.speed_batch, budget.speed_seconds)
    return {"held_out_pairs": len(sets["held-out"]), "other_policy": label, "other_pairs": len(other),
            "rollouts": counts, "horizon": horizon, "n_samples": model.config.n_samples, "metrics": metrics}
