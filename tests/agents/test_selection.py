"""Offline checkpoint selection by the policy's return in the world model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from adept_env.agents.iql import IQLConfig
from adept_env.data.dataset import load_dataset
from adept_env.training.config import TrainConfig
from adept_env.training.loop import train
from adept_env.training.selection import best_row, is_new_best, model_return


class LineWorld:
    """A toy model: the state moves by the action; reward 1 per step minus nothing; it ends past x = 3."""

    def sample(self, observations: np.ndarray, actions: np.ndarray, n_samples: int | None = None,
               seed: int | None = None) -> SimpleNamespace:
        nxt = observations.copy()
        nxt[:, 0] += actions[:, 0]
        return SimpleNamespace(next_observations=nxt, rewards=np.ones(len(nxt), np.float32),
                               uncertainty=np.full(len(nxt), 0.5, np.float32), terminated=nxt[:, 0] > 3.0)


def test_model_return_sums_penalised_rewards_until_termination(small_datasets: dict[str, Path]) -> None:
    dataset = load_dataset(small_datasets["hopper"])
    dataset.observations[:, 0] = 0.0  # every start at x = 0
    still = model_return(lambda o: np.zeros((len(o), 3)), LineWorld(), dataset, episodes=4, horizon=7, penalty=1.0)
    assert still == pytest.approx(7 * 0.5)  # never ends: horizon steps of 1 - 0.5
    moving = model_return(lambda o: np.ones((len(o), 3)), LineWorld(), dataset, episodes=4, horizon=50, penalty=0.0)
    assert moving == pytest.approx(4.0)  # x = 1, 2, 3, 4: ends on the fourth step
    with pytest.raises(ValueError, match="episodes"):
        model_return(lambda o: o, LineWorld(), dataset, episodes=0)


def test_best_row_keeps_the_first_of_the_highest() -> None:
    curve = [{"update": 1, "model_return": 3.0}, {"update": 2, "model_return": 5.0}, {"update": 3, "model_return": 5.0}]
    assert best_row(curve)["update"] == 2
    assert best_row([{"update": 1}]) is None
    assert is_new_best(curve, 5.5) and not is_new_best(curve, 5.0) and is_new_best([], -1e9)


@pytest.mark.parametrize("algo", ["diff-iql", "diff-sac"])
def test_runs_keep_and_score_the_model_selected_checkpoint(algo: str, small_datasets: dict[str, Path],
                                                           quick_model_path: Path, tmp_path: Path) -> None:
    dataset = load_dataset(small_datasets["halfcheetah"])
    run_dir = tmp_path / algo
    run_dir.mkdir()
    shutil.copytree(quick_model_path, run_dir / "world_model")
    config = TrainConfig(algo=algo, updates=120, batch_size=64, rollout_every=40, rollout_batch=64, sac_envs=4,
                         eval_every=40, eval_episodes=1, profile="quick", selection_episodes=3,
                         iql=IQLConfig(hidden=32))
    result = train(dataset, config, run_dir, progress=False)
    returns = [row["model_return"] for row in result.curve]
    assert len(returns) == 3 and all(np.isfinite(returns))
    assert result.selected["update"] == result.curve[int(np.argmax(returns))]["update"]
    assert np.isfinite(result.selected["score_mean"])
    kept = "policy_selected.safetensors" if algo.endswith("sac") else "agent_selected.safetensors"
    assert (run_dir / kept).exists()


@pytest.mark.parametrize("algo", ["diff-iql", "diff-sac"])
def test_an_earlier_selected_checkpoint_is_reloaded_and_scored(algo: str, small_datasets: dict[str, Path],
                                                               quick_model_path: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import adept_env.training.run

    estimates = iter([5.0, 1.0])  # the first checkpoint is the best: the kept file must be scored
    monkeypatch.setattr(adept_env.training.run, "policy_model_return",
                        lambda core, config, act, step_penalty=None: next(estimates))
    dataset = load_dataset(small_datasets["halfcheetah"])
    run_dir = tmp_path / algo
    run_dir.mkdir()
    shutil.copytree(quick_model_path, run_dir / "world_model")
    config = TrainConfig(algo=algo, updates=80, batch_size=64, rollout_every=40, rollout_batch=64, sac_envs=4,
                         eval_every=40, eval_episodes=1, profile="quick", iql=IQLConfig(hidden=32))
    result = train(dataset, config, run_dir, progress=False)
    assert result.selected["update"] == 40 and result.selected["model_return"] == 5.0
    assert np.isfinite(result.selected["score_mean"])
    saved = json.loads((run_dir / "progress.json").read_text())
    assert saved["selected"] == result.selected


class RiskyWorld:
    """A toy model where a larger action earns more reward but is less certain: r = 1 + a, u = 3a
    (a: the mean action); K draws spread around the mean next state by u. It never terminates."""

    def sample(self, observations: np.ndarray, actions: np.ndarray, n_samples: int | None = None,
               seed: int | None = None) -> SimpleNamespace:
        k = 2 if n_samples is None else n_samples
        a = np.abs(actions).mean(1).astype(np.float32)
        spread = np.linspace(-1.0, 1.0, k, dtype=np.float32)[:, None, None] * (3 * a)[None, :, None]
        return SimpleNamespace(next_observations=observations.copy(), rewards=1.0 + a, uncertainty=3 * a,
                               terminated=np.zeros(len(a), bool), samples=observations[None] + spread)


def _core(dataset, threshold: float | None = None, n_samples: int | None = None):
    from adept_env.envs.config import EnvConfig
    from adept_env.envs.core import WorldModelCore

    return WorldModelCore(dataset, RiskyWorld(), EnvConfig(uncertainty_threshold=threshold, n_samples=n_samples))


def test_selection_scores_with_the_runs_own_penalty(small_datasets: dict[str, Path]) -> None:
    """A run with penalty 0 is ranked by the unpenalised return, one with penalty 1 by the penalised one."""
    from adept_env.training.run import policy_model_return, score_in_model

    dataset = load_dataset(small_datasets["hopper"])
    bold, careful = (lambda o: np.ones((len(o), 3))), (lambda o: np.zeros((len(o), 3)))
    steps = dataset.task.max_episode_steps  # episodes as long as the real ones
    for penalty, expected_bold in ((0.0, 2.0 * steps), (1.0, -1.0 * steps)):
        config = TrainConfig(algo="diff-iql", penalty=penalty, selection_episodes=2)
        core = _core(dataset)
        assert policy_model_return(core, config, bold) == pytest.approx(expected_bold)
        assert policy_model_return(core, config, careful) == pytest.approx(1.0 * steps)
    unpenalised = TrainConfig(algo="diff-iql", penalty=0.0, selection_episodes=2)
    curve = [{"update": 1, **score_in_model(_core(dataset), unpenalised, [], careful, lambda: None)}]
    kept = []
    curve.append({"update": 2, **score_in_model(_core(dataset), unpenalised, curve, bold, lambda: kept.append(2))})
    assert kept == [2] and best_row(curve)["update"] == 2  # lambda = 1 would have kept the careful policy


def test_selection_halts_at_the_runs_threshold_and_takes_its_value_penalty(small_datasets: dict[str, Path]) -> None:
    from adept_env.training.run import policy_model_return

    dataset = load_dataset(small_datasets["hopper"])
    config = TrainConfig(algo="diff-iql", penalty=0.0, selection_episodes=2)
    half = lambda o: np.full((len(o), 3), 0.5)  # noqa: E731  (r = 1.5, u = 1.5 each step)
    assert policy_model_return(_core(dataset, threshold=1.0), config, half) == pytest.approx(1.5)  # halted at once
    assert policy_model_return(_core(dataset, threshold=2.0), config, half) == pytest.approx(1.5 * 1000)
    seen = []

    def spread(draws: np.ndarray) -> np.ndarray:  # a value penalty: beta = 0.1 times the draws' spread
        seen.append(draws.shape)
        return 0.1 * (draws[:, -1, 0] - draws[:, 0, 0])

    core = _core(dataset, n_samples=4)
    assert policy_model_return(core, config, half, spread) == pytest.approx((1.5 - 0.1 * 3.0) * 1000, rel=1e-5)
    assert seen[0] == (2, 4, dataset.obs_dim)  # (episodes, K, obs_dim)
    with pytest.raises(ValueError, match="at least 2"):
        policy_model_return(_core(dataset, n_samples=1), config, half, spread)


def test_model_return_of_penalty_one_runs_is_unchanged(small_datasets: dict[str, Path]) -> None:
    """The default run (lambda = 1, no value penalty, no threshold) is scored as model_return's defaults do."""
    from adept_env.training.run import policy_model_return

    dataset = load_dataset(small_datasets["hopper"])
    config = TrainConfig(algo="diff-sac", selection_episodes=3, seed=4)
    act = lambda o: np.full((len(o), 3), 0.2)  # noqa: E731
    expected = model_return(act, RiskyWorld(), dataset, episodes=3, seed=4)
    assert policy_model_return(_core(dataset), config, act) == expected
