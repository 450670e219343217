"""``adept-env demo``: both runs, side by side, at tiny scale (the real settings are measured in BENCHMARKS.md)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from adept_env.cli import app
from adept_env.diffusion import WorldModelConfig


@pytest.fixture
def tiny_quick_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    """The quick profile with a 60-step fit (the ADEPT run fits in this process, where the patch holds)."""
    tiny = dataclasses.replace(WorldModelConfig.quick(), steps=60, eval_every=30, val_max=200)
    monkeypatch.setattr(WorldModelConfig, "quick", classmethod(lambda cls: dataclasses.replace(tiny)))


def test_demo_trains_both_agents_and_compares_them(tmp_path: Path, tiny_quick_profile: None) -> None:
    out = tmp_path / "demo"
    args = ["demo", "--dataset-steps", "3000", "--budget", "200", "--eval-every", "200", "--profile", "quick",
            "--refit-every", "100", "--out", str(out), "--no-progress"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "iql" in result.output and "adept-sac" in result.output and "adept-sac / iql" in result.output
    summary = json.loads((out / "demo.json").read_text())
    assert set(summary["scores"]) == {"iql", "adept-sac"} and summary["updates"] == 200
    for name in ("iql", "adept-sac"):
        curve = json.loads((out / name / "progress.json").read_text())["curve"]
        assert [row["update"] for row in curve] == [200]  # the same budget and schedule for both
        assert summary["curves"][name] == [row["score_mean"] for row in curve]
    assert (out / "demo.png").stat().st_size > 1000
    # a rerun resumes both finished runs: the same scores, nothing trained again
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert json.loads((out / "demo.json").read_text())["scores"] == summary["scores"]


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--algo", "iql", "--algo must be a world-model variant"),
    ("--baseline", "adept-sac", "--baseline must be iql or sac"),
    ("--profile", "smal", "Did you mean 'small'?"),
])
def test_demo_refuses_bad_settings(flag: str, value: str, message: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", flag, value, "--out", str(tmp_path), "--no-progress"])
    assert result.exit_code == 2 and message in result.output
