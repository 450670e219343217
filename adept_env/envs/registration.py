"""Registration of the ``ADEPT-{task}-{dataset}`` ids with Gymnasium."""

from __future__ import annotations

import gymnasium as gym

from adept_env.tasks import DATASET_QUALITIES, TASKS


def env_ids() -> list[str]:
    """Return every ADEPT environment id, e.g. ``ADEPT-hopper-medium-replay``."""
    return [f"ADEPT-{task}-{quality}" for task in TASKS for quality in DATASET_QUALITIES]


def register_envs() -> None:
    """Register each id with its single-env and vector entry points (idempotent)."""
    for env_id in env_ids():
        if env_id in gym.registry:
            continue
        gym.register(
            id=env_id,
            entry_point="adept_env.envs.world_model_env:WorldModelEnv",
            vector_entry_point="adept_env.envs.vector:WorldModelVectorEnv",
            kwargs={"dataset": env_id.removeprefix("ADEPT-")},
        )
