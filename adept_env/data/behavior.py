"""Behaviour policies: who collected a dataset, and how likely they were to take each action.

Importance-sampled refits weight a dataset pair (s, a) by pi(a|s) / beta(a|s); this module
supplies beta. Every :class:`BehaviorPolicy` answers ``log_prob(observations, actions)`` with
one log-density (nats, with respect to Lebesgue measure on the env's action box) per row:

* :class:`UniformBehavior` -- exact, for the ``random`` datasets;
* :class:`ActorPolicy` -- exact, for the shipped SAC actors (a tanh-squashed diagonal Gaussian,
  log-density computed exactly as Stable-Baselines3's ``SquashedDiagGaussianDistribution``
  does, including the tanh Jacobian). It can also act, so it collects the medium/expert data;
* :class:`MixtureBehavior` -- exact, for ``medium-expert`` (an equal-weight mixture);
* :func:`fit_behavior_cloning` -- a behaviour-cloning tanh-Gaussian density fitted by maximum
  likelihood, returned as an :class:`ActorPolicy`, for datasets with no known policy (e.g. a
  user's own D4RL file).

:func:`behavior_policy_for` picks the right one for a dataset.

Actor snapshots are a safetensors file of float32 weights plus a JSON spec beside it
(``<stem>.safetensors`` / ``<stem>.json``); nothing is ever unpickled.
"""

from __future__ import annotations

import dataclasses
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
    clamp: float = ACTION_CLAMP,
) -> np.ndarray:
    """Return log p(a) of actions ``a = low + (tanh(u) + 1) (high - low) / 2``, u ~ N(mean, exp(log_std)^2).

    ``squashed`` is tanh(u) in [-1, 1] (the action rescaled to the unit box). Matches SB3:
    ``sum_i log N(atanh(y_i)) - sum_i log(1 - y_i^2 + 1e-6)``, minus the log of the affine
    rescaling to the env box (zero for the [-1, 1] boxes of the MuJoCo tasks). Actions are
    first clamped to +-``clamp`` so saturated (|y| = 1) actions stay finite. Shape (n,), nats.
    """
    y = np.clip(np.asarray(squashed, np.float64), -clamp, clamp)
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
        log_std = np.clip(
            h @ self._log_std[0] + self._log_std[1],
            float(self.spec.get("log_std_min", LOG_STD_MIN)),
            float(self.spec.get("log_std_max", LOG_STD_MAX)),
        )
        return mean, log_std

    def _to_env(self, squashed: np.ndarray) -> np.ndarray:
        return self.low + (squashed + 1.0) * (self.high - self.low) / 2.0

    def _to_unit(self, actions: np.ndarray) -> np.ndarray:
        return 2.0 * (actions - self.low) / (self.high - self.low) - 1.0

    def log_prob(self, observations: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Return log pi(a|s) per row (float64, nats), exact for this tanh-Gaussian."""
        mean, log_std = self.distribution(observations)
        unit = self._to_unit(_as_batch(actions, self.act_dim))
        clamp = float(self.spec.get("action_clamp", ACTION_CLAMP))
        return squashed_gaussian_log_prob(mean, log_std, unit, self.low, self.high, clamp)

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


def shipped_actor_stem(task: str, quality: str) -> Path:
    """Return the snapshot stem of the shipped ``quality`` ("medium" or "expert") actor of ``task``."""
    return POLICIES_DIR / f"{task}-{quality}"


def shipped_actor(task: str, quality: str) -> ActorPolicy:
    """Return the shipped SAC actor that collects ``task``'s ``quality`` data ("medium" or "expert").

    Raises FileNotFoundError naming how to train one when this version ships none.
    """
    stem = shipped_actor_stem(task, quality)
    if not actor_paths(stem)[1].exists():
        raise FileNotFoundError(
            f"no shipped {quality} actor for {task} in {POLICIES_DIR}; train one with "
            f"`adept-env data train-behavior {task}` and ship a snapshot (see adept_env/policies/README.md)"
        )
    return load_actor(stem)


def shipped_actors() -> list[ActorPolicy]:
    """Return every actor shipped in ``adept_env/policies``."""
    return [load_actor(p.with_suffix("")) for p in sorted(POLICIES_DIR.glob("*.json"))]


@dataclass
class MixtureBehavior:
    """A fixed-weight mixture of behaviour policies, e.g. medium-expert = 1/2 medium + 1/2 expert.

    ``log_prob`` is log sum_k w_k pi_k(a|s): exact for the mixture policy. For a dataset that
    concatenates the components' data it is the action density given the state only where the
    components' state distributions agree; per-row logged log-probs are the other choice.
    """

    components: list[BehaviorPolicy]
    weights: list[float]
    name: str = "mixture"

    def log_prob(self, observations: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Return log sum_k w_k pi_k(a|s) per row, float64 (n,), nats."""
        logs = np.stack([c.log_prob(observations, actions) for c in self.components])
        logs = logs + np.log(np.asarray(self.weights, np.float64) / np.sum(self.weights))[:, None]
        top = np.max(logs, axis=0)
        safe = np.where(np.isfinite(top), top, 0.0)
        return safe + np.log(np.sum(np.exp(logs - safe), axis=0))


@dataclass
class BCConfig:
    """Maximum-likelihood fit of a tanh-Gaussian behaviour-cloning density."""

    hidden_sizes: tuple[int, ...] = (256, 256)
    """Hidden widths of the MLP (ReLU)."""
    steps: int = 20_000
    """Adam steps."""
    batch_size: int = 256
    """Minibatch size."""
    learning_rate: float = 1e-3
    """Adam learning rate (cosine-decayed to 0)."""
    action_clamp: float = 1.0 - 1e-4
    """Actions are clamped to +-this before atanh: saturated actions (|a| = 1, common in SAC data)
    would otherwise have atanh = inf and dominate the fit."""
    log_std_min: float = -5.0
    """Lower clamp of the fitted log-std (the density cannot collapse onto a few points)."""
    log_std_max: float = 2.0
    """Upper clamp of the fitted log-std."""
    holdout: float = 0.05
    """Fraction of rows held out to report the fitted model's held-out log-likelihood."""
    seed: int = 0
    """Seed of initialisation, minibatches and the hold-out split."""


def fit_behavior_cloning(
    dataset: Any,
    config: BCConfig | None = None,
    *,
    observations: np.ndarray | None = None,
    actions: np.ndarray | None = None,
    action_low: np.ndarray | None = None,
    action_high: np.ndarray | None = None,
    progress: bool = False,
) -> ActorPolicy:
    """Fit a tanh-Gaussian MLP density beta(a|s) to a dataset's (s, a) by maximum likelihood.

    ``dataset`` is an OfflineDataset (or None with ``observations``/``actions``/bounds given).
    Observations are standardised inside the network (folded into the first layer), so the
    result is a plain :class:`ActorPolicy` -- it acts, gives exact log-probs of *its own*
    density, and saves with :func:`save_actor`. Its spec records the held-out mean
    log-likelihood (nats per action) under ``spec["fit"]``. Deterministic given ``config.seed``.
    """
    import torch
    from torch import nn

    config = config or BCConfig()
    if dataset is not None:
        observations = dataset.observations
        actions = dataset.actions
        task_name = dataset.task.name
        if action_low is None:
            from adept_env.sim import make_real_env

            env = make_real_env(dataset.task.env_id)
            action_low, action_high = env.action_space.low, env.action_space.high
            env.close()
    else:
        task_name = "custom"
    if observations is None or actions is None:
        raise ValueError("fit_behavior_cloning needs a dataset or observations and actions")
    obs = np.asarray(observations, np.float64)
    act = np.asarray(actions, np.float64)
    low = np.full(act.shape[1], -1.0) if action_low is None else np.asarray(action_low, np.float64)
    high = np.full(act.shape[1], 1.0) if action_high is None else np.asarray(action_high, np.float64)
    unit = np.clip(2.0 * (act - low) / (high - low) - 1.0, -config.action_clamp, config.action_clamp)
    pre_tanh = np.arctanh(unit)
    obs_mean = obs.mean(axis=0)
    obs_std = obs.std(axis=0) + 1e-3

    rng = np.random.default_rng(config.seed)
    order = rng.permutation(len(obs))
    n_hold = int(len(obs) * config.holdout) if len(obs) >= 100 else 0
    hold, train = order[:n_hold], order[n_hold:]
    x_all = torch.as_tensor((obs - obs_mean) / obs_std, dtype=torch.float32)
    u_all = torch.as_tensor(pre_tanh, dtype=torch.float32)

    torch.manual_seed(config.seed)
    layers: list[nn.Module] = []
    width = obs.shape[1]
    for h in config.hidden_sizes:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    latent = nn.Sequential(*layers)
    mu = nn.Linear(width, act.shape[1])
    log_std_head = nn.Linear(width, act.shape[1])
    params = [*latent.parameters(), *mu.parameters(), *log_std_head.parameters()]
    optim = torch.optim.Adam(params, lr=config.learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optim, T_max=max(config.steps, 1))

    def nll(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        h = latent(x)
        mean = mu(h)
        log_std = torch.clamp(log_std_head(h), config.log_std_min, config.log_std_max)
        # The tanh Jacobian does not depend on the parameters, so it is left out of the loss.
        return (0.5 * ((u - mean) / log_std.exp()) ** 2 + log_std).sum(dim=1).mean()

    from tqdm.auto import tqdm

    gen = np.random.default_rng(config.seed + 1)
    for _ in tqdm(range(config.steps), desc="fit BC density", disable=not progress, mininterval=1.0):
        idx = torch.as_tensor(train[gen.integers(0, len(train), config.batch_size)])
        loss = nll(x_all[idx], u_all[idx])
        optim.zero_grad()
        loss.backward()
        optim.step()
        schedule.step()

    weights: dict[str, np.ndarray] = {}
    linears = [m for m in latent if isinstance(m, nn.Linear)]
    for i, lin in enumerate(linears):
        w = lin.weight.detach().double().numpy()
        b = lin.bias.detach().double().numpy()
        if i == 0:  # fold the observation standardisation into the first layer
            b = b - w @ (obs_mean / obs_std)
            w = w / obs_std[None, :]
        weights[f"latent_pi.{2 * i}.weight"] = w.astype(np.float32)
        weights[f"latent_pi.{2 * i}.bias"] = b.astype(np.float32)
    weights["mu.weight"] = mu.weight.detach().numpy().astype(np.float32)
    weights["mu.bias"] = mu.bias.detach().numpy().astype(np.float32)
    weights["log_std.weight"] = log_std_head.weight.detach().numpy().astype(np.float32)
    weights["log_std.bias"] = log_std_head.bias.detach().numpy().astype(np.float32)
    spec: dict[str, Any] = {
        "name": f"{task_name}-bc",
        "kind": "behavior-cloning-tanh-gaussian",
        "task": task_name,
        "obs_dim": int(obs.shape[1]),
        "act_dim": int(act.shape[1]),
        "hidden_sizes": list(config.hidden_sizes),
        "activation": "relu",
        "log_std_min": config.log_std_min,
        "log_std_max": config.log_std_max,
        "action_clamp": config.action_clamp,
        "action_low": low.tolist(),
        "action_high": high.tolist(),
    }
    policy = ActorPolicy(weights=weights, spec=spec, name=spec["name"])
    if n_hold:
        held = policy.log_prob(obs[hold], act[hold])
        spec["fit"] = {
            "rows": int(len(train)),
            "holdout_rows": int(n_hold),
            "holdout_log_likelihood": float(held.mean()),
        }
    spec["fit_config"] = {**dataclasses.asdict(config), "hidden_sizes": list(config.hidden_sizes)}
    return policy


def uniform_behavior(task: Any) -> UniformBehavior:
    """Return the exact uniform behaviour density over ``task``'s action box."""
    from adept_env.sim import make_real_env

    env = make_real_env(task.env_id)
    space = env.action_space
    env.close()
    return UniformBehavior(low=space.low.astype(np.float64), high=space.high.astype(np.float64))


def known_behavior(task: Any, checksum: str) -> BehaviorPolicy | None:
    """Return the exact policy whose checksum is ``checksum`` (uniform or a shipped actor), else None."""
    from adept_env.data.collect import uniform_policy

    if checksum == uniform_policy(task).checksum():
        return uniform_behavior(task)
    for actor in shipped_actors():
        if actor.checksum() == checksum:
            return actor
    return None


def behavior_policy_for(
    dataset: Any,
    *,
    bc_config: BCConfig | None = None,
    progress: bool = False,
) -> BehaviorPolicy:
    """Return the behaviour density of ``dataset``: exact where the collecting policy is known.

    * a dataset made here by the uniform policy or a shipped actor (recognised by the
      ``behavior_policy_sha256`` attribute) -> that policy, exact;
    * ``medium-expert`` made here (``behavior_policy_components``) -> the equal-weight mixture
      of its two actors, exact for the mixture policy;
    * anything else -- ``medium-replay`` (a sequence of SAC policies), a user's D4RL file --
      -> a tanh-Gaussian behaviour-cloning density fitted now (:func:`fit_behavior_cloning`).

    Per-row logged log-probs, where a file has them, are in ``dataset.behavior_log_probs``
    (see :func:`dataset_behavior_log_probs`).
    """
    attrs = getattr(dataset, "attrs", {}) or {}
    checksum = str(attrs.get("behavior_policy_sha256", ""))
    if checksum:
        exact = known_behavior(dataset.task, checksum)
        if exact is not None:
            return exact
    components = attrs.get("behavior_policy_components")
    if components:
        parts = [known_behavior(dataset.task, c) for c in json.loads(components)]
        if parts and all(p is not None for p in parts):
            weights = json.loads(attrs.get("behavior_policy_weights", "null")) or [1.0] * len(parts)
            return MixtureBehavior(components=parts, weights=weights, name="medium-expert mixture")  # type: ignore[arg-type]
    return fit_behavior_cloning(dataset, bc_config, progress=progress)


def dataset_behavior_log_probs(dataset: Any, policy: BehaviorPolicy | None = None) -> np.ndarray:
    """Return log beta(a|s) for every row of ``dataset`` (float64, nats).

    Uses the log-probs logged at collection time when the file has them (each row under the
    policy that actually took the action); otherwise evaluates ``policy`` (default
    :func:`behavior_policy_for`) on the rows.
    """
    if getattr(dataset, "behavior_log_probs", None) is not None:
        return np.asarray(dataset.behavior_log_probs, np.float64)
    policy = policy or behavior_policy_for(dataset)
    return policy.log_prob(dataset.observations, dataset.actions)
