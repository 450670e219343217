"""Refits of one world-model core run one at a time, install in order, and stop when cancelled."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from adept_env.data.dataset import load_dataset
from adept_env.envs.config import EnvConfig
from adept_env.envs.core import RefitRunningError, WorldModelCore


@pytest.fixture
def make_core(small_datasets: dict[str, Path], quick_model_path: Path):
    from adept_env.diffusion import WorldModel

    dataset = load_dataset(small_datasets["halfcheetah"])

    def make(**overrides) -> WorldModelCore:
        return WorldModelCore(dataset, WorldModel.load(quick_model_path), EnvConfig(**overrides))

    return make


def policy(obs: np.ndarray, act: np.ndarray) -> np.ndarray:
    return 2.0 * act[:, 0]


def test_one_refit_at_a_time_and_versions_in_install_order(make_core) -> None:
    core = make_core(refit_every=1, refit_steps=40)
    core.update_policy(policy)  # refit_every=1: this starts refit 1
    first = core.running_job()
    assert first is not None and first.job_id == 1
    with pytest.raises(RefitRunningError, match="refit 1 is still running"):
        core.refit()
    for _ in range(7):  # seven more pushes while it runs: none starts a second refit
        core.update_policy(policy)
        assert sum(job.status == "running" for job in core.jobs) <= 1
    core.wait_for_refits()
    assert core.skipped_refits + len(core.jobs) == 8
    assert [job.model_version for job in core.jobs] == list(range(1, len(core.jobs) + 1))
    assert core.model_version == len(core.jobs)


def test_concurrent_refit_requests_start_exactly_one(make_core) -> None:
    core = make_core(refit_steps=40)
    core.update_policy(policy)
    barrier, started, refused = threading.Barrier(8), [], []

    def ask() -> None:
        barrier.wait()
        try:
            started.append(core.refit())
        except RefitRunningError:
            refused.append(1)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    core.wait_for_refits()
    assert len(started) == 1 and len(refused) == 7 and len(core.jobs) == 1


def test_cancel_stops_a_running_refit_without_installing_it(make_core) -> None:
    core = make_core(refit_steps=20_000)
    core.update_policy(policy)
    job = core.refit()
    assert core.cancel_refits(timeout=30.0)
    assert job.status == "failed" and "cancelled" in job.error and job.model_version is None
    assert core.model_version == 0
    with pytest.raises(RuntimeError, match="shutting down"):
        core.refit()
