"""Generate D4RL-protocol datasets with Gymnasium's MuJoCo v5 environments."""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path

import gymnasium as gym
import mujoco
import numpy as np

from adept_env import __version__
from adept_env.data.collect import ActingPolicy, collect, uniform_policy
from adept_env.data.hdf5 import write_hdf5
from adept_env.tasks import Task, parse_dataset_name

DEFAULT_STEPS = 1_000_000


def behavior_policy(task: Task, quality: str) -> ActingPolicy:
    """Return the policy that collects ``quality`` data for ``task``."""
    if quality == "random":
        return uniform_policy(task)
    raise NotImplementedError(
        f"{task.name}-{quality} needs a trained behaviour policy, which this version does not ship yet; "
        f"only the random datasets can be generated"
    )


def make_dataset(
    name: str,
    *,
    steps: int = DEFAULT_STEPS,
    seed: int = 0,
    out: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> Path:
    """Generate dataset ``name`` (e.g. ``"hopper-random"``) and write it atomically.

    Returns the path written (``out``, or the cache path under ``$ADEPT_HOME``). The file has
    D4RL's keys plus attributes naming the env id, library versions, seed and the behaviour
    policy's checksum; the same name, steps and seed give the same arrays.
    """
    from adept_env.data.dataset import default_path

    task, quality = parse_dataset_name(name)
    policy = behavior_policy(task, quality)
    arrays = collect(task, policy, steps, seed, progress=progress, desc=f"{task.name}-{quality}")
    attrs = {
        "dataset": f"{task.name}-{quality}",
        "task": task.name,
        "env_id": task.env_id,
        "quality": quality,
        "seed": seed,
        "steps": steps,
        "behavior_policy": policy.name,
        "behavior_policy_sha256": policy.checksum(),
        "gymnasium_version": gym.__version__,
        "mujoco_version": mujoco.__version__,
        "adept_env_version": __version__,
        "numpy_version": np.__version__,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    target = Path(out) if out is not None else default_path(name)
    return write_hdf5(target, arrays, attrs)
