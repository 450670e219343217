"""medium-replay without a behaviour run: the shipped, reproducible ramped-mixture recipe.

D4RL's ``medium-replay`` is a SAC run's replay buffer from its start to the medium point: a
uniform-random warm-up (the run's ``learning_starts``), then rollouts of a policy that improves
from near-random to the medium actor. Training that run takes hours on a CPU, so when no run is
at hand (``adept_env/data/generate.py: make_dataset``) the buffer is made from what the package
ships, the medium actor (``adept_env/policies/<task>-medium``):

* rows ``t < warmup``: uniform actions, as SAC's warm-up;
* rows ``t >= warmup``: a per-step mixture, the medium actor's sampled action with probability
  ``p(t) = ((t + 1 - warmup) / (rows - warmup)) ** exponent``, else a uniform action; ``p``
  ramps from ``1 / (rows - warmup)`` after the warm-up to 1 on the buffer's last row.

``rows`` defaults to the medium actor's SAC step (``source.step``: the real buffer's size) and
``warmup`` to its run's ``learning_starts``. Episodes are collected in order by
:func:`adept_env.data.collect.collect`; ``infos/action_log_probs`` holds the exact behaviour
log-density of each row, ``log((1 - p) U(a) + p pi(a|s))``, so importance weights stay exact. A
file cut to fewer rows (``steps``) is a prefix of the full one: ``p`` always ramps over ``rows``.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from adept_env.data.behavior import ACTION_CLAMP, ActorPolicy, shipped_actor, squashed_gaussian_log_prob
from adept_env.data.collect import UniformPolicy, collect, uniform_policy
from adept_env.tasks import Task, get_task

RECIPE_NAME = "adept-env/ramped-mixture"
RECIPE_VERSION = 1
DEFAULT_WARMUP = 10_000
"""Warm-up rows when the medium actor's spec names no ``learning_starts`` (the behaviour run's default)."""


@dataclass(frozen=True)
class ReplayRecipe:
    """Parameters of the ramped-mixture medium-replay recipe; ``None`` takes the medium actor's value."""

    exponent: float = 1.0
    """Shape k of the ramp p(t) = ((t + 1 - warmup) / (rows - warmup)) ** k: 1 is linear, >1 stays
    near-random longer, <1 reaches the medium actor sooner."""
    rows: int | None = None
    """Rows of the full buffer; default the medium actor's SAC step (``source.step``)."""
    warmup: int | None = None
    """Uniform warm-up rows; default the medium actor's run's ``learning_starts`` (10,000)."""

    def __post_init__(self) -> None:
        if not (isinstance(self.exponent, (int, float)) and math.isfinite(self.exponent) and self.exponent > 0):
            raise ValueError(f"exponent must be a finite number > 0, got {self.exponent!r}")
        if self.rows is not None and self.rows < 1:
            raise ValueError(f"rows must be at least 1, got {self.rows}")
        if self.warmup is not None and self.warmup < 0:
            raise ValueError(f"warmup must be at least 0, got {self.warmup}")

    def resolved(self, spec: dict[str, Any]) -> tuple[int, int]:
        """Return (rows, warmup), filling the defaults from the medium actor's JSON ``spec``."""
        source = spec.get("source") or {}
        rows = self.rows if self.rows is not None else source.get("step")
        if rows is None:
            raise ValueError(f"actor {spec.get('name')!r} names no SAC step (source.step); pass rows")
        warmup = self.warmup if self.warmup is not None else int(
            (source.get("config") or {}).get("learning_starts", DEFAULT_WARMUP))
        if int(rows) <= warmup:
            raise ValueError(f"the buffer ({rows} rows) must be longer than its uniform warm-up ({warmup} rows)")
        return int(rows), int(warmup)


def mixing_probability(t: int | np.ndarray, rows: int, warmup: int, exponent: float) -> np.ndarray:
    """Return p(t), the probability that row ``t`` is the medium actor's action (0 in the warm-up)."""
    frac = (np.asarray(t, np.float64) + 1.0 - warmup) / float(rows - warmup)
    return np.where(np.asarray(t) < warmup, 0.0, np.clip(frac, 0.0, 1.0) ** exponent)


@dataclass
class RampedMixturePolicy:
    """Row ``t`` (the ``t``-th call of :meth:`act`): uniform with probability 1 - p(t), else the actor.

    An :class:`~adept_env.data.collect.ActingPolicy` whose log-probability is the mixture's exact
    density. It counts its calls (``collect`` calls ``act`` once per row, in order), so use a
    fresh one per collection.
    """

    uniform: UniformPolicy
    actor: ActorPolicy
    rows: int
    warmup: int
    exponent: float = 1.0
    name: str = field(init=False)
    calls: int = 0

    def __post_init__(self) -> None:
        self.name = f"ramped-mixture(uniform -> {self.actor.name}, k={self.exponent:g})"
        self._low = np.asarray(self.actor.low, np.float64)
        self._high = np.asarray(self.actor.high, np.float64)
        self._clamp = float(self.actor.spec.get("action_clamp", ACTION_CLAMP))

    def probability(self, t: int) -> float:
        """Return p(t) for row ``t``."""
        return float(mixing_probability(t, self.rows, self.warmup, self.exponent))

    def act(self, observation: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float]:
        """Act for the next row; return (float32 action, log((1 - p) U(a) + p pi(a|s)) in nats)."""
        p = self.probability(self.calls)
        self.calls += 1
        if p <= 0.0:
            return self.uniform.act(observation, rng)
        mean, log_std = self.actor.distribution(observation)
        if rng.random() < p:
            squashed = np.tanh(mean + np.exp(log_std) * rng.standard_normal(mean.shape))[0]
            action = (self._low + (squashed + 1.0) * (self._high - self._low) / 2.0).astype(np.float32)
        else:
            action, _ = self.uniform.act(observation, rng)
        unit = 2.0 * (action.astype(np.float64) - self._low) / (self._high - self._low) - 1.0
        log_pi = float(squashed_gaussian_log_prob(mean, log_std, unit[None, :], self._low, self._high, self._clamp)[0])
        if p >= 1.0:
            return action, log_pi
        return action, float(np.logaddexp(math.log1p(-p) + self.uniform.log_prob_constant, math.log(p) + log_pi))

    def checksum(self) -> str:
        """Return a SHA-256 of the recipe: its name, parameters and both components' checksums."""
        payload = json.dumps([RECIPE_NAME, RECIPE_VERSION, self.rows, self.warmup, float(self.exponent),
                              self.uniform.checksum(), self.actor.checksum()])
        return hashlib.sha256(payload.encode()).hexdigest()


def recipe_policy(task: str | Task, recipe: ReplayRecipe | None = None) -> RampedMixturePolicy:
    """Return a fresh ramped-mixture policy for ``task`` from its shipped medium actor."""
    task = get_task(task)
    recipe = recipe or ReplayRecipe()
    actor = shipped_actor(task.name, "medium")
    rows, warmup = recipe.resolved(actor.spec)
    return RampedMixturePolicy(uniform=uniform_policy(task), actor=actor, rows=rows, warmup=warmup,
                               exponent=float(recipe.exponent))


def recipe_rows(task: str | Task, recipe: ReplayRecipe | None = None) -> tuple[int, int]:
    """Return (rows, warmup) of ``task``'s full recipe buffer, reading only the medium actor's spec."""
    from adept_env.data.behavior import actor_paths, shipped_actor_stem

    task = get_task(task)
    spec_path = actor_paths(shipped_actor_stem(task.name, "medium"))[1]
    if not spec_path.exists():
        raise FileNotFoundError(f"no shipped medium actor for {task.name} ({spec_path})")
    return (recipe or ReplayRecipe()).resolved(json.loads(spec_path.read_text()))


def recipe_replay_arrays(
    task: str | Task,
    *,
    steps: int | None = None,
    seed: int = 0,
    recipe: ReplayRecipe | None = None,
    progress: bool = True,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Return D4RL-keyed arrays of the recipe's medium-replay buffer and attributes describing it.

    The first ``min(steps, rows)`` rows of the full buffer (``rows``: the medium actor's SAC
    step unless ``recipe.rows``), collected in order by :func:`~adept_env.data.collect.collect`
    with seed ``seed``. The attributes record the recipe, its parameters and the checksums of
    the policy and of the medium actor. Deterministic given the seed.
    """
    task = get_task(task)
    recipe = recipe or ReplayRecipe()
    policy = recipe_policy(task, recipe)
    n = policy.rows if steps is None else min(int(steps), policy.rows)
    if n < 1:
        raise ValueError(f"steps must be positive, got {steps}")
    arrays = collect(task, policy, n, seed, progress=progress, desc=f"{task.name}-medium-replay (recipe)")
    description = {
        "name": RECIPE_NAME,
        "version": RECIPE_VERSION,
        "rows": policy.rows,
        "warmup": policy.warmup,
        "exponent": float(policy.exponent),
        "mixing_probability": "p(t) = 0 for t < warmup, else ((t + 1 - warmup) / (rows - warmup)) ** exponent",
        "action": "the medium actor's sampled action with probability p(t), else uniform on the action box",
        "log_prob": "log((1 - p(t)) U(a) + p(t) pi(a|s)), exact",
    }
    extra: dict[str, Any] = {
        "behavior_policy": policy.name,
        "behavior_policy_sha256": policy.checksum(),
        "medium_actor_sha256": policy.actor.checksum(),
        "medium_step": policy.rows,
        "learning_starts": policy.warmup,
        "replay_recipe": json.dumps(description),
    }
    return arrays, extra
