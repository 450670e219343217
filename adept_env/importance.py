"""Importance weights w = pi(a|s) / beta(a|s) over dataset pairs: clipped, self-normalised."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ImportanceWeights:
    """Per-pair weights (mean 1 over the dataset) and how much of the data they really use."""

    weights: np.ndarray
    """float32, one per dataset pair, self-normalised to mean 1."""
    effective_sample_size: float
    """(sum w)^2 / sum w^2: how many equally weighted pairs the weights are worth."""
    clipped_fraction: float
    """Share of pairs whose ratio hit the clip bound."""

    @property
    def ess_fraction(self) -> float:
        """Effective sample size as a fraction of the number of pairs (1.0 = uniform)."""
        return self.effective_sample_size / max(len(self.weights), 1)


def importance_weights(
    target_log_prob: np.ndarray,
    behavior_log_prob: np.ndarray,
    clip: float = 20.0,
) -> ImportanceWeights:
    """Return self-normalised importance weights from per-pair log-densities.

    Ratios are formed in log space relative to their median (so huge densities of a narrow
    target policy do not overflow), clipped at ``clip`` times the median ratio, then scaled to
    mean 1. ``clip`` bounds the variance the refit can suffer from a few dominant pairs.
    """
    target = np.asarray(target_log_prob, np.float64).reshape(-1)
    behavior = np.asarray(behavior_log_prob, np.float64).reshape(-1)
    if target.shape != behavior.shape:
        raise ValueError(f"log-prob arrays differ in size: target {target.shape}, behaviour {behavior.shape}")
    if len(target) == 0:
        raise ValueError("no pairs to weight")
    if clip <= 1.0:
        raise ValueError(f"clip must be > 1, got {clip}")
    log_ratio = target - behavior
    finite = np.isfinite(log_ratio)
    if not finite.any():
        raise ValueError("every log-ratio is non-finite: the policies share no support on the dataset")
    log_ratio = np.where(finite, log_ratio, -np.inf)
    centre = float(np.median(log_ratio[finite]))
    upper = centre + np.log(clip)
    clipped = log_ratio > upper
    ratio = np.exp(np.minimum(log_ratio, upper) - centre)
    weights = ratio / ratio.mean()
    ess = float(weights.sum() ** 2 / np.square(weights).sum())
    return ImportanceWeights(weights.astype(np.float32), ess, float(clipped.mean()))
