"""The three MuJoCo locomotion tasks of the D4RL benchmark, as Gymnasium v5 defines them.

Each task knows its Gymnasium id, its observation and action sizes, how its observation is
built from the simulator state, its termination function (computed from an observation
exactly as the real environment computes it from the state) and D4RL's reference returns.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import numpy as np

DATASET_QUALITIES: tuple[str, ...] = ("random", "medium", "medium-replay", "medium-expert", "expert")


class UnknownNameError(ValueError):
    """An unknown task, dataset or algorithm name; the message lists the valid ones."""


def unknown_name(kind: str, name: str, valid: list[str] | tuple[str, ...]) -> UnknownNameError:
    """Return an error for ``name`` that lists ``valid`` and suggests the closest match."""
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return UnknownNameError(f"unknown {kind} {name!r}.{hint} Valid {kind}s: {', '.join(valid)}")


@dataclass(frozen=True)
class Task:
    """A locomotion task: Gymnasium id, sizes, D4RL reference returns and health bounds."""

    name: str
    env_id: str
    obs_dim: int
    act_dim: int
    nq: int
    """Length of MuJoCo's qpos; the observation is qpos[1:] followed by qvel."""
    ref_min_score: float
    """D4RL's random-policy return (normalised score 0)."""
    ref_max_score: float
    """D4RL's expert return (normalised score 100)."""
    velocity_clip: float | None = None
    """Gymnasium v5 clips qvel to +-this in the observation (Hopper, Walker2d); None: no clip."""
    healthy_z: tuple[float, float] | None = None
    healthy_angle: tuple[float, float] | None = None
    healthy_state: tuple[float, float] | None = None
    max_episode_steps: int = 1000

    @property
    def nv(self) -> int:
        return self.obs_dim - (self.nq - 1)

    def split_observation(self, observations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return (qpos, qvel) for a batch of observations, with x position set to 0.

        The x position is excluded from observations; the dynamics do not depend on it.
        """
        obs = np.atleast_2d(np.asarray(observations, dtype=np.float64))
        qpos = np.concatenate([np.zeros((obs.shape[0], 1)), obs[:, : self.nq - 1]], axis=1)
        qvel = obs[:, self.nq - 1 :]
        return qpos, qvel

    def observation_clipped(self, observations: np.ndarray) -> np.ndarray:
        """Return a boolean per observation: True where a velocity sits at the clip bound.

        There the simulator state cannot be recovered from the observation (the true speed may
        be larger), so replays and termination checks that use it are approximate.
        """
        obs = np.atleast_2d(np.asarray(observations))
        if self.velocity_clip is None:
            return np.zeros(obs.shape[0], dtype=bool)
        vel = obs[:, self.nq - 1 :]
        return np.any(np.abs(vel) >= self.velocity_clip, axis=1)

    def is_terminated(self, next_observations: np.ndarray) -> np.ndarray:
        """Return the termination flag (bool array) for a batch of next observations.

        Matches Gymnasium v5's ``not is_healthy``: Hopper checks z, the torso angle and that
        qpos[2:] and qvel lie in (-100, 100); Walker2d checks z and the angle; HalfCheetah never
        terminates. Non-finite observations always terminate.
        """
        obs = np.atleast_2d(np.asarray(next_observations, dtype=np.float64))
        done = ~np.all(np.isfinite(obs), axis=1)
        if self.healthy_z is not None:
            z, angle = obs[:, 0], obs[:, 1]
            lo, hi = self.healthy_z
            done |= ~((lo < z) & (z < hi))
            lo, hi = self.healthy_angle or (-np.inf, np.inf)
            done |= ~((lo < angle) & (angle < hi))
        if self.healthy_state is not None:
            lo, hi = self.healthy_state
            rest = obs[:, 1:]
            done |= ~np.all((lo < rest) & (rest < hi), axis=1)
        return done


TASKS: dict[str, Task] = {
    "halfcheetah": Task(
        name="halfcheetah",
        env_id="HalfCheetah-v5",
        obs_dim=17,
        act_dim=6,
        nq=9,
        ref_min_score=-280.178953,
        ref_max_score=12135.0,
    ),
    "hopper": Task(
        name="hopper",
        env_id="Hopper-v5",
        obs_dim=11,
        act_dim=3,
        nq=6,
        ref_min_score=-20.272305,
        ref_max_score=3234.3,
        velocity_clip=10.0,
        healthy_z=(0.7, float("inf")),
        healthy_angle=(-0.2, 0.2),
        healthy_state=(-100.0, 100.0),
    ),
    "walker2d": Task(
        name="walker2d",
        env_id="Walker2d-v5",
        obs_dim=17,
        act_dim=6,
        nq=9,
        ref_min_score=1.629008,
        ref_max_score=4592.3,
        velocity_clip=10.0,
        healthy_z=(0.8, 2.0),
        healthy_angle=(-1.0, 1.0),
    ),
}


def get_task(name: str | Task) -> Task:
    """Return the task called ``name`` (e.g. ``"hopper"``); raise UnknownNameError otherwise."""
    if isinstance(name, Task):
        return name
    key = str(name).lower()
    if key not in TASKS:
        raise unknown_name("task", str(name), tuple(TASKS))
    return TASKS[key]


def dataset_names() -> list[str]:
    """Return every TASK-QUALITY dataset name, e.g. ``halfcheetah-medium-replay``."""
    return [f"{t}-{q}" for t in TASKS for q in DATASET_QUALITIES]


def parse_dataset_name(name: str) -> tuple[Task, str]:
    """Split ``"hopper-medium-replay"`` into (hopper task, ``"medium-replay"``)."""
    key = name.lower().removeprefix("adept-")
    task_name, _, quality = key.partition("-")
    if task_name not in TASKS or quality not in DATASET_QUALITIES:
        raise unknown_name("dataset", name, dataset_names())
    return TASKS[task_name], quality


def normalized_score(task: str | Task, returns: float | np.ndarray) -> float | np.ndarray:
    """Return D4RL's normalised score, 100 * (return - random) / (expert - random)."""
    t = get_task(task)
    score = 100.0 * (np.asarray(returns, dtype=np.float64) - t.ref_min_score) / (
        t.ref_max_score - t.ref_min_score
    )
    return float(score) if score.ndim == 0 else score
