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


_PARENT = """
import multiprocessing, os, time
from concurrent.futures import ProcessPoolExecutor
from adept_env.training.demo import exit_with_parent

if __name__ == "__main__":
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn, initializer=exit_with_parent,
                             initargs=(os.getpid(), 0.1)) as pool:
        print(pool.submit(os.getpid).result(), flush=True)  # the worker's pid, once it runs
        pool.submit(time.sleep, 120)
        time.sleep(120)
"""


def test_the_baseline_process_exits_when_the_demo_is_killed(tmp_path: Path) -> None:
    """SIGKILL gives the parent no chance to clean up; the child must notice and stop by itself."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "parent.py"
    script.write_text(_PARENT)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())  # type: ignore[union-attr]
        os.kill(child, 0)  # alive while the parent is
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                break
            # a zombie counts as gone: it no longer runs
            if Path(f"/proc/{child}/stat").read_text().split(")")[-1].split()[0] == "Z":
                break
            time.sleep(0.1)
        else:
            os.kill(child, signal.SIGKILL)
            pytest.fail("the child outlived its killed parent by 15 s")
    finally:
        if parent.poll() is None:
            parent.kill()
