"""D4RL-format HDF5 files: atomic writes and validated reads."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from adept_env.atomic import atomic_path

REQUIRED_KEYS: tuple[str, ...] = ("observations", "actions", "rewards", "terminals")
"""Keys every D4RL MuJoCo file has; ``timeouts`` and ``next_observations`` came with v1/v2."""


class DatasetFileError(ValueError):
    """A dataset file that is missing, corrupt, truncated or not in D4RL's layout."""


def write_hdf5(path: str | os.PathLike[str], arrays: dict[str, np.ndarray], attrs: dict[str, Any]) -> Path:
    """Write ``arrays`` (keys may contain '/', e.g. ``infos/qpos``) and root ``attrs`` atomically.

    Returns the final path. Nothing appears at ``path`` unless the whole file was written.
    """
    path = Path(path)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=np.asarray(value))
        for key, value in attrs.items():
            f.attrs[key] = value
    return path


def read_hdf5(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read every dataset of a D4RL-layout file into numpy arrays; return (arrays, root attrs).

    Raises DatasetFileError naming what is wrong: a missing file, an unreadable (corrupt or
    truncated) file, missing required keys, or arrays whose lengths disagree.
    """
    path = Path(path)
    if not path.exists():
        raise DatasetFileError(f"dataset file {str(path)!r} does not exist")
    arrays: dict[str, np.ndarray] = {}
    try:
        with h5py.File(path, "r") as f:
            attrs = {k: _plain(v) for k, v in f.attrs.items()}

            def visit(name: str, obj: Any) -> None:
                if isinstance(obj, h5py.Dataset):
                    value = obj[()]
                    if isinstance(value, np.ndarray) and value.ndim > 0:
                        arrays[name] = value
                    else:  # scalars such as D4RL's metadata/* entries
                        attrs[name] = _plain(value)

            f.visititems(visit)
    except OSError as exc:
        raise DatasetFileError(
            f"{str(path)!r} is not a readable HDF5 file (corrupt or truncated?): {exc}"
        ) from exc
    missing = [k for k in REQUIRED_KEYS if k not in arrays]
    if missing:
        found = ", ".join(sorted(arrays)) or "nothing"
        raise DatasetFileError(f"{str(path)!r} is missing the D4RL key(s) {', '.join(missing)}; found: {found}")
    n = len(arrays["rewards"])
    wrong = [k for k, v in arrays.items() if len(v) != n and not k.startswith("metadata")]
    if wrong:
        sizes = ", ".join(f"{k}={len(arrays[k])}" for k in wrong)
        raise DatasetFileError(f"{str(path)!r} has arrays whose length differs from rewards ({n}): {sizes}")
    return arrays, attrs


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value
