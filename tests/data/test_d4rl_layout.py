"""Files in D4RL's own layout (as d4rl's halfcheetah_random-v2.hdf5 is written) load correctly."""

from pathlib import Path

import h5py
import numpy as np
import pytest

from adept_env.data.dataset import from_d4rl_arrays, load_dataset
from adept_env.data.hdf5 import DatasetFileError
from adept_env.tasks import TASKS


def write_d4rl_file(path: Path, with_next: bool, with_timeouts: bool = True) -> dict[str, np.ndarray]:
    """Three episodes: 4 steps cut by a timeout, 3 steps ending in a terminal, 3 steps unfinished."""
    rng = np.random.default_rng(0)
    n = 10
    data = {
        "observations": rng.normal(size=(n, 17)).astype(np.float32),
        "actions": rng.uniform(-1, 1, size=(n, 6)).astype(np.float32),
        "rewards": rng.normal(size=n).astype(np.float32),
        "terminals": np.zeros(n, bool),
        "timeouts": np.zeros(n, bool),
    }
    data["timeouts"][3] = True
    data["terminals"][6] = True
    data["next_observations"] = np.concatenate([data["observations"][1:], rng.normal(size=(1, 17))]).astype(
        np.float32
    )
    with h5py.File(path, "w") as f:
        for key in ("observations", "actions", "rewards", "terminals"):
            f.create_dataset(key, data=data[key])
        if with_timeouts:
            f.create_dataset("timeouts", data=data["timeouts"])
        if with_next:
            f.create_dataset("next_observations", data=data["next_observations"])
        f.create_dataset("infos/qpos", data=np.zeros((n, 9), np.float32))
        f.create_dataset("infos/qvel", data=np.zeros((n, 9), np.float32))
        f.create_dataset("metadata/algorithm", data=b"SAC")
    return data


def test_d4rl_file_without_next_observations_matches_qlearning_dataset(tmp_path: Path) -> None:
    path = tmp_path / "halfcheetah_random-v2.hdf5"
    data = write_d4rl_file(path, with_next=False)
    ds = load_dataset(path)
    assert ds.task.name == "halfcheetah"  # from the file name; walker2d has the same sizes
    # d4rl.qlearning_dataset: rows 0..n-2, the timeout row (3) dropped, next = following row.
    kept = [0, 1, 2, 4, 5, 6, 7, 8]
    np.testing.assert_array_equal(ds.observations, data["observations"][kept])
    np.testing.assert_array_equal(ds.next_observations, data["observations"][np.array(kept) + 1])
    np.testing.assert_array_equal(ds.terminals, data["terminals"][kept])
    assert ds.behavior_log_probs is None


def test_d4rl_file_with_next_observations_keeps_every_row(tmp_path: Path) -> None:
    path = tmp_path / "walker2d_medium_replay-v2.hdf5"
    data = write_d4rl_file(path, with_next=True)
    ds = load_dataset(path)
    assert ds.task.name == "walker2d"
    assert len(ds) == 10
    np.testing.assert_array_equal(ds.next_observations, data["next_observations"])
    assert ds.timeouts[3] and ds.terminals[6]


def test_old_file_without_timeouts_uses_max_episode_steps() -> None:
    task = TASKS["hopper"]
    n = 2500
    arrays = {
        "observations": np.arange(n, dtype=np.float32)[:, None].repeat(11, 1),
        "actions": np.zeros((n, 3), np.float32),
        "rewards": np.zeros(n, np.float32),
        "terminals": np.zeros(n, bool),
    }
    ds = from_d4rl_arrays(arrays, task)
    # rows 999 and 1999 are the last steps of 1000-step episodes and are dropped, as is row n-1
    assert len(ds) == n - 1 - 2
    assert 999 not in ds.observations[:, 0] and 1999 not in ds.observations[:, 0]
    np.testing.assert_array_equal(ds.next_observations[:, 0], ds.observations[:, 0] + 1)


def test_ambiguous_task_needs_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "mine.hdf5"
    write_d4rl_file(path, with_next=True)
    with pytest.raises(DatasetFileError, match="halfcheetah or walker2d"):
        load_dataset(path)
    assert load_dataset(path, task="walker2d").task.name == "walker2d"


def test_d4rl_dir_is_preferred_for_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_d4rl_file(tmp_path / "halfcheetah_random-v2.hdf5", with_next=True)
    monkeypatch.setenv("ADEPT_D4RL_DIR", str(tmp_path))
    ds = load_dataset("halfcheetah-random")
    assert ds.source.endswith("halfcheetah_random-v2.hdf5") and len(ds) == 10


def test_missing_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "hopper_random-v2.hdf5"
    with h5py.File(path, "w") as f:
        f.create_dataset("observations", data=np.zeros((5, 11), np.float32))
        f.create_dataset("actions", data=np.zeros((5, 3), np.float32))
    with pytest.raises(DatasetFileError, match="missing the D4RL key.*rewards, terminals"):
        load_dataset(path)


def test_truncated_file_is_reported(tmp_path: Path, small_datasets: dict[str, Path]) -> None:
    blob = small_datasets["hopper"].read_bytes()
    path = tmp_path / "cut.hdf5"
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DatasetFileError, match="corrupt or truncated"):
        load_dataset(path)


def test_wrong_sizes_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "hopper_random-v2.hdf5"
    with h5py.File(path, "w") as f:
        f.create_dataset("observations", data=np.zeros((5, 11), np.float32))
        f.create_dataset("actions", data=np.zeros((4, 3), np.float32))
        f.create_dataset("rewards", data=np.zeros(5, np.float32))
        f.create_dataset("terminals", data=np.zeros(5, bool))
    with pytest.raises(DatasetFileError, match="actions=4"):
        load_dataset(path)
