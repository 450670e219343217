"""IQL, the ADEPT loop, and real-simulator evaluation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from adept_env.agents.iql import IQL, IQLConfig
from adept_env.data.dataset import load_dataset
from adept_env.tasks import UnknownNameError
from adept_env.training.config import ALGOS, TrainConfig
from adept_env.training.evaluation import evaluate
from adept_env.training.loop import train


def test_iql_learns_a_one_step_task() -> None:
    """Reward -(a - 0.5)^2 with uniform dataset actions: the actor must move towards 0.5."""
    rng = np.random.default_rng(0)
    n = 4096
    obs = rng.normal(size=(n, 2)).astype(np.float32)
    act = rng.uniform(-1, 1, size=(n, 1)).astype(np.float32)
    rew = -((act[:, 0] - 0.5) ** 2)
    agent = IQL(2, 1, IQLConfig(hidden=64, max_steps=1500, seed=0))
    before = agent.act(obs[:256]).mean()
    for _ in range(1500):
        idx = rng.integers(0, n, 256)
        batch = {"observations": obs[idx], "actions": act[idx], "rewards": rew[idx],
                 "next_observations": obs[idx], "dones": np.ones(256, np.float32)}
        agent.update({k: torch.as_tensor(v) for k, v in batch.items()})
    after = agent.act(obs[:256])
    assert abs(after.mean() - 0.5) < 0.15 < abs(before - 0.5)
    # the density now prefers the good action
    lp = agent.log_prob(obs[:256], np.full((256, 1), 0.5)) - agent.log_prob(obs[:256], np.full((256, 1), -0.8))
    assert np.all(lp > 0)


def test_iql_checkpoint_round_trip(tmp_path: Path) -> None:
    agent = IQL(3, 2, IQLConfig(hidden=16, seed=1))
    batch = {k: torch.randn(32, d) for k, d in (("observations", 3), ("actions", 2), ("next_observations", 3))}
    batch.update(rewards=torch.randn(32), dones=torch.zeros(32))
    for _ in range(5):
        agent.update(batch)
    agent.save(tmp_path / "agent.safetensors")
    other = IQL(3, 2, IQLConfig(hidden=16, seed=2))
    other.load(tmp_path / "agent.safetensors")
    assert other.steps == 5
    mine, theirs = agent.state_tensors(), other.state_tensors()
    assert mine.keys() == theirs.keys()
    for key in mine:
        assert torch.equal(mine[key], theirs[key]), key
    # identical next update from identical state
    out_a, out_b = agent.update(batch), other.update(batch)
    assert out_a == pytest.approx(out_b)
    with pytest.raises(ValueError, match="not an IQL checkpoint"):
        IQL(5, 2, IQLConfig(hidden=16)).load(tmp_path / "agent.safetensors")


def test_iql_standardises_states_inside_its_networks(tmp_path: Path) -> None:
    plain = IQL(3, 2, IQLConfig(hidden=16, seed=4))
    agent = IQL(3, 2, IQLConfig(hidden=16, seed=4))  # the same weights
    mean, std = np.array([1.0, -2.0, 10.0]), np.array([0.5, 2.0, 40.0])
    agent.set_state_normalizer(mean, std)
    obs = torch.randn(8, 3) * torch.as_tensor(std, dtype=torch.float32) + torch.as_tensor(mean, dtype=torch.float32)
    act = torch.rand(8, 2) * 2 - 1
    scaled = (obs - torch.as_tensor(mean, dtype=torch.float32)) / torch.as_tensor(std + 1e-3, dtype=torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(agent.value(obs), plain.value(scaled))
        torch.testing.assert_close(agent.q1(torch.cat([obs, act], -1)), plain.q1(torch.cat([scaled, act], -1)))
        torch.testing.assert_close(agent.q2_target(torch.cat([obs, act], -1)),
                                   plain.q2_target(torch.cat([scaled, act], -1)))
    np.testing.assert_allclose(agent.act(obs.numpy()), plain.act(scaled.numpy()), atol=1e-6)
    agent.save(tmp_path / "agent.safetensors")  # the statistics travel with the checkpoint
    restored = IQL(3, 2, IQLConfig(hidden=16, seed=9))
    restored.load(tmp_path / "agent.safetensors")
    np.testing.assert_allclose(restored.act(obs.numpy()), agent.act(obs.numpy()), atol=1e-6)
    with pytest.raises(ValueError, match="shape"):
        agent.set_state_normalizer(np.zeros(2), np.ones(2))


def test_evaluation_of_a_fixed_policy_is_reproducible() -> None:
    policy = lambda obs: np.full(3, 0.3, np.float32)  # noqa: E731
    a = evaluate(policy, "hopper", episodes=2, seed=5)
    b = evaluate(policy, "hopper", episodes=2, seed=5)
    np.testing.assert_array_equal(a.returns, b.returns)
    assert a.lengths.min() >= 1 and np.isfinite(a.score_mean)
    assert "normalised score" in str(a)


def test_unknown_algorithm_lists_the_valid_ones() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean 'adept-iql'") as err:
        TrainConfig(algo="adept_iql")
    assert all(a in str(err.value) for a in ALGOS)


def _run_dir(tmp_path: Path, quick_model_path: Path) -> Path:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    shutil.copytree(quick_model_path, run_dir / "world_model")  # reuse the session's quick model
    return run_dir


def test_adept_iql_loop_end_to_end_and_resume(small_datasets: dict[str, Path], quick_model_path: Path,
                                              tmp_path: Path) -> None:
    dataset = load_dataset(small_datasets["halfcheetah"])
    run_dir = _run_dir(tmp_path, quick_model_path)
    config = TrainConfig(algo="adept-iql", updates=200, batch_size=64, rollout_every=50, rollout_batch=64,
                         refit_every=100, refit_steps=20, eval_every=100, eval_episodes=1, profile="quick",
                         iql=IQLConfig(hidden=32))
    result = train(dataset, config, run_dir, progress=False)
    assert [row["update"] for row in result.curve] == [100, 200]
    assert len(result.final.returns) == 10  # the final evaluation uses at least 10 episodes
    assert result.curve[-1]["model_version"] >= 1  # an IS refit was swapped in
    for name in ("agent.safetensors", "progress.json", "learning_curve.png", "config.json"):
        assert (run_dir / name).exists(), name
    assert any((run_dir / "tensorboard").iterdir())
    for row in result.curve:  # throughput since the previous evaluation: updates and synthetic transitions
        assert row["sps"] > 0 and row["model_sps"] > 0 and "uncertainty_threshold" not in row
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("time/sps")] == [100, 200]
    # Resume: a larger budget continues from update 200, keeping the curve; a folder from before the
    # throughput columns (rows without sps) resumes and plots.
    progress = json.loads((run_dir / "progress.json").read_text())
    for row in progress["curve"]:
        del row["sps"], row["model_sps"]
    (run_dir / "progress.json").write_text(json.dumps(progress))
    resumed = train(dataset, TrainConfig(**{**config.__dict__, "updates": 300}), run_dir, progress=False)
    assert [row["update"] for row in resumed.curve] == [100, 200, 300]
    assert ["sps" in row for row in resumed.curve] == [False, False, True]
    assert resumed.agent.steps == 300
    assert json.loads((run_dir / "progress.json").read_text())["update"] == 300


@pytest.mark.parametrize("algo", ["iql", "sac"])
def test_real_data_baselines_run(algo: str, small_datasets: dict[str, Path], tmp_path: Path) -> None:
    dataset = load_dataset(small_datasets["hopper"])
    config = TrainConfig(algo=algo, updates=100, batch_size=64, eval_every=100, eval_episodes=1,
                         iql=IQLConfig(hidden=32))
    result = train(dataset, config, tmp_path / algo, progress=False)
    assert len(result.curve) == 1 and np.isfinite(result.final.score_mean)
    assert result.curve[0]["sps"] > 0 and "model_sps" not in result.curve[0]
    assert (tmp_path / algo / "learning_curve.png").exists()


def test_diff_sac_runs_against_the_world_model(small_datasets: dict[str, Path], quick_model_path: Path,
                                               tmp_path: Path) -> None:
    dataset = load_dataset(small_datasets["halfcheetah"])
    config = TrainConfig(algo="adept-sac", updates=150, batch_size=64, sac_envs=4, eval_every=150,
                         eval_episodes=1, refit_every=60, refit_steps=10, profile="quick", policy_average=0.01,
                         uncertainty_threshold=1e-6)
    result = train(dataset, config, _run_dir(tmp_path, quick_model_path), progress=False)
    assert result.curve[-1]["update"] == 150
    row = result.curve[-1]  # the VecEnv's episodes halt at every step; 4 synthetic transitions per update
    assert row["halted_fraction"] == 1.0 and row["uncertainty_threshold"] == 1e-6
    assert row["sps"] > 0 and row["model_sps"] == pytest.approx(4 * row["sps"])
    assert result.curve[-1]["model_version"] >= 1
    assert 0 <= result.curve[-1]["refits_kept_start"] <= result.curve[-1]["model_version"]
    assert np.isfinite(result.curve[-1]["raw_score_mean"])  # the averaged actor is scored, the raw one beside it


def test_actor_average_is_an_exponential_moving_average(small_datasets: dict[str, Path]) -> None:
    from stable_baselines3 import SAC

    from adept_env.sim import make_real_env
    from adept_env.training.sac_loop import ActorAverage

    model = SAC("MlpPolicy", make_real_env("Hopper-v5"), seed=0, device="cpu")
    average = ActorAverage(model, rate=0.1)
    start = [p.detach().clone() for p in average.average.parameters()]
    with torch.no_grad():
        for p in model.actor.parameters():
            p.add_(1.0)
    average.update()
    for before, now in zip(start, average.average.parameters(), strict=True):
        torch.testing.assert_close(now, before + 0.1)  # 10% of the way to actor = before + 1
    average.update(steps=3)  # as three single updates towards the same actor
    for before, now in zip(start, average.average.parameters(), strict=True):
        torch.testing.assert_close(now, before + 1.0 - 0.9**4)
    action = average.act(np.zeros(11, np.float32))
    assert action.shape == (3,) and np.all(np.abs(action) <= 1.0)


def test_real_sac_with_a_policy_average_reports_both_scores(small_datasets: dict[str, Path], tmp_path: Path) -> None:
    dataset = load_dataset(small_datasets["hopper"])
    config = TrainConfig(algo="sac", updates=200, batch_size=64, eval_every=100, eval_episodes=1,
                         policy_average=0.01)
    result = train(dataset, config, tmp_path / "avg", progress=False)
    assert [row["update"] for row in result.curve] == [100, 200]
    assert all(np.isfinite(row["raw_score_mean"]) for row in result.curve)
    assert (tmp_path / "avg" / "policy_average.safetensors").exists()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "avg" / "tensorboard" / "sac"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/critic_loss")] == [100, 200]  # SAC's own scalars are logged


@pytest.mark.parametrize(("algo", "rate", "needle"), [("sac", 1.0, r"in \[0, 1\)"), ("iql", 0.01, "SAC variants")])
def test_policy_average_settings_are_checked(algo: str, rate: float, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        TrainConfig(algo=algo, policy_average=rate)


@pytest.mark.parametrize(("settings", "needle"), [({"expectile": 1.0}, r"expectile must be in \(0, 1\)"),
                                                ({"beta": 0.0}, "beta must be > 0"), ({"hidden": 0}, "hidden")])
def test_iql_settings_are_checked(settings: dict[str, float], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        IQLConfig(**settings)


def test_cli_sets_iql_hyper_parameters(small_datasets: dict[str, Path], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from adept_env.cli import app

    common = ["train", str(small_datasets["hopper"]), "--budget", "20", "--eval-episodes", "1", "--no-progress"]
    result = CliRunner().invoke(app, [*common, "--algo", "iql", "--beta", "10", "--expectile", "0.9", "--no-penalty",
                                      "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    saved = config["iql"]
    assert (saved["beta"], saved["expectile"], saved["hidden"]) == (10.0, 0.9, 256)
    assert config["penalty"] == 0.0 and "use_penalty" not in config  # --no-penalty is --penalty 0
    refused = CliRunner().invoke(app, [*common, "--algo", "sac", "--beta", "10", "--out", str(tmp_path / "sac")])
    assert refused.exit_code == 2 and "sac does not use them" in refused.output
    assert not (tmp_path / "sac").exists()
    bad = CliRunner().invoke(app, [*common, "--algo", "iql", "--expectile", "1.5", "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "expectile must be in (0, 1)" in bad.output


def test_resuming_with_other_settings_is_refused(small_datasets: dict[str, Path], tmp_path: Path) -> None:
    from adept_env.training.run import RunMismatchError

    dataset = load_dataset(small_datasets["hopper"])
    small = {"algo": "iql", "batch_size": 64, "eval_every": 50, "eval_episodes": 1, "iql": IQLConfig(hidden=32)}
    train(dataset, TrainConfig(updates=50, **small), tmp_path / "run", progress=False)
    with pytest.raises(RunMismatchError, match=r"real_ratio: 0.5 -> 0.25.*another folder"):
        train(dataset, TrainConfig(updates=100, real_ratio=0.25, **small), tmp_path / "run", progress=False)
    longer = TrainConfig(updates=100, **small)
    assert [row["update"] for row in train(dataset, longer, tmp_path / "run", progress=False).curve] == [50, 100]


def test_an_older_run_folder_without_the_penalty_resumes_as_penalty_zero(tmp_path: Path) -> None:
    from dataclasses import asdict

    from adept_env.training.run import RunMismatchError, check_same_run

    plain, ablation = asdict(TrainConfig(algo="iql")), asdict(TrainConfig(algo="iql", penalty=0.0))
    old_ablation = {**plain, "use_penalty": False}  # config.json of a --no-penalty run before `penalty` alone
    check_same_run(old_ablation, ablation, tmp_path)
    with pytest.raises(RunMismatchError, match=r"penalty: 0.0 -> 1.0"):
        check_same_run(old_ablation, plain, tmp_path)
    check_same_run({**plain, "use_penalty": True}, plain, tmp_path)


def test_sac_takes_the_minimum_over_n_critics(small_datasets: dict[str, Path], tmp_path: Path) -> None:
    dataset = load_dataset(small_datasets["hopper"])
    config = TrainConfig(algo="sac", updates=50, batch_size=64, eval_every=50, eval_episodes=1, sac_critics=4)
    result = train(dataset, config, tmp_path / "n", progress=False)
    assert len(result.agent.critic.q_networks) == 4
    with pytest.raises(ValueError, match="sac_critics must be >= 1"):
        TrainConfig(algo="sac", sac_critics=0)


def test_sac_resumes_with_its_optimisers_and_entropy_coefficient(small_datasets: dict[str, Path],
                                                                 tmp_path: Path) -> None:
    dataset = load_dataset(small_datasets["hopper"])
    config = TrainConfig(algo="sac", updates=60, batch_size=64, eval_every=60, eval_episodes=1)
    done = train(dataset, config, tmp_path / "run", progress=False)
    first = done.agent
    saved = torch.load(tmp_path / "run" / "training_state.pt", weights_only=True)
    assert float(saved["log_ent_coef"]) == first.log_ent_coef.item() != 0.0  # moved from log(1)
    again = train(dataset, config, tmp_path / "run", progress=False)  # nothing left: just restored
    np.testing.assert_array_equal(again.final.returns, done.final.returns)  # the same figure, not a new draw
    resumed = again.agent
    assert resumed.log_ent_coef.item() == first.log_ent_coef.item()
    steps = [s["step"] for s in resumed.critic.optimizer.state_dict()["state"].values()]
    assert steps and all(int(s) == 60 for s in steps)  # Adam's moments came back, not fresh ones
    for key, value in first.policy.state_dict().items():
        torch.testing.assert_close(resumed.policy.state_dict()[key], value)


def test_the_uncertainty_threshold_halts_the_rollouts(small_datasets: dict[str, Path], quick_model_path: Path) -> None:
    from adept_env.diffusion import WorldModel
    from adept_env.envs.config import EnvConfig
    from adept_env.envs.core import WorldModelCore
    from adept_env.training.iql_loop import SyntheticBuffer, synthetic_rollouts

    dataset = load_dataset(small_datasets["halfcheetah"])  # halfcheetah never terminates: only the halt ends early
    model = WorldModel.load(quick_model_path)
    agent = IQL(dataset.obs_dim, dataset.act_dim, IQLConfig(hidden=16, seed=0))
    counts = {}
    for threshold in (None, 1e-6):
        core = WorldModelCore(dataset, model, EnvConfig(horizon=4, uncertainty_threshold=threshold))
        buffer = SyntheticBuffer(1000, dataset.obs_dim, dataset.act_dim)
        stats = synthetic_rollouts(core, agent, 32, 4, np.random.default_rng(0), buffer, scale=1.0)
        counts[threshold] = (stats["rollout_transitions"], stats["rollout_halted"], buffer.size, buffer.done.sum())
    assert counts[None] == (128, 0, 128, 0)  # 32 episodes x 4 steps, none halted
    assert counts[1e-6] == (32, 32, 32, 32)  # every episode halts at its first step, stored as done


def test_auto_threshold_is_computed_once_recorded_and_halts(small_datasets: dict[str, Path], quick_model_path: Path,
                                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import adept_env.training.threshold
    from adept_env.diffusion import WorldModel
    from adept_env.training.threshold import auto_threshold

    dataset = load_dataset(small_datasets["halfcheetah"])
    run_dir = _run_dir(tmp_path, quick_model_path)
    config = TrainConfig(algo="diff-iql", updates=40, batch_size=32, rollout_every=20, rollout_batch=64, eval_every=20,
                         eval_episodes=1, profile="quick", selection_episodes=0, uncertainty_threshold="auto",
                         iql=IQLConfig(hidden=16))
    result = train(dataset, config, run_dir, progress=False)
    threshold = result.curve[0]["uncertainty_threshold"]
    assert np.isfinite(threshold) and threshold > 0
    assert threshold == auto_threshold(WorldModel.load(quick_model_path), dataset, seed=0)  # the 99th percentile
    assert all(row["uncertainty_threshold"] == threshold for row in result.curve)
    assert all(0.0 <= row["halted_fraction"] <= 1.0 for row in result.curve)
    assert json.loads((run_dir / "progress.json").read_text())["uncertainty_threshold"] == threshold
    assert json.loads((run_dir / "config.json").read_text())["uncertainty_threshold"] == "auto"

    def recomputed(*args, **kwargs):
        raise AssertionError("a resumed run keeps its recorded threshold")

    monkeypatch.setattr(adept_env.training.threshold, "auto_threshold", recomputed)
    resumed = train(dataset, TrainConfig(**{**config.__dict__, "updates": 60}), run_dir, progress=False)
    assert resumed.curve[-1]["update"] == 60 and resumed.curve[-1]["uncertainty_threshold"] == threshold


@pytest.mark.parametrize(("value", "expected"),
                         [(None, None), ("none", None), ("AUTO", "auto"), ("2.5", 2.5), (3, 3.0)])
def test_uncertainty_threshold_values(value: object, expected: object) -> None:
    assert TrainConfig(algo="diff-sac", uncertainty_threshold=value).uncertainty_threshold == expected


@pytest.mark.parametrize(("settings", "needle"), [
    ({"uncertainty_threshold": 0.0}, r"'auto', 'none' or a finite number > 0, got 0.0"),
    ({"uncertainty_threshold": -1}, "> 0"), ({"uncertainty_threshold": float("nan")}, "> 0"),
    ({"uncertainty_threshold": "inf"}, "> 0"), ({"uncertainty_threshold": "high"}, "'high'"),
    ({"uncertainty_threshold": True}, "> 0"),
    ({"algo": "iql", "uncertainty_threshold": "auto"}, r"applies to the world-model variants \(adept-iql, adept-sac, "
                                                       r"diff-iql, diff-sac\), not iql"),
    ({"penalty": float("nan")}, "penalty must be a finite number >= 0"),
])
def test_bad_thresholds_and_penalties_are_refused(settings: dict, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        TrainConfig(**{"algo": "adept-iql", **settings})


@pytest.mark.parametrize(("options", "needle"), [
    (["--algo", "iql", "--uncertainty-threshold", "auto"], "--uncertainty-threshold applies to adept-iql, adept-sac, "
                                                           "diff-iql, diff-sac, not iql"),
    (["--algo", "sac", "--value-penalty", "0"], "--value-penalty applies to adept-iql"),
    (["--algo", "iql", "--critics", "4"], "--critics applies to adept-sac, diff-sac, sac, not iql"),
    (["--algo", "diff-iql", "--refit-every", "50"], "--refit-every applies to adept-iql, adept-sac, not diff-iql"),
    (["--algo", "adept-sac", "--uncertainty-threshold", "0"], "finite number > 0"),
    (["--algo", "adept-sac", "--uncertainty-threshold", "nan"], "finite number > 0"),
    (["--algo", "adept-sac", "--value-penalty", "nan"], "Invalid value for '--value-penalty'"),
    (["--algo", "adept-sac", "--value-penalty", "-1"], "Invalid value for '--value-penalty'"),
])
def test_cli_refuses_bad_and_inapplicable_options(options: list[str], needle: str, small_datasets: dict[str, Path],
                                                  tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from adept_env.cli import app

    result = CliRunner().invoke(app, ["train", str(small_datasets["hopper"]), *options, "--out", str(tmp_path / "run")],
                                terminal_width=200, env={"COLUMNS": "200"})
    assert result.exit_code == 2, result.output
    assert needle in " ".join(result.output.split()), result.output
    assert not (tmp_path / "run").exists()
