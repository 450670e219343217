"""The refit benchmark's ground truth: branched rollouts and their error measure."""

from __future__ import annotations

import numpy as np
import pytest

from adept_env.benchmarks.refit import _branched, _branched_errors
from adept_env.data.behavior import UniformBehavior
from adept_env.data.dataset import load_dataset
from adept_env.data.oracle import GroundTruth
from adept_env.tasks import get_task


class _Uniform(UniformBehavior):
    def sample(self, observations: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        actions = rng.uniform(-1, 1, (len(observations), 6)).astype(np.float32)
        return actions, self.log_prob(observations, actions)


class _OracleModel:
    """A 'world model' that asks the simulator: its errors must be zero."""

    def __init__(self, task: str, bias: float = 0.0) -> None:
        self.oracle, self.bias = GroundTruth(task), bias

    def sample(self, observations: np.ndarray, actions: np.ndarray, seed: int = 0):
        class Out:
            next_observations = self.oracle.step(observations, actions).next_observations + self.bias

        return Out()


def test_branched_rollouts_follow_the_simulator_and_score_a_perfect_model_zero(small_datasets) -> None:
    for name in ("halfcheetah", "walker2d"):
        task = get_task(name)
        dataset = load_dataset(small_datasets[name])
        policy = _Uniform(-np.ones(task.act_dim), np.ones(task.act_dim))
        branched = _branched(task, dataset, policy, n=40, length=5, seed=0)
        assert branched.states.shape == (6, 40, task.obs_dim)
        assert branched.actions.shape == (5, 40, task.act_dim)
        assert not task.observation_clipped(branched.states[0]).any()
        # start states are dataset states
        rows = {tuple(np.round(o, 5)) for o in dataset.observations}
        assert all(tuple(np.round(o, 5)) in rows for o in branched.states[0])
        scale = np.ones(task.obs_dim)
        perfect = _branched_errors(_OracleModel(name), branched, scale)
        assert perfect["branched_one_step_nmse"] < 1e-8
        assert perfect["branched_five_step_nmse"] < 1e-6
        biased = _branched_errors(_OracleModel(name, bias=0.1), branched, scale)
        assert biased["branched_one_step_nmse"] > 0.005


def test_target_policy_is_one_the_behaviour_is_not_and_bad_names_are_refused(small_datasets) -> None:
    from rich.console import Console
    from typer.testing import CliRunner

    from adept_env.benchmarks.refit import _target_policy, default_target
    from adept_env.cli import app

    assert default_target("random") == "medium"
    assert all(default_target(q) == "expert" for q in ("medium", "medium-replay", "medium-expert"))
    dataset = load_dataset(small_datasets["halfcheetah"])
    actor, description = _target_policy("halfcheetah", "expert", dataset, None, Console())
    assert "halfcheetah-expert" in description
    assert actor.log_prob(dataset.observations[:4], dataset.actions[:4]).shape == (4,)
    result = CliRunner().invoke(app, ["bench", "refit", "--quick", "--dataset", "mediocre"])
    assert result.exit_code != 0
    assert "mediocre" in result.output and "medium-expert" in result.output
    # a replay buffer cannot be regenerated in quick mode: the cached file is used, and its absence is a clear error
    result = CliRunner().invoke(app, ["bench", "refit", "--quick", "--dataset", "medium-replay"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "adept-env data make halfcheetah-medium-replay" in " ".join(result.output.split())


def test_refit_benchmark_runs_end_to_end_with_its_ablation(monkeypatch, tmp_path, capsys) -> None:
    import json

    from adept_env.benchmarks import refit

    tiny = refit.Budget(dataset_steps=3000, profile="quick", eval_steps=100, refit_steps=20, speed_seconds=0.05)
    monkeypatch.setattr(refit, "QUICK", tiny)
    report = refit.run(quick=True, ablation=True, json_path=tmp_path / "refit.json")
    errors = report["errors"]
    assert set(errors) == {"no_refit", "is_refit", "unweighted_refit", "is_loss_weighted", "is_refit_fit_lr",
                           "is_loss_weighted_fit_lr", "unweighted_fit_lr", "is_refit_no_keep", "unweighted_no_keep"}
    assert all(np.isfinite(row[f"{key}_nmse"]) for row in errors.values() for key in refit.ERROR_KEYS)
    assert not errors["is_refit_no_keep"]["kept_start"] and not errors["unweighted_no_keep"]["kept_start"]
    # keep_start's safeguard: a refit that kept its start hands back the starting model (the no-refit
    # errors exactly); one that did not is the refit the no-keep twin ran (same seed, same steps).
    def same(a: dict, b: dict) -> bool:
        return all(a[f"{key}_nmse"] == pytest.approx(b[f"{key}_nmse"], rel=1e-6) for key in refit.ERROR_KEYS)

    for label, twin in (("is_refit", "is_refit_no_keep"), ("unweighted_refit", "unweighted_no_keep")):
        expected = errors["no_refit"] if errors[label]["kept_start"] else errors[twin]
        assert same(errors[label], expected), (label, errors[label]["kept_start"])
    for label, row in errors.items():
        if label != "no_refit":
            assert same(row, errors["no_refit"]) == row["kept_start"], label
    # 20-step refits: some do not beat their start and some do, so both cases above are exercised
    assert {row["kept_start"] for label, row in errors.items() if label != "no_refit"} == {True, False}
    assert json.loads((tmp_path / "refit.json").read_text())["dataset_size"] == 3000
    out = capsys.readouterr().out
    assert f"is_refit_error_reduction={errors['is_refit']['one_step_reduction']:.4f}" in out
