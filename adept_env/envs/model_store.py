"""World models cached per dataset and profile under ``$ADEPT_HOME/models``.

Each cached model's folder holds the model's own files (``config.json``, ``model.safetensors``) and
``cache.json`` (:data:`RECORD_FILE`): the dataset it was fitted on (name, fingerprint, rows, file), the
profile, the seed, when it was written and the fit report. Caches written before ``cache.json`` existed
still load; their dataset and profile are read from the folder names.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import math
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from adept_env.atomic import atomic_path
from adept_env.data.dataset import OfflineDataset, load_dataset
from adept_env.envs.config import EnvConfig
from adept_env.paths import adept_home

RECORD_FILE = "cache.json"
"""Beside a cached model's files: what it was fitted on and how the fit went (see the module docstring)."""
FINGERPRINT_LENGTH = 12


class DatasetMismatchError(ValueError):
    """A world model used with a dataset other than the one it was fitted on."""


def dataset_fingerprint(dataset: OfflineDataset) -> str:
    """Return a short hash of the dataset's size and a strided sample of its rows.

    Cheap (independent of size) and changes when the data is regenerated differently.
    """
    step = max(len(dataset) // 2048, 1)
    digest = hashlib.sha256(str(len(dataset)).encode())
    for array in (dataset.observations, dataset.actions, dataset.rewards, dataset.next_observations):
        digest.update(np.ascontiguousarray(array[::step]).tobytes())
    return digest.hexdigest()[:FINGERPRINT_LENGTH]


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
    folder = f"{dataset_label(dataset)}-{dataset_fingerprint(dataset)}"
    return models_root() / folder / f"{profile}-{profile_hash(profile)}"


def models_root() -> Path:
    """The folder of every cached world model, ``$ADEPT_HOME/models``."""
    return adept_home() / "models"


def dataset_label(dataset: OfflineDataset) -> str:
    """The dataset's name in the cache (and in messages): its name, else its task's."""
    return dataset.name or dataset.task.name


def profile_hash(profile: str) -> str:
    """The hash of a profile's training settings and the file-format version, as in :func:`model_dir`."""
    from adept_env.diffusion.world_model import FORMAT_VERSION

    config = json.dumps({"format": FORMAT_VERSION, **profile_config(profile).training_dict()}, sort_keys=True)
    return hashlib.sha256(config.encode()).hexdigest()[:8]


def load_or_train(dataset: OfflineDataset, profile: str = "default", model_path: str | None = None,
                  progress: bool = True, seed: int = 0, notice: bool = True, device: str | None = None) -> Any:
    """Return a world model for ``dataset``: loaded from ``model_path`` or the cache, else trained.

    A freshly trained model is saved (atomically) in the cache with its record, so later uses load it.
    Before such a fit, ``notice`` prints one line to stderr: what is being fitted, about how long it takes
    here and how to fit it ahead of time (:func:`fit_notice`). ``device`` is where a fit runs (default the CPU).
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
            from adept_env.diffusion.config import REFIT_ONLY_FIELDS, SAMPLING_ONLY_FIELDS

            current = profile_config(profile)
            for name in REFIT_ONLY_FIELDS + SAMPLING_ONLY_FIELDS:
                setattr(model.config, name, getattr(current, name))
            return model
    if notice:
        print(fit_notice(dataset, profile, estimate_fit_seconds(dataset, profile, device=device)), file=sys.stderr,
              flush=True)
    return fit_and_save(dataset, profile, seed=seed, progress=progress, device=device)[0]


def fit_and_save(dataset: OfflineDataset, profile: str, seed: int = 0, progress: bool = True,
                 device: str | None = None) -> tuple[Any, Any, Path]:
    """Fit ``profile``'s world model to ``dataset`` from scratch and save it in the cache (replacing one there);
    return ``(model, fit report, folder)``. The record (``cache.json``) keeps the previous fit's summary in
    ``history``."""
    from adept_env.diffusion import WorldModel

    path = model_dir(dataset, profile)
    model = WorldModel.create(dataset.task, profile_config(profile), seed=seed)
    if device is not None:
        model = model.to(device)
    report = model.fit(dataset, progress=progress, seed=seed)
    model.save(path)
    previous = read_record(path)
    history = [] if previous is None else [*previous.get("history", []),
                                           {key: previous.get(key) for key in ("written", "seed", "device", "fit")}]
    record = {
        "dataset": {"name": dataset_label(dataset), "fingerprint": dataset_fingerprint(dataset), "rows": len(dataset),
                    "task": dataset.task.name, "source": dataset.source},
        "profile": profile,
        "profile_hash": profile_hash(profile),
        "seed": seed,
        "device": str(model.device),
        "written": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "fit": fit_summary(report),
        "history": history,
    }
    with atomic_path(path / RECORD_FILE) as tmp:
        tmp.write_text(json.dumps(record, indent=2))
    return model, report, path


def fit_summary(report: Any) -> dict[str, Any]:
    """A FitReport as JSON-ready values (an infinite best loss, from a fit with no evaluation, as None)."""
    return {"steps": report.steps, "seconds": round(report.seconds, 2),
            "best_val_loss": report.best_val_loss if math.isfinite(report.best_val_loss) else None,
            "stopped_early": report.stopped_early, "n_train": report.n_train, "n_val": report.n_val,
            "train_losses": report.train_losses, "val_losses": report.val_losses}


def estimate_fit_seconds(dataset: OfflineDataset, profile: str, device: str | None = None,
                         probe_steps: int = 20) -> float:
    """About how long ``profile``'s fit of ``dataset`` takes here: the seconds of ``probe_steps`` gradient
    steps on a slice of the data (timed as the difference of two short fits, so setup cancels out) times the
    profile's steps, capped by its ``max_fit_seconds``. An upper bound when early stopping ends the fit sooner."""
    from adept_env.diffusion import WorldModel

    config = profile_config(profile)
    rows = slice(0, min(len(dataset), 2048))
    sample = dataclasses.replace(
        dataset, observations=dataset.observations[rows], actions=dataset.actions[rows],
        rewards=dataset.rewards[rows], next_observations=dataset.next_observations[rows],
        terminals=dataset.terminals[rows], timeouts=dataset.timeouts[rows], behavior_log_probs=None)
    probe = WorldModel.create(dataset.task, dataclasses.replace(config, max_fit_seconds=None), seed=0)
    if device is not None:
        probe = probe.to(device)
    short = probe.fit(sample, steps=2, warm_start=False, progress=False)
    long = probe.fit(sample, steps=2 + probe_steps, warm_start=False, progress=False)
    per_step = (long.seconds - short.seconds) / probe_steps
    if per_step <= 0:  # a noisy clock on a busy machine: count the longer fit's setup as steps
        per_step = long.seconds / (2 + probe_steps)
    seconds = per_step * config.steps
    return min(seconds, config.max_fit_seconds) if config.max_fit_seconds else seconds


def about(seconds: float) -> str:
    """``about N min`` (``under a minute`` below one)."""
    return "under a minute" if seconds < 60 else f"about {max(1, round(seconds / 60))} min"


def prefit_command(dataset: OfflineDataset, profile: str) -> str:
    """The ``adept-env model fit`` command that caches the same model as ``load_or_train(dataset, profile)``."""
    from adept_env.data.dataset import d4rl_path
    from adept_env.data.generate import default_path
    from adept_env.tasks import UnknownNameError

    source = Path(dataset.source) if dataset.source else None
    target = str(source) if source is not None else dataset_label(dataset)
    try:
        sized = default_path(dataset.name).with_name(f"{dataset.name}-{len(dataset)}.hdf5")  # load_sized_dataset's
        if source is not None and source in (default_path(dataset.name), d4rl_path(dataset.name)):
            target = dataset.name
        elif source is not None and source == sized:
            target = f"{dataset.name} --dataset-steps {len(dataset)}"
    except UnknownNameError:  # a file whose dataset name is not TASK-QUALITY: fit it by its path
        pass
    return f"adept-env model fit {target} --profile {profile}"


def fit_notice(dataset: OfflineDataset, profile: str, seconds: float) -> str:
    """The one line printed before a fit on first use: what, about how long, and how to fit it ahead."""
    return (f"adept-env: no cached world model for {dataset_label(dataset)} (profile {profile}); fitting one on its "
            f"{len(dataset):,} rows now: {about(seconds)} on this machine for all {profile_config(profile).steps:,} "
            f"steps (early stopping may end it sooner). To fit it ahead of time: {prefit_command(dataset, profile)}")


def read_record(path: str | Path) -> dict[str, Any] | None:
    """A cached model's record (``cache.json``), or None for a folder without one (an older cache)."""
    record_path = Path(path) / RECORD_FILE
    if not record_path.exists():
        return None
    try:
        record = json.loads(record_path.read_text())
    except json.JSONDecodeError:
        return None
    return record if isinstance(record, dict) else None


def _split_name(folder: str, tail_length: int) -> tuple[str | None, str | None]:
    """``NAME-TAIL`` -> (NAME, TAIL) when TAIL is ``tail_length`` hex digits, else (None, None)."""
    head, _, tail = folder.rpartition("-")
    if head and len(tail) == tail_length and all(c in "0123456789abcdef" for c in tail):
        return head, tail
    return None, None


def describe(path: str | Path) -> dict[str, Any]:
    """What is known of a saved world model: its dataset (name, fingerprint, rows), profile, task, version, seed,
    size on disk, when it was written and its fit report, from its record and, for an older cache or a
    model saved elsewhere, from the folder names and ``config.json``. Missing facts are None. ``current`` is
    True when the profile's settings today are the ones it was fitted with (the cache would load it)."""
    from adept_env.diffusion.config import PROFILES

    path = Path(path)
    record = read_record(path) or {}
    meta_path = path / "config.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError):
        meta = {}
    name, fingerprint = _split_name(path.parent.name, FINGERPRINT_LENGTH)
    profile, hashed = _split_name(path.name, 8)
    data = record.get("dataset", {})
    profile = record.get("profile", profile)
    hashed = record.get("profile_hash", hashed)
    files = [f for f in path.iterdir() if f.is_file()] if path.is_dir() else []
    written = record.get("written")
    if written is None and meta_path.exists():
        written = _dt.datetime.fromtimestamp(meta_path.stat().st_mtime, _dt.timezone.utc).isoformat(timespec="seconds")
    return {
        "path": str(path),
        "dataset": data.get("name", name),
        "fingerprint": data.get("fingerprint", fingerprint),
        "rows": data.get("rows"),
        "dataset_source": data.get("source"),
        "task": meta.get("task"),
        "profile": profile,
        "profile_hash": hashed,
        "current": profile in PROFILES and hashed == profile_hash(profile),
        "version": meta.get("version"),
        "seed": record.get("seed", meta.get("seed")),
        "size_mb": sum(f.stat().st_size for f in files) / 1e6,
        "written": written,
        "fit": record.get("fit"),
        "fit_seconds": (record.get("fit") or {}).get("seconds"),
        "history": record.get("history", []),
        "has_record": bool(record),
    }


def cached_models() -> list[dict[str, Any]]:
    """:func:`describe` of every world model under :func:`models_root`, by dataset folder then profile folder."""
    root = models_root()
    if not root.is_dir():
        return []
    return [describe(folder) for dataset_folder in sorted(root.iterdir()) if dataset_folder.is_dir()
            for folder in sorted(dataset_folder.iterdir()) if (folder / "config.json").exists()]


def check_dataset(path: str | Path, dataset: OfflineDataset) -> None:
    """Raise DatasetMismatchError, naming both fingerprints, unless the model at ``path`` was fitted on ``dataset``.

    A model whose fingerprint is unknown (saved outside the cache, without a record) passes."""
    known = describe(path)
    fingerprint = dataset_fingerprint(dataset)
    if known["fingerprint"] is not None and known["fingerprint"] != fingerprint:
        fitted = f"{known['dataset']} (fingerprint {known['fingerprint']}"
        fitted += f", {known['rows']:,} rows)" if known["rows"] is not None else ")"
        raise DatasetMismatchError(
            f"the world model at {path} was fitted on {fitted}, not on {dataset_label(dataset)} (fingerprint "
            f"{fingerprint}, {len(dataset):,} rows); evaluate it on its own dataset, or fit one for this "
            f"dataset with: {prefit_command(dataset, known['profile'] or 'default')}")


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
