"""The episode engine (EpisodeBatch.step): the one place a step is computed, for every adapter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from adept_env.data.dataset import load_dataset
from adept_env.envs.config import EnvConfig
from adept_env.envs.core import WorldModelCore
from adept_env.envs.episodes import AutoresetMode, EpisodeBatch, ResetNeeded, autoreset_mode, check_actions

ACT_DIM = 6


@pytest.fixture
def make_batch(small_datasets: dict[str, Path], quick_model_path: Path):
    from adept_env.diffusion import WorldModel

    dataset = load_dataset(small_datasets["halfcheetah"])

    def make(n: int = 4, **overrides) -> EpisodeBatch:
        return EpisodeBatch(WorldModelCore(dataset, WorldModel.load(quick_model_path), EnvConfig(**overrides)), n)

    return make


def test_action_policy_clips_finite_values_and_rejects_the_rest() -> None:
    wild = np.array([[1.5, -3.0, 0.5, 1.0, -1.0, 0.0]])
    np.testing.assert_array_equal(check_actions(wild, 1, ACT_DIM), np.clip(wild, -1, 1).astype(np.float32))
    assert check_actions(np.ones(ACT_DIM, np.int64), 1, ACT_DIM).dtype == np.float32  # integers are numbers
    assert check_actions(np.zeros(ACT_DIM), 1, ACT_DIM).shape == (1, ACT_DIM)  # (act_dim,) for one env
    with pytest.raises(ValueError, match="shape"):
        check_actions(np.zeros((2, ACT_DIM)), 1, ACT_DIM)
    with pytest.raises(ValueError, match=r"NaN or inf \(first at \[1, 2\]\)"):
        check_actions(np.where(np.arange(12).reshape(2, 6) == 8, np.nan, 0.0), 2, ACT_DIM)
    with pytest.raises(ValueError, match="numbers"):
        check_actions(np.zeros((1, ACT_DIM), bool), 1, ACT_DIM)


def test_autoreset_names() -> None:
    assert autoreset_mode("none") is AutoresetMode.DISABLED
    assert autoreset_mode("next_step") is autoreset_mode("NextStep") is AutoresetMode.NEXT_STEP
    assert autoreset_mode(AutoresetMode.SAME_STEP) is AutoresetMode.SAME_STEP
    with pytest.raises(ValueError, match="next_step"):
        autoreset_mode("sometimes")


def test_disabled_autoreset_needs_a_reset(make_batch) -> None:
    batch, rng, actions = make_batch(3, horizon=2), np.random.default_rng(0), np.zeros((3, ACT_DIM))
    with pytest.raises(ResetNeeded, match="reset"):
        batch.step(actions, rng)
    batch.reset(rng)
    first = batch.step(actions, rng)
    assert first.stepped.all() and not first.truncated.any() and first.final_observations is None
    second = batch.step(actions, rng)
    assert second.truncated.all() and batch.needs_reset.all()
    with pytest.raises(ResetNeeded, match=r"episodes \[0, 1, 2\] ended"):
        batch.step(actions, rng)
    batch.reset(rng, mask=np.array([True, False, False]))
    with pytest.raises(ResetNeeded, match=r"\[1, 2\]"):
        batch.step(actions, rng)
    only_first = batch.step(actions, rng, mask=np.array([True, False, False]))  # a mask steps only those
    assert only_first.stepped.tolist() == [True, False, False] and only_first.rewards[1:].tolist() == [0, 0]
    with pytest.raises(ValueError, match="mask must be bool of shape"):
        batch.reset(rng, mask=np.ones(2, bool))


def test_next_step_resets_instead_of_stepping(make_batch) -> None:
    batch, rng, actions = make_batch(2, horizon=1), np.random.default_rng(0), np.zeros((2, ACT_DIM))
    batch.reset(rng)
    ended = batch.step(actions, rng, autoreset="next_step")
    assert ended.truncated.all()
    restarted = batch.step(actions, rng, autoreset="next_step")
    assert restarted.reset_mask.all() and not restarted.stepped.any()
    assert not (restarted.terminated | restarted.truncated).any() and np.all(restarted.rewards == 0)
    assert (batch.steps == 0).all()
    info = restarted.vector_info()
    assert not info["_raw_reward"].any() and info["_model_version"].all()


def test_same_step_keeps_final_observations(make_batch) -> None:
    batch, rng, actions = make_batch(2, horizon=1, n_samples=3), np.random.default_rng(0), np.zeros((2, ACT_DIM))
    batch.reset(rng)
    out = batch.step(actions, rng, autoreset=AutoresetMode.SAME_STEP)
    assert out.reset_mask.all() and out.stepped.all() and not batch.needs_reset.any()
    assert not np.allclose(out.final_observations, out.observations)  # the last state, then a start state
    np.testing.assert_allclose(out.next_samples.mean(0), out.final_observations, rtol=1e-5, atol=1e-5)
    info = out.info(1)
    assert info["next_samples"].shape == (3, 17) and set(info) >= {"raw_reward", "uncertainty", "halted"}


def test_rewards_are_penalised_and_the_halt_terminates(make_batch) -> None:
    batch, rng, actions = make_batch(64, penalty=2.0, uncertainty_threshold=1e-6), np.random.default_rng(0), None
    batch.reset(rng)
    actions = rng.uniform(-1, 1, (64, ACT_DIM))
    out = batch.step(actions, rng)
    np.testing.assert_allclose(out.rewards, out.raw_rewards - 2.0 * out.uncertainty, rtol=1e-6)
    assert out.halted.all() and out.terminated.all()  # every draw spread is above a threshold of 1e-6


def test_explicit_seed_makes_steps_repeatable(make_batch) -> None:
    a, b = make_batch(8), make_batch(8)
    rng_a, rng_b = np.random.default_rng(1), np.random.default_rng(1)
    a.reset(rng_a), b.reset(rng_b)
    actions = np.full((8, ACT_DIM), 0.3)
    np.testing.assert_array_equal(a.step(actions, rng_a, seed=7).observations,
                                  b.step(actions, np.random.default_rng(99), seed=7).observations)
