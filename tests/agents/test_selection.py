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
    monkeypatch.setattr(adept_env.training.run, "policy_model_return", lambda core, config, act: next(estimates))
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
