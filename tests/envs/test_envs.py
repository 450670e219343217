"""The ADEPT environments: checkers, seeding, vector stepping, SB3, policy updates and refits."""

from __future__ import annotations

import shutil
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import adept_env
from adept_env.data.dataset import DatasetUnavailableError, load_dataset
from adept_env.envs import EnvConfig, WorldModelCore, WorldModelEnv, WorldModelVectorEnv
from adept_env.sb3 import MixedReplayBuffer, PolicySync, WorldModelVecEnv
from adept_env.target_policy import PolicyMismatchError
from adept_env.tasks import UnknownNameError


@pytest.fixture
def dataset(small_datasets: dict[str, Path]):
    return load_dataset(small_datasets["halfcheetah"])


@pytest.fixture
def make_core(dataset, quick_model_path: Path):
    from adept_env.diffusion import WorldModel

    def make(**overrides) -> WorldModelCore:
        return WorldModelCore(dataset, WorldModel.load(quick_model_path), EnvConfig(**overrides))

    return make


def rollout(env: gym.Env, seed: int, steps: int = 12) -> list[np.ndarray]:
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(0)
    seen = [obs]
    for _ in range(steps):
        obs, reward, terminated, truncated, _ = env.step(rng.uniform(-1, 1, 6).astype(np.float32))
        seen += [obs, np.array([reward])]
        if terminated or truncated:
            seen.append(env.reset()[0])
    return seen


def test_registered_ids() -> None:
    ids = adept_env.env_ids()
    assert len(ids) == 15 and "ADEPT-walker2d-medium-replay" in ids
    for env_id in ids:
        spec = gym.spec(env_id)
        assert spec.vector_entry_point is not None


def test_gymnasium_and_sb3_env_checkers(make_core) -> None:
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = WorldModelEnv(core=make_core())
    check_env(env, skip_render_check=True)
    sb3_check_env(WorldModelEnv(core=make_core()), warn=True)


def test_reset_seed_reproduces_episodes(make_core) -> None:
    a = rollout(WorldModelEnv(core=make_core()), seed=3)
    b = rollout(WorldModelEnv(core=make_core()), seed=3)
    c = rollout(WorldModelEnv(core=make_core()), seed=4)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])


def test_penalty_horizon_and_info(make_core) -> None:
    env = WorldModelEnv(core=make_core(horizon=3, penalty=2.0))
    env.reset(seed=0)
    for t in range(3):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert obs.dtype == np.float32 and obs.shape == (17,)
        assert reward == pytest.approx(info["raw_reward"] - 2.0 * info["uncertainty"], abs=1e-5)
        assert info["uncertainty"] > 0 and info["model_version"] == 0
        draws = info["next_samples"]
        assert draws.shape[1:] == (17,) and len(draws) >= 2  # the K draws behind obs
        np.testing.assert_allclose(draws.mean(0), obs, atol=1e-5)
        assert truncated == (t == 2) and not terminated
    with pytest.raises(gym.error.ResetNeeded):
        env.step(env.action_space.sample())


def test_uncertainty_threshold_halts(make_core) -> None:
    env = WorldModelEnv(core=make_core(uncertainty_threshold=1e-6))
    env.reset(seed=0)
    _, _, terminated, truncated, info = env.step(env.action_space.sample())
    assert terminated and not truncated and info["halted"]


def test_bad_actions_are_rejected(make_core) -> None:
    env = WorldModelEnv(core=make_core())
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"shape \(1, 6\)"):
        env.step(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="NaN"):
        env.step(np.full(6, np.nan, np.float32))


def test_vector_env_shapes_and_autoreset(make_core) -> None:
    venv = WorldModelVectorEnv(num_envs=5, core=make_core(horizon=2))
    obs, _ = venv.reset(seed=0)
    assert obs.shape == (5, 17) and venv.action_space.shape == (5, 6)
    actions = np.zeros((5, 6), np.float32)
    obs1, r1, te1, tr1, info = venv.step(actions)
    assert r1.shape == (5,) and info["uncertainty"].shape == (5,) and not (te1 | tr1).any()
    obs2, r2, te2, tr2, _ = venv.step(actions)
    assert tr2.all()  # horizon 2
    obs3, r3, te3, tr3, info3 = venv.step(actions)  # next-step autoreset: fresh start states, reward 0
    np.testing.assert_array_equal(r3, 0.0)
    assert not (te3 | tr3).any() and not info3["_uncertainty"].any()
    assert not np.array_equal(obs3, obs2)


def test_make_vec_uses_the_native_vector_env(small_datasets: dict[str, Path], quick_model_path: Path,
                                             isolated_home: Path) -> None:
    target = isolated_home / "datasets" / "halfcheetah-random.hdf5"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(small_datasets["halfcheetah"], target)
    venv = gym.make_vec("ADEPT-halfcheetah-random", num_envs=8, model_path=str(quick_model_path), progress=False)
    assert isinstance(venv, WorldModelVectorEnv)
    obs, _ = venv.reset(seed=0)
    assert obs.shape == (8, 17)
    env = gym.make("ADEPT-halfcheetah-random", model_path=str(quick_model_path), horizon=7, progress=False)
    assert env.unwrapped.core.config.horizon == 7
    assert env.reset(seed=0)[0].shape == (17,)


def test_unknown_option_and_missing_dataset_messages() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean 'horizon'"):
        gym.make("ADEPT-hopper-random", horizn=3)
    with pytest.raises(DatasetUnavailableError, match="adept-env data make hopper-medium"):
        gym.make("ADEPT-hopper-medium")


def test_sb3_vecenv_semantics(make_core) -> None:
    venv = WorldModelVecEnv(num_envs=3, core=make_core(horizon=2), seed=0)
    obs = venv.reset()
    assert obs.shape == (3, 17)
    venv.step(np.zeros((3, 6), np.float32))
    obs, rewards, dones, infos = venv.step(np.zeros((3, 6), np.float32))
    assert dones.all()
    for i, info in enumerate(infos):
        assert info["TimeLimit.truncated"] is True
        assert info["terminal_observation"].shape == (17,)
        assert not np.array_equal(info["terminal_observation"], obs[i])  # obs is the new episode's start


def test_policy_update_with_wrong_dims_is_rejected(make_core) -> None:
    from stable_baselines3 import SAC

    core = make_core()
    hopper_like = gym.spaces.Box(-np.inf, np.inf, (11,), np.float32)
    fake_env = gym.make("Pendulum-v1")
    fake_env.observation_space = hopper_like
    fake_env.action_space = gym.spaces.Box(-1, 1, (3,), np.float32)
    model = SAC("MlpPolicy", fake_env, policy_kwargs={"net_arch": [8]}, buffer_size=10)
    with pytest.raises(PolicyMismatchError, match=r"shape \(11,\); this environment needs \(17,\)"):
        core.update_policy(model)
    with pytest.raises(PolicyMismatchError, match="one finite log-prob per pair"):
        core.update_policy(lambda obs, act: np.zeros((len(obs), 2)))
    with pytest.raises(PolicyMismatchError, match="cannot use int"):
        core.update_policy(3)
    assert core.policy is None and core.policy_updates == 0


def test_refit_swaps_model_and_bumps_version_while_stepping(make_core, dataset) -> None:
    core = make_core(horizon=1000)
    env = WorldModelEnv(core=core)
    env.reset(seed=0)
    with pytest.raises(RuntimeError, match="update_policy"):
        core.refit()
    old_model = core.model
    old_params = [t.clone() for t in old_model.nets.state_dict().values()]
    # A target policy that prefers positive first action coordinates.
    core.update_policy(lambda obs, act: 4.0 * act[:, 0])
    job = core.refit(blocking=False, steps=60)
    assert job.status == "running" and 0 < job.ess_fraction < 1
    versions = []
    while not job.wait(timeout=0.0):
        _, _, terminated, truncated, info = env.step(env.action_space.sample())
        versions.append(info["model_version"])
        if terminated or truncated:  # a slow refit can outlast an episode
            env.reset()
    assert job.status == "done", job.error
    assert job.model_version == 1 and core.model_version == 1 and core.model is not old_model
    assert versions and versions[0] == 0 and versions == sorted(versions)  # the old model served meanwhile
    env.reset()
    assert env.step(env.action_space.sample())[4]["model_version"] == 1  # and the new one after the swap
    env.reset()
    assert env.step(env.action_space.sample())[4]["model_version"] == 1
    # the refit worked on a copy: the old model object was not modified in place
    after = list(old_model.nets.state_dict().values())
    assert all(torch.equal(a, b) for a, b in zip(old_params, after, strict=True))
    assert old_model.version == 0


def test_a_refit_that_cannot_improve_says_it_kept_its_starting_weights(make_core) -> None:
    import dataclasses

    core = make_core()
    core.update_policy(lambda obs, act: 4.0 * act[:, 0])
    # an absurd learning rate makes every refit step worse than the start on the held-out loss
    core.model.config = dataclasses.replace(core.model.config, refit_learning_rate=50.0, eval_every=10)
    job = core.refit(blocking=True, steps=20)
    assert job.status == "done" and job.kept_start and job.summary()["kept_start"] is True
    assert core.model_version == 1  # a refit still installs a version, with the old weights


def test_automatic_refit_every_n_updates(make_core) -> None:
    core = make_core(refit_every=2, refit_steps=20)
    policy = lambda obs, act: np.zeros(len(obs))  # noqa: E731
    core.update_policy(policy)
    assert core.jobs == []
    core.update_policy(policy)
    assert len(core.jobs) == 1
    core.wait_for_refits()
    assert core.model_version == 1


def test_sb3_sac_trains_against_the_env_with_sync_and_mixed_buffer(make_core, dataset) -> None:
    from stable_baselines3 import SAC

    venv = WorldModelVecEnv(num_envs=4, core=make_core(refit_steps=20), seed=0)
    model = SAC(
        "MlpPolicy",
        venv,
        learning_starts=200,
        batch_size=64,
        buffer_size=4000,
        policy_kwargs={"net_arch": [32, 32]},
        replay_buffer_class=MixedReplayBuffer,
        replay_buffer_kwargs={"dataset": dataset, "real_ratio": 0.5},
        seed=0,
        device="cpu",
    )
    sync = PolicySync(every=1000, refit=True)
    model.learn(2000, callback=sync)
    assert model.num_timesteps == 2000
    assert sync.pushes == 2 and sync.cores == [venv.core]
    venv.core.wait_for_refits()
    assert venv.core.model_version >= 1
    batch = model.replay_buffer.sample(64)
    assert batch.observations.shape == (64, 17) and batch.rewards.shape == (64, 1)
