"""The uncertainty threshold of a run's synthetic rollouts (``TrainConfig.uncertainty_threshold``).

'auto' takes a high quantile (``AUTO_THRESHOLD_QUANTILE``) of the world model's uncertainty on
dataset pairs it was not fitted on, so a rollout halts where the model is less sure than on
almost all of the data it can judge: the paper's done signal, without a hand-picked number.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from adept_env.data.dataset import OfflineDataset
from adept_env.training.config import AUTO_THRESHOLD_QUANTILE, TrainConfig

CHUNK = 1_000
"""Pairs per model call when measuring the uncertainty (bounds the memory of K draws per pair)."""


def auto_threshold(model: Any, dataset: OfflineDataset, n_samples: int | None = None, seed: int = 0,
                   quantile: float = AUTO_THRESHOLD_QUANTILE) -> float:
    """The ``quantile`` of ``model``'s uncertainty (with ``n_samples`` K draws, None: the model's
    default) on the pairs a fit with ``seed`` held out (``adept_env.model_eval.held_out_rows``: those of
    a model first fitted by a run with that seed; a cached model fitted under another seed has seen
    some of them, which lowers the figure a little). Seeded draws: the same model gives the same
    threshold."""
    from adept_env.model_eval import held_out_rows

    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    index = np.sort(held_out_rows(len(dataset), model.config, seed))
    spreads = []
    for i, start in enumerate(range(0, len(index), CHUNK)):
        rows = index[start:start + CHUNK]
        pred = model.sample(dataset.observations[rows], np.clip(dataset.actions[rows], -1.0, 1.0),
                            n_samples=n_samples, seed=seed * 1_000_003 + i)
        spreads.append(np.asarray(pred.uncertainty, np.float64))
    value = float(np.quantile(np.concatenate(spreads), quantile))
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"the model's uncertainty on held-out pairs gives no usable threshold ({value}); "
                         "give --uncertainty-threshold a number > 0 instead")
    return value


def rollout_threshold(config: TrainConfig, model: Any, dataset: OfflineDataset, n_samples: int | None,
                      recorded: float | None = None) -> float | None:
    """The threshold a run's rollouts use: None (off), the number given, or for 'auto' the value the
    run ``recorded`` (a resumed run keeps it), else ``auto_threshold`` of ``model`` now."""
    setting = config.uncertainty_threshold
    if setting is None or isinstance(setting, float):
        return setting
    if recorded is not None:
        return float(recorded)
    return auto_threshold(model, dataset, n_samples=n_samples, seed=config.seed)
