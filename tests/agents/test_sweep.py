"""``adept-env sweep``: a grid of offline training runs as Ray Tune trials, on a local Ray and on a
(simulated) multi-node cluster; bad input refused before Ray starts; failed trials reported."""

from __future__ import annotations

import json
import re
import shutil
import socket
from dataclasses import asdict
from pathlib import Path

import pytest
from typer.testing import CliRunner

ray = pytest.importorskip("ray")

from adept_env.cli import app  # noqa: E402
from adept_env.data.dataset import default_path  # noqa: E402
from adept_env.training.config import TrainConfig  # noqa: E402
from adept_env.training.sweep import (  # noqa: E402
    SweepError,
    parse_grid,
    plan,
    results_table,
)

TINY = ["--budget", "200", "--eval-every", "100", "--eval-episodes", "1", "--no-progress"]
"""A few hundred IQL updates, one real episode per evaluation (ten for the final one)."""


@pytest.fixture
def hopper_random(small_datasets: dict[str, Path]) -> str:
    """The 5k-step hopper dataset where ``load_dataset("hopper-random")`` finds it (this test's $ADEPT_HOME)."""
    target = default_path("hopper-random")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(small_datasets["hopper"], target)
    return "hopper-random"


@pytest.fixture
def no_ray_left():
    """Ray is shut down after the test, whatever happened."""
    yield
    if ray.is_initialized():
        ray.shutdown()


def _sweep(*args: str) -> str:
    result = CliRunner().invoke(app, ["sweep", *args], terminal_width=200, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def _trials(out: Path) -> dict[int, dict]:
    return {t["seed"]: t for t in json.loads((out / "results.json").read_text())["trials"]}


def test_a_sweep_on_a_local_ray_runs_every_trial_and_a_rerun_trains_nothing(
        hopper_random: str, tmp_path: Path, no_ray_left: None, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "sweep"
    command = ["-d", hopper_random, "-a", "iql", "-s", "0", "-s", "1", *TINY, "--num-cpus", "2", "--out", str(out)]
    output = _sweep(*command)
    assert not ray.is_initialized()  # the sweep stopped the Ray it started
    row = re.search(r"\| hopper-random \| iql \| (-?\d+\.\d) ± (\d+\.\d) \| (-?\d+\.\d), (-?\d+\.\d) \|", output)
    assert row, output
    assert (out / "results.md").read_text().strip() in output
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    trials = _trials(out)
    assert {t["status"] for t in trials.values()} == {"finished"}
    for seed, trial in trials.items():
        assert [row["update"] for row in trial["curve"]] == [100, 200]
        assert trial["updates_this_call"] == 200
        assert Path(trial["run_dir"]) == out / "hopper-random" / f"iql-s{seed}"
    checkpoints = {seed: (out / "hopper-random" / f"iql-s{seed}" / "agent.safetensors").stat().st_mtime_ns
                   for seed in trials}

    # the same command again: both runs are finished, so they are read back and Ray is not even started
    def no_ray(*args, **kwargs):
        raise AssertionError("the rerun started Ray for finished runs")

    monkeypatch.setattr(ray, "init", no_ray)
    again = _sweep(*command)
    assert row.group(0) in again
    resumed = _trials(out)
    for seed, trial in resumed.items():
        assert trial["curve"] == trials[seed]["curve"] and trial["updates_this_call"] == 0
        assert (out / "hopper-random" / f"iql-s{seed}" / "agent.safetensors").stat().st_mtime_ns == checkpoints[seed]


@pytest.mark.slow
def test_a_sweep_on_a_multi_node_cluster_spreads_its_trials_and_reports_a_failed_one(
        hopper_random: str, tmp_path: Path, no_ray_left: None) -> None:
    from ray.cluster_utils import Cluster

    out = tmp_path / "sweep"
    # seed 2's run folder holds a run made with other settings: its trial fails (in Ray), the others finish
    stale = out / "hopper-random" / "iql-s2"
    stale.mkdir(parents=True)
    other = TrainConfig(algo="iql", seed=2, updates=200, eval_every=100, eval_episodes=1, batch_size=128)
    (stale / "config.json").write_text(json.dumps(asdict(other)))
    (stale / "progress.json").write_text(json.dumps({"update": 100, "algo": "iql", "curve": [
        {"update": 100, "score_mean": 0.0, "score_std": 0.0, "return_mean": 0.0}]}))
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        output = _sweep("-d", hopper_random, "-a", "iql", "-s", "0", "-s", "1", "-s", "2", *TINY,
                        "--address", cluster.address, "--out", str(out))
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
    trials = _trials(out)
    assert trials[0]["status"] == trials[1]["status"] == "finished"
    assert trials[0]["node"] != trials[1]["node"]  # one CPU per node: the two ran side by side on both nodes
    assert trials[2]["status"] == "failed" and "RunMismatchError" in trials[2]["error"]
    assert "batch_size: 128 -> 256" in trials[2]["error"]
    assert re.search(r"\| hopper-random \| iql \| -?\d+\.\d ± \d+\.\d \| -?\d+\.\d, -?\d+\.\d \|", output), output
    assert re.search(r"\| hopper-random \| iql \| failed: RunMismatchError: .* \| seed 2 \|", output), output
    assert "2 node(s) used" in output and "(1 failed)" in output


def test_bad_input_is_refused_before_ray_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_ray(*args, **kwargs):
        raise AssertionError("Ray started for a sweep that should have been refused")

    monkeypatch.setattr(ray, "init", no_ray)
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{sock.getsockname()[1]}"
    out = tmp_path / "sweep"
    cases = {
        ("-a", "iqll"): "unknown algorithm 'iqll'. Did you mean 'iql'?",
        ("-a", "iql", "--grid", "penalti=0,1"): "unknown grid key 'penalti'. Did you mean 'penalty'?",
        ("-a", "iql", "--grid", "penalty=high"): "--grid penalty: 'high' is not a float",
        ("-a", "iql", "--grid", "real_ratio=0.5,2"): "real_ratio must be in [0, 1], got 2.0",
        ("-a", "iql", "--grid", "seed=1,2"): "use --seeds/-s",
        ("-a", "iql", "--address", dead): f"no Ray cluster answers at --address {dead}",
    }
    for args, message in cases.items():
        result = CliRunner().invoke(app, ["sweep", "-d", "hopper-random", *args, "--out", str(out)],
                                    terminal_width=200, env={"COLUMNS": "200"})
        assert result.exit_code == 2, (args, result.output)
        assert message in " ".join(result.output.split()), (args, result.output)
    unknown = CliRunner().invoke(app, ["sweep", "-d", "hopper-randm", "-a", "iql"], env={"COLUMNS": "200"})
    assert unknown.exit_code == 2 and "Did you mean 'hopper-random'?" in unknown.output
    assert not out.exists()
    # without Ray, the command says which extra to install
    import adept_env.training.sweep_cli as sweep_cli

    monkeypatch.setattr(sweep_cli.importlib.util, "find_spec", lambda name: None)
    missing = CliRunner().invoke(app, ["sweep", "-d", "hopper-random", "-a", "iql"], env={"COLUMNS": "200"})
    assert missing.exit_code == 2 and "pip install 'adept-env[ray]'" in missing.output


def test_the_grid_gives_typed_values_and_one_run_folder_per_point(tmp_path: Path) -> None:
    grid = parse_grid(["penalty=0,1", "real-ratio=0.25", "refit_steps=none,10", "expectile=0.8,0.9"])
    assert grid == {"penalty": [0.0, 1.0], "real_ratio": [0.25], "refit_steps": [None, 10],
                    "iql.expectile": [0.8, 0.9]}
    sweep = plan(["hopper-random"], ["iql", "adept-sac"], [0], grid, {"updates": 50}, {}, tmp_path)
    names = [t.run_dir.name for t in sweep.trials]
    assert len(names) == 8 + 4  # IQL's settings do not multiply the SAC runs
    assert "iql-s0-penalty=0-real_ratio=0.25-refit_steps=none-expectile=0.8" in names
    assert "adept-sac-s0-penalty=1-real_ratio=0.25-refit_steps=10" in names
    trial = next(t for t in sweep.trials if t.run_dir.name.endswith("refit_steps=10-expectile=0.9"))
    assert trial.config.iql.expectile == 0.9 and trial.config.refit_steps == 10 and trial.config.eval_every == 50
    assert parse_grid(["budget=100", "iql.normalize_states=false"]) == {"updates": [100],
                                                                        "iql.normalize_states": [False]}
    with pytest.raises(SweepError, match="applies to the world-model variants"):
        plan(["hopper-random"], ["iql"], [0], parse_grid(["value_penalty=5"]), {}, {}, tmp_path)


def test_the_table_has_a_row_per_group_and_one_per_failed_trial() -> None:
    def record(seed: int, score: float | None, error: str | None = None) -> dict:
        curve = [] if score is None else [{"update": 10, "score_mean": score - 1}, {"update": 20, "score_mean": score}]
        return {"dataset": "hopper-random", "algo": "iql", "seed": seed, "grid": {"penalty": 0.0},
                "status": "failed" if error else "finished", "error": error, "final_score": score, "curve": curve,
                "train_wall_seconds": 60.0}

    table = results_table([record(0, 10.0), record(1, 20.0), record(2, None, "ValueError: a | b")], "header",
                          grid_keys=["penalty"])
    assert "| hopper-random | iql | penalty=0 | 15.0 ± 5.0 | 10.0, 20.0 | 14.5 | 1.0, 1.0 |" in table
    assert "| hopper-random | iql | penalty=0 | failed: ValueError: a \\| b | seed 2 |  |  |" in table
