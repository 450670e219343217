import math
from pathlib import Path

import h5py
import numpy as np
import pytest

from adept_env.data.collect import episode_returns
from adept_env.data.dataset import DatasetUnavailableError, load_dataset
from adept_env.data.generate import make_dataset
from adept_env.tasks import TASKS

KEYS = {
    "observations": np.float32,
    "actions": np.float32,
    "rewards": np.float32,
    "terminals": np.bool_,
    "timeouts": np.bool_,
    "next_observations": np.float32,
    "infos/qpos": np.float32,
    "infos/qvel": np.float32,
    "infos/action_log_probs": np.float32,
}


@pytest.mark.parametrize("name", list(TASKS))
def test_keys_dtypes_shapes_and_attrs(small_datasets: dict[str, Path], name: str) -> None:
    task = TASKS[name]
    with h5py.File(small_datasets[name]) as f:
        for key, dtype in KEYS.items():
            assert f[key].dtype == dtype, key
            assert len(f[key]) == 5000, key
        assert f["observations"].shape == (5000, task.obs_dim)
        assert f["actions"].shape == (5000, task.act_dim)
        assert f["infos/qpos"].shape == (5000, task.nq)
        np.testing.assert_allclose(f["infos/action_log_probs"][:], -task.act_dim * math.log(2), rtol=1e-6)
        assert np.all(np.abs(f["actions"][:]) <= 1.0)
        for attr in ("env_id", "seed", "gymnasium_version", "mujoco_version", "behavior_policy_sha256"):
            assert attr in f.attrs, attr
        assert f.attrs["env_id"] == task.env_id


@pytest.mark.parametrize("name", list(TASKS))
def test_episode_boundaries(small_datasets: dict[str, Path], name: str) -> None:
    ds = load_dataset(small_datasets[name])
    ends = np.flatnonzero(ds.terminals | ds.timeouts)
    lengths = np.diff(np.concatenate([[-1], ends]))
    assert lengths.max() <= 1000
    assert not np.any(ds.terminals & ds.timeouts)
    # Within an episode, each next observation is the following observation.
    inside = np.setdiff1d(np.arange(len(ds) - 1), ends)
    np.testing.assert_array_equal(ds.next_observations[inside], ds.observations[inside + 1])
    # The observation is built from the recorded simulator state.
    if name == "halfcheetah":
        assert ds.timeouts.sum() == 5 and ds.terminals.sum() == 0
        np.testing.assert_array_equal(np.flatnonzero(ds.timeouts), [999, 1999, 2999, 3999, 4999])
    else:
        assert ds.terminals.sum() > 0  # random hoppers and walkers fall
    with h5py.File(small_datasets[name]) as f:
        np.testing.assert_allclose(f["infos/qpos"][:, 1:], f["observations"][:, : TASKS[name].nq - 1])


def test_generation_is_deterministic(tmp_path: Path, small_datasets: dict[str, Path]) -> None:
    again = make_dataset("hopper-random", steps=5000, seed=0, out=tmp_path / "again.hdf5", progress=False)
    other = make_dataset("hopper-random", steps=5000, seed=1, out=tmp_path / "other.hdf5", progress=False)
    with h5py.File(small_datasets["hopper"]) as a, h5py.File(again) as b, h5py.File(other) as c:
        for key in KEYS:
            np.testing.assert_array_equal(a[key][:], b[key][:], err_msg=key)
        assert not np.array_equal(a["actions"][:], c["actions"][:])


def test_loader_round_trip(small_datasets: dict[str, Path]) -> None:
    ds = load_dataset(small_datasets["walker2d"])
    with h5py.File(small_datasets["walker2d"]) as f:
        np.testing.assert_array_equal(ds.observations, f["observations"][:])
        np.testing.assert_array_equal(ds.next_observations, f["next_observations"][:])
        np.testing.assert_array_equal(ds.rewards, f["rewards"][:])
    assert ds.task.name == "walker2d" and ds.obs_dim == 17 and ds.act_dim == 6
    assert ds.ref_max_score == 4592.3
    summary = ds.summary()
    assert summary["transitions"] == 5000
    assert summary["episodes"] == len(episode_returns(ds.rewards, ds.terminals, ds.timeouts))
    assert summary["return_mean"] == pytest.approx(ds.rewards.sum() / summary["episodes"], rel=1e-4)


def test_named_dataset_generated_on_first_use(isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import adept_env.data.generate as generate_module

    calls = []

    def small(name: str, **kwargs):  # the default is 1M steps; keep the test fast
        calls.append(name)
        return make_dataset(name, **{**kwargs, "steps": 1500})

    monkeypatch.setattr(generate_module, "make_dataset", small)
    ds = load_dataset("hopper-random", progress=False)
    assert calls == ["hopper-random"]
    assert len(ds) == 1500
    assert (isolated_home / "datasets" / "hopper-random.hdf5").exists()
    assert len(load_dataset("hopper-random")) == 1500
    assert calls == ["hopper-random"]  # cached, not regenerated


def test_missing_non_random_dataset_says_how_to_make_it() -> None:
    with pytest.raises(DatasetUnavailableError, match="adept-env data make hopper-medium"):
        load_dataset("hopper-medium")


def test_interrupted_generation_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import adept_env.data.hdf5 as hdf5_module

    def explode(*args, **kwargs):
        raise KeyboardInterrupt

    out = tmp_path / "partial.hdf5"
    monkeypatch.setattr(hdf5_module.h5py.File, "create_dataset", explode)
    with pytest.raises(KeyboardInterrupt):
        make_dataset("halfcheetah-random", steps=200, out=out, progress=False)
    assert list(tmp_path.iterdir()) == []
