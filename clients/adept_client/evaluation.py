"""A policy's score in the real MuJoCo simulator, D4RL-normalised, on the client side.

Episodes run as adept-env's own evaluation runs them (``adept_env/training/evaluation.py``), so a
remote run's scores compare with an in-process run's: episode ``i`` is reset with ``seed + i``, the
policy's deterministic action is clipped to [-1, 1], and the task's 1,000-step limit ends it. Scores
are D4RL's normalisation, 100 * (return - random) / (expert - random), from the reference returns
below (the same numbers as ``adept_env/tasks.py``; the client cannot import adept-env, a test checks
they agree).

Needs Gymnasium's MuJoCo environments (``pip install "adept-client[mujoco]"``); importing this module
does not (neither MuJoCo nor torch is loaded until ``evaluate`` runs).
"""

from __future__ import annotations

import difflib
import importlib.util
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

REFERENCE_RETURNS: dict[str, tuple[float, float]] = {
    "halfcheetah": (-280.178953, 12135.0),
    "hopper": (-20.272305, 3234.3),
    "walker2d": (1.629008, 4592.3),
}
"""D4RL's (random-policy return, expert return) per task: normalised scores 0 and 100."""
GYMNASIUM_IDS: dict[str, str] = {"halfcheetah": "HalfCheetah-v5", "hopper": "Hopper-v5", "walker2d": "Walker2d-v5"}
"""The real simulator of each task."""
MAX_EPISODE_STEPS = 1_000
"""The time limit of the real episodes (D4RL's)."""


def task_of(name: str) -> str:
    """Return the task of an env id, dataset or task name (``ADEPT-hopper-medium`` -> ``hopper``);
    ValueError naming the valid tasks otherwise."""
    key = str(name).lower().removeprefix("adept-").split("-", 1)[0]
    if key not in REFERENCE_RETURNS:
        close = difflib.get_close_matches(key, list(REFERENCE_RETURNS), n=1, cutoff=0.5)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown task in {str(name)[:64]!r}.{hint} Valid tasks: {', '.join(REFERENCE_RETURNS)}")
    return key


def normalized_score(task: str, returns: float | np.ndarray) -> float | np.ndarray:
    """Return D4RL's normalised score of ``returns`` (a number or an array) on ``task``."""
    low, high = REFERENCE_RETURNS[task_of(task)]
    score = 100.0 * (np.asarray(returns, dtype=np.float64) - low) / (high - low)
    return float(score) if score.ndim == 0 else score


@dataclass
class RealScore:
    """Returns and lengths of real episodes, with their D4RL-normalised scores."""

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

    def as_dict(self) -> dict[str, Any]:
        """The figures as JSON-ready values."""
        return {"task": self.task, "episodes": len(self.returns), "score_mean": self.score_mean,
                "score_std": self.score_std, "return_mean": self.return_mean,
                "returns": self.returns.tolist(), "lengths": self.lengths.tolist()}

    def __str__(self) -> str:
        return (f"{self.task}: return {self.return_mean:.1f}, normalised score {self.score_mean:.1f} ± "
                f"{self.score_std:.1f} over {len(self.returns)} episodes")


def mujoco_available() -> bool:
    """Return True when MuJoCo's Python bindings are installed (real-simulator evaluation works)."""
    if "mujoco" in sys.modules:  # loaded already, or blocked (None: ``import mujoco`` raises ImportError)
        return sys.modules["mujoco"] is not None
    return importlib.util.find_spec("mujoco") is not None


def _actor(policy: Any) -> Callable[[np.ndarray], np.ndarray]:
    """obs (obs_dim,) -> action, for an SB3 model (its deterministic ``predict``) or a callable."""
    if hasattr(policy, "predict"):
        return lambda obs: policy.predict(obs, deterministic=True)[0]
    if callable(policy):
        return policy
    raise TypeError(f"cannot evaluate {type(policy).__name__}: pass an SB3 model or a callable obs -> action")


_HARMLESS = ("settotalmass",)
"""MuJoCo warnings that are known-harmless (Gymnasium's v5 XML files use an attribute MuJoCo 4 deprecates)."""


def _forward_warning(message: str) -> None:
    if not any(text in message for text in _HARMLESS):
        warnings.warn(f"MuJoCo: {message}", RuntimeWarning, stacklevel=2)


def make_real_env(task: str) -> gym.Env:
    """Return the real simulator of ``task`` with D4RL's time limit; a clear error when MuJoCo is missing.

    MuJoCo's own warnings become Python RuntimeWarnings instead of lines on stdout, but for the
    known-harmless ones (as adept-env's ``adept_env/sim.py`` does)."""
    if not mujoco_available():
        raise ModuleNotFoundError("real-simulator evaluation needs MuJoCo: pip install 'adept-client[mujoco]'")
    import mujoco

    mujoco.set_mju_user_warning(_forward_warning)
    return gym.make(GYMNASIUM_IDS[task_of(task)], max_episode_steps=MAX_EPISODE_STEPS)


def evaluate(policy: Any, task: str, episodes: int = 10, seed: int = 0) -> RealScore:
    """Run ``episodes`` real episodes of ``task`` (an env id or task name) with ``policy``'s deterministic
    actions (episode i reset with ``seed + i``); return their returns and normalised scores."""
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    name = task_of(task)
    act = _actor(policy)
    env = make_real_env(name)
    returns, lengths = np.zeros(episodes), np.zeros(episodes, np.int64)
    try:
        for i in range(episodes):
            obs, _ = env.reset(seed=seed + i)
            done = False
            while not done:
                action = np.clip(np.asarray(act(obs.astype(np.float32)), np.float32), -1.0, 1.0)
                obs, reward, terminated, truncated, _ = env.step(action)
                returns[i] += reward
                lengths[i] += 1
                done = terminated or truncated
    finally:
        env.close()
    return RealScore(name, returns, lengths)
