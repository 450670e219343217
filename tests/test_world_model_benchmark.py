"""`adept-env bench world-model`: a seconds-long run prints every summary line, for any task."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

import adept_env.benchmarks.world_model as bench
from adept_env.cli import app
from adept_env.diffusion import WorldModelConfig

SUMMARY = ("uncertainty_rank_corr_other_policy", "ensemble_rank_corr_other_policy",
           "heldout_mse_ratio_vs_previous_default", "speed_ratio_vs_mujoco", "fidelity_ratio_vs_ensemble")


def test_a_tiny_run_prints_every_summary_line(small_datasets: dict[str, Path], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # quick-profile networks and short timings: the run's structure, not its figures, is under test
    quick = WorldModelConfig.quick()
    monkeypatch.setattr(WorldModelConfig, "default", classmethod(lambda cls: quick))
    monkeypatch.setattr(bench, "previous_default",
                        lambda: dataclasses.replace(quick, uncertainty="draws", mean_members=1))
    real_mujoco, real_rate = bench.mujoco_steps_per_second, bench.transitions_per_second
    monkeypatch.setattr(bench, "mujoco_steps_per_second", lambda task, seconds: real_mujoco(task, 0.05))
    monkeypatch.setattr(bench, "transitions_per_second", lambda fn, items, seconds: real_rate(fn, items, 0.01))
    out = tmp_path / "wm.json"
    result = CliRunner().invoke(app, ["bench", "world-model", "--quick", "--task", "hopper", "--train-steps", "20",
                                      "--dataset", str(small_datasets["hopper"]), "--json", str(out)],
                                terminal_width=250)
    assert result.exit_code == 0, result.output
    printed = dict(re.findall(r"^(\w+)=(-?[\d.]+|nan)$", result.output, flags=re.MULTILINE))
    assert set(SUMMARY) <= set(printed), result.output
    report = json.loads(out.read_text())
    assert report["task"] == "hopper" and report["train_steps"] == 20
    assert all(row["steps"] == 20 for row in report["training"].values())
    assert set(report["candidates"]) == set(bench.candidates())
    for key in SUMMARY:
        assert f"{report[key]:.2f}" == printed[key]
    # the default shares its fit with the candidate whose training it equals
    same = [n for n, c in bench.candidates().items() if bench.fit_key(c) == bench.fit_key(quick)]
    assert same and report["fidelity"]["diffusion"]["held-out state"] == \
        report["fidelity"][same[0]]["held-out state"]


def test_a_dataset_of_another_task_or_an_unknown_task_is_refused(small_datasets: dict[str, Path]) -> None:
    result = CliRunner().invoke(app, ["bench", "world-model", "--quick", "--task", "walker2d",
                                      "--dataset", str(small_datasets["hopper"])], terminal_width=250)
    assert result.exit_code != 0 and "holds hopper transitions, not walker2d" in " ".join(result.output.split())
    result = CliRunner().invoke(app, ["bench", "world-model", "--quick", "--task", "ant"], terminal_width=250)
    assert result.exit_code != 0 and "halfcheetah" in result.output


def test_candidates_differ_only_where_named() -> None:
    found = bench.candidates()
    assert found["previous default (draws)"] == bench.previous_default()
    assert bench.previous_default().uncertainty == "draws" and bench.previous_default().mean_members == 1
    assert bench.fit_key(found["scale"]) == bench.fit_key(bench.previous_default())
    assert bench.fit_key(found["scale+disagreement M=2"]) != bench.fit_key(bench.previous_default())
