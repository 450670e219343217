"""The agent's current policy, as the environment needs it: log pi(a|s) for dataset pairs.

``as_target_policy`` accepts a stable-baselines3 model or policy, the built-in IQL actor (or any
object with ``log_prob(observations, actions)``), a plain log-prob callable, or a policy snapshot
(safetensors + JSON spec, the behaviour-policy format), and checks its sizes against the task.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

LogProbFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


class PolicyMismatchError(ValueError):
    """A policy whose observation or action sizes do not match the environment's."""


@dataclass
class TargetPolicy:
    """A policy the world model should be accurate for: returns log pi(a|s) per pair (nats)."""

    log_prob_fn: LogProbFn
    description: str
    batch_size: int = 65_536

    def log_prob(self, observations: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Return float64 log-densities, one per row, evaluated in batches."""
        out = [
            np.asarray(self.log_prob_fn(observations[i : i + self.batch_size], actions[i : i + self.batch_size]),
                       np.float64).reshape(-1)
            for i in range(0, len(observations), self.batch_size)
        ]
        return np.concatenate(out) if out else np.zeros(0)


def _sb3_log_prob(policy: Any) -> LogProbFn:
    """Log-prob function of an SB3 policy with a stochastic actor (SAC, PPO, A2C, ...)."""

    def log_prob(observations: np.ndarray, actions: np.ndarray) -> np.ndarray:
        obs = torch.as_tensor(observations, dtype=torch.float32, device=policy.device)
        act = torch.as_tensor(policy.scale_action(np.asarray(actions, np.float32)), device=policy.device)
        with torch.no_grad():
            if hasattr(policy, "evaluate_actions"):  # on-policy actor-critic policies
                _, lp, _ = policy.evaluate_actions(obs, act)
            elif hasattr(policy, "actor") and hasattr(policy.actor, "get_action_dist_params"):  # SAC
                mean, log_std, kwargs = policy.actor.get_action_dist_params(obs)
                dist = policy.actor.action_dist.proba_distribution(mean, log_std, **kwargs)
                lp = dist.log_prob(act)
            else:
                raise PolicyMismatchError(
                    f"{type(policy).__name__} is deterministic (no action density); importance weights need a "
                    "stochastic policy such as SAC's or PPO's"
                )
        return lp.reshape(-1).cpu().numpy()

    return log_prob


def _check_box(name: str, space: Any, expected: int) -> None:
    shape = getattr(space, "shape", None)
    if shape != (expected,):
        raise PolicyMismatchError(f"the policy's {name} space has shape {shape}; this environment needs ({expected},)")


def as_target_policy(policy: Any, obs_dim: int, act_dim: int, probe: np.ndarray | None = None) -> TargetPolicy:
    """Wrap ``policy`` as a TargetPolicy after checking its sizes.

    ``probe``: a few observations (from the dataset) used to check that a callable returns one
    finite log-prob per row. Raises PolicyMismatchError with what is wrong.
    """
    if isinstance(policy, TargetPolicy):
        return policy
    if isinstance(policy, (str, os.PathLike)):
        from adept_env.data.behavior import load_actor

        actor = load_actor(Path(policy))
        if (actor.obs_dim, actor.act_dim) != (obs_dim, act_dim):
            raise PolicyMismatchError(
                f"snapshot {os.fspath(policy)!r} is for observations {actor.obs_dim} / actions {actor.act_dim}; "
                f"this environment has {obs_dim} / {act_dim}"
            )
        return TargetPolicy(actor.log_prob, f"snapshot {os.fspath(policy)}")
    sb3_policy = getattr(policy, "policy", None) if hasattr(policy, "learn") else policy
    if sb3_policy is not None and hasattr(sb3_policy, "observation_space") and hasattr(sb3_policy, "scale_action"):
        _check_box("observation", sb3_policy.observation_space, obs_dim)
        _check_box("action", sb3_policy.action_space, act_dim)
        return TargetPolicy(_sb3_log_prob(sb3_policy), f"stable-baselines3 {type(policy).__name__}")
    fn = policy.log_prob if hasattr(policy, "log_prob") else policy
    if not callable(fn):
        raise PolicyMismatchError(
            f"cannot use {type(policy).__name__} as a policy: pass an SB3 model or policy, an object with "
            "log_prob(observations, actions), a callable (observations, actions) -> log-probs, or a snapshot path"
        )
    for name, dim in (("obs_dim", obs_dim), ("act_dim", act_dim)):
        declared = getattr(policy, name, None)
        if isinstance(declared, int) and declared != dim:
            raise PolicyMismatchError(f"the policy's {name} is {declared}; this environment needs {dim}")
    target = TargetPolicy(fn, f"{type(policy).__name__} log_prob")
    if probe is not None:
        probe = np.asarray(probe, np.float32)
        actions = np.zeros((len(probe), act_dim), np.float32)
        try:
            out = np.asarray(fn(probe, actions), np.float64).reshape(-1)
        except Exception as exc:  # the callable's own failure, reported with the sizes it was given
            raise PolicyMismatchError(
                f"the policy failed on observations {probe.shape} and actions {actions.shape}: {exc}"
            ) from exc
        if out.shape != (len(probe),) or not np.all(np.isfinite(out)):
            raise PolicyMismatchError(
                f"the policy must return one finite log-prob per pair; got shape {out.shape} for {len(probe)} pairs"
            )
    return target
