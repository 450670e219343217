"""The typed offline dataset, and loading it from our files or real D4RL files."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from adept_env.data.collect import episode_returns
from adept_env.data.generate import default_path  # the cache path: make_dataset writes it, load_dataset reads it
from adept_env.data.hdf5 import DatasetFileError, read_hdf5
from adept_env.tasks import TASKS, Task, get_task, normalized_score, parse_dataset_name


class DatasetUnavailableError(FileNotFoundError):
    """A named dataset that has not been generated yet; the message says how to make it."""


@dataclass
class OfflineDataset:
    """Transitions (s, a, r, s', terminal) of one task, ready for Q-learning or model fitting.

    Arrays are float32 except ``terminals`` and ``timeouts`` (bool). ``timeouts`` marks the
    transitions after which an episode was cut by the time limit (still valid transitions).
    """

    task: Task
    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminals: np.ndarray
    timeouts: np.ndarray
    behavior_log_probs: np.ndarray | None = None
    """log beta(a|s) as logged at collection time, when the file has it."""
    name: str = ""
    source: str = ""
    attrs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.rewards)
        for key in ("observations", "actions", "next_observations", "terminals", "timeouts"):
            if len(getattr(self, key)) != n:
                raise DatasetFileError(f"{key} has {len(getattr(self, key))} rows, rewards has {n}")
        if self.observations.shape[1:] != (self.task.obs_dim,) or self.actions.shape[1:] != (self.task.act_dim,):
            raise DatasetFileError(
                f"{self.task.name} expects observations of size {self.task.obs_dim} and actions of size "
                f"{self.task.act_dim}; got {self.observations.shape[1:]} and {self.actions.shape[1:]}"
            )

    def __len__(self) -> int:
        return len(self.rewards)

    @property
    def obs_dim(self) -> int:
        return self.task.obs_dim

    @property
    def act_dim(self) -> int:
        return self.task.act_dim

    @property
    def ref_min_score(self) -> float:
        return self.task.ref_min_score

    @property
    def ref_max_score(self) -> float:
        return self.task.ref_max_score

    def episode_returns(self) -> np.ndarray:
        """Return each episode's undiscounted return (episodes end at terminals or timeouts)."""
        return episode_returns(self.rewards, self.terminals, self.timeouts)

    def episode_starts(self) -> np.ndarray:
        """Return the row index of each episode's first step (episodes end at terminals or timeouts)."""
        ends = np.flatnonzero(self.terminals | self.timeouts)
        return np.unique(np.concatenate([[0], ends[ends + 1 < len(self)] + 1])).astype(np.int64)

    def summary(self) -> dict[str, Any]:
        """Return sizes, episode statistics and normalised returns as plain Python values."""
        returns = self.episode_returns()
        scores = normalized_score(self.task, returns) if len(returns) else np.zeros(0)
        return {
            "name": self.name,
            "task": self.task.name,
            "env_id": self.attrs.get("env_id", self.task.env_id),
            "source": self.source,
            "transitions": len(self),
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "episodes": int(len(returns)),
            "terminals": int(self.terminals.sum()),
            "timeouts": int(self.timeouts.sum()),
            "return_mean": float(np.mean(returns)) if len(returns) else float("nan"),
            "return_std": float(np.std(returns)) if len(returns) else float("nan"),
            "normalized_score_mean": float(np.mean(scores)) if len(scores) else float("nan"),
            "has_log_probs": self.behavior_log_probs is not None,
            "behavior_policy": self.attrs.get("behavior_policy", "unknown"),
            "seed": self.attrs.get("seed"),
        }


def from_d4rl_arrays(
    arrays: dict[str, np.ndarray],
    task: Task,
    *,
    name: str = "",
    source: str = "",
    attrs: dict[str, Any] | None = None,
    terminate_on_end: bool = False,
) -> OfflineDataset:
    """Build transitions from D4RL-layout arrays.

    With ``next_observations`` in the file, every row is a valid transition and all are kept.
    Without it, next states are taken from the following row exactly as d4rl's
    ``qlearning_dataset`` does: the last row is dropped, and so is every time-limit row
    (``timeouts``, or every ``max_episode_steps``-th step when the file predates timeouts),
    unless ``terminate_on_end``.
    """
    obs = np.asarray(arrays["observations"], np.float32)
    act = np.asarray(arrays["actions"], np.float32)
    rew = np.asarray(arrays["rewards"], np.float32).reshape(-1)
    term = np.asarray(arrays["terminals"]).reshape(-1).astype(bool)
    log_probs = arrays.get("infos/action_log_probs")
    if "next_observations" in arrays:
        timeouts = np.asarray(arrays.get("timeouts", np.zeros_like(term))).reshape(-1).astype(bool)
        keep = np.arange(len(rew))
        next_obs = np.asarray(arrays["next_observations"], np.float32)
    else:
        n = len(rew)
        if "timeouts" in arrays:
            final = np.asarray(arrays["timeouts"]).reshape(-1).astype(bool)
        else:
            final = np.zeros(n, bool)
            episode_step = 0
            for i in range(n - 1):
                final[i] = episode_step == task.max_episode_steps - 1
                episode_step = 0 if (term[i] or final[i]) else episode_step + 1
        idx = np.arange(n - 1)
        keep = idx if terminate_on_end else idx[~final[:-1]]
        next_obs = obs[keep + 1]
        timeouts = final
    return OfflineDataset(
        task=task,
        observations=obs[keep],
        actions=act[keep],
        rewards=rew[keep],
        next_observations=next_obs,
        terminals=term[keep],
        timeouts=timeouts[keep],
        behavior_log_probs=None if log_probs is None else np.asarray(log_probs, np.float32).reshape(-1)[keep],
        name=name,
        source=source,
        attrs=dict(attrs or {}),
    )


_D4RL_FILE = re.compile(r"(halfcheetah|hopper|walker2d)[_-]([a-z_-]+?)(?:[-_]v\d+)?\.hdf5$")


def infer_task(path: Path, attrs: dict[str, Any], obs_dim: int) -> Task:
    """Work out the task of a file from its attributes, its name, or its observation size."""
    if "task" in attrs:
        return get_task(str(attrs["task"]))
    env_id = str(attrs.get("env_id", ""))
    for task in TASKS.values():
        if env_id and env_id.split("-")[0].lower() == task.env_id.split("-")[0].lower():
            return task
    match = _D4RL_FILE.search(path.name.lower())
    if match:
        return TASKS[match.group(1)]
    candidates = [t for t in TASKS.values() if t.obs_dim == obs_dim]
    if len(candidates) == 1:
        return candidates[0]
    names = " or ".join(t.name for t in candidates) or "no known task"
    raise DatasetFileError(
        f"cannot tell the task of {str(path)!r} (observation size {obs_dim} fits {names}); pass task=..."
    )


def d4rl_path(name: str) -> Path | None:
    """Return a real D4RL file for ``name`` under ``$ADEPT_D4RL_DIR`` if one exists there."""
    root = os.environ.get("ADEPT_D4RL_DIR")
    if not root:
        return None
    task, quality = parse_dataset_name(name)
    stem = f"{task.name}_{quality.replace('-', '_')}"
    for version in ("v2", "v1", "v0"):
        candidate = Path(root).expanduser() / f"{stem}-{version}.hdf5"
        if candidate.exists():
            return candidate
    return None


def load_dataset(
    name_or_path: str | os.PathLike[str],
    *,
    task: str | Task | None = None,
    generate: bool = True,
    progress: bool = True,
) -> OfflineDataset:
    """Load a dataset by name (``"halfcheetah-random"``) or by path to a D4RL-layout HDF5 file.

    A name resolves to a real D4RL file under ``$ADEPT_D4RL_DIR`` when one is there, else to
    our cache under ``$ADEPT_HOME``; a missing ``random`` dataset is generated (1M steps, seed
    0) when ``generate`` is true. Other qualities need their behaviour policy and must be made
    with ``adept-env data make``; a missing one raises DatasetUnavailableError saying so.
    """
    text = os.fspath(name_or_path)
    if text.endswith((".hdf5", ".h5")) or os.sep in text or Path(text).exists():
        path = Path(text)
        arrays, attrs = read_hdf5(path)
        t = get_task(task) if task is not None else infer_task(path, attrs, arrays["observations"].shape[-1])
        return from_d4rl_arrays(arrays, t, name=str(attrs.get("dataset", path.stem)), source=str(path), attrs=attrs)

    ds_task, quality = parse_dataset_name(text)
    name = f"{ds_task.name}-{quality}"
    real = d4rl_path(name)
    if real is not None:
        arrays, attrs = read_hdf5(real)
        return from_d4rl_arrays(arrays, ds_task, name=name, source=str(real), attrs=attrs)
    path = default_path(name)
    if not path.exists():
        if not generate or quality != "random":
            raise DatasetUnavailableError(
                f"dataset {name!r} is not in {str(path.parent)!r} yet; make it with: adept-env data make {name}"
            )
        from adept_env.data.generate import make_dataset

        make_dataset(name, out=path, progress=progress)
    arrays, attrs = read_hdf5(path)
    return from_d4rl_arrays(arrays, ds_task, name=name, source=str(path), attrs=attrs)


def load_sized_dataset(name: str, steps: int, progress: bool = True) -> OfflineDataset:
    """``name`` (TASK-QUALITY) generated with ``steps`` steps instead of the recipe's size, cached beside the
    full file as ``TASK-QUALITY-STEPS.hdf5`` (made on first use); the dataset keeps the name ``TASK-QUALITY``.

    What ``adept-env train --dataset-steps`` and ``adept-env sweep --dataset-steps`` load."""
    from adept_env.data.generate import default_path, make_dataset
    from adept_env.tasks import parse_dataset_name

    task, quality = parse_dataset_name(name)
    path = default_path(name).with_name(f"{task.name}-{quality}-{steps}.hdf5")
    if not path.exists():
        make_dataset(name, steps=steps, out=path, progress=progress)
    dataset = load_dataset(path, progress=progress)
    dataset.name = f"{task.name}-{quality}"
    return dataset
