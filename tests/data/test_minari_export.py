from pathlib import Path

import numpy as np
import pytest

from adept_env.data.dataset import load_dataset

minari = pytest.importorskip("minari", reason="the minari extra is not installed")


def test_export_round_trip(small_datasets: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from adept_env.data.minari_export import export_minari

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    ds = load_dataset(small_datasets["hopper"])
    dataset_id = export_minari(ds)
    assert dataset_id == "adept/hopper-random-v0"
    exported = minari.load_dataset(dataset_id)
    assert exported.total_steps == len(ds)
    assert exported.total_episodes == int((ds.terminals | ds.timeouts).sum())
    first = next(iter(exported))
    n = len(first.actions)
    np.testing.assert_array_equal(first.observations[:n], ds.observations[:n])
    np.testing.assert_array_equal(first.observations[n], ds.next_observations[n - 1])
    np.testing.assert_allclose(first.rewards, ds.rewards[:n])
    assert first.terminations[-1] == ds.terminals[n - 1]
