"""medium-replay without a behaviour run: the ramped-mixture recipe, its exact log-probs, and `data list`."""

import json
import math
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from adept_env.cli import app
from adept_env.data import behavior
from adept_env.data.behavior import shipped_actor
from adept_env.data.dataset import load_dataset
from adept_env.data.generate import make_dataset, replay_source_for
from adept_env.data.replay_recipe import ReplayRecipe, mixing_probability, recipe_replay_arrays, recipe_rows
from adept_env.data.status import dataset_status
from adept_env.tasks import TASKS, get_task

SMALL = ReplayRecipe(rows=3000, warmup=1000)
"""A 3,000-row buffer with a 1,000-row warm-up: the whole ramp in a few seconds."""


@pytest.fixture(scope="module")
def small_buffers() -> dict[str, tuple[dict[str, np.ndarray], dict]]:
    return {name: recipe_replay_arrays(name, seed=0, recipe=SMALL, progress=False) for name in TASKS}


def direct_log_probs(name: str, arrays: dict[str, np.ndarray], recipe: ReplayRecipe) -> np.ndarray:
    """log((1 - p) U(a) + p pi(a|s)) row by row, written out without the recipe's code."""
    task = get_task(name)
    actor = shipped_actor(name, "medium")
    rows, warmup = recipe.rows, recipe.warmup
    t = np.arange(len(arrays["rewards"]))
    p = np.where(t < warmup, 0.0, ((t + 1.0 - warmup) / (rows - warmup)) ** recipe.exponent)
    uniform = 2.0 ** -task.act_dim  # the [-1, 1] box
    pi = np.exp(actor.log_prob(arrays["observations"], arrays["actions"]))
    return np.log((1.0 - p) * uniform + p * pi)


@pytest.mark.parametrize("name", list(TASKS))
def test_recipe_rows_order_and_exact_mixture_log_probs(small_buffers, name: str) -> None:
    arrays, attrs = small_buffers[name]
    task = get_task(name)
    n = len(arrays["rewards"])
    assert n == 3000
    assert arrays["observations"].shape == (n, task.obs_dim) and arrays["actions"].shape == (n, task.act_dim)
    assert np.all(np.abs(arrays["actions"]) <= 1.0)
    ends = arrays["terminals"] | arrays["timeouts"]
    inside = np.flatnonzero(~ends[:-1])
    np.testing.assert_array_equal(arrays["next_observations"][inside], arrays["observations"][inside + 1])
    assert ends[-1] and not np.any(arrays["terminals"] & arrays["timeouts"])
    logged = arrays["infos/action_log_probs"].astype(np.float64)
    np.testing.assert_allclose(logged[:1000], -task.act_dim * math.log(2), rtol=1e-6)
    np.testing.assert_allclose(logged, direct_log_probs(name, arrays, SMALL), rtol=1e-5, atol=1e-4)
    # The actions follow the logged mixture: the posterior probability that a row is the actor's,
    # p pi / ((1 - p) U + p pi), sums to sum(p) in expectation (its std is at most sqrt(sum p (1 - p))).
    t = np.arange(1000, n)
    p = mixing_probability(t, 3000, 1000, 1.0)
    actor_rows = p * np.exp(shipped_actor(name, "medium").log_prob(arrays["observations"][t], arrays["actions"][t])
                            - logged[t])
    assert abs(actor_rows.sum() - p.sum()) < 5 * math.sqrt(np.sum(p * (1 - p)))
    recipe = json.loads(attrs["replay_recipe"])
    assert (recipe["rows"], recipe["warmup"], recipe["exponent"]) == (3000, 1000, 1.0)
    assert attrs["medium_actor_sha256"] == shipped_actor(name, "medium").checksum()
    assert attrs["behavior_policy"].startswith("ramped-mixture(uniform -> ")


def test_ramp_shape_and_its_log_probs() -> None:
    assert mixing_probability(999, 3000, 1000, 1.0) == 0.0
    assert mixing_probability(1000, 3000, 1000, 1.0) == pytest.approx(1 / 2000)
    assert mixing_probability(1999, 3000, 1000, 2.0) == pytest.approx(0.25)
    assert mixing_probability(2999, 3000, 1000, 3.0) == 1.0
    steep = ReplayRecipe(rows=1600, warmup=400, exponent=3.0)
    arrays, attrs = recipe_replay_arrays("hopper", seed=2, recipe=steep, progress=False)
    np.testing.assert_allclose(arrays["infos/action_log_probs"], direct_log_probs("hopper", arrays, steep),
                               rtol=1e-5, atol=1e-4)
    assert json.loads(attrs["replay_recipe"])["exponent"] == 3.0


def test_recipe_is_deterministic_by_seed_and_a_cut_is_a_prefix(small_buffers) -> None:
    full, attrs = small_buffers["walker2d"]
    again, again_attrs = recipe_replay_arrays("walker2d", seed=0, recipe=SMALL, progress=False)
    for key in full:
        np.testing.assert_array_equal(full[key], again[key], err_msg=key)
    assert attrs == again_attrs
    other, _ = recipe_replay_arrays("walker2d", seed=1, recipe=SMALL, progress=False)
    assert not np.array_equal(full["actions"], other["actions"])
    cut, _ = recipe_replay_arrays("walker2d", steps=1800, seed=0, recipe=SMALL, progress=False)
    for key in ("observations", "actions", "rewards", "infos/action_log_probs"):
        np.testing.assert_array_equal(cut[key], full[key][:1800], err_msg=key)


def test_recipe_defaults_come_from_the_medium_actor() -> None:
    for name in TASKS:
        step = shipped_actor(name, "medium").spec["source"]["step"]
        assert recipe_rows(name) == (step, 10_000)
    with pytest.raises(ValueError, match="longer than its uniform warm-up"):
        recipe_rows("hopper", ReplayRecipe(rows=500))
    with pytest.raises(ValueError, match="exponent must be a finite number > 0"):
        ReplayRecipe(exponent=0.0)


def test_make_dataset_uses_the_recipe_without_a_run(tmp_path: Path) -> None:
    path = make_dataset("hopper-medium-replay", steps=1200, out=tmp_path / "mr.hdf5", progress=False)
    dataset = load_dataset(path)
    assert len(dataset) == 1200
    assert dataset.attrs["replay_source"].startswith("shipped recipe")
    assert dataset.attrs["medium_step"] == shipped_actor("hopper", "medium").spec["source"]["step"]
    assert json.loads(dataset.attrs["replay_recipe"])["exponent"] == 1.0
    assert dataset.behavior_log_probs is not None
    steep = make_dataset("hopper-medium-replay", steps=1200, out=tmp_path / "k2.hdf5", progress=False,
                         ramp_exponent=2.0)
    with h5py.File(steep) as f:
        assert json.loads(f.attrs["replay_recipe"])["exponent"] == 2.0


def test_a_behaviour_run_is_preferred_when_there_is_one(isolated_home: Path, tmp_path: Path) -> None:
    hopper = get_task("hopper")
    assert replay_source_for(hopper) == "recipe"
    assert replay_source_for(hopper, run_dir=tmp_path) == "run"
    assert replay_source_for(hopper, medium_step=300) == "run"
    run = isolated_home / "behavior" / "hopper"
    run.mkdir(parents=True)
    (run / "progress.json").write_text(json.dumps({"num_timesteps": 500, "buffer_chunks": []}))
    assert replay_source_for(hopper) == "run"
    assert replay_source_for(hopper, ramp_exponent=2.0) == "recipe"  # the ramp names the recipe
    assert replay_source_for(hopper, "recipe") == "recipe"
    # The run path is taken (and says what it lacks: this run has no snapshot at the medium step).
    with pytest.raises(FileNotFoundError, match="no actor snapshot"):
        make_dataset("hopper-medium-replay", steps=100, out=tmp_path / "x.hdf5", progress=False)
    made = make_dataset("hopper-medium-replay", steps=100, out=tmp_path / "y.hdf5", progress=False,
                        replay_source="recipe")
    assert load_dataset(made).attrs["replay_source"].startswith("shipped recipe")


def test_bad_replay_options_name_the_valid_ones(tmp_path: Path) -> None:
    hopper = get_task("hopper")
    with pytest.raises(ValueError, match="one of auto, run, recipe"):
        replay_source_for(hopper, "buffer")
    with pytest.raises(ValueError, match="uses none"):
        replay_source_for(hopper, "recipe", run_dir=tmp_path)
    with pytest.raises(ValueError, match="has none"):
        replay_source_for(hopper, "run", ramp_exponent=2.0)
    with pytest.raises(ValueError, match="name a behaviour run"):
        replay_source_for(hopper, run_dir=tmp_path, ramp_exponent=2.0)
    with pytest.raises(ValueError, match="ramp_exponent applies to medium-replay"):
        make_dataset("hopper-medium", steps=10, out=tmp_path / "m.hdf5", progress=False, ramp_exponent=2.0)


def test_cli_makes_medium_replay_on_a_fresh_home(isolated_home: Path) -> None:
    result = CliRunner().invoke(app, ["data", "make", "walker2d-medium-replay", "--steps", "1500", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "shipped recipe" in " ".join(result.output.split())
    assert (isolated_home / "datasets" / "walker2d-medium-replay.hdf5").exists()
    bad = CliRunner().invoke(app, ["data", "make", "walker2d-medium-replay", "--replay-source", "nope"])
    assert bad.exit_code != 0 and "auto, run, recipe" in " ".join(bad.output.split())


def test_data_list_statuses(isolated_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fresh = dataset_status("hopper-medium-replay")
    assert fresh.state == "can be made now" and "shipped recipe" in fresh.detail
    assert dataset_status("halfcheetah-random").detail == "~42 s"  # 1M steps at 24k steps/s
    assert dataset_status("walker2d-medium-expert").state == "can be made now"
    make_dataset("hopper-random", steps=300, progress=False)
    on_disk = dataset_status("hopper-random")
    assert on_disk.state == "on disk" and on_disk.detail.endswith("MB") and on_disk.path.exists()
    d4rl = tmp_path / "d4rl"
    d4rl.mkdir()
    (d4rl / "walker2d_medium-v2.hdf5").write_bytes(b"")
    monkeypatch.setenv("ADEPT_D4RL_DIR", str(d4rl))
    assert str(dataset_status("walker2d-medium")) == "D4RL file"
    run = isolated_home / "behavior" / "hopper"
    run.mkdir(parents=True)
    (run / "progress.json").write_text(json.dumps({"num_timesteps": 500}))
    waiting = dataset_status("hopper-medium-replay")
    assert waiting.state == "needs" and "adept-env data train-behavior hopper" in waiting.detail
    (run / "progress.json").write_text(json.dumps({"num_timesteps": 10**6}))
    assert "from the behaviour run" in dataset_status("hopper-medium-replay").detail
    monkeypatch.setattr(behavior, "POLICIES_DIR", tmp_path / "no-policies")
    missing = dataset_status("halfcheetah-expert")
    assert missing.state == "needs" and "adept-env data ship-behavior halfcheetah expert" in missing.detail
    result = CliRunner().invoke(app, ["data", "list"])
    assert result.exit_code == 0, result.output
    assert "status" in result.output and "on disk" in " ".join(result.output.split())
