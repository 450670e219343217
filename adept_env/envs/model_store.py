"""World models cached per dataset and profile under ``$ADEPT_HOME/models``."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from adept_env.data.dataset import OfflineDataset, load_dataset
from adept_env.envs.config import EnvConfig
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


def profile_config(profile: str):
    """Return the WorldModelConfig of a profile name (``adept_env.diffusion.config.PROFILES``)."""
    from adept_env.diffusion import WorldModelConfig

    return WorldModelConfig.profile(profile)


def model_dir(dataset: OfflineDataset, profile: str) -> Path:
    """Return the cache folder of the world model of ``dataset`` trained with ``profile``.

    The name includes a hash of the profile's config and the file-format version, so a
    changed default never loads a model trained under the old one. Refit-only settings are left
    out of the hash (they do not change a model fitted from scratch); a loaded model takes them
    from the current profile.
    """
    from adept_env.diffusion.world_model import FORMAT_VERSION

    config = json.dumps({"format": FORMAT_VERSION, **profile_config(profile).training_dict()}, sort_keys=True)
    config_hash = hashlib.sha256(config.encode()).hexdigest()[:8]
    name = dataset.name or dataset.task.name
    return adept_home() / "models" / f"{name}-{dataset_fingerprint(dataset)}" / f"{profile}-{config_hash}"


def load_or_train(dataset: OfflineDataset, profile: str = "default", model_path: str | None = None,
                  progress: bool = True, seed: int = 0) -> Any:
    """Return a world model for ``dataset``: loaded from ``model_path`` or the cache, else trained.

    A freshly trained model is saved (atomically) in the cache, so later uses load it.
    """
    from adept_env.diffusion import WorldModel, WorldModelFileError

    if model_path is not None:
        return WorldModel.load(model_path)
    path = model_dir(dataset, profile)
    if path.exists():
        try:
            model = WorldModel.load(path)
        except WorldModelFileError as exc:  # our own cache, written by another version: retrain
            warnings.warn(f"retraining the cached world model at {path}: {exc}", RuntimeWarning, stacklevel=2)
        else:
            from adept_env.diffusion.config import REFIT_ONLY_FIELDS

            current = profile_config(profile)
            for name in REFIT_ONLY_FIELDS:
                setattr(model.config, name, getattr(current, name))
            return model
    model = WorldModel.create(dataset.task, profile_config(profile), seed=seed)
    model.fit(dataset, progress=progress, seed=seed)
    model.save(path)
    return model


def load_world(dataset: str | OfflineDataset, config: EnvConfig, progress: bool = True) -> tuple[OfflineDataset, Any]:
    """Return ``(dataset, world model)`` for an env: the one loader of the envs and the server.

    ``dataset`` is a name, a path or an OfflineDataset (``config.dataset_path`` wins over a name);
    the model comes from ``config.model_path``, the cache, or is trained now. Raises ValueError when
    the model was trained for another task than the dataset's.
    """
    if not isinstance(dataset, OfflineDataset):
        dataset = load_dataset(config.dataset_path or dataset, progress=progress)
    model = load_or_train(dataset, config.profile, config.model_path, progress=progress).to(config.device)
    if model.task.name != dataset.task.name:
        raise ValueError(f"the world model is for {model.task.name}, the dataset for {dataset.task.name}")
    return dataset, model
