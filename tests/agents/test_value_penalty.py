"""The MOBILE-style value penalty: the std of the agent's Bellman targets over the model's draws."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from adept_env.agents.iql import IQLConfig
from adept_env.data.dataset import load_dataset
from adept_env.tasks import get_task
from adept_env.training.config import TrainConfig
from adept_env.training.iql_loop import SyntheticBuffer
from adept_env.training.loop import train
from adept_env.training.value_penalty import value_std


def _hopper_sac(dataset_path: Path, value_penalty: float) -> tuple:
    from stable_baselines3 import SAC

    from adept_env.sb3 import MixedReplayBuffer
    from adept_env.sim import make_real_env

    model = SAC("MlpPolicy", make_real_env("Hopper-v5"), seed=0, device="cpu")
    env = model.env
    buffer = MixedReplayBuffer(1000, env.observation_space, env.action_space, device="cpu",
                               dataset=load_dataset(dataset_path), real_ratio=0.0, value_penalty=value_penalty)
    return model, buffer


def _bellman_std(model, draws: np.ndarray) -> np.ndarray:
    """The penalty computed independently: per transition, std over draws of min Q'(s', pi(s'))."""
    n, k, dim = draws.shape
    flat = draws.reshape(n * k, dim)
    with torch.no_grad():
        states = torch.as_tensor(flat)
        actions = model.policy.actor(states, deterministic=True)
        q = torch.minimum(*model.policy.critic_target(states, actions)).squeeze(-1).numpy()
    q = q * ~get_task("hopper").is_terminated(flat)
    return q.reshape(n, k).std(axis=1, ddof=1)


def test_sac_buffer_subtracts_beta_times_the_bellman_std(small_datasets: dict[str, Path]) -> None:
    model, buffer = _hopper_sac(small_datasets["hopper"], value_penalty=2.0)
    dataset = buffer.dataset
    rng = np.random.default_rng(0)
    healthy = dataset.observations[:1].repeat(4, 0)  # a standing hopper: not terminal
    for i in range(6):
        spread = 0.0 if i % 2 == 0 else 0.3  # even rows: all draws equal, so no penalty
        draws = healthy + spread * rng.standard_normal(healthy.shape).astype(np.float32)
        draws[:, 0] = np.clip(draws[:, 0], 0.9, 1.5)  # keep z healthy
        draws[:, 1] = np.clip(draws[:, 1], -0.15, 0.15)
        buffer.add(dataset.observations[i:i + 1], draws.mean(0, keepdims=True), dataset.actions[i:i + 1],
                   np.array([1.0]), np.array([0.0]), [{"next_samples": draws}])
    with pytest.raises(RuntimeError, match="attach"):
        buffer.sample(4)
    buffer.attach(model)
    batch_inds = np.arange(6)
    samples = buffer._get_samples(batch_inds)
    expected = 1.0 - 2.0 * _bellman_std(model, buffer.next_samples[batch_inds, 0])
    rewards = samples.rewards.numpy().ravel()
    np.testing.assert_allclose(rewards[0::2], 1.0, atol=1e-6)  # identical draws: the reward is untouched
    np.testing.assert_allclose(rewards, expected, rtol=1e-4, atol=1e-4)
    assert np.all(rewards[1::2] < 1.0)
    assert buffer.penalty_mean > 0


def test_sac_buffer_refuses_transitions_without_draws(small_datasets: dict[str, Path]) -> None:
    _, buffer = _hopper_sac(small_datasets["hopper"], value_penalty=1.0)
    ds = buffer.dataset
    with pytest.raises(ValueError, match="next_samples"):
        buffer.add(ds.observations[:1], ds.next_observations[:1], ds.actions[:1], np.array([0.0]), np.array([0.0]),
                   [{}])
    with pytest.raises(ValueError, match="K >= 2"):
        buffer.add(ds.observations[:1], ds.next_observations[:1], ds.actions[:1], np.array([0.0]), np.array([0.0]),
                   [{"next_samples": ds.next_observations[:1]}])


def test_iql_value_std_counts_terminal_draws_as_zero_value() -> None:
    task = get_task("hopper")

    def value(states: torch.Tensor) -> torch.Tensor:
        return states[:, :1] * 0.0 + 10.0  # V = 10 everywhere

    healthy = np.zeros((1, 2, 11), np.float32)
    healthy[..., 0] = 1.25  # z inside Hopper's healthy range
    fallen = healthy.copy()
    fallen[0, 1, 0] = 0.2  # the second draw has fallen: its Bellman target has no future value
    np.testing.assert_allclose(value_std(value, healthy, task), [0.0])
    np.testing.assert_allclose(value_std(value, fallen, task), [np.std([10.0, 0.0], ddof=1)], rtol=1e-6)


def test_synthetic_buffer_keeps_draws_row_aligned() -> None:
    buffer = SyntheticBuffer(5, obs_dim=2, act_dim=1, draws=3)
    obs = np.arange(8, dtype=np.float32).reshape(4, 2)
    draws = np.repeat(obs[:, None], 3, axis=1) + 100
    buffer.add(obs, np.zeros((4, 1)), np.zeros(4), obs, np.zeros(4), draws)
    picked = buffer.sample(50, np.random.default_rng(0))
    assert len(picked) == 6
    np.testing.assert_array_equal(picked[5][:, 0], picked[0] + 100)
    with pytest.raises(ValueError, match="3 draws"):
        buffer.add(obs, np.zeros((4, 1)), np.zeros(4), obs, np.zeros(4))


@pytest.mark.parametrize(("settings", "needle"), [({"algo": "iql", "value_penalty": 1.0}, "world-model variants"),
                                                ({"algo": "adept-sac", "value_penalty": -1.0}, ">= 0"),
                                                ({"algo": "adept-sac", "value_penalty": float("nan")}, ">= 0"),
                                                ({"algo": "sac", "value_penalty": 1.0}, "adept-iql, adept-sac"),
                                                ({"algo": "adept-sac", "value_samples": 1}, "value_samples")])
def test_value_penalty_settings_are_checked(settings: dict, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        TrainConfig(**settings)


@pytest.mark.parametrize("algo", ["diff-iql", "diff-sac"])
def test_loops_run_with_the_value_penalty(algo: str, small_datasets: dict[str, Path], quick_model_path: Path,
                                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The run trains with its value penalty and its checkpoints are scored with it (and its lambda = 0)."""
    import adept_env.training.run
    from adept_env.training.iql_loop import reward_scale
    from adept_env.training.selection import model_return

    calls: list[dict] = []

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return model_return(*args, **kwargs)

    monkeypatch.setattr(adept_env.training.run, "model_return", spy)
    dataset = load_dataset(small_datasets["halfcheetah"])
    run_dir = tmp_path / algo
    run_dir.mkdir()
    shutil.copytree(quick_model_path, run_dir / "world_model")
    config = TrainConfig(algo=algo, updates=120, batch_size=64, rollout_every=40, rollout_batch=64, sac_envs=4,
                         eval_every=120, eval_episodes=1, profile="quick", penalty=0.0, value_penalty=2.0,
                         value_samples=4, selection_episodes=2, iql=IQLConfig(hidden=32))
    result = train(dataset, config, run_dir, progress=False)
    row = result.curve[-1]
    assert row["update"] == 120
    assert np.isfinite(row["value_penalty_mean"]) and row["value_penalty_mean"] > 0
    assert np.isfinite(row["model_return"]) and len(calls) == 1
    scored = calls[0]
    assert (scored["penalty"], scored["n_samples"], scored["uncertainty_threshold"]) == (0.0, 4, None)
    draws = dataset.next_observations[:24].reshape(6, 4, -1)  # (B, K, D): stand-ins for the model's draws
    if algo == "diff-iql":  # IQL's rewards are scaled by reward_scale, its value penalty is in those units
        agent = result.agent
        expected = 2.0 / reward_scale(dataset) * value_std(agent.value, draws, dataset.task, device=agent.device)
    else:
        expected = 2.0 * result.agent.replay_buffer.bellman_std(draws)
    np.testing.assert_allclose(scored["step_penalty"](draws), expected.cpu().numpy(), rtol=1e-5)


def test_a_penalty_beyond_the_reward_range_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """halfcheetah-random with beta = 25 went from 0.24 to 14,029 per step: the run must say so, not go on silently."""
    from adept_env.training.evaluation import EvalResult
    from adept_env.training.run import RunLog, penalty_notice

    assert penalty_notice(40_000, 0.24, 6.2) is None
    assert penalty_notice(40_000, 6.2, 6.2) is None
    assert penalty_notice(40_000, 0.24, None) is None  # no range known: nothing to compare with
    for diverged in (14_028.99, float("inf"), float("nan")):
        notice = penalty_notice(40_000, diverged, 6.2)
        assert notice is not None and "40,000" in notice and "--value-penalty" in notice
    log = RunLog(tmp_path, "test", reward_span=6.2, penalty_per_spread=1.0)
    result = EvalResult(task="halfcheetah", returns=np.zeros(1), lengths=np.full(1, 1000))
    log.evaluation(20_000, result, {"value_penalty_mean": 0.24})
    assert "value penalty" not in capsys.readouterr().err
    log.evaluation(40_000, result, {"value_penalty_mean": 14_028.99})
    err = capsys.readouterr().err
    assert "14,028.99" in err
    assert "reward range (6.20)" in err
    # the row holds the spread before beta: beta = 25 turns a spread of 0.3 into a penalty of 7.5 > 6.2
    beta_log = RunLog(tmp_path / "beta", "test", reward_span=6.2, penalty_per_spread=25.0)
    beta_log.evaluation(20_000, result, {"value_penalty_mean": 0.2})
    assert "value penalty" not in capsys.readouterr().err
    beta_log.evaluation(40_000, result, {"value_penalty_mean": 0.3})
    assert "averages 7.50 per synthetic step" in capsys.readouterr().err
