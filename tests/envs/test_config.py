"""EnvConfig checks every override's type and range in one place (gym.make, build_core, server sessions)."""

from __future__ import annotations

import numpy as np
import pytest

from adept_env.envs.config import MAX_HORIZON, MAX_N_SAMPLES, EnvConfig

BAD = [
    ("horizon", 2.5), ("horizon", 1e300), ("horizon", 0), ("horizon", MAX_HORIZON + 1), ("horizon", True),
    ("horizon", "5"), ("horizon", None), ("horizon", float("nan")),
    ("n_samples", 10**9), ("n_samples", 0), ("n_samples", MAX_N_SAMPLES + 1), ("n_samples", 2.5), ("n_samples", "4"),
    ("n_samples", False),
    ("penalty", float("nan")), ("penalty", float("inf")), ("penalty", -0.1), ("penalty", "1"), ("penalty", None),
    ("penalty", True), ("penalty", 10**400),
    ("uncertainty_threshold", "high"), ("uncertainty_threshold", float("nan")), ("uncertainty_threshold", -1.0),
    ("uncertainty_threshold", float("inf")), ("uncertainty_threshold", 0.0), ("uncertainty_threshold", 0),
    ("refit_every", 0), ("refit_every", 1.5), ("refit_every", "2"),
    ("refit_steps", -5), ("refit_steps", 0), ("refit_steps", float("inf")), ("refit_steps", "10"),
    ("weight_clip", float("inf")), ("weight_clip", float("nan")), ("weight_clip", 1.0), ("weight_clip", 0.5),
    ("weight_clip", "20"), ("weight_clip", None),
    ("start_states", "random"), ("start_states", 3), ("profile", "huge"), ("profile", None),
]


@pytest.mark.parametrize(("name", "value"), BAD, ids=[f"{n}={v!r}"[:40] for n, v in BAD])
def test_bad_values_are_refused_naming_the_field(name: str, value: object) -> None:
    with pytest.raises(ValueError, match=name) as caught:
        EnvConfig(**{name: value})
    assert len(str(caught.value)) < 300  # the value is shown shortened (10**400 has 401 digits)


def test_messages_give_the_valid_range_and_never_echo_a_huge_value() -> None:
    with pytest.raises(ValueError, match=r"horizon must be an integer in \[1, 1000000\], got 2.5"):
        EnvConfig(horizon=2.5)
    with pytest.raises(ValueError, match=r"penalty must be a finite number >= 0, got nan"):
        EnvConfig(penalty=float("nan"))
    with pytest.raises(ValueError, match=r"n_samples must be an integer in \[1, 1024\] or None"):
        EnvConfig(n_samples=10**9)
    with pytest.raises(ValueError, match=r"uncertainty_threshold must be a finite number > 0 or None, got 0.0"):
        EnvConfig(uncertainty_threshold=0.0)
    for name in ("horizon", "start_states", "profile", "uncertainty_threshold"):
        with pytest.raises(ValueError, match=name) as caught:
            EnvConfig(**{name: "x" * 200_000})
        assert len(str(caught.value)) < 300
    with pytest.raises(ValueError, match="environment option") as caught:
        EnvConfig.from_overrides({"y" * 200_000: 1})
    assert len(str(caught.value)) < 400


def test_edge_and_current_values_are_accepted() -> None:
    low = EnvConfig(horizon=1, penalty=0.0, uncertainty_threshold=1e-12, n_samples=1, refit_every=1, refit_steps=1,
                    weight_clip=1.0 + 1e-9, start_states="initial", profile="quick")
    assert (low.horizon, low.n_samples, low.refit_every, low.refit_steps) == (1, 1, 1, 1)
    high = EnvConfig(horizon=MAX_HORIZON, n_samples=MAX_N_SAMPLES, penalty=1e6, uncertainty_threshold=1e9,
                     refit_steps=10**6, weight_clip=1e9)
    assert high.horizon == MAX_HORIZON and high.n_samples == MAX_N_SAMPLES
    default = EnvConfig()
    assert (default.horizon, default.penalty, default.uncertainty_threshold, default.n_samples) == (5, 1.0, None, None)
    assert default.weight_clip == 20.0 and default.refit_every is None and default.refit_steps is None
    # README's overrides, as written there
    EnvConfig(horizon=5, penalty=1.0, uncertainty_threshold=None, n_samples=None, start_states="dataset",
              profile="default", model_path=None, refit_every=None, refit_steps=None, weight_clip=20.0,
              dataset_path=None)


def test_integral_floats_and_numpy_numbers_are_converted() -> None:
    config = EnvConfig(horizon=5.0, n_samples=np.int64(3), refit_steps=20.0, refit_every=np.int32(2),
                       penalty=1, weight_clip=np.float32(4.0), uncertainty_threshold=2)
    assert config.horizon == 5 and type(config.horizon) is int
    assert config.n_samples == 3 and type(config.n_samples) is int
    assert config.refit_steps == 20 and type(config.refit_steps) is int and type(config.refit_every) is int
    assert config.penalty == 1.0 and type(config.penalty) is float
    assert config.weight_clip == 4.0 and type(config.uncertainty_threshold) is float


def test_gym_make_refuses_a_fractional_horizon(tmp_path) -> None:
    import gymnasium as gym

    import adept_env  # noqa: F401  (registers the ids)

    missing = {"model_path": str(tmp_path / "no-model"), "dataset_path": str(tmp_path / "no-data.hdf5")}
    with pytest.raises(ValueError, match=r"horizon must be an integer in \[1, 1000000\], got 2.5"):
        gym.make("ADEPT-halfcheetah-random", horizon=2.5, **missing)  # refused before any file is read
