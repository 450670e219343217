"""Behaviour policies: who collected a dataset, and how likely they were to take each action.

Importance-sampled refits weight a dataset pair (s, a) by pi(a|s) / beta(a|s); this module
supplies beta. Every :class:`BehaviorPolicy` answers ``log_prob(observations, actions)`` with
one log-density (nats, with respect to Lebesgue measure on the env's action box) per row:

* :class:`UniformBehavior` -- exact, for the ``random`` datasets;
* :class:`ActorPolicy` -- exact, for the shipped SAC actors (a tanh-squashed diagonal Gaussian,
  log-density computed exactly as Stable-Baselines3's ``SquashedDiagGaussianDistribution``
  does, including the tanh Jacobian). It can also act, so it collects the medium/expert data;
* :class:`MixtureBehavior` -- exact, for ``medium-expert`` (an equal-weight mixture);
* :class:`TanhGaussianBC` -- a behaviour-cloning density fitted by maximum likelihood, for
  datasets with no known policy (e.g. a user's own D4RL file), see :func:`fit_behavior_cloning`.

:func:`behavior_policy_for` picks the right one for a dataset.

Actor snapshots are a safetensors file of float32 weights plus a JSON spec beside it
(``<stem>.safetensors`` / ``<stem>.json``); nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from adept_env.atomic import atomic_path

ACTOR_FORMAT = "adept-env/sac-actor"
ACTOR_FORMAT_VERSION = 1
LOG_STD_MIN = -20.0
"""Stable-Baselines3 clamps the actor's log-std to [LOG_STD_MIN, LOG_STD_MAX]."""
LOG_STD_MAX = 2.0
JACOBIAN_EPSILON = 1e-6
"""SB3 adds this inside log(1 - tanh(u)^2 + eps); we do the same so log-probs match."""
ACTION_CLAMP = 1.0 - 1e-6
"""Squashed actions are clamped to +-this before atanh so |a| = 1 (float32 rounding) stays finite."""
POLICIES_DIR = Path(__file__).resolve().parent.parent / "policies"
"""Where the shipped actors live (package data)."""


@runtime_checkable
class BehaviorPolicy(Protocol):
    """A density over actions given observations: the beta of importance weights."""

    name: str

    def log_prob(self, observations: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Return log beta(a|s) per row, float64 array of shape (n,), in nats."""
        ...


def _as_batch(x: np.ndarray, dim: int) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise ValueError(f"expected rows of size {dim}, got shape {np.shape(x)}")
    return arr


@dataclass
class UniformBehavior:
    """The uniform density on the action box: exact beta for the ``random`` datasets."""

    low: np.ndarray
    high: np.ndarray
    name: str = "uniform"

    def log_prob(self, observations: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Return -sum(log(high - low)) for in-box actions and -inf outside, shape (n,)."""
        act = _as_batch(actions, len(self.low))
        inside = np.all((act >= self.low) & (act <= self.high), axis=1)
        constant = -float(np.sum(np.log(np.asarray(self.high, np.float64) - np.asarray(self.low, np.float64))))
        return np.where(inside, constant, -np.inf)


def squashed_gaussian_log_prob(
    mean: np.ndarray,
    log_std: np.ndarray,
    squashed: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
) -> np.ndarray:
    """Return log p(a) of actions ``a = low + (tanh(u) + 1) (high - low) / 2``, u ~ N(mean, exp(log_std)^2).

    ``squashed`` is tanh(u) in [-1, 1] (the action rescaled to the unit box). Matches SB3:
    ``sum_i log N(atanh(y_i)) - sum_i log(1 - y_i^2 + 1e-6)``, minus the log of the affine
    rescaling to the env box (zero for the [-1, 1] boxes of the MuJoCo tasks). Shape (n,), nats.
    """
    y = np.clip(np.asarray(squashed, np.float64), -ACTION_CLAMP, ACTION_CLAMP)
    u = np.arctanh(y)
    std = np.exp(log_std)
    gauss = -0.5 * ((u - mean) / std) ** 2 - log_std - 0.5 * math.log(2 * math.pi)
    jacobian = np.log(1.0 - y**2 + JACOBIAN_EPSILON)
    scale = np.sum(np.log((np.asarray(high, np.float64) - np.asarray(low, np.float64)) / 2.0))
    return np.sum(gauss - jacobian, axis=1) - scale


@dataclass
class ActorPolicy:
    """A Stable-Baselines3 SAC actor (MLP -> mean, log-std -> tanh) in plain numpy, float64.

    Implements both :class:`~adept_env.data.collect.ActingPolicy` (``act`` samples
    stochastically, as D4RL's medium/expert recipes do) and :class:`BehaviorPolicy`
    (``log_prob`` is exact). ``act`` returns the float32 action and the log-density of that
    float32 action, computed by ``log_prob`` itself, so logged and recomputed values agree.
    """

    weights: dict[str, np.ndarray]
    spec: dict[str, Any]
    name: str = "actor"
    _layers: list[tuple[np.ndarray, np.ndarray]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        hidden = list(self.spec["hidden_sizes"])
        self._layers = []
        for i in range(len(hidden)):
            w = np.asarray(self.weights[f"latent_pi.{2 * i}.weight"], np.float64)
            b = np.asarray(self.weights[f"latent_pi.{2 * i}.bias"], np.float64)
            self._layers.append((w.T.copy(), b))
        self._mu = (
            np.asarray(self.weights["mu.weight"], np.float64).T.copy(),
            np.asarray(self.weights["mu.bias"], np.float64),
        )
        self._log_std = (
            np.asarray(self.weights["log_std.weight"], np.float64).T.copy(),
            np.asarray(self.weights["log_std.bias"], np.float64),
        )
        self.low = np.asarray(self.spec["action_low"], np.float64)
        self.high = np.asarray(self.spec["action_high"], np.float64)
        if self._layers[0][0].shape[0] != self.obs_dim or self._mu[0].shape[1] != self.act_dim:
            raise ValueError("actor weights do not match the spec's obs_dim/act_dim")

    @property
    def obs_dim(self) -> int:
        return int(self.spec["obs_dim"])

    @property
    def act_dim(self) -> int:
        return int(self.spec["act_dim"])

    def distribution(self, observations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return (mean, log_std) of the pre-tanh Gaussian, each float64 of shape (n, act_dim)."""
        h = _as_batch(observations, self.obs_dim)
        for w, b in self._layers:
            h = np.maximum(h @ w + b, 0.0)
        mean = h @ self._mu[0] + self._mu[1]
        log_std = np.clip(h @ self._log_std[0] + self._log_std[1], LOG_STD_MIN, LOG_STD_MAX)
        return mean, log_std

    def _to_env(self, squashed: np.ndarray) -> np.ndarray:
        return self.low + (squashed + 1.0) * (self.high - self.low) / 2.0

    def _to_unit(self, actions: np.ndarray) -> np.ndarray:
        return 2.0 * (actions - self.low) / (self.high - self.low) - 1.0

    def log_prob(self, observations: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Return log pi(a|s) per row (float64, nats), exact for this tanh-Gaussian."""
        mean, log_std = self.distribution(observations)
        unit = self._to_unit(_as_batch(actions, self.act_dim))
        return squashed_gaussian_log_prob(mean, log_std, unit, self.low, self.high)

    def mean_action(self, observations: np.ndarray) -> np.ndarray:
        """Return the deterministic action tanh(mean) in env units, float32 (n, act_dim)."""
        mean, _ = self.distribution(observations)
        return self._to_env(np.tanh(mean)).astype(np.float32)

    def sample(self, observations: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Sample actions for a batch; return (float32 actions (n, act_dim), float64 log-probs (n,))."""
        mean, log_std = self.distribution(observations)
        u = mean + np.exp(log_std) * rng.standard_normal(mean.shape)
        actions = self._to_env(np.tanh(u)).astype(np.float32)
        return actions, self.log_prob(observations, actions)

    def act(self, observation: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float]:
        """Sample one action; return (float32 action, its log-probability in nats)."""
        actions, log_probs = self.sample(observation, rng)
        return actions[0], float(log_probs[0])

    def checksum(self) -> str:
        """Return the SHA-256 of the weights (names, shapes and float32 bytes, in name order)."""
        return weights_sha256(self.weights)

    @property
    def metadata(self) -> dict[str, Any]:
        """Return the snapshot's JSON spec (task, sizes, provenance, measured scores)."""
        return self.spec


def weights_sha256(weights: dict[str, np.ndarray]) -> str:
    """Return a SHA-256 over the weight names, shapes and float32 bytes, in sorted name order."""
    digest = hashlib.sha256()
    for key in sorted(weights):
        value = np.ascontiguousarray(weights[key], dtype=np.float32)
        digest.update(key.encode())
        digest.update(str(value.shape).encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def actor_paths(stem: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Return (weights path, spec path) for a snapshot stem, i.e. ``stem.safetensors``, ``stem.json``."""
    stem = Path(stem)
    if stem.suffix in (".safetensors", ".json"):
        stem = stem.with_suffix("")
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def save_actor(stem: str | os.PathLike[str], weights: dict[str, np.ndarray], spec: dict[str, Any]) -> Path:
    """Write an actor snapshot atomically: weights as safetensors, spec (plus checksum) as JSON.

    The weights are written first; the JSON spec, written last, names their checksum, so a
    reader that finds the spec finds matching weights. Returns the weights path.
    """
    from safetensors.numpy import save_file

    weights_path, spec_path = actor_paths(stem)
    arrays = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in weights.items()}
    full_spec = {"format": ACTOR_FORMAT, "format_version": ACTOR_FORMAT_VERSION, **spec}
    full_spec["weights_sha256"] = weights_sha256(arrays)
    full_spec["weights_file"] = weights_path.name
    with atomic_path(weights_path) as tmp:
        save_file(arrays, str(tmp))
    write_json(spec_path, full_spec)
    return weights_path


def write_json(path: str | os.PathLike[str], payload: dict[str, Any]) -> Path:
    """Write ``payload`` as indented JSON atomically; return the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    return path


def load_actor(stem: str | os.PathLike[str]) -> ActorPolicy:
    """Load an actor snapshot from ``stem.safetensors`` + ``stem.json``; verify its checksum."""
    from safetensors.numpy import load_file

    weights_path, spec_path = actor_paths(stem)
    if not spec_path.exists() or not weights_path.exists():
        raise FileNotFoundError(f"no actor snapshot at {weights_path} / {spec_path}")
    spec = json.loads(spec_path.read_text())
    if spec.get("format") != ACTOR_FORMAT:
        raise ValueError(f"{spec_path} is not an {ACTOR_FORMAT} spec (format={spec.get('format')!r})")
    weights = load_file(str(weights_path))
    if weights_sha256(weights) != spec.get("weights_sha256"):
        raise ValueError(f"{weights_path} does not match the checksum in {spec_path}")
    name = spec.get("name") or weights_path.stem
    return ActorPolicy(weights=weights, spec=spec, name=name)
