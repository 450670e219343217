"""Settings and result of one offline training run (the ``adept-env train`` options come from here)."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adept_env.agents.iql_config import IQLConfig
from adept_env.envs.config import EnvConfig
from adept_env.tasks import unknown_name
from adept_env.training.evaluation import EvalResult

ALGOS = ("adept-iql", "adept-sac", "diff-iql", "diff-sac", "iql", "sac")
"""``adept-*``: the ADEPT loop (world model with importance-sampled refits); ``diff-*``: the world
model trained once, never refitted; ``iql`` / ``sac``: the real data only."""
MODEL_ALGOS = ("adept-iql", "adept-sac", "diff-iql", "diff-sac")
"""The algorithms that train against the world model."""

AUTO_THRESHOLD_QUANTILE = 0.99
"""``uncertainty_threshold`` 'auto': this quantile of the model's uncertainty on held-out dataset pairs."""


def parse_uncertainty_threshold(value: Any) -> float | str | None:
    """``uncertainty_threshold`` as a TrainConfig holds it: None (off; also the text 'none'), 'auto',
    or a finite number > 0 (also as text, as the command line and sweep grids give it)."""
    if value is None:
        return None
    number: float | None = None
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "none":
            return None
        if text == "auto":
            return "auto"
        try:
            number = float(text)
        except ValueError:
            number = None
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        number = float(value)
    if number is None or not math.isfinite(number) or number <= 0:
        shown = repr(value)[:64]
        raise ValueError(f"uncertainty_threshold must be 'auto', 'none' or a finite number > 0, got {shown}")
    return number


@dataclass
class TrainConfig:
    """Budget and schedule of one training run.

    Checkpoint selection (``selection_episodes``) scores a policy with the run's own reward: its
    ``penalty`` lambda, its ``value_penalty`` beta and its ``uncertainty_threshold`` (before, every run
    was scored with lambda = 1 and no value penalty; runs with lambda = 1 and no value penalty score
    as they did).
    """

    algo: str = "adept-iql"
    """adept-iql, adept-sac, diff-iql, diff-sac, iql or sac."""
    updates: int = 100_000
    """Agent gradient updates: the budget that is equal across algorithms."""
    batch_size: int = 256
    """Agent minibatch size."""
    real_ratio: float = 0.5
    """Share of real transitions in each batch (the rest is synthetic)."""
    rollout_every: int = 250
    """Updates between rounds of synthetic rollouts (IQL variants)."""
    rollout_batch: int = 2_000
    """Start states per rollout round, all stepped together in one model call per step."""
    horizon: int = 5
    """Length H of the synthetic rollouts (model episodes)."""
    penalty: float = EnvConfig.penalty
    """Uncertainty penalty lambda of the synthetic rewards, r - lambda * u (0: no penalty, the ablation)."""
    synthetic_capacity: int = 500_000
    """Synthetic transitions kept (oldest dropped first)."""
    refit_every: int = 20_000
    """Updates between importance-sampled refits of the world model (adept-* only)."""
    refit_steps: int | None = None
    """Gradient steps of each refit (None: the world model's default)."""
    sac_envs: int = 8
    """Parallel world-model episodes of the SAC variants."""
    device: str = "auto"
    """Torch device of the agent and the world model: auto (a GPU when torch sees one), cpu, cuda or cuda:N."""
    sac_critics: int = 2
    """SAC variants: Q-networks; the target takes their minimum (SAC-N style pessimism when > 2)."""
    policy_average: float = 0.0
    """SAC variants: evaluate and save an exponential moving average of the actor's weights, updated by
    this fraction after every gradient update (e.g. 0.001; time constant 1 / rate updates); each curve
    row also reports the raw actor's score (``raw_score_mean``). 0: off."""
    value_penalty: float = 0.0
    """World-model variants: beta of a MOBILE-style Bellman-inconsistency penalty on synthetic
    transitions, r - beta * std of the agent's value over the model's ``value_samples`` next-state
    draws (SAC: min of the target critics at a' ~ pi(s'); IQL: its value network). Usually with
    ``penalty`` 0, as in MOBILE. 0: off."""
    value_samples: int = 8
    """Next-state draws per model step for ``value_penalty`` (the std needs at least 2)."""
    uncertainty_threshold: str | float | None = None
    """World-model variants: end a synthetic rollout (terminated, the paper's halt) at a step whose
    uncertainty u exceeds this; also in checkpoint selection. 'auto': the 99th percentile of the model's
    uncertainty on held-out dataset pairs, computed once per run and recorded in the curve rows and
    progress.json; a number > 0: that threshold; 'none': never (the default)."""
    selection_episodes: int = 20
    """World-model variants: at every evaluation, also score the policy by its uncertainty-penalised
    return in the world model over this many episodes (``model_return`` in the curve; no real-simulator
    access) and keep the best-scoring checkpoint; the run also reports that checkpoint's real score
    beside the final policy's. 0: off."""
    eval_every: int = 10_000
    """Updates between real-simulator evaluations (and checkpoints)."""
    eval_episodes: int = 5
    """Real episodes per evaluation (the final one: at least 10)."""
    profile: str = "default"
    """World-model profile: default, small (a shorter fit of the same network) or quick (tests)."""
    seed: int = 0
    """Seed of the agent, the rollouts and the evaluations."""
    iql: IQLConfig = field(default_factory=IQLConfig)
    """IQL hyper-parameters (IQL variants)."""

    def __post_init__(self) -> None:
        from adept_env.devices import resolve_device

        resolve_device(self.device)  # a device torch does not see is refused before any work
        if self.algo not in ALGOS:
            raise unknown_name("algorithm", self.algo, ALGOS)
        if not 0.0 <= self.real_ratio <= 1.0:
            raise ValueError(f"real_ratio must be in [0, 1], got {self.real_ratio}")
        if not 0.0 <= self.policy_average < 1.0:
            raise ValueError(f"policy_average must be in [0, 1), got {self.policy_average}")
        if not 0.0 <= self.penalty < math.inf:
            raise ValueError(f"penalty must be a finite number >= 0, got {self.penalty}")
        if not 0.0 <= self.value_penalty < math.inf:
            raise ValueError(f"value_penalty must be a finite number >= 0, got {self.value_penalty}")
        self.uncertainty_threshold = parse_uncertainty_threshold(self.uncertainty_threshold)
        for name in ("value_penalty", "uncertainty_threshold"):
            if getattr(self, name) and not self.uses_model:
                raise ValueError(f"{name} applies to the world-model variants ({', '.join(MODEL_ALGOS)}), "
                                 f"not {self.algo}")
        if self.value_samples < 2:
            raise ValueError(f"value_samples must be >= 2, got {self.value_samples}")
        if self.policy_average and not self.algo.endswith("sac"):
            raise ValueError(f"policy_average applies to the SAC variants, not {self.algo}")
        if self.selection_episodes < 0:
            raise ValueError(f"selection_episodes must be >= 0, got {self.selection_episodes}")
        for name in ("updates", "batch_size", "rollout_every", "rollout_batch", "horizon", "eval_every",
                     "eval_episodes", "refit_every", "sac_envs", "sac_critics"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def uses_model(self) -> bool:
        return self.algo in MODEL_ALGOS

    @property
    def refits(self) -> bool:
        return self.algo.startswith("adept")


@dataclass
class TrainResult:
    """A finished run: the learning curve and the final real evaluation."""

    curve: list[dict[str, float]]
    """One row per evaluation: update, score mean/std, return mean, model_version, refits_kept_start
    (refits since the run last (re)started that ended on their starting weights, so changed nothing),
    seconds, and the throughput since the previous evaluation (``adept_env.training.run.Throughput``:
    sps, and model_sps for the world-model variants)."""
    final: EvalResult
    run_dir: Path
    agent: Any
    selected: dict[str, float] | None = None
    """The checkpoint with the best ``model_return`` (model variants): its update, model return and
    real score (``score_mean``/``score_std``, evaluated like the final policy). None when off."""


def upgrade_saved_config(saved: dict[str, Any]) -> dict[str, Any]:
    """A run folder's saved ``config.json`` in today's fields (older runs had ``use_penalty``: False
    meant no penalty, which is ``penalty`` 0 now)."""
    saved = dict(saved)
    if not saved.pop("use_penalty", True):
        saved["penalty"] = 0.0
    return saved
