"""``adept-env model fit|list|info|eval``, the cache record and gym.make's one-line notice before a fit.

The quick profile is shrunk to a few dozen steps here, so each fit takes a second or two.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from typer.testing import CliRunner

from adept_env.cli import app
from adept_env.diffusion import WorldModel, WorldModelConfig

NOTICE = "adept-env: no cached world model"
ROWS = 600


@pytest.fixture(autouse=True)
def tiny_quick_profile(monkeypatch: pytest.MonkeyPatch) -> WorldModelConfig:
    """The quick profile with a 40-step fit (the cache's profile hash follows it)."""
    tiny = dataclasses.replace(WorldModelConfig.quick(), steps=40, eval_every=20, val_max=200)
    monkeypatch.setattr(WorldModelConfig, "quick", classmethod(lambda cls: dataclasses.replace(tiny)))
    return tiny


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), terminal_width=200, env={"COLUMNS": "200"})
    return result.exit_code, result.output


def fit(*extra: str) -> tuple[int, str]:
    return invoke("model", "fit", "halfcheetah-random", "--profile", "quick", "--dataset-steps", str(ROWS),
                  "--threads", "1", *extra)


def test_model_help_lists_the_four_commands() -> None:
    code, output = invoke("model", "--help")
    assert code == 0
    for command in ("fit", "list", "info", "eval"):
        assert f" {command} " in output


def test_an_empty_cache_says_how_to_fit_one() -> None:
    code, output = invoke("model", "list")
    assert code == 0 and "no cached world models" in output and "adept-env model fit" in output
    assert json.loads(invoke("model", "list", "--json")[1]) == []


def test_fit_list_info_and_eval_a_quick_model(tmp_path: Path) -> None:
    code, output = fit()
    assert code == 0, output
    assert "saved " in output and "steps in" in output and "best held-out loss" in output
    path = Path(output.split("saved ", 1)[1].split()[0])
    assert (path / "cache.json").exists()

    code, output = fit()
    assert code == 0 and "already cached" in output

    code, output = invoke("model", "list", "--json")
    [listed] = json.loads(output)
    assert listed["path"] == str(path) and listed["profile"] == "quick" and listed["rows"] == ROWS
    assert listed["current"] and listed["size_mb"] > 0 and listed["fit_seconds"] > 0
    assert path.parent.name == f"halfcheetah-random-{listed['fingerprint']}"
    assert "halfcheetah-random" in invoke("model", "list")[1]

    code, output = invoke("model", "info", "halfcheetah-random", "--profile", "quick", "--dataset-steps", str(ROWS),
                          "--json")
    assert code == 0, output
    info = json.loads(output)
    assert info["fingerprint"] == listed["fingerprint"] and info["parameters"] > 1000
    assert info["config"]["steps"] == 40 and info["fit"]["steps"] >= 1 and info["history"] == []
    code, output = invoke("model", "info", str(path))
    assert code == 0 and "parameters" in output and "denoiser_width" in output

    code, output = fit("--force")
    assert code == 0 and "saved " in output
    assert len(json.loads(invoke("model", "info", str(path), "--json")[1])["history"]) == 1

    figures = tmp_path / "eval.json"
    code, output = invoke("model", "eval", str(path), "--pairs", "50", "--other-pairs", "150", "--rollouts", "10",
                          "--speed-seconds", "0.1", "--json", str(figures))
    assert code == 0, output
    result = json.loads(figures.read_text())
    assert result["fingerprint"] == listed["fingerprint"] and result["other_policy"] == "shipped medium actor"
    assert result["held_out_pairs"] == round(ROWS * 0.05) and result["other_pairs"] == 150
    metrics = result["metrics"]
    for key in ("held-out state", "held-out reward", "held-out unc-rank-corr", "other policy state",
                "other policy reward", "other policy unc-rank-corr", "rollout-5 state",
                "other policy rollout-5 state", "steps/s at batch 1024"):
        assert math.isfinite(metrics[key]), key
    assert metrics["steps/s at batch 1024"] > 0 and -1 <= metrics["held-out unc-rank-corr"] <= 1


def test_eval_refuses_a_dataset_the_model_was_not_fitted_on(tmp_path: Path) -> None:
    from adept_env.data.generate import make_dataset

    assert fit()[0] == 0
    other = make_dataset("halfcheetah-random", steps=500, seed=1, out=tmp_path / "other.hdf5", progress=False)
    fitted = json.loads(invoke("model", "list", "--json")[1])[0]["fingerprint"]
    code, output = invoke("model", "eval", "halfcheetah-random", "--profile", "quick", "--dataset-steps", str(ROWS),
                          "--dataset", str(other))
    assert code == 2
    from adept_env.data.dataset import load_dataset
    from adept_env.envs.model_store import dataset_fingerprint

    assert fitted in output and dataset_fingerprint(load_dataset(other)) in output and "fitted on" in output


def test_unknown_names_get_the_valid_ones_and_a_close_match() -> None:
    code, output = invoke("model", "fit", "halfcheetah-random", "--profile", "quik")
    assert code == 2 and "Did you mean 'quick'?" in output and "default, small, quick" in output
    code, output = invoke("model", "info", "halfcheetah-randm", "--profile", "quick")
    assert code == 2 and "Did you mean 'halfcheetah-random'?" in output
    code, output = invoke("model", "eval", "halfcheetah-random", "--policy", "expret")
    assert code == 2 and "Did you mean 'expert'?" in output
    code, output = invoke("model", "info", "halfcheetah-random", "--profile", "quick", "--dataset-steps", "300")
    assert code == 2 and "adept-env model fit halfcheetah-random --dataset-steps 300 --profile quick" in output


def test_gym_make_prints_the_prefit_notice_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from adept_env.data.generate import make_dataset

    data = make_dataset("halfcheetah-random", steps=ROWS, seed=0, out=tmp_path / "tiny.hdf5", progress=False)
    env = gym.make("ADEPT-halfcheetah-random", profile="quick", dataset_path=str(data), device="cpu")
    env.close()
    lines = [line for line in capsys.readouterr().err.splitlines() if NOTICE in line]
    assert len(lines) == 1, lines
    assert f"{ROWS} rows" in lines[0] and "profile quick" in lines[0] and "on this machine" in lines[0]
    assert f"adept-env model fit {data} --profile quick" in lines[0]
    gym.make("ADEPT-halfcheetah-random", profile="quick", dataset_path=str(data), device="cpu").close()
    assert NOTICE not in capsys.readouterr().err  # cached now: loaded, no fit


def test_an_older_cache_without_a_record_still_loads_and_lists(capsys: pytest.CaptureFixture[str]) -> None:
    from adept_env.data.dataset import load_sized_dataset
    from adept_env.envs.model_store import RECORD_FILE, cached_models, dataset_fingerprint, fit_and_save, load_or_train

    dataset = load_sized_dataset("halfcheetah-random", ROWS, progress=False)
    _, _, path = fit_and_save(dataset, "quick", progress=False)
    (path / RECORD_FILE).unlink()
    load_or_train(dataset, "quick", progress=False)
    assert NOTICE not in capsys.readouterr().err
    [listed] = cached_models()
    assert listed["fingerprint"] == dataset_fingerprint(dataset) and listed["profile"] == "quick"
    assert listed["dataset"] == "halfcheetah-random" and listed["fit_seconds"] is None and listed["current"]


def test_held_out_rows_are_the_rows_the_fit_held_out() -> None:
    """Rows outside ``held_out_rows`` get weight 2, those in it 1: the fit's training rows then all weigh the
    same (effective size = their count) only if the two splits agree."""
    from adept_env.data.dataset import load_sized_dataset
    from adept_env.model_eval import held_out_rows

    dataset = load_sized_dataset("halfcheetah-random", ROWS, progress=False)
    model = WorldModel.create("halfcheetah", WorldModelConfig.quick(), seed=3)
    held = held_out_rows(len(dataset), model.config, seed=3)
    weights = np.full(len(dataset), 2.0)
    weights[held] = 1.0
    report = model.fit(dataset, weights=weights, steps=1, progress=False, seed=3)
    assert report.n_val == len(held) and report.effective_sample_size == pytest.approx(report.n_train)
    wrong = held_out_rows(len(dataset), model.config, seed=4)
    weights = np.full(len(dataset), 2.0)
    weights[wrong] = 1.0
    report = model.fit(dataset, weights=weights, steps=1, warm_start=False, progress=False, seed=3)
    assert report.effective_sample_size < report.n_train - 1


def test_a_cached_model_takes_the_current_uncertainty_setting_without_a_refit(
        tiny_quick_profile: WorldModelConfig, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """``uncertainty`` changes only what ``sample`` reports: it is outside the cache key and follows the profile."""
    from adept_env.data.dataset import load_sized_dataset
    from adept_env.envs.model_store import fit_and_save, load_or_train, profile_hash

    dataset = load_sized_dataset("halfcheetah-random", ROWS, progress=False)
    assert tiny_quick_profile.uncertainty == "scale"
    _, _, path = fit_and_save(dataset, "quick", progress=False)
    before = profile_hash("quick")
    monkeypatch.setattr(WorldModelConfig, "quick",
                        classmethod(lambda cls: dataclasses.replace(tiny_quick_profile, uncertainty="draws")))
    assert profile_hash("quick") == before
    capsys.readouterr()
    model = load_or_train(dataset, "quick", progress=False)
    assert NOTICE not in capsys.readouterr().err  # loaded from the cache, not refitted
    assert model.config.uncertainty == "draws"
    assert WorldModel.load(path).config.uncertainty == "scale"  # the file itself is unchanged
