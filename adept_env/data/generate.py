"""Generate D4RL-protocol datasets with Gymnasium's MuJoCo v5 environments."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from tqdm.auto import tqdm

from adept_env import __version__
from adept_env.data.collect import ActingPolicy, collect, uniform_policy
from adept_env.data.hdf5 import write_hdf5
from adept_env.paths import adept_home, datasets_dir
from adept_env.progress import show_progress
from adept_env.tasks import Task, parse_dataset_name

DEFAULT_STEPS = 1_000_000


def default_path(name: str) -> Path:
    """Return the cache path of a named dataset, e.g. ``$ADEPT_HOME/datasets/hopper-random.hdf5``.

    :func:`make_dataset` writes there by default and ``adept_env.data.dataset.load_dataset`` reads
    (and, for ``random``, generates) it there.
    """
    task, quality = parse_dataset_name(name)
    return datasets_dir() / f"{task.name}-{quality}.hdf5"


def behavior_policy(task: Task, quality: str) -> ActingPolicy:
    """Return the policy that collects ``quality`` data for ``task``.

    ``random``: the uniform policy; ``medium`` / ``expert``: the SAC actor shipped in
    ``adept_env/policies`` (sampled stochastically). ``medium-replay`` and ``medium-expert``
    come from several policies; :func:`make_dataset` builds them.
    """
    if quality == "random":
        return uniform_policy(task)
    if quality in ("medium", "expert"):
        from adept_env.data.behavior import shipped_actor

        try:
            return shipped_actor(task.name, quality)
        except FileNotFoundError as exc:
            raise NotImplementedError(str(exc)) from exc
    raise ValueError(
        f"{task.name}-{quality} is not collected by one policy: medium-replay is the medium SAC run's replay "
        f"buffer, medium-expert is medium + expert; make_dataset builds them"
    )


REPLAY_SOURCES: tuple[str, ...] = ("auto", "run", "recipe")
"""Where medium-replay comes from: a behaviour run's buffer if one exists (auto), the run, or the recipe."""


def replay_source_for(
    task: Task,
    replay_source: str = "auto",
    *,
    run_dir: str | os.PathLike[str] | None = None,
    medium_step: int | None = None,
    ramp_exponent: float | None = None,
) -> str:
    """Return "run" or "recipe": how :func:`make_dataset` makes ``task``'s medium-replay.

    "auto" takes the behaviour run's replay buffer when a run is named (``run_dir``,
    ``medium_step``) or ``$ADEPT_HOME/behavior/<task>`` holds one, else the shipped recipe.
    """
    if replay_source not in REPLAY_SOURCES:
        raise ValueError(f"replay_source must be one of {', '.join(REPLAY_SOURCES)}, got {replay_source!r}")
    run_named = run_dir is not None or medium_step is not None
    if replay_source == "recipe" and run_named:
        raise ValueError("run_dir and medium_step name a behaviour run; the recipe (replay_source='recipe') uses none")
    if replay_source == "run" and ramp_exponent is not None:
        raise ValueError("ramp_exponent shapes the recipe; a behaviour run's buffer (replay_source='run') has none")
    if replay_source != "auto":
        return replay_source
    if run_named:
        if ramp_exponent is not None:
            raise ValueError("ramp_exponent shapes the recipe; run_dir and medium_step name a behaviour run")
        return "run"
    if ramp_exponent is not None:
        return "recipe"
    return "run" if (behavior_run_dir(task) / "progress.json").exists() else "recipe"


def behavior_run_dir(task: Task) -> Path:
    """Return ``$ADEPT_HOME/behavior/<task>``, the default behaviour run folder.

    The same folder as ``adept_env.data.train_behavior.default_run_dir``, which imports torch;
    this does not, so ``adept-env data list`` stays fast.
    """
    return adept_home() / "behavior" / task.name


def make_dataset(
    name: str,
    *,
    steps: int = DEFAULT_STEPS,
    seed: int = 0,
    out: str | os.PathLike[str] | None = None,
    progress: bool = True,
    run_dir: str | os.PathLike[str] | None = None,
    medium_step: int | None = None,
    replay_source: str = "auto",
    ramp_exponent: float | None = None,
) -> Path:
    """Generate dataset ``name`` (e.g. ``"hopper-random"``) and write it atomically.

    Returns the path written (``out``, or the cache path under ``$ADEPT_HOME``). The file has
    D4RL's keys plus attributes naming the env id, library versions, seed and the behaviour
    policy's checksum; the same name, steps and seed give the same arrays.

    ``medium``/``expert`` collect ``steps`` transitions of the shipped actor; ``medium-expert``
    is ``steps`` of each (2 * steps rows, medium first); ``medium-replay`` is the SAC run's
    replay buffer (in ``run_dir``, default ``$ADEPT_HOME/behavior/<task>``) from its start up to
    the shipped medium actor's step (``medium_step``: the run's own snapshot at that step instead),
    cut to the first ``steps`` rows if that is fewer. Without a run (``replay_source="auto"``
    and no run folder) it is the shipped ramped-mixture recipe instead
    (``adept_env/data/replay_recipe.py``, ramp exponent ``ramp_exponent``, default ``ReplayRecipe``'s);
    ``replay_source`` "run" or "recipe" insists on one. The file's ``replay_source``
    attribute says which was used, and with ``progress`` it is printed.
    """
    task, quality = parse_dataset_name(name)
    if quality != "medium-replay":
        for option, value in (("medium_step", medium_step), ("ramp_exponent", ramp_exponent)):
            if value is not None:
                raise ValueError(f"{option} applies to medium-replay datasets, not {name}")
    extra: dict[str, Any] = {}
    if quality == "medium-replay":
        source = replay_source_for(task, replay_source, run_dir=run_dir, medium_step=medium_step,
                                   ramp_exponent=ramp_exponent)
        if source == "run":
            from adept_env.data.train_behavior import medium_replay_arrays

            arrays, extra = medium_replay_arrays(task, steps=steps, run_dir=run_dir, medium_step=medium_step)
            extra["replay_source"] = f"behaviour run {Path(run_dir) if run_dir is not None else behavior_run_dir(task)}"
        else:
            from adept_env.data.replay_recipe import ReplayRecipe, recipe_replay_arrays

            recipe = ReplayRecipe() if ramp_exponent is None else ReplayRecipe(exponent=ramp_exponent)
            arrays, extra = recipe_replay_arrays(task, steps=steps, seed=seed, recipe=recipe, progress=progress)
            extra["replay_source"] = "shipped recipe (adept_env/data/replay_recipe.py)"
        if show_progress(progress):
            tqdm.write(f"{task.name}-medium-replay: made from the {extra['replay_source']}")
        policy_name, checksum = extra.pop("behavior_policy"), extra.pop("behavior_policy_sha256")
    elif quality == "medium-expert":
        medium, expert = behavior_policy(task, "medium"), behavior_policy(task, "expert")
        parts = [
            collect(task, medium, steps, seed, progress=progress, desc=f"{task.name}-medium-expert (medium)"),
            collect(task, expert, steps, seed + 1, progress=progress, desc=f"{task.name}-medium-expert (expert)"),
        ]
        arrays = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        components = [medium.checksum(), expert.checksum()]
        policy_name = f"mixture({medium.name}, {expert.name})"
        checksum = hashlib.sha256(",".join(components).encode()).hexdigest()
        extra = {
            "behavior_policy_components": json.dumps(components),
            "behavior_policy_weights": json.dumps([0.5, 0.5]),
            "component_rows": json.dumps([steps, steps]),
            "component_seeds": json.dumps([seed, seed + 1]),
        }
    else:
        policy = behavior_policy(task, quality)
        arrays = collect(task, policy, steps, seed, progress=progress, desc=f"{task.name}-{quality}")
        policy_name, checksum = policy.name, policy.checksum()
    attrs = {
        "dataset": f"{task.name}-{quality}",
        "task": task.name,
        "env_id": task.env_id,
        "quality": quality,
        "seed": seed,
        "steps": len(arrays["rewards"]),
        "behavior_policy": policy_name,
        "behavior_policy_sha256": checksum,
        "gymnasium_version": gym.__version__,
        "mujoco_version": mujoco.__version__,
        "adept_env_version": __version__,
        "numpy_version": np.__version__,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }
    target = Path(out) if out is not None else default_path(name)
    return write_hdf5(target, arrays, attrs)

