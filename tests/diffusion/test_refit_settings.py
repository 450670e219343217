"""Warm-start refits: weighted minibatch sampling, the refit learning rate, never ending worse."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from adept_env.data.dataset import load_dataset
from adept_env.diffusion import WorldModel, WorldModelConfig
from adept_env.diffusion.world_model import weighted_sampler


def test_weighted_sampler_draws_in_proportion_and_never_zero_weight_rows() -> None:
    weights = torch.tensor([0.0, 1.0, 0.0, 3.0, 0.0])
    idx = weighted_sampler(weights)(40_000, torch.Generator().manual_seed(0))
    counts = np.bincount(idx.numpy(), minlength=5)
    assert counts[[0, 2, 4]].sum() == 0
    assert abs(counts[3] / counts[1] - 3.0) < 0.15


def test_refit_keeps_its_starting_weights_when_training_only_hurts(small_datasets: dict[str, Path],
                                                                   quick_model_path: Path) -> None:
    dataset = load_dataset(small_datasets["halfcheetah"])
    model = WorldModel.load(quick_model_path)
    obs, act = dataset.observations[:64], dataset.actions[:64]
    before = model.sample(obs, act, seed=0).next_observations
    wrecked = model.clone()
    # An absurd refit learning rate makes every evaluated step worse than the start.
    wrecked.config = dataclasses.replace(wrecked.config, refit_learning_rate=50.0, eval_every=10)
    report = wrecked.fit(dataset, steps=20, progress=False)
    np.testing.assert_allclose(wrecked.sample(obs, act, seed=0).next_observations, before, rtol=1e-5, atol=1e-5)
    assert np.isfinite(report.best_val_loss) and report.kept_start
    unguarded = model.clone()  # keep_start=False: the refit's own best weights, however bad
    unguarded.config = wrecked.config
    report = unguarded.fit(dataset, steps=20, progress=False, keep_start=False)
    assert not report.kept_start
    assert not np.allclose(unguarded.sample(obs, act, seed=0).next_observations, before, atol=1e-3)


def test_weighted_refit_moves_the_model_towards_the_weighted_rows(small_datasets: dict[str, Path],
                                                                  quick_model_path: Path) -> None:
    """Rows with zero weight are never trained on: corrupting their targets changes nothing."""
    dataset = load_dataset(small_datasets["halfcheetah"])
    corrupted = dataclasses.replace(dataset, next_observations=dataset.next_observations.copy())
    half = len(dataset) // 2
    corrupted.next_observations[half:] += 5.0
    weights = np.r_[np.ones(half), np.zeros(len(dataset) - half)]
    results = []
    for data in (dataset, corrupted):
        model = WorldModel.load(quick_model_path)
        model.config = dataclasses.replace(model.config, val_fraction=0.02)
        model.fit(data, weights=weights, steps=40, progress=False, seed=3)
        results.append(model.sample(dataset.observations[:32], dataset.actions[:32], seed=0).next_observations)
    np.testing.assert_allclose(results[0], results[1], rtol=1e-5, atol=1e-5)
    assert WorldModelConfig().weighted_sampling
