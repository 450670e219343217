"""World model: shapes, seeding, weighted fits, uncertainty, save/load. Tiny models, synthetic data."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from adept_env.data.dataset import OfflineDataset
from adept_env.diffusion import ConfigMismatchError, WorldModel, WorldModelConfig, WorldModelFileError
from adept_env.diffusion.dtype_probe import bf16_is_faster, resolve_dtype
from adept_env.diffusion.ensemble import EnsembleConfig, ProbabilisticEnsemble
from adept_env.tasks import get_task

TASK = get_task("halfcheetah")
TINY = dataclasses.replace(WorldModelConfig.quick(), steps=600, eval_every=200, patience=100)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: with other jobs on a 2-core machine, two threads collapse (BENCHMARKS.md, Threads)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def synthetic(n: int, seed: int = 0, sign: float = 1.0, scale: float = 1.0) -> OfflineDataset:
    """Known smooth dynamics s' = s + sign * 0.5 tanh(W [s, a]), reward = a . c, inputs in [-scale, scale]."""
    rng = np.random.default_rng(seed)
    weights = np.random.default_rng(123).normal(0, 0.5, (TASK.obs_dim + TASK.act_dim, TASK.obs_dim))
    c = np.random.default_rng(7).normal(0, 1, TASK.act_dim)
    obs = rng.uniform(-scale, scale, (n, TASK.obs_dim)).astype(np.float32)
    act = rng.uniform(-scale, scale, (n, TASK.act_dim)).astype(np.float32)
    nxt = obs + sign * 0.5 * np.tanh(np.concatenate([obs, act], 1) @ weights)
    return OfflineDataset(
        task=TASK, observations=obs, actions=act, rewards=(act @ c).astype(np.float32),
        next_observations=nxt.astype(np.float32), terminals=np.zeros(n, bool), timeouts=np.zeros(n, bool))


def concat(a: OfflineDataset, b: OfflineDataset) -> OfflineDataset:
    fields = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")
    return dataclasses.replace(a, **{f: np.concatenate([getattr(a, f), getattr(b, f)]) for f in fields})


def state_mse(model: WorldModel, data: OfflineDataset) -> float:
    pred = model.sample(data.observations, data.actions, seed=0)
    return float(np.mean(np.square(pred.next_observations - data.next_observations)))


@pytest.fixture(scope="module")
def fitted() -> WorldModel:
    model = WorldModel.create("halfcheetah", TINY, seed=0)
    model.fit(synthetic(3000), progress=False)
    return model


def test_sample_shapes_and_dtypes(fitted: WorldModel) -> None:
    data = synthetic(5, seed=1)
    for k in (None, 3):
        pred = fitted.sample(data.observations, data.actions, n_samples=k)
        kk = k or TINY.n_samples
        assert pred.next_observations.shape == (5, 17) and pred.next_observations.dtype == np.float32
        assert pred.rewards.shape == (5,) and pred.rewards.dtype == np.float32
        assert pred.terminated.shape == (5,) and pred.terminated.dtype == np.bool_
        assert pred.uncertainty.shape == (5,) and pred.uncertainty.dtype == np.float32
        assert np.all(pred.uncertainty >= 0)
        assert pred.samples.shape == (kk, 5, 17) and pred.samples.dtype == np.float32
        np.testing.assert_allclose(pred.next_observations, pred.samples.mean(0), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="needs observations"):
        fitted.sample(data.observations[:, :5], data.actions)
    with pytest.raises(ValueError, match="n_samples"):
        fitted.sample(data.observations, data.actions, n_samples=0)


def test_fit_learns_the_dynamics_and_reward(fitted: WorldModel) -> None:
    test = synthetic(500, seed=2)
    baseline = float(np.mean(np.square(test.next_observations - test.observations)))
    assert state_mse(fitted, test) < 0.1 * baseline
    pred = fitted.sample(test.observations, test.actions, seed=0)
    assert np.mean(np.square(pred.rewards - test.rewards)) < 0.1 * np.var(test.rewards)


def test_determinism_under_seed(fitted: WorldModel) -> None:
    data = synthetic(64, seed=3)
    a = fitted.sample(data.observations, data.actions, seed=5)
    b = fitted.sample(data.observations, data.actions, seed=5)
    c = fitted.sample(data.observations, data.actions, seed=6)
    np.testing.assert_array_equal(a.samples, b.samples)
    np.testing.assert_array_equal(a.rewards, b.rewards)
    assert not np.array_equal(a.samples, c.samples)
    # The model's own generator: a fresh clone replays the same sequence.
    twin = fitted.clone()
    np.testing.assert_array_equal(fitted.clone().sample(data.observations, data.actions).samples,
                                  twin.sample(data.observations, data.actions).samples)
    # Creation and fitting are seeded too.
    one, two = (WorldModel.create("halfcheetah", TINY, seed=1) for _ in range(2))
    small = synthetic(400, seed=4)
    for model in (one, two):
        model.fit(small, steps=50, progress=False, seed=3)
    np.testing.assert_array_equal(one.sample(data.observations, data.actions, seed=0).samples,
                                  two.sample(data.observations, data.actions, seed=0).samples)


def test_weights_change_the_fit() -> None:
    # Two halves with the same inputs and opposite dynamics: uniform weights average them,
    # zero weight on the second half lets the model fit the first.
    first, second = synthetic(2000, seed=10), synthetic(2000, seed=11, sign=-1.0)
    both = concat(first, second)
    weights = np.concatenate([np.ones(len(first)), np.zeros(len(second))])
    test = synthetic(500, seed=12)
    uniform = WorldModel.create("halfcheetah", TINY, seed=0)
    uniform.fit(both, steps=400, progress=False)
    weighted = WorldModel.create("halfcheetah", TINY, seed=0)
    report = weighted.fit(both, weights=weights, steps=400, progress=False)
    assert state_mse(weighted, test) < 0.5 * state_mse(uniform, test)
    assert report.effective_sample_size == pytest.approx(report.n_train / 2, rel=0.1)


def test_uncertainty_larger_off_distribution(fitted: WorldModel) -> None:
    # Trained on inputs in [-1, 1]; the spread grows as the inputs move out (measured: x1.8 at
    # 4x, x1.9 at 8x, while the error grows x6: a useful but conservative signal).
    medians = []
    for scale in (1.0, 4.0, 8.0):
        data = synthetic(500, seed=21, scale=scale)
        pred = fitted.sample(data.observations, data.actions, n_samples=4, seed=0)
        medians.append(float(np.median(pred.uncertainty)))
    assert medians[0] < medians[1] < medians[2]
    assert medians[2] > 1.4 * medians[0]


def test_fit_report_and_warm_start(fitted: WorldModel) -> None:
    model = fitted.clone()
    before = model.nets.normalizer.obs_mean.clone()
    report = model.fit(synthetic(1000, seed=30, scale=2.0), steps=100, progress=False)
    assert report.steps == 100 and report.seconds > 0 and len(report.val_losses) >= 1
    assert report.effective_sample_size == pytest.approx(report.n_train)
    torch.testing.assert_close(model.nets.normalizer.obs_mean, before)  # a refit keeps the normaliser
    assert model.version == 0
    # the original is untouched by the clone's refit
    assert not torch.equal(next(model.nets.parameters()), next(fitted.nets.parameters()))
    with pytest.raises(ValueError, match="weights"):
        model.fit(synthetic(100), weights=np.zeros(100), progress=False)


def test_save_load_round_trip_is_exact(fitted: WorldModel, tmp_path) -> None:
    fitted.version = 3
    try:
        path = fitted.save(tmp_path / "wm")
    finally:
        fitted.version = 0
    loaded = WorldModel.load(path, expected_config=TINY)
    assert loaded.version == 3 and loaded.config == TINY and loaded.task == TASK
    for (key, a), (_, b) in zip(fitted.nets.state_dict().items(), loaded.nets.state_dict().items(), strict=True):
        assert torch.equal(a, b), key
    data = synthetic(32, seed=40)
    a = fitted.sample(data.observations, data.actions, seed=1)
    b = loaded.sample(data.observations, data.actions, seed=1)
    np.testing.assert_array_equal(a.samples, b.samples)
    np.testing.assert_array_equal(a.rewards, b.rewards)
    assert not list(path.glob("*.tmp"))


def test_mismatched_config_load_fails_clearly(fitted: WorldModel, tmp_path) -> None:
    path = fitted.save(tmp_path / "wm")
    other = dataclasses.replace(TINY, denoiser_width=32, n_samples=4)
    with pytest.raises(ConfigMismatchError, match=r"denoiser_width: 64 != 32.*n_samples: 2 != 4"):
        WorldModel.load(path, expected_config=other)
    meta = json.loads((path / "config.json").read_text())
    meta["config"]["mean_width"] = 32  # a config that no longer fits the weights
    (path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(WorldModelFileError, match="does not fit the saved config"):
        WorldModel.load(path)
    (path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(WorldModelFileError, match="checksum"):
        WorldModel.load(path)
    with pytest.raises(WorldModelFileError, match="not a saved world model"):
        WorldModel.load(tmp_path / "nowhere")
    meta["config"]["brand_new_field"] = 1
    (path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigMismatchError, match="brand_new_field"):
        WorldModel.load(path)


def test_plain_predictor_and_guidance() -> None:
    config = dataclasses.replace(TINY, predictor="plain", guidance=1.5, sampling_steps=3, uncertainty="draws")
    model = WorldModel.create("halfcheetah", config)
    model.fit(synthetic(500), steps=30, progress=False)
    data = synthetic(7, seed=50)
    pred = model.sample(data.observations, data.actions, n_samples=3, seed=0)
    assert pred.samples.shape == (3, 7, 17) and np.all(np.isfinite(pred.samples))
    assert np.all(model.sample(data.observations, data.actions, n_samples=1).uncertainty == 0)


def test_dtype_probe_answers() -> None:
    assert isinstance(bf16_is_faster(32, 1, batch=64, seconds=0.01), bool)
    assert resolve_dtype("float32", 32, 1) == torch.float32
    assert resolve_dtype("bfloat16", 32, 1) == torch.bfloat16
    with pytest.raises(ValueError, match="dtype"):
        WorldModelConfig(dtype="float16")  # type: ignore[arg-type]


def test_ensemble_baseline_trains_and_predicts() -> None:
    ensemble = ProbabilisticEnsemble("halfcheetah", EnsembleConfig(width=32, layers=2, steps=300, eval_every=100))
    data = synthetic(1000)
    result = ensemble.fit(data, progress=False)
    assert result["steps"] == 300 and len(ensemble.elite_index) == 5
    pred = ensemble.predict(data.observations[:9], data.actions[:9])
    assert pred.next_observations.shape == (9, 17) and pred.rewards.shape == (9,)
    assert np.all(pred.disagreement >= 0) and np.all(pred.aleatoric > 0)


@pytest.fixture(scope="module")
def two_members() -> WorldModel:
    config = dataclasses.replace(TINY, mean_members=2, uncertainty="scale+disagreement")
    model = WorldModel.create("halfcheetah", config, seed=0)
    model.fit(synthetic(1500), steps=200, progress=False)
    return model


def with_uncertainty(model: WorldModel, mode: str) -> WorldModel:
    view = model.clone()
    view.config = dataclasses.replace(view.config, uncertainty=mode)
    return view


def test_every_uncertainty_mode_is_finite_and_only_draws_depend_on_the_noise(
        fitted: WorldModel, two_members: WorldModel) -> None:
    data = synthetic(300, seed=60, scale=1.5)
    views = {"draws": with_uncertainty(fitted, "draws"), "scale": with_uncertainty(fitted, "scale"),
             "scale+disagreement": two_members, "draws M=2": with_uncertainty(two_members, "draws")}
    for mode, model in views.items():
        a = model.sample(data.observations, data.actions, seed=1)
        b = model.sample(data.observations, data.actions, seed=2)
        for pred in (a, b):
            assert pred.uncertainty.shape == (300,) and pred.uncertainty.dtype == np.float32, mode
            assert np.all(np.isfinite(pred.uncertainty)) and np.all(pred.uncertainty >= 0), mode
        assert not np.array_equal(a.samples, b.samples)  # the draws still differ with the noise
        if mode.startswith("draws"):
            assert not np.array_equal(a.uncertainty, b.uncertainty), mode
        else:  # a function of (s, a) alone: the same for any noise and any K
            np.testing.assert_array_equal(a.uncertainty, b.uncertainty)
            np.testing.assert_array_equal(
                a.uncertainty, model.sample(data.observations, data.actions, n_samples=5, seed=3).uncertainty)
    # The same draws whatever the mode reports; the scale is the draws' expected spread (same units).
    draws = views["draws"].sample(data.observations, data.actions, seed=1)
    scale = views["scale"].sample(data.observations, data.actions, seed=1)
    np.testing.assert_array_equal(draws.samples, scale.samples)
    many = views["draws"].sample(data.observations, data.actions, n_samples=32, seed=1).uncertainty
    assert 0.5 < np.median(many) / np.median(scale.uncertainty) < 2.0
    # Two members: adding their disagreement can only raise the scale alone.
    combined = two_members.sample(data.observations, data.actions, seed=1).uncertainty
    members, log_std = two_members.nets.mean(two_members.nets.normalizer.condition(
        torch.from_numpy(data.observations), torch.from_numpy(data.actions)))
    scale_alone = log_std.mean(0).exp().square().mean(-1).sqrt().detach().numpy()
    assert np.all(combined >= scale_alone - 1e-5) and np.any(combined > scale_alone + 1e-4)
    disagreement = members.var(0, correction=0).mean(-1).detach().numpy()
    np.testing.assert_allclose(combined, np.sqrt(scale_alone ** 2 + disagreement), rtol=1e-4, atol=1e-6)


def test_uncertainty_setting_is_checked() -> None:
    with pytest.raises(ValueError, match=r"uncertainty must be one of \('draws', 'scale', 'scale\+disagreement'\)"):
        WorldModelConfig(uncertainty="spread")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs predictor='mean_residual'"):
        WorldModelConfig(predictor="plain", uncertainty="scale")
    with pytest.raises(ValueError, match="needs heteroscedastic=True"):
        WorldModelConfig(heteroscedastic=False, uncertainty="scale")
    with pytest.raises(ValueError, match="needs mean_members >= 2"):
        WorldModelConfig(mean_members=1, uncertainty="scale+disagreement")
    WorldModelConfig(heteroscedastic=False, mean_members=2, uncertainty="scale+disagreement")
    WorldModelConfig(predictor="plain", uncertainty="draws")


def test_a_model_saved_before_the_uncertainty_setting_keeps_the_draws_spread(fitted: WorldModel, tmp_path) -> None:
    scale_model = with_uncertainty(fitted, "scale")
    path = scale_model.save(tmp_path / "wm")
    assert WorldModel.load(path).config.uncertainty == "scale"  # a saved choice is kept
    meta = json.loads((path / "config.json").read_text())
    del meta["config"]["uncertainty"]  # what every file written before the field looks like
    (path / "config.json").write_text(json.dumps(meta))
    old = WorldModel.load(path)
    assert old.config.uncertainty == "draws"
    assert WorldModelConfig.from_dict({}).uncertainty == "draws"
    data = synthetic(50, seed=70)
    np.testing.assert_array_equal(old.sample(data.observations, data.actions, seed=4).uncertainty,
                                  with_uncertainty(fitted, "draws").sample(data.observations, data.actions,
                                                                           seed=4).uncertainty)
