"""World models cached per dataset and profile under ``$ADEPT_HOME/models``."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from adept_env.data.dataset import OfflineDataset
from adept_env.paths import adept_home


def dataset_fingerprint(dataset: OfflineDataset) -> str:
    """Return a short hash of the dataset's size and a strided sample of its rows.

    Cheap (independent of size) and changes when the data is regenerated differently.
    """
    step = max(len(dataset) // 2048, 1)
    digest = hashlib.sha256(str(len(dataset)).encode())
    for array in (dataset.observations, dataset.actions, dataset.rewards, dataset.next_observations):
        digest.update(np.ascontiguousarray(array[::step]).tobytes())
    return digest.hexdigest()[:12]


def model_dir(dataset: OfflineDataset, profile: str) -> Path:
    """Return the cache folder of the world model of ``dataset`` trained with ``profile``."""
    name = dataset.name or dataset.task.name
    return adept_home() / "models" / f"{name}-{dataset_fingerprint(dataset)}" / profile


def load_or_train(dataset: OfflineDataset, profile: str = "default", model_path: str | None = None,
                  progress: bool = True, seed: int = 0):
    """Return a world model for ``dataset``: loaded from ``model_path`` or the cache, else trained.

    A freshly trained model is saved (atomically) in the cache, so later uses load it.
    """
    from adept_env.diffusion import WorldModel, WorldModelConfig

    if model_path is not None:
        return WorldModel.load(model_path)
    path = model_dir(dataset, profile)
    if path.exists():
        return WorldModel.load(path)
    config = WorldModelConfig.quick() if profile == "quick" else WorldModelConfig()
    model = WorldModel.create(dataset.task, config, seed=seed)
    model.fit(dataset, progress=progress, seed=seed)
    model.save(path)
    return model
