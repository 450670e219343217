"""What each named dataset needs: on disk, a D4RL file, can be made now (and how long), or what first.

``adept-env data list`` shows :func:`dataset_status` for every name; it reads only file metadata and
the shipped actors' JSON specs, so it is fast and generates nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from adept_env.data.behavior import actor_paths, shipped_actor_stem
from adept_env.data.dataset import d4rl_path
from adept_env.data.generate import DEFAULT_STEPS, behavior_run_dir, default_path
from adept_env.tasks import parse_dataset_name

UNIFORM_STEPS_PER_SECOND: dict[str, float] = {"halfcheetah": 24_000.0, "hopper": 12_000.0, "walker2d": 10_000.0}
"""Measured rate of ``random`` generation (uniform actions), steps per second on one core."""
ACTOR_STEPS_PER_SECOND: dict[str, float] = {"halfcheetah": 4_100.0, "hopper": 2_000.0, "walker2d": 1_800.0}
"""Measured rate of collection with a shipped actor (medium, expert, and the recipe's ramp), steps per second
on one core of the 2-core development machine (5,000 steps each)."""


@dataclass(frozen=True)
class DatasetStatus:
    """Whether a named dataset is here, and if not, what making it takes (see :func:`dataset_status`)."""

    name: str
    state: str
    """One of "on disk", "D4RL file", "can be made now", "needs"."""
    detail: str
    """The size on disk, the time to make it, or the command to run first."""
    path: Path

    def __str__(self) -> str:
        return f"{self.state} ({self.detail})" if self.detail else self.state


def _estimate(seconds: float) -> str:
    return f"~{seconds:.0f} s" if seconds < 120 else f"~{seconds / 60:.0f} min"


def _size(path: Path) -> str:
    size = path.stat().st_size
    return f"{size / 1e6:.1f} MB" if size < 1e9 else f"{size / 1e9:.2f} GB"


def dataset_status(name: str, steps: int = DEFAULT_STEPS) -> DatasetStatus:
    """Return where ``name`` stands: "on disk" (its size), a "D4RL file", "can be made now" (the time
    ``adept-env data make NAME`` would take, from the measured rates above) or "needs" (the command to
    run first). Reads only file metadata and the actors' JSON specs: fast, generates nothing.
    """
    task, quality = parse_dataset_name(name)
    name = f"{task.name}-{quality}"
    real = d4rl_path(name)
    if real is not None:
        return DatasetStatus(name, "D4RL file", "", real)
    path = default_path(name)
    if path.exists():
        return DatasetStatus(name, "on disk", _size(path), path)
    if quality == "random":
        return DatasetStatus(name, "can be made now", _estimate(steps / UNIFORM_STEPS_PER_SECOND[task.name]), path)
    needed = ("medium",) if quality == "medium-replay" else ("medium", "expert") if quality == "medium-expert" \
        else (quality,)
    missing = [q for q in needed if not actor_paths(shipped_actor_stem(task.name, q))[1].exists()]
    if missing:
        first = (f"adept-env data train-behavior {task.name}, then adept-env data ship-behavior {task.name} "
                 f"{missing[0]} --step STEP")
        return DatasetStatus(name, "needs", f"a shipped {task.name}-{missing[0]} actor first: {first}", path)
    actor_rate = ACTOR_STEPS_PER_SECOND[task.name]
    if quality == "medium-replay":
        run = behavior_run_dir(task)
        if (run / "progress.json").exists():
            done = int(json.loads((run / "progress.json").read_text()).get("num_timesteps", 0))
            medium_step = int(json.loads(actor_paths(shipped_actor_stem(task.name, "medium"))[1].read_text())
                              ["source"]["step"])
            if done < medium_step:
                detail = (f"the behaviour run in {run} to reach step {medium_step} first (it has {done}): "
                          f"adept-env data train-behavior {task.name}; or make it with --replay-source recipe")
                return DatasetStatus(name, "needs", detail, path)
            return DatasetStatus(name, "can be made now", f"from the behaviour run in {run}", path)
        from adept_env.data.replay_recipe import recipe_rows

        rows, warmup = recipe_rows(task)
        rows = min(rows, steps)
        warm = min(warmup, rows)
        seconds = warm / UNIFORM_STEPS_PER_SECOND[task.name] + (rows - warm) / actor_rate
        return DatasetStatus(name, "can be made now", f"{_estimate(seconds)}, shipped recipe", path)
    rows = steps * (2 if quality == "medium-expert" else 1)
    return DatasetStatus(name, "can be made now", _estimate(rows / actor_rate), path)
