"""Behaviour policies: actor snapshots, exact log-probs, generated datasets, medium-replay, BC."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from adept_env.data import behavior
from adept_env.data.behavior import (
    ActorPolicy,
    BCConfig,
    BehaviorPolicy,
    MixtureBehavior,
    UniformBehavior,
    actor_paths,
    behavior_policy_for,
    dataset_behavior_log_probs,
    fit_behavior_cloning,
    load_actor,
    save_actor,
    shipped_actor_stem,
    shipped_actors,
    squashed_gaussian_log_prob,
)
from adept_env.data.dataset import load_dataset
from adept_env.data.generate import make_dataset
from adept_env.data.train_behavior import BehaviorTrainConfig, medium_replay_arrays, snapshot_stem, train_behavior
from adept_env.tasks import TASKS, normalized_score


def tiny_actor(task: str, seed: int, hidden: tuple[int, ...] = (8, 8)) -> tuple[dict[str, np.ndarray], dict]:
    """Random weights and a spec of a small SAC-shaped actor for ``task``."""
    t = TASKS[task]
    rng = np.random.default_rng(seed)
    weights: dict[str, np.ndarray] = {}
    width = t.obs_dim
    for i, h in enumerate(hidden):
        weights[f"latent_pi.{2 * i}.weight"] = rng.normal(0, 0.5, (h, width)).astype(np.float32)
        weights[f"latent_pi.{2 * i}.bias"] = rng.normal(0, 0.1, h).astype(np.float32)
        width = h
    weights["mu.weight"] = rng.normal(0, 0.5, (t.act_dim, width)).astype(np.float32)
    weights["mu.bias"] = np.zeros(t.act_dim, np.float32)
    weights["log_std.weight"] = rng.normal(0, 0.1, (t.act_dim, width)).astype(np.float32)
    weights["log_std.bias"] = np.full(t.act_dim, -1.0, np.float32)
    spec = {
        "name": f"{task}-tiny-{seed}",
        "task": task,
        "env_id": t.env_id,
        "obs_dim": t.obs_dim,
        "act_dim": t.act_dim,
        "hidden_sizes": list(hidden),
        "activation": "relu",
        "action_low": [-1.0] * t.act_dim,
        "action_high": [1.0] * t.act_dim,
    }
    return weights, spec


@pytest.fixture
def policies_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private adept_env/policies holding tiny hopper medium and expert actors."""
    root = tmp_path / "policies"
    for quality, seed in (("medium", 1), ("expert", 2)):
        weights, spec = tiny_actor("hopper", seed)
        save_actor(root / f"hopper-{quality}", weights, spec)
    monkeypatch.setattr(behavior, "POLICIES_DIR", root)
    return root


def test_snapshot_roundtrip_acts_and_rejects_tampering(tmp_path: Path) -> None:
    weights, spec = tiny_actor("hopper", 0)
    path = save_actor(tmp_path / "a", weights, spec)
    actor = load_actor(tmp_path / "a")
    rng = np.random.default_rng(0)
    obs = rng.standard_normal(11)
    action, log_prob = actor.act(obs, rng)
    assert action.shape == (3,) and action.dtype == np.float32 and np.all(np.abs(action) <= 1)
    assert math.isfinite(log_prob)
    np.testing.assert_allclose(log_prob, actor.log_prob(obs, action)[0])
    assert isinstance(actor, BehaviorPolicy)
    weights["mu.bias"][0] += 1.0
    from safetensors.numpy import save_file

    save_file(weights, str(path))
    with pytest.raises(ValueError, match="checksum"):
        load_actor(tmp_path / "a")


def test_actor_log_prob_matches_sb3() -> None:
    from stable_baselines3 import SAC

    from adept_env.data.train_behavior import actor_weights

    model = SAC("MlpPolicy", "Hopper-v5", policy_kwargs={"net_arch": [16, 16]}, seed=0, device="cpu")
    _, spec = tiny_actor("hopper", 0, hidden=(16, 16))
    actor = ActorPolicy(weights=actor_weights(model), spec=spec)
    rng = np.random.default_rng(0)
    obs = rng.standard_normal((64, 11)).astype(np.float32)
    with torch.no_grad():
        obs_t = torch.as_tensor(obs)
        actions, sb3_log_prob = model.actor.action_log_prob(obs_t)
        mean, log_std, _ = model.actor.get_action_dist_params(obs_t)
    ours_mean, ours_log_std = actor.distribution(obs)
    np.testing.assert_allclose(ours_mean, mean.numpy(), atol=1e-5)
    np.testing.assert_allclose(ours_log_std, log_std.numpy(), atol=1e-5)
    np.testing.assert_allclose(actor.log_prob(obs, actions.numpy()), sb3_log_prob.numpy(), atol=2e-3)


def test_tanh_gaussian_density_integrates_to_one() -> None:
    grid = np.linspace(-1 + 1e-7, 1 - 1e-7, 400_001)
    logp = squashed_gaussian_log_prob(np.full((len(grid), 1), 0.4), np.full((len(grid), 1), -0.7),
                                      grid[:, None], np.array([-1.0]), np.array([1.0]))
    assert np.trapezoid(np.exp(logp), grid) == pytest.approx(1.0, abs=1e-3)


def test_uniform_is_exact_for_random_data(tmp_path: Path) -> None:
    path = make_dataset("hopper-random", steps=300, seed=0, out=tmp_path / "r.hdf5", progress=False)
    dataset = load_dataset(path)
    policy = behavior_policy_for(dataset)
    assert isinstance(policy, UniformBehavior)
    np.testing.assert_allclose(policy.log_prob(dataset.observations, dataset.actions), -3 * math.log(2))
    np.testing.assert_allclose(dataset_behavior_log_probs(dataset), -3 * math.log(2), rtol=1e-6)


def test_generated_log_probs_match_the_actor(policies_dir: Path, tmp_path: Path) -> None:
    path = make_dataset("hopper-medium", steps=1500, seed=3, out=tmp_path / "m.hdf5", progress=False)
    again = make_dataset("hopper-medium", steps=1500, seed=3, out=tmp_path / "m2.hdf5", progress=False)
    actor = load_actor(policies_dir / "hopper-medium")
    with h5py.File(path) as f, h5py.File(again) as g:
        assert f.attrs["behavior_policy_sha256"] == actor.checksum()
        for key in ("observations", "actions", "rewards", "infos/action_log_probs"):
            np.testing.assert_array_equal(f[key][:], g[key][:])
        logged = f["infos/action_log_probs"][:]
        np.testing.assert_allclose(logged, actor.log_prob(f["observations"][:], f["actions"][:]), rtol=1e-5, atol=1e-5)
    dataset = load_dataset(path)
    policy = behavior_policy_for(dataset)
    assert isinstance(policy, ActorPolicy) and policy.checksum() == actor.checksum()


def test_medium_expert_is_medium_then_expert(policies_dir: Path, tmp_path: Path) -> None:
    path = make_dataset("hopper-medium-expert", steps=400, seed=0, out=tmp_path / "me.hdf5", progress=False)
    dataset = load_dataset(path)
    assert len(dataset) == 800
    medium, expert = load_actor(policies_dir / "hopper-medium"), load_actor(policies_dir / "hopper-expert")
    logged = dataset.behavior_log_probs
    np.testing.assert_allclose(logged[:400], medium.log_prob(dataset.observations[:400], dataset.actions[:400]),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(logged[400:], expert.log_prob(dataset.observations[400:], dataset.actions[400:]),
                               rtol=1e-5, atol=1e-5)
    assert dataset.timeouts[399] or dataset.terminals[399]  # the medium part ends an episode
    policy = behavior_policy_for(dataset)
    assert isinstance(policy, MixtureBehavior)
    mix = policy.log_prob(dataset.observations, dataset.actions)
    both = np.stack([medium.log_prob(dataset.observations, dataset.actions),
                     expert.log_prob(dataset.observations, dataset.actions)])
    np.testing.assert_allclose(mix, np.log(0.5 * np.exp(both).sum(axis=0)), rtol=1e-6)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SAC behaviour run on hopper, stopped at 600 steps and resumed to 900."""
    run_dir = tmp_path_factory.mktemp("run")
    config = BehaviorTrainConfig(task="hopper", total_steps=900, learning_starts=200, eval_every=300,
                                 eval_episodes=1, batch_size=16, hidden_sizes=(16, 16), segment_steps=300)
    train_behavior("hopper", run_dir=run_dir, config=config, progress=False, max_steps_this_call=600)
    train_behavior("hopper", run_dir=run_dir, progress=False)
    return run_dir


def test_training_resumes_and_checkpoints_are_pickle_free(tiny_run: Path) -> None:
    progress = json.loads((tiny_run / "progress.json").read_text())
    assert progress["num_timesteps"] == 900
    assert progress["snapshots"] == [300, 600, 900]
    assert progress["interruptions"] == [600] or progress["interruptions"] == []  # [] if 600 ended an episode
    assert [r["at_step"] for r in progress["resumes"]] == [600]
    state = torch.load(tiny_run / progress["checkpoint"], weights_only=True)
    assert {"policy", "actor_optimizer", "critic_optimizer", "log_ent_coef"} <= set(state)
    assert len(list(tiny_run.glob("checkpoint_*.pt"))) == 1


def test_medium_replay_order_size_and_log_probs(tiny_run: Path) -> None:
    arrays, attrs = medium_replay_arrays("hopper", run_dir=tiny_run, medium_step=900)
    n = len(arrays["rewards"])
    assert n == 900 and attrs["medium_step"] == 900
    obs, nxt = arrays["observations"], arrays["next_observations"]
    ends = arrays["terminals"] | arrays["timeouts"]
    inside = np.flatnonzero(~ends[:-1])
    np.testing.assert_array_equal(nxt[inside], obs[inside + 1])  # collection order, no gaps
    assert ends[599] and ends[-1]  # the interruption at 600 and the end cut episodes
    assert not np.any(arrays["terminals"] & arrays["timeouts"])
    np.testing.assert_allclose(arrays["infos/action_log_probs"][:200], -3 * math.log(2), rtol=1e-6)
    for step in (300, 600):  # the action at row `step` was sampled by the snapshot taken at `step`
        actor = load_actor(snapshot_stem(tiny_run, step))
        expected = actor.log_prob(obs[step], arrays["actions"][step])[0]
        assert arrays["infos/action_log_probs"][step] == pytest.approx(expected, abs=1e-3)
    first, _ = medium_replay_arrays("hopper", run_dir=tiny_run, medium_step=300)
    assert len(first["rewards"]) == 300
    np.testing.assert_array_equal(first["observations"], obs[:300])


def test_make_medium_replay_checks_the_shipped_actor(tiny_run: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "policies"
    root.mkdir()
    for suffix in (".safetensors", ".json"):
        shutil.copy(str(snapshot_stem(tiny_run, 600)) + suffix, root / f"hopper-medium{suffix}")
    monkeypatch.setattr(behavior, "POLICIES_DIR", root)
    path = make_dataset("hopper-medium-replay", run_dir=tiny_run, out=tmp_path / "mr.hdf5", progress=False)
    dataset = load_dataset(path)
    assert len(dataset) == 600 and dataset.attrs["medium_step"] == 600
    assert not isinstance(behavior.known_behavior(dataset.task, dataset.attrs["behavior_policy_sha256"]), ActorPolicy)
    shutil.copy(str(snapshot_stem(tiny_run, 300)) + ".json", root / "hopper-medium.json")
    shutil.copy(str(snapshot_stem(tiny_run, 300)) + ".safetensors", root / "hopper-medium.safetensors")
    spec = json.loads((root / "hopper-medium.json").read_text())
    spec["source"]["step"] = 600  # claims a step whose run snapshot is a different actor
    (root / "hopper-medium.json").write_text(json.dumps(spec))
    with pytest.raises(ValueError, match=r"not the shipped medium actor.*--medium-step"):
        make_dataset("hopper-medium-replay", run_dir=tiny_run, out=tmp_path / "bad.hdf5", progress=False)
    # the run's own medium point, named explicitly
    own = make_dataset("hopper-medium-replay", run_dir=tiny_run, out=tmp_path / "own.hdf5", progress=False,
                       medium_step=300)
    assert load_dataset(own).attrs["medium_step"] == 300 and len(load_dataset(own)) == 300
    with pytest.raises(ValueError, match="medium_step applies to medium-replay"):
        make_dataset("hopper-medium", out=tmp_path / "x.hdf5", progress=False, medium_step=300)


def test_bc_density_recovers_a_known_tanh_gaussian() -> None:
    rng = np.random.default_rng(0)
    n = 6000
    obs = rng.standard_normal((n, 3))
    weights = np.array([[0.6, -0.3], [0.2, 0.5], [-0.1, 0.3]])
    mean = obs @ weights
    log_std = np.broadcast_to(np.log([0.3, 0.5]), (n, 2))
    actions = np.tanh(mean + np.exp(log_std) * rng.standard_normal((n, 2))).astype(np.float32)
    config = BCConfig(hidden_sizes=(32, 32), steps=600, batch_size=256, learning_rate=3e-3)
    fitted = fit_behavior_cloning(None, config, observations=obs, actions=actions)
    test_obs = rng.standard_normal((2000, 3))
    fit_mean, fit_log_std = fitted.distribution(test_obs)
    assert np.abs(fit_mean - test_obs @ weights).mean() < 0.05
    np.testing.assert_allclose(np.exp(fit_log_std).mean(axis=0), [0.3, 0.5], rtol=0.1)
    test_actions = np.tanh(test_obs @ weights + np.exp(log_std[:2000]) * rng.standard_normal((2000, 2)))
    true = squashed_gaussian_log_prob(test_obs @ weights, log_std[:2000], test_actions, -np.ones(2), np.ones(2))
    assert np.abs(fitted.log_prob(test_obs, test_actions) - true).mean() < 0.1
    assert fitted.spec["fit"]["holdout_log_likelihood"] == pytest.approx(true.mean(), abs=0.15)


def _shipped_actors() -> list[ActorPolicy]:
    """The shipped actors, one per task and quality; they are committed, so a missing one is a packaging bug."""
    wanted = {(task, quality) for task in TASKS for quality in ("medium", "expert")}
    missing = sorted(f"{t}-{q}" for t, q in wanted
                     if not all(path.exists() for path in actor_paths(shipped_actor_stem(t, q))))
    assert not missing, f"{behavior.POLICIES_DIR} lacks the shipped actors {missing}"
    actors = shipped_actors()
    assert {(actor.spec["task"], actor.spec["quality"]) for actor in actors} == wanted
    return actors


def test_shipped_actors_load_act_and_state_their_score() -> None:
    actors = _shipped_actors()
    for actor in actors:
        spec = actor.metadata
        task = TASKS[spec["task"]]
        assert (behavior.POLICIES_DIR / spec["weights_file"]).stat().st_size < 1_000_000
        evaluation = spec["evaluation"]
        assert evaluation["episodes"] >= 10
        assert evaluation["normalized_mean"] == pytest.approx(
            float(np.mean(normalized_score(task, np.asarray(evaluation["returns"])))), abs=1e-6)
        rng = np.random.default_rng(0)
        obs = rng.standard_normal(task.obs_dim) * 0.1
        action, log_prob = actor.act(obs, rng)
        assert action.shape == (task.act_dim,) and math.isfinite(log_prob)


def test_shipped_actors_log_probs_match_their_datasets(tmp_path: Path) -> None:
    actors = _shipped_actors()
    for actor in actors:
        name = f"{actor.spec['task']}-{actor.spec['quality']}"
        path = make_dataset(name, steps=300, seed=0, out=tmp_path / f"{name}.hdf5", progress=False)
        dataset = load_dataset(path)
        assert dataset.attrs["behavior_policy_sha256"] == actor.checksum()
        np.testing.assert_allclose(dataset.behavior_log_probs, actor.log_prob(dataset.observations, dataset.actions),
                                   rtol=1e-5, atol=1e-4)
        assert behavior_policy_for(dataset).checksum() == actor.checksum()  # exact, not a BC fit
