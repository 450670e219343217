"""Shared fixtures: an isolated $ADEPT_HOME and small generated datasets."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
import torch

os.environ.setdefault("CI", "true")
# Small models run fastest on one thread, and two threads per test process oversubscribe 2 cores.
torch.set_num_threads(1)
warnings.filterwarnings("ignore", message=".*settotalmass.*")


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own empty $ADEPT_HOME and no $ADEPT_D4RL_DIR."""
    home = tmp_path_factory.mktemp("adept_home")
    monkeypatch.setenv("ADEPT_HOME", str(home))
    monkeypatch.delenv("ADEPT_D4RL_DIR", raising=False)
    return home


@pytest.fixture(scope="session")
def small_datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 5k-step random dataset per task, generated once per test session (seed 0)."""
    from adept_env.data.generate import make_dataset

    root = tmp_path_factory.mktemp("datasets")
    return {
        task: make_dataset(f"{task}-random", steps=5000, seed=0, out=root / f"{task}.hdf5", progress=False)
        for task in ("halfcheetah", "hopper", "walker2d")
    }


@pytest.fixture(scope="session")
def quick_model_path(small_datasets: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A quick-profile world model of the 5k halfcheetah dataset, trained once (~15 s) and saved."""
    from adept_env.data.dataset import load_dataset
    from adept_env.diffusion import WorldModel, WorldModelConfig

    dataset = load_dataset(small_datasets["halfcheetah"])
    model = WorldModel.create("halfcheetah", WorldModelConfig.quick(), seed=0)
    model.fit(dataset, progress=False)
    return model.save(tmp_path_factory.mktemp("models") / "halfcheetah-quick")
