"""RLlib glue: remote envs for RLlib's env runners and ``PushPolicyCallback`` (the learner's policy -> refits).

```python
from functools import partial
from ray.rllib.algorithms.sac import SACConfig
from adept_client.rllib import PushPolicyCallback, env_config, register

config = (SACConfig()
          .environment(register(), env_config=env_config("localhost:50051", "ADEPT-halfcheetah-random"))
          .env_runners(num_env_runners=2)
          .callbacks(partial(PushPolicyCallback, every=5, refit_steps=500)))
algo = config.build_algo()
```

Every env an env runner builds is an :class:`adept_client.RemoteEnv` (one server session) with the
same target, token, env id and overrides, so on the server they all step one engine: one world
model, one policy, one refit schedule, wherever the runners are (one machine or a Ray cluster).

``PushPolicyCallback`` runs on the driver: every ``every`` iterations it sends the learner's
policy as log pi(a|s) of a fixed sample of dataset rows (``GetDatasetPairs`` once, then
``UpdatePolicy`` with log-probs: no weights, no pickles travel) and starts a refit unless one
still runs, and reports pushes, refits and the served model version under ``result["adept"]``.

Importing this module needs neither ray nor torch; :func:`register` imports ray, and
``PushPolicyCallback`` (an ``RLlibCallback``, which loads RLlib and torch) is built on first use.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from adept_client.client import BaseClient, RefitState, RemoteSession, connect, default_token
from adept_client.env import RemoteEnv
from adept_client.errors import FailedPreconditionError, SessionNotFoundError

ENV_NAME = "adept-remote"
"""The name :func:`register` gives the env creator in Ray's registry."""
DEFAULT_ENV_ID = "ADEPT-halfcheetah-random"
SEED_STRIDE = 1_000
"""An env's session seed: ``seed + SEED_STRIDE * worker_index + vector_index``."""


def env_config(target: str, env_id: str = DEFAULT_ENV_ID, *, token: str | None = None,
               overrides: dict[str, Any] | None = None, seed: int | None = None,
               **client_kwargs: Any) -> dict[str, Any]:
    """Return an RLlib ``env_config`` for :func:`env_creator` (and ``PushPolicyCallback``).

    ``target``: gRPC ``host:port`` or ``http://host:port``, reachable from every node that runs an
    env runner. ``token``: the API token; when None, each process reads its own $ADEPT_API_TOKEN (on
    a cluster, set it with ``ray.init(runtime_env={"env_vars": {...}})``): a token given here travels
    inside the algorithm's config (Tune writes that to ``params.json``). ``client_kwargs`` go to the
    client (``timeout_s``, ...).
    """
    config: dict[str, Any] = {"target": target, "env_id": env_id, "overrides": dict(overrides or {}),
                              "seed": seed, "client_kwargs": dict(client_kwargs)}
    if token is not None:
        config["token"] = token
    return config


def env_creator(config: dict[str, Any]) -> RemoteEnv:
    """Return a :class:`RemoteEnv` (one server session) for an RLlib ``env_config`` (an ``EnvContext``).

    Keys: ``target`` (required), ``env_id``, ``token``, ``overrides``, ``seed``, ``client_kwargs``
    (see :func:`env_config`). Envs with the same token, env id and overrides share one engine on the
    server. The session's seed is offset by the env runner's ``worker_index`` and ``vector_index``.
    """
    if "target" not in config:
        raise ValueError("env_config needs 'target' (host:port or http://host:port); see adept_client.rllib.env_config")
    seed = config.get("seed")
    if seed is not None:
        worker, vector = int(getattr(config, "worker_index", 0)), int(getattr(config, "vector_index", 0))
        seed = int(seed) + SEED_STRIDE * worker + vector
    return RemoteEnv(config["target"], config.get("env_id", DEFAULT_ENV_ID), token=config.get("token"), seed=seed,
                     overrides=config.get("overrides") or None, **dict(config.get("client_kwargs") or {}))


def register(name: str = ENV_NAME) -> str:
    """Register :func:`env_creator` with Ray's env registry under ``name``; return the name (for ``environment()``)."""
    from ray.tune.registry import register_env

    register_env(name, env_creator)
    return name


def open_session(config: dict[str, Any]) -> tuple[BaseClient, RemoteSession]:
    """Return (client, a one-env session) for an ``env_config``: the same engine as the env runners' envs."""
    token = config.get("token") or default_token()
    client = connect(config["target"], token=token, **dict(config.get("client_kwargs") or {}))
    try:
        session = client.create_session(config.get("env_id", DEFAULT_ENV_ID), 1, overrides=config.get("overrides"))
    except BaseException:
        client.close()
        raise
    return client, session


def normalized_actions(actions: np.ndarray, low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, float]:
    """Map env actions in [low, high] to the module's [-1, 1]; return them and log|d a_env / d a_module|.

    RLlib's ``normalize_actions`` maps the module's action a in [-1, 1] to ``low + (a + 1) (high - low) / 2``,
    so log pi_env(a_env) = log pi_module(a) - sum(log((high - low) / 2)). For Box(-1, 1) this is the identity.
    """
    low, high = np.asarray(low, np.float64), np.asarray(high, np.float64)
    half = (high - low) / 2.0
    if not np.all(np.isfinite(half)) or np.any(half <= 0):
        raise ValueError("normalize_actions needs finite action bounds with low < high")
    mapped = (np.asarray(actions, np.float64) - low) / half - 1.0
    return mapped.astype(np.float32), float(np.sum(np.log(half)))


def module_log_probs(module: Any, observations: np.ndarray, actions: np.ndarray,
                     chunk: int = 8192) -> np.ndarray:
    """Return float64 log pi(a|s) under a torch RLModule's exploration action distribution.

    ``actions`` are in the module's action space (for SAC the tanh-squashed Gaussian on [-1, 1];
    its ``logp`` includes the tanh Jacobian). Runs without gradients on the module's device.
    """
    from ray.rllib.core.columns import Columns
    from ray.rllib.utils.framework import try_import_torch

    torch, _ = try_import_torch()
    module = module.unwrapped() if hasattr(module, "unwrapped") else module
    device = next(module.parameters()).device
    dist_cls = module.get_exploration_action_dist_cls()
    out = []
    with torch.no_grad():
        for start in range(0, len(observations), chunk):
            obs = torch.as_tensor(np.array(observations[start:start + chunk], np.float32), device=device)
            act = torch.as_tensor(np.array(actions[start:start + chunk], np.float32), device=device)
            logits = module.forward_exploration({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS]
            out.append(dist_cls.from_logits(logits).logp(act).detach().cpu().numpy())
    return np.concatenate(out).astype(np.float64) if out else np.zeros(0, np.float64)


def _learner_log_probs(learner: Any, *, module_id: str, observations: np.ndarray,
                       actions: np.ndarray) -> np.ndarray:
    """Run on a Learner (local or a Ray actor): log pi(a|s) of its module ``module_id``."""
    return module_log_probs(learner.module[module_id], observations, actions)


def learner_log_probs(algorithm: Any, observations: np.ndarray, actions: np.ndarray,
                      module_id: str | None = None) -> np.ndarray:
    """Return log pi(a|s) of the algorithm's learner module (the first learner's: all hold the same weights)."""
    from functools import partial

    from ray.rllib.core import DEFAULT_MODULE_ID

    func = partial(_learner_log_probs, module_id=module_id or DEFAULT_MODULE_ID, observations=observations,
                   actions=actions)
    results = algorithm.learner_group.foreach_learner(func)
    for result in results:
        if result.ok:
            return np.asarray(result.get(), np.float64)
    errors = [str(result.get()) for result in results]
    raise RuntimeError(f"no learner computed the log-probs: {errors}")


class _PushPolicy:
    """The logic of ``PushPolicyCallback`` (an ``RLlibCallback`` subclass built on first use; see the module)."""

    def __init__(self, every: int = 1, *, every_env_steps: int | None = None, refit: bool = True,
                 refit_steps: int | None = None, sample_size: int = 50_000, pairs_seed: int = 0,
                 module_id: str | None = None, verbose: bool = False) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        if every_env_steps is not None and every_env_steps < 1:
            raise ValueError(f"every_env_steps must be >= 1, got {every_env_steps}")
        if sample_size < 1:
            raise ValueError(f"sample_size must be >= 1, got {sample_size}")
        super().__init__()
        self.every, self.every_env_steps = every, every_env_steps
        self.do_refit, self.refit_steps = refit, refit_steps
        self.sample_size, self.pairs_seed, self.module_id, self.verbose = sample_size, pairs_seed, module_id, verbose
        self.iterations = 0
        self.pushes = 0
        self.refits: list[RefitState] = []
        """Every refit this callback started, its latest known state."""
        self.refits_skipped = 0
        self.model_version = -1
        self._last_push_iteration = 0
        self._last_push_steps = 0
        self._client: BaseClient | None = None
        self._session: RemoteSession | None = None
        self._pairs: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    # -- the session (driver only; env runners build this callback too but never call it) -------
    def _connect(self, algorithm: Any) -> RemoteSession:
        if self._session is None:
            self._client, self._session = open_session(dict(algorithm.config.env_config))
        return self._session

    def _call(self, algorithm: Any, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call a session method; reopen the session once if the server expired it (idle timeout)."""
        try:
            return getattr(self._connect(algorithm), method)(*args, **kwargs)
        except SessionNotFoundError:
            self.close()
            return getattr(self._connect(algorithm), method)(*args, **kwargs)

    def close(self) -> None:
        """Close the callback's session and client (the env runners' sessions close with their envs)."""
        session, client = self._session, self._client
        self._session = self._client = None
        if session is not None:
            session.close()
        if client is not None:
            client.close()

    # -- pushing ---------------------------------------------------------------------------------
    def _dataset_pairs(self, algorithm: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._pairs is None:
            rows = int(self._connect(algorithm).info.dataset_rows)
            self._pairs = self._call(algorithm, "dataset_pairs", sample_size=min(self.sample_size, rows),
                                     seed=self.pairs_seed)
        return self._pairs

    def policy_log_probs(self, algorithm: Any) -> tuple[np.ndarray, np.ndarray]:
        """Return (dataset row indices, log pi(a|s) of their env actions under the learner's policy)."""
        indices, observations, actions = self._dataset_pairs(algorithm)
        log_det = 0.0
        if getattr(algorithm.config, "normalize_actions", True):
            session = self._connect(algorithm)
            actions, log_det = normalized_actions(actions, session.action_low, session.action_high)
        log_probs = learner_log_probs(algorithm, observations, actions, self.module_id) - log_det
        finite = np.isfinite(log_probs)  # rows left out get weight 0 in the refit
        return indices[finite], log_probs[finite]

    def push(self, algorithm: Any) -> None:
        """Send the learner's policy (as log-probs of the dataset sample); start a refit unless one runs."""
        indices, log_probs = self.policy_log_probs(algorithm)
        answer = self._call(algorithm, "update_policy_log_probs", indices, log_probs)
        self.pushes += 1
        self.model_version = max(self.model_version, int(answer.model_version))
        if answer.HasField("started_refit"):  # the engine's refit_every started one
            self.refits.append(RefitState.from_message(answer.started_refit))
        elif self.do_refit:
            if self.refit_running():
                self.refits_skipped += 1
            else:
                try:  # another client of this engine may be refitting: skip, the next push tries again
                    self.refits.append(self._call(algorithm, "refit", steps=self.refit_steps))
                except FailedPreconditionError:
                    self.refits_skipped += 1

    def refit_running(self) -> bool:
        """Return True while the last refit this callback started is running (as last polled)."""
        return bool(self.refits) and self.refits[-1].state == "running"

    def poll(self, algorithm: Any, wait_s: float = 0.0) -> None:
        """Update the last refit's state (waiting up to ``wait_s``) and the served model version."""
        if self.refit_running():
            job_id = self.refits[-1].job_id
            self.refits[-1] = (self._call(algorithm, "wait_refit", job_id, timeout_s=wait_s) if wait_s > 0
                               else self._call(algorithm, "get_refit", job_id))
        _, self.model_version = self._call(algorithm, "reset")  # cheap: start states, no model call

    def wait(self, algorithm: Any, timeout_s: float = 600.0) -> RefitState | None:
        """Wait until the last refit this callback started ends; return its state (None if none was started)."""
        self.poll(algorithm, wait_s=timeout_s)
        return self.refits[-1] if self.refits else None

    def metrics(self) -> dict[str, Any]:
        """Return what ``on_train_result`` puts under ``result["adept"]``."""
        done = [r for r in self.refits if r.state == "done"]
        return {
            "policy_pushes": self.pushes,
            "refits_started": len(self.refits),
            "refits_done": len(done),
            "refits_failed": sum(r.state == "failed" for r in self.refits),
            "refits_skipped": self.refits_skipped,
            "refit_running": self.refit_running(),
            "last_refit_ess_fraction": float(done[-1].ess_fraction) if done else float("nan"),
            "model_version": self.model_version,
        }

    def on_train_result(self, *, algorithm: Any, metrics_logger: Any = None, result: dict, **kwargs: Any) -> None:
        """Every ``every`` iterations (or ``every_env_steps`` sampled steps): push, maybe refit; report."""
        self.iterations += 1
        steps = _env_steps(result)
        due = (steps - self._last_push_steps >= self.every_env_steps if self.every_env_steps is not None
               else self.iterations - self._last_push_iteration >= self.every)
        if self.refit_running() or self.model_version < 0:
            self.poll(algorithm)
        if due:
            self.push(algorithm)
            self._last_push_iteration, self._last_push_steps = self.iterations, steps
            self.poll(algorithm)
            if self.verbose:
                print(f"pushed policy #{self.pushes} at iteration {self.iterations} ({steps} env steps); "
                      f"refits {len(self.refits)}, model version {self.model_version}", flush=True)
        result["adept"] = self.metrics()


def _env_steps(result: dict) -> int:
    """The env steps sampled so far, from a training result (new API stack keys)."""
    from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME

    runners = result.get(ENV_RUNNER_RESULTS) or {}
    return int(runners.get(NUM_ENV_STEPS_SAMPLED_LIFETIME, result.get(NUM_ENV_STEPS_SAMPLED_LIFETIME, 0)) or 0)


def push_callbacks(algorithm: Any) -> list[Any]:
    """Return the algorithm's ``PushPolicyCallback`` objects (on the driver)."""
    callbacks = getattr(algorithm, "callbacks", None) or []
    return [c for c in (callbacks if isinstance(callbacks, list) else [callbacks]) if isinstance(c, _PushPolicy)]


def _build_callback_class() -> type:
    from ray.rllib.callbacks.callbacks import RLlibCallback

    class PushPolicyCallback(_PushPolicy, RLlibCallback):
        """An RLlib callback: every ``every`` training iterations (or ``every_env_steps`` sampled env
        steps), send the learner's policy to the world-model service and start a refit there.

        Over the wire travel only log pi(a|s) of ``sample_size`` dataset rows (fetched once with
        ``pairs_seed``), computed with the learner's RLModule (its exploration action distribution,
        for SAC the tanh-squashed Gaussian; env actions are mapped to [-1, 1] as
        ``normalize_actions`` does; observations reach the module as the env gives them, so an
        env-to-module connector that transforms them, such as MeanStdFilter, is not supported). A
        refit is skipped (not queued) while the previous one still runs. The callback opens its
        own session with the algorithm's ``env_config`` (same token, env id and overrides as the
        env runners, so the same engine) and adds ``result["adept"]``: policy_pushes,
        refits_started/done/failed/skipped, refit_running, last_refit_ess_fraction, model_version.
        Configure it with ``config.callbacks(functools.partial(PushPolicyCallback, every=...))``.
        """

    PushPolicyCallback.__module__ = __name__
    PushPolicyCallback.__qualname__ = "PushPolicyCallback"  # pickled by reference, as adept_client.rllib's
    return PushPolicyCallback


def __getattr__(name: str) -> Any:
    if name == "PushPolicyCallback":  # RLlib (and with it torch) is loaded on first use
        cls = _build_callback_class()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# PushPolicyCallback is left out: ``import *`` must not load RLlib.
__all__ = ["DEFAULT_ENV_ID", "ENV_NAME", "env_config", "env_creator",
           "learner_log_probs", "module_log_probs", "normalized_actions", "open_session", "push_callbacks",
           "register"]
