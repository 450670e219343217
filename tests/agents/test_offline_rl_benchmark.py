"""The side-by-side offline RL benchmark: every algorithm on the same data, a table and curves."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from adept_env.benchmarks.offline_rl import run, wall_seconds
from adept_env.data.dataset import default_path


def test_offline_rl_benchmark_writes_table_curves_and_json(small_datasets: dict[str, Path], tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    target = default_path("hopper-random")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(small_datasets["hopper"], target)
    out = tmp_path / "bench"
    table = run("hopper-random", algos=("iql", "sac"), seeds=(0,), updates=60, eval_every=30, eval_episodes=1,
                out=out, progress=False)
    rows = [line for line in table.splitlines() if line.startswith("| iql") or line.startswith("| sac")]
    assert len(rows) == 2
    assert (out / "curves.png").stat().st_size > 0
    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"iql", "sac"}
    for runs in results.values():
        assert [row["update"] for row in runs[0]["curve"]] == [30, 60]
        assert runs[0]["cpu_seconds_this_call"] > 0
    # a rerun resumes the finished runs instead of training again: not one agent update, the same curve
    from adept_env.agents.iql import IQL

    def no_training(*args, **kwargs):
        raise AssertionError("the rerun trained the agent again instead of resuming the finished run")

    monkeypatch.setattr(IQL, "update", no_training)
    again = run("hopper-random", algos=("iql",), seeds=(0,), updates=60, eval_every=30, eval_episodes=1,
                out=out, progress=False)
    assert "| iql |" in again
    resumed = json.loads((out / "results.json").read_text())["iql"][0]["curve"]
    assert resumed == results["iql"][0]["curve"]


@pytest.mark.parametrize(("algo", "expected"), [("adept-sac", "auto"), ("diff-iql", "auto"), ("iql", None)])
def test_the_threshold_reaches_the_world_model_variants_only(small_datasets: dict[str, Path], tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch, algo: str,
                                                             expected: str | None) -> None:
    """One harness call can run iql beside adept-* with ``--uncertainty-threshold auto`` (iql refuses it)."""
    import adept_env.benchmarks.offline_rl as harness

    target = default_path("hopper-random")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(small_datasets["hopper"], target)
    seen = []

    class Stop(Exception):
        pass

    def record(dataset, config, run_dir, progress):  # noqa: ANN001, ANN202
        seen.append((config.algo, config.uncertainty_threshold, config.value_penalty))
        raise Stop

    monkeypatch.setattr(harness, "train", record)
    with pytest.raises(Stop):
        run("hopper-random", algos=(algo,), seeds=(0,), updates=60, eval_every=30, penalty=0.0, value_penalty=25.0,
            uncertainty_threshold="auto", out=tmp_path / "bench", progress=False)
    assert seen == [(algo, expected, 25.0 if expected else 0.0)]


def test_wall_time_adds_up_the_calls_of_a_resumed_run() -> None:
    curve = [{"seconds": 100.0}, {"seconds": 250.0}, {"seconds": 40.0}, {"seconds": 90.0}]  # resumed after row 2
    assert wall_seconds(curve) == 340.0
    assert wall_seconds(curve[:2]) == 250.0


def test_compare_plots_runs_and_summarises_them(tmp_path: Path) -> None:
    from adept_env.benchmarks.compare import compare

    for name, scores in (("a", [1.0, 5.0, 3.0, 2.0]), ("b", [4.0, 4.0, 8.0, 6.0])):
        curve = [{"update": 1000 * (i + 1), "score_mean": s} for i, s in enumerate(scores)]
        (tmp_path / name).mkdir()
        (tmp_path / name / "progress.json").write_text(json.dumps({"update": 4000, "curve": curve}))
    table = compare({"first": tmp_path / "a", "second": tmp_path / "b"}, tmp_path / "fig.png", "t")
    assert "| first | 1.0, 5.0, 3.0, 2.0 | 2.0 | 3.3 | 5.0 (2000) |" in table
    assert "| second | 4.0, 4.0, 8.0, 6.0 | 6.0 | 6.0 | 8.0 (3000) |" in table
    assert (tmp_path / "fig.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(FileNotFoundError, match="no progress.json"):
        compare({"x": tmp_path / "missing"}, tmp_path / "g.png")
