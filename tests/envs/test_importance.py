import numpy as np
import pytest

from adept_env.importance import importance_weights


def test_equal_policies_give_uniform_weights() -> None:
    lp = np.random.default_rng(0).normal(size=1000)
    iw = importance_weights(lp, lp)
    np.testing.assert_allclose(iw.weights, 1.0, rtol=1e-6)
    assert iw.effective_sample_size == pytest.approx(1000)
    assert iw.clipped_fraction == 0.0


def test_weights_are_self_normalised_and_clipped() -> None:
    rng = np.random.default_rng(1)
    behavior = np.full(10_000, -6 * np.log(2))
    target = behavior + rng.normal(scale=3.0, size=10_000)  # heavy-tailed ratios
    iw = importance_weights(target, behavior, clip=10.0)
    assert iw.weights.mean() == pytest.approx(1.0, rel=1e-5)
    assert iw.weights.max() / np.median(iw.weights) == pytest.approx(10.0, rel=1e-4)
    assert 0 < iw.clipped_fraction < 0.5
    assert 0 < iw.ess_fraction < 1
    # ordering of the ratios is kept below the clip
    order = np.argsort(target - behavior)
    assert np.all(np.diff(iw.weights[order]) >= -1e-6)


def test_huge_log_densities_do_not_overflow() -> None:
    target = np.array([900.0, 901.0, 902.0])
    iw = importance_weights(target, np.zeros(3), clip=100.0)
    assert np.all(np.isfinite(iw.weights))
    np.testing.assert_allclose(iw.weights / iw.weights[0], [1.0, np.e, np.e**2], rtol=1e-5)


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="differ in size"):
        importance_weights(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="no support"):
        importance_weights(np.full(3, -np.inf), np.zeros(3))
    with pytest.raises(ValueError, match="clip"):
        importance_weights(np.zeros(3), np.zeros(3), clip=1.0)
