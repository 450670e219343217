"""The episode engine: N synthetic episodes stepped together through one world-model core.

Every way of stepping the world model goes through ``EpisodeBatch.step``: the single env, the
native vector env, the SB3 ``VecEnv``, the server's sessions, the IQL loop's rollouts and
checkpoint selection. It owns the action policy (``check_actions``), the penalised reward,
termination, truncation at the horizon, the uncertainty halt, automatic resets (Gymnasium's
``AutoresetMode``), final observations and the ``info`` fields, so each of those callers is a
thin adapter. docs/architecture.md follows one step through the layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium.error import ResetNeeded
from gymnasium.vector import AutoresetMode

from adept_env.data.dataset import OfflineDataset
from adept_env.envs.config import EnvConfig
from adept_env.envs.core import WorldModelCore
from adept_env.envs.model_store import load_world

__all__ = ["AUTORESET_NAMES", "AutoresetMode", "EpisodeBatch", "ResetNeeded", "StepResult", "autoreset_mode",
           "build_core", "check_actions"]

AUTORESET_NAMES = ("none", "next_step", "same_step")
"""The autoreset modes' names on the wire (and in ``EpisodeBatch.step``), for DISABLED, NEXT_STEP, SAME_STEP."""
_AUTORESET_NAMES = {
    "none": AutoresetMode.DISABLED,
    "disabled": AutoresetMode.DISABLED,
    "next_step": AutoresetMode.NEXT_STEP,
    "nextstep": AutoresetMode.NEXT_STEP,
    "same_step": AutoresetMode.SAME_STEP,
    "samestep": AutoresetMode.SAME_STEP,
}


def autoreset_mode(value: AutoresetMode | str) -> AutoresetMode:
    """Return the ``AutoresetMode`` of ``value``: the enum, its value ('NextStep'), or the wire's names
    ('none', 'next_step', 'same_step'). Raises ValueError naming the valid ones."""
    if isinstance(value, AutoresetMode):
        return value
    mode = _AUTORESET_NAMES.get(str(value).lower())
    if mode is None:
        raise ValueError(f"autoreset must be one of {AUTORESET_NAMES}, got {value!r}")
    return mode


def check_actions(actions: Any, n: int, act_dim: int) -> np.ndarray:
    """Return ``actions`` as float32 (n, act_dim), clipped to the action bounds [-1, 1].

    The one action policy of every env, vector env and server session. Finite values outside the
    bounds are clipped, as MuJoCo clamps the controls of the locomotion tasks (their actuators are
    ``ctrllimited``), so an agent sees what the real simulator would do. Raises ValueError for
    non-numeric dtypes, a wrong shape, NaN or inf. ``(act_dim,)`` is accepted when ``n`` is 1.
    """
    array = np.asarray(actions)
    if array.dtype.kind not in "fiu":
        raise ValueError(f"actions must be numbers (float32, float64 or integers), got dtype {array.dtype}")
    if array.shape == (act_dim,) and n == 1:
        array = array[None]
    if array.shape != (n, act_dim):
        raise ValueError(f"actions must have shape ({n}, {act_dim}) (or ({act_dim},) for one env); got {array.shape}")
    finite = np.isfinite(array)
    if not finite.all():
        row, col = np.argwhere(~finite)[0]
        raise ValueError(f"actions contain NaN or inf (first at [{row}, {col}])")
    return np.clip(array, -1.0, 1.0).astype(np.float32, copy=False)


@dataclass
class StepResult:
    """What ``EpisodeBatch.step`` returns: arrays of length n (float32; bool flags)."""

    observations: np.ndarray
    """(n, obs_dim): what each episode sees next (a start state where it was reset in this call)."""
    rewards: np.ndarray
    """The penalised reward r - penalty * u; 0 where the episode was not stepped."""
    terminated: np.ndarray
    """The task's termination function, or the uncertainty halt."""
    truncated: np.ndarray
    """The episode reached the horizon (and did not terminate)."""
    raw_rewards: np.ndarray
    uncertainty: np.ndarray
    halted: np.ndarray
    """The episode ended because the uncertainty passed the threshold."""
    model_version: int
    stepped: np.ndarray
    """Episodes the model advanced in this call (not those reset instead, or masked out)."""
    reset_mask: np.ndarray
    """Episodes reset in this call: before stepping (next-step autoreset: their observation is a start
    state and they were not stepped) or after (same-step: their last observation is in
    ``final_observations``)."""
    final_observations: np.ndarray | None = None
    """Same-step autoreset: every episode's observation before the resets (n, obs_dim)."""
    next_samples: np.ndarray | None = None
    """(K, n, obs_dim): the model's K draws of each next observation (zeros where not stepped)."""

    def info(self, i: int) -> dict[str, Any]:
        """The ``info`` of episode ``i``: raw reward, uncertainty, halted, model version and the K draws."""
        info: dict[str, Any] = {
            "raw_reward": float(self.raw_rewards[i]),
            "uncertainty": float(self.uncertainty[i]),
            "halted": bool(self.halted[i]),
            "model_version": self.model_version,
        }
        if self.next_samples is not None:  # the draws whose mean is the observation (value penalty)
            info["next_samples"] = self.next_samples[:, i]
        return info

    def vector_info(self) -> dict[str, np.ndarray]:
        """Gymnasium's vector ``info``: arrays with ``_``-masks (set where the episode was stepped)."""
        info: dict[str, np.ndarray] = {}
        for key, values in (("raw_reward", self.raw_rewards), ("uncertainty", self.uncertainty),
                            ("halted", self.halted)):
            info[key], info[f"_{key}"] = values, self.stepped.copy()
        info["model_version"] = np.full(len(self.rewards), self.model_version, np.int64)
        info["_model_version"] = np.ones(len(self.rewards), bool)
        return info


class EpisodeBatch:
    """The state of ``n`` episodes stepped through one core with a single model call per step.

    ``horizon`` (default: the core's) truncates episodes. Stepping before the first ``reset`` or
    stepping an ended episode without autoreset raises Gymnasium's ``ResetNeeded``.
    """

    def __init__(self, core: WorldModelCore, n: int, horizon: int | None = None) -> None:
        if n < 1:
            raise ValueError(f"the number of episodes must be >= 1, got {n}")
        self.core = core
        self.n = n
        self.horizon = core.config.horizon if horizon is None else int(horizon)
        self.observations = np.zeros((n, core.task.obs_dim), np.float32)
        self.steps = np.zeros(n, np.int64)
        self.needs_reset = np.zeros(n, bool)
        """Episodes that ended and were not reset yet."""
        self.started = False

    def _mask(self, mask: Any, name: str = "mask") -> np.ndarray:
        if mask is None:
            return np.ones(self.n, bool)
        array = np.asarray(mask)
        if array.dtype != bool or array.shape != (self.n,):
            raise ValueError(f"{name} must be bool of shape ({self.n},), got {array.dtype} {array.shape}")
        return array

    def reset(self, rng: np.random.Generator, mask: np.ndarray | None = None) -> np.ndarray:
        """Start new episodes (all, or where ``mask``) from the core's start states; return all observations."""
        index = np.flatnonzero(self._mask(mask))
        if len(index):
            self.observations[index] = self.core.start_states(len(index), rng)
            self.steps[index] = 0
            self.needs_reset[index] = False
        self.started = True
        return self.observations.copy()

    def step(self, actions: Any, rng: np.random.Generator, autoreset: AutoresetMode | str = AutoresetMode.DISABLED,
             mask: np.ndarray | None = None, seed: int | None = None) -> StepResult:
        """Step the episodes (all, or where ``mask``) with ``actions`` (n, act_dim) in one model call.

        ``autoreset``: DISABLED ('none') refuses to step an ended episode; NEXT_STEP resets ended
        episodes instead of stepping them (Gymnasium's vector envs); SAME_STEP steps every episode and
        resets those that end, keeping their last observation in ``final_observations`` (SB3).
        The model's noise seed is drawn from ``rng`` unless ``seed`` is given.
        """
        mode = autoreset_mode(autoreset)
        actions = check_actions(actions, self.n, self.core.task.act_dim)
        selected = self._mask(mask)
        if not self.started:
            raise ResetNeeded("call reset() before step()")
        pending = self.needs_reset & selected
        if mode is AutoresetMode.DISABLED and pending.any():
            raise ResetNeeded(f"episodes {np.flatnonzero(pending)[:16].tolist()} ended; reset them (with a mask) "
                              "or step with autoreset")
        if pending.any():
            self.reset(rng, mask=pending)
        stepped = selected & ~pending if mode is AutoresetMode.NEXT_STEP else selected.copy()
        n = self.n
        rewards, raw, uncertainty = (np.zeros(n, np.float32) for _ in range(3))
        terminated, truncated, halted = (np.zeros(n, bool) for _ in range(3))
        version, samples = self.core.model_version, None
        index = np.flatnonzero(stepped)
        if len(index):
            seed = int(rng.integers(0, 2**31 - 1)) if seed is None else seed
            batch = self.core.step(self.observations[index], actions[index], seed=seed)
            self.observations[index] = batch.next_observations
            self.steps[index] += 1
            rewards[index], raw[index], uncertainty[index] = batch.rewards, batch.raw_rewards, batch.uncertainty
            terminated[index], halted[index] = batch.terminated, batch.halted
            truncated[index] = (self.steps[index] >= self.horizon) & ~batch.terminated
            version = batch.model_version
            if batch.samples is not None:
                samples = np.zeros((len(batch.samples), n, self.observations.shape[1]), np.float32)
                samples[:, index] = batch.samples
        done = terminated | truncated
        result = StepResult(self.observations.copy(), rewards, terminated, truncated, raw, uncertainty, halted,
                            version, stepped, reset_mask=pending, next_samples=samples)
        if mode is AutoresetMode.SAME_STEP:
            result.final_observations = result.observations
            result.reset_mask = done
            result.observations = self.reset(rng, mask=done) if done.any() else result.observations
        else:
            self.needs_reset |= done
        return result


def build_core(dataset: str | OfflineDataset, progress: bool = True, **overrides: Any) -> WorldModelCore:
    """Build a core for ``dataset`` (a name, a path, or an OfflineDataset) with config overrides.

    The world model comes from ``model_path``, the cache, or is trained now (progress bar).
    """
    config = EnvConfig.from_overrides(overrides)
    dataset, model = load_world(dataset, config, progress=progress)
    return WorldModelCore(dataset, model, config)
