"""Settings of an ADEPT environment; every field can be overridden in ``gym.make(id, **overrides)``."""

from __future__ import annotations

import dataclasses
import math
import numbers
import reprlib
from dataclasses import dataclass
from typing import Any

from adept_env.diffusion.config import PROFILES
from adept_env.tasks import unknown_name

START_STATE_MODES = ("dataset", "initial")
MAX_HORIZON = 1_000_000
MAX_N_SAMPLES = 1024

_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 64
_SHORT.maxlong = 40


def shown(value: Any) -> str:
    """Return ``repr(value)`` shortened to about 64 characters, so a huge value is never echoed whole."""
    return _SHORT.repr(value)


def _name(value: str) -> str:
    """Return a name cut to 64 characters, for messages that quote it."""
    return value if len(value) <= 64 else value[:61] + "..."


def _integer(name: str, value: Any, low: int, high: int | None = None, optional: bool = False) -> int | None:
    """Return ``value`` as an int in [low, high] (None where ``optional``); a ValueError names the field.

    bool, strings and non-integral floats are refused; an integral float (5.0, as JSON may carry 5)
    is converted."""
    if value is None and optional:
        return None
    number: int | None = None
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        number = int(value)
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        real = float(value)
        if math.isfinite(real) and real.is_integer():
            number = int(real)
    if number is None or number < low or (high is not None and number > high):
        valid = f"in [{low}, {high}]" if high is not None else f">= {low}"
        none = " or None" if optional else ""
        raise ValueError(f"{name} must be an integer {valid}{none}, got {shown(value)}")
    return number


def _real(name: str, value: Any, low: float, strict: bool = False, optional: bool = False) -> float | None:
    """Return ``value`` as a finite float >= low (> low where ``strict``; None where ``optional``);
    a ValueError names the field. bool, strings, NaN and +-inf are refused."""
    if value is None and optional:
        return None
    number: float | None = None
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an int beyond float's range
            number = None
    if number is None or not math.isfinite(number) or number < low or (strict and number == low):
        valid = f"{'>' if strict else '>='} {low:g}"
        none = " or None" if optional else ""
        raise ValueError(f"{name} must be a finite number {valid}{none}, got {shown(value)}")
    return number


def _choice(kind: str, value: Any, valid: tuple[str, ...]) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{kind} must be one of {', '.join(valid)}, got {shown(value)}")
    if value not in valid:
        raise unknown_name(kind, _name(value), valid)
    return value


@dataclass
class EnvConfig:
    """How synthetic episodes are run and how the model follows the agent's policy."""

    horizon: int = 5
    """Steps per synthetic episode before truncation (the paper's branched rollouts: H = 5)."""
    penalty: float = 1.0
    """lambda in r - lambda * u: how strongly model uncertainty is penalised."""
    uncertainty_threshold: float | None = None
    """End the episode (terminated, info['halted']) when u exceeds this (a number > 0); None: never."""
    n_samples: int | None = None
    """K next-state draws per step for the uncertainty; None: the model's default."""
    start_states: str = "dataset"
    """'dataset': episodes start from any dataset observation; 'initial': from episode starts only."""
    profile: str = "default"
    """World-model profile trained on first use: 'default', 'small' (the same network, a shorter fit)
    or 'quick' (tiny, well under a minute)."""
    model_path: str | None = None
    """Load this saved world model instead of the cached/trained one."""
    device: str = "auto"
    """Torch device of the world model: auto (a GPU when torch sees one, else the CPU), cpu, cuda or cuda:N;
    one torch does not see is an error, never a silent fallback."""
    refit_every: int | None = None
    """Start an importance-sampled refit after every N policy updates; None: only on request."""
    refit_steps: int | None = None
    """Gradient steps of a refit; None: the model's default refit size."""
    weight_clip: float = 20.0
    """Importance ratios are clipped at this multiple of their median before normalising."""
    dataset_path: str | None = None
    """Read the dataset from this HDF5 file instead of resolving the id's dataset name."""

    def __post_init__(self) -> None:
        """Check every value's type and range (the one place: gym.make, build_core and the server's
        session overrides all come through here); integral floats become ints, numbers floats."""
        self.horizon = _integer("horizon", self.horizon, 1, MAX_HORIZON)
        self.penalty = _real("penalty", self.penalty, 0.0)
        self.uncertainty_threshold = _real("uncertainty_threshold", self.uncertainty_threshold, 0.0, strict=True,
                                           optional=True)
        self.n_samples = _integer("n_samples", self.n_samples, 1, MAX_N_SAMPLES, optional=True)
        self.start_states = _choice("start_states mode", self.start_states, START_STATE_MODES)
        self.profile = _choice("profile", self.profile, PROFILES)
        self.refit_every = _integer("refit_every", self.refit_every, 1, optional=True)
        self.refit_steps = _integer("refit_steps", self.refit_steps, 1, optional=True)
        self.weight_clip = _real("weight_clip", self.weight_clip, 1.0, strict=True)

    @classmethod
    def from_overrides(cls, overrides: dict[str, Any]) -> EnvConfig:
        """Build a config from keyword overrides; an unknown key names the valid ones."""
        names = [f.name for f in dataclasses.fields(cls)]
        for key in overrides:
            if key not in names:
                raise unknown_name("environment option", _name(str(key)), names)
        return cls(**overrides)
