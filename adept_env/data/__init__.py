"""Offline datasets: D4RL-format files, local generation, and the ground-truth oracle."""

from adept_env.data.dataset import (
    DatasetUnavailableError,
    OfflineDataset,
    from_d4rl_arrays,
    load_dataset,
)
from adept_env.data.hdf5 import DatasetFileError
from adept_env.data.oracle import OracleStep, true_step

__all__ = [
    "DatasetFileError",
    "DatasetUnavailableError",
    "OfflineDataset",
    "OracleStep",
    "from_d4rl_arrays",
    "load_dataset",
    "true_step",
]
