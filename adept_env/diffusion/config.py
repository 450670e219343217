"""The world model's configuration: architecture, sampler and fitting budget, as one dataclass."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

PREDICTORS = ("mean_residual", "plain")
DTYPES = ("auto", "float32", "bfloat16")
UNCERTAINTIES = ("draws", "scale", "scale+disagreement")
"""What ``Prediction.uncertainty`` reports (:attr:`WorldModelConfig.uncertainty`)."""
SAVED_BEFORE = {"uncertainty": "draws"}
"""Fields added after models were first saved, with the value a saved config without them meant:
``from_dict`` fills these in instead of the current defaults, so an old file keeps its behaviour."""
SMALL_STEPS = 6_000
PROFILES = ("default", "small", "quick")
"""Named world-model configurations (:meth:`WorldModelConfig.profile`): ``default`` the measured
model, ``small`` a shorter fit of the same architecture (the demo's), ``quick`` a tiny model for tests."""
REFIT_ONLY_FIELDS = ("refit_steps", "refit_learning_rate", "weighted_sampling")
"""Fields used only by warm-start refits: a cached model fitted from scratch does not depend on them."""
SAMPLING_ONLY_FIELDS = ("uncertainty",)
"""Fields that change only what ``sample`` reports, not training: a cached model takes the current value."""


class ConfigMismatchError(ValueError):
    """A saved world model's configuration differs from the one the caller expected."""


@dataclass
class WorldModelConfig:
    """How the diffusion world model is built, sampled and fitted.

    The cost of one batched step is about ``n_samples * sampling_steps`` evaluations of the
    denoiser (plus one of the mean predictor), which is what the speed target constrains.
    """

    predictor: Literal["mean_residual", "plain"] = "mean_residual"
    """``mean_residual``: a deterministic mean predictor of the state change plus a flow model of
    its residual (keeps a regression model's accuracy, the flow gives the spread);
    ``plain``: a flow model of the state change itself."""
    denoiser_width: int = 128
    """Hidden width of the residual-MLP denoiser (the flow network)."""
    denoiser_blocks: int = 2
    """Residual blocks of the denoiser (two linear layers each)."""
    mean_width: int = 256
    """Hidden width of the mean predictor (``mean_residual`` only)."""
    mean_blocks: int = 3
    """Residual blocks of the mean predictor (``mean_residual`` only)."""
    heteroscedastic: bool = True
    """The mean predictor also predicts a per-pair residual scale (Gaussian NLL, ``mean_residual``
    only); the flow then models the residual in units of that scale, so the draws' spread
    follows the expected error from (s, a) instead of one global scale."""
    scale_width: int = 128
    """Hidden width of the residual-scale MLP (``heteroscedastic`` only), two hidden layers."""
    mean_members: int = 1
    """Independently initialised mean predictors (``mean_residual`` only); draw k uses member
    k mod M, so their disagreement enters the draws' spread as an epistemic signal."""
    reward_width: int = 128
    """Hidden width of the reward model r(s, a, s'), two hidden layers."""
    time_features: int = 16
    """Sinusoidal features of the flow time t in [0, 1]."""
    cond_dropout: float = 0.1
    """Probability of replacing the (s, a) condition by a learned null embedding in training."""
    guidance: float = 1.0
    """Classifier-free guidance weight w at sampling: v = v_uncond + w (v_cond - v_uncond);
    1.0 is purely conditional and costs no extra evaluation."""
    sampling_steps: int = 2
    """N: Euler steps of the flow sampler."""
    n_samples: int = 2
    """K: next-state draws per (s, a) with different noises (their mean is the next state)."""
    uncertainty: Literal["draws", "scale", "scale+disagreement"] = "scale"
    """What ``Prediction.uncertainty`` reports, in normalised state-change units (per-dimension stds
    of the dataset's s' - s): ``draws`` the RMS spread of the K draws around the mean predictors'
    average (around the draws' mean for ``plain``): a K-sample estimate, so noisy; ``scale`` the RMS
    over dimensions of the predicted per-pair residual scale, deterministic for a given (s, a), the
    draws' expected spread with one mean member (``mean_residual`` and ``heteroscedastic`` only);
    ``scale+disagreement`` sqrt(scale^2 + disagreement^2), the disagreement being the RMS over
    dimensions of the ``mean_members``' (>= 2) standard deviation: the draws' expected spread with
    several members. Sampling draws the same K next states whichever is chosen."""
    antithetic: bool = True
    """Draw noises in pairs (z, -z): the K draws' mean then has much less sampling noise, while
    their spread still measures the uncertainty."""
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    """Sampling precision; ``auto`` uses bf16 only where a run-time probe finds it faster, and
    only for batches of at least ``bf16_min_batch`` pairs."""
    bf16_min_batch: int = 128
    """Smaller batches sample in fp32 (bf16 autocast has a fixed cost that loses at batch 1)."""
    batch_size: int = 256
    """Training minibatch size."""
    learning_rate: float = 1e-3
    """Adam learning rate at the start of each fit (cosine-decayed to 10% over the fit)."""
    weight_decay: float = 0.0
    """Adam(W) weight decay."""
    grad_clip: float = 1.0
    """Gradient norm clip."""
    reward_loss_weight: float = 1.0
    """Weight of the reward loss beside the state losses."""
    steps: int = 30_000
    """Gradient steps of a fit from scratch."""
    refit_steps: int = 600
    """Gradient steps of a warm-start refit (default when ``fit(steps=None)`` on a fitted model)."""
    refit_learning_rate: float = 3e-4
    """Adam learning rate at the start of a warm-start refit (cosine-decayed like a fit's). Lower
    than a fresh fit's: at 1e-3 a refit of a converged model first shakes it (measured in
    BENCHMARKS.md, "importance-sampled refit")."""
    weighted_sampling: bool = True
    """With weights, draw each minibatch in proportion to them (importance resampling) instead of
    multiplying uniform minibatches' losses by them: the same expected gradient with much less
    variance when a few pairs carry large weights."""
    max_fit_seconds: float | None = None
    """Wall-clock cap of a fit, seconds; None: no cap."""
    val_fraction: float = 0.05
    """Share of the dataset held out for early stopping."""
    val_max: int = 5_000
    """At most this many held-out pairs."""
    eval_every: int = 500
    """Gradient steps between held-out evaluations."""
    patience: int = 8
    """Stop after this many evaluations without a held-out improvement."""

    def __post_init__(self) -> None:
        if self.predictor not in PREDICTORS:
            raise ValueError(f"predictor must be one of {PREDICTORS}, got {self.predictor!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.uncertainty not in UNCERTAINTIES:
            raise ValueError(f"uncertainty must be one of {UNCERTAINTIES}, got {self.uncertainty!r}")
        if self.uncertainty != "draws" and self.predictor != "mean_residual":
            raise ValueError(f"uncertainty={self.uncertainty!r} needs predictor='mean_residual' (the plain flow "
                             "predicts no residual scale); use uncertainty='draws'")
        if self.uncertainty == "scale" and not self.heteroscedastic:
            raise ValueError("uncertainty='scale' needs heteroscedastic=True (otherwise the scale is one constant); "
                             "use 'draws', or 'scale+disagreement' with mean_members >= 2")
        if self.uncertainty == "scale+disagreement" and self.mean_members < 2:
            raise ValueError(f"uncertainty='scale+disagreement' needs mean_members >= 2, got {self.mean_members}; "
                             "use 'scale' for one mean member")
        for name in ("denoiser_width", "denoiser_blocks", "mean_width", "mean_blocks", "mean_members",
                     "scale_width", "reward_width", "time_features", "sampling_steps", "n_samples",
                     "batch_size", "steps", "refit_steps", "val_max", "eval_every", "patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.learning_rate <= 0 or self.refit_learning_rate <= 0:
            raise ValueError("learning rates must be > 0")
        if not 0.0 <= self.cond_dropout < 1.0:
            raise ValueError(f"cond_dropout must be in [0, 1), got {self.cond_dropout}")
        if not 0.0 < self.val_fraction < 0.5:
            raise ValueError(f"val_fraction must be in (0, 0.5), got {self.val_fraction}")

    @classmethod
    def default(cls) -> WorldModelConfig:
        """The measured default (see BENCHMARKS.md, "World model")."""
        return cls()

    @classmethod
    def quick(cls) -> WorldModelConfig:
        """A small model that trains in well under a minute on a CPU, for tests and demos."""
        return cls(denoiser_width=64, denoiser_blocks=1, mean_width=64, mean_blocks=1, reward_width=64,
                   scale_width=64,
                   steps=1_500, refit_steps=300, eval_every=250, patience=4, val_max=1_000)

    @classmethod
    def small(cls) -> WorldModelConfig:
        """The default architecture fitted for a few thousand steps: minutes on a CPU (the demo's)."""
        return cls(steps=SMALL_STEPS, eval_every=500, patience=4)

    @classmethod
    def profile(cls, name: str) -> WorldModelConfig:
        """Return the configuration of a profile name (one of ``PROFILES``)."""
        if name not in PROFILES:
            from adept_env.tasks import unknown_name

            raise unknown_name("world-model profile", name, PROFILES)
        return getattr(cls, name)()

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> WorldModelConfig:
        """Build a config from ``to_dict`` output; unknown fields raise ConfigMismatchError.

        A missing field takes its value from ``SAVED_BEFORE`` when listed there (what a file written
        before the field existed meant), else the current default.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigMismatchError(f"unknown world-model config fields {unknown}; saved by a newer adept-env?")
        return cls(**{**SAVED_BEFORE, **values})

    def training_dict(self) -> dict[str, Any]:
        """Return the fields that shape a model fitted from scratch (all but REFIT_ONLY_FIELDS and
        SAMPLING_ONLY_FIELDS)."""
        skip = REFIT_ONLY_FIELDS + SAMPLING_ONLY_FIELDS
        return {k: v for k, v in self.to_dict().items() if k not in skip}

    def differences(self, other: WorldModelConfig) -> list[str]:
        """Return ``"field: self_value != other_value"`` for every field that differs."""
        mine, theirs = self.to_dict(), other.to_dict()
        return [f"{key}: {mine[key]!r} != {theirs[key]!r}" for key in mine if mine[key] != theirs[key]]
