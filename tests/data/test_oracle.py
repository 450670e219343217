from pathlib import Path

import numpy as np
import pytest

from adept_env.data.dataset import load_dataset
from adept_env.data.oracle import true_step
from adept_env.tasks import TASKS


@pytest.mark.parametrize("name", list(TASKS))
def test_oracle_reproduces_recorded_transitions(small_datasets: dict[str, Path], name: str) -> None:
    ds = load_dataset(small_datasets[name])
    idx = np.arange(0, len(ds), 7)
    result = true_step(name, ds.observations[idx], ds.actions[idx])
    ok = result.recoverable
    assert ok.sum() > 100
    # float32 storage of the observation is the only difference; contacts amplify it a little.
    scale = 1.0 + np.abs(ds.next_observations[idx][ok])
    assert np.max(np.abs(result.next_observations[ok] - ds.next_observations[idx][ok]) / scale) < 1e-3
    np.testing.assert_allclose(result.rewards[ok], ds.rewards[idx][ok], atol=1e-3)
    np.testing.assert_array_equal(result.terminated[ok], ds.terminals[idx][ok])
    if name == "halfcheetah":
        assert ok.all()  # HalfCheetah does not clip velocities


def test_walker_clipped_velocities_are_reported(small_datasets: dict[str, Path]) -> None:
    ds = load_dataset(small_datasets["walker2d"])
    result = true_step("walker2d", ds.observations[:500], ds.actions[:500])
    clipped = np.any(np.abs(ds.observations[:500, 8:]) >= 10.0, axis=1)
    np.testing.assert_array_equal(result.recoverable, ~clipped)


def test_termination_function_matches_recorded_terminals(small_datasets: dict[str, Path]) -> None:
    for name in TASKS:
        ds = load_dataset(small_datasets[name])
        np.testing.assert_array_equal(ds.task.is_terminated(ds.next_observations), ds.terminals)


def test_oracle_rejects_wrong_shapes() -> None:
    with pytest.raises(ValueError, match=r"actions \(N, 3\)"):
        true_step("hopper", np.zeros((2, 11)), np.zeros((2, 6)))
