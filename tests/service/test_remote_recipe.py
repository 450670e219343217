"""The remote adept-sac recipe is the in-process one: the same batches, penalty, training and scores.

``adept_client`` cannot import adept-env, so it carries its own copies of what the recipe needs (the
mixed replay buffer, the value penalty's formula, D4RL's reference returns, the real-simulator
evaluation); each is checked here against adept-env's original.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from .conftest import ENV_ID, TOKENS

ROOT = Path(__file__).resolve().parents[2]


def example_module():
    spec = importlib.util.spec_from_file_location("train_sac_remote", ROOT / "clients/examples/train_sac_remote.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_reference_returns_are_adept_envs() -> None:
    from adept_client.evaluation import GYMNASIUM_IDS, MAX_EPISODE_STEPS, REFERENCE_RETURNS, normalized_score, task_of

    from adept_env.tasks import TASKS
    from adept_env.tasks import normalized_score as library_score

    assert set(REFERENCE_RETURNS) == set(TASKS) == set(GYMNASIUM_IDS)
    for name, task in TASKS.items():
        assert REFERENCE_RETURNS[name] == (task.ref_min_score, task.ref_max_score)
        assert GYMNASIUM_IDS[name] == task.env_id and task.max_episode_steps == MAX_EPISODE_STEPS
        assert normalized_score(f"ADEPT-{name}-random", 1234.5) == library_score(name, 1234.5)
    assert task_of("ADEPT-walker2d-medium-replay") == "walker2d" and task_of("Hopper") == "hopper"
    with pytest.raises(ValueError, match="Valid tasks: halfcheetah, hopper, walker2d"):
        task_of("ADEPT-hoper-random")


def test_client_evaluation_scores_as_adept_env_evaluation() -> None:
    from adept_client.evaluation import evaluate

    from adept_env.training.evaluation import evaluate as library_evaluate

    weights = np.random.default_rng(0).normal(0, 0.3, (11, 3)).astype(np.float32)

    def policy(obs: np.ndarray) -> np.ndarray:
        return np.tanh(obs @ weights)

    ours = evaluate(policy, "ADEPT-hopper-random", episodes=2, seed=5)
    theirs = library_evaluate(policy, "hopper", episodes=2, seed=5)
    np.testing.assert_array_equal(ours.returns, theirs.returns)
    np.testing.assert_array_equal(ours.lengths, theirs.lengths)
    assert ours.score_mean == pytest.approx(theirs.score_mean) and ours.score_std == pytest.approx(theirs.score_std)
    assert ours.as_dict()["episodes"] == 2
    with pytest.raises(ValueError, match="episodes must be >= 1"):
        evaluate(policy, "hopper", episodes=0)


def test_the_evaluation_module_imports_without_mujoco_and_says_what_to_install() -> None:
    script = ("import sys\n"
              "sys.modules['mujoco'] = None  # as if MuJoCo were not installed\n"
              "from adept_client import evaluation\n"
              "assert not evaluation.mujoco_available()\n"
              "try:\n"
              "    evaluation.evaluate(lambda obs: obs[:6], 'halfcheetah', episodes=1)\n"
              "except ModuleNotFoundError as exc:\n"
              "    assert \"adept-client[mujoco]\" in str(exc), exc\n"
              "else:\n"
              "    raise AssertionError('evaluate ran without MuJoCo')\n"
              "assert not {'torch', 'adept_env', 'server'} & {m.split('.')[0] for m in sys.modules}\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr


def test_value_std_is_adept_envs_formula() -> None:
    from adept_client.sb3 import value_std

    from adept_env.tasks import get_task
    from adept_env.training.value_penalty import value_std as library_value_std

    task = get_task("hopper")
    rng = np.random.default_rng(1)
    draws = rng.normal(0, 0.3, (6, 4, task.obs_dim)).astype(np.float32)
    draws[:, :, 0] += 1.25  # healthy heights, and a few draws that fall
    draws[0, 1, 0], draws[3, 2, 0] = 0.2, 0.5
    linear = torch.nn.Linear(task.obs_dim, 1)
    inputs = draws * 2.0  # what the agent sees (e.g. normalised) differs from the raw draws

    def value(states: torch.Tensor) -> torch.Tensor:
        return linear(states).squeeze(-1)

    terminated = task.is_terminated(draws.reshape(-1, task.obs_dim)).reshape(6, 4)
    assert terminated.sum() >= 2
    ours = value_std(value, torch.as_tensor(inputs), terminated)
    theirs = library_value_std(value, draws, task, value_inputs=inputs)
    torch.testing.assert_close(ours, theirs)
    assert not ours.requires_grad
    with pytest.raises(ValueError, match="terminated has shape"):
        value_std(value, torch.as_tensor(inputs), terminated[:, :2])


def _transitions_of(dataset):
    from adept_client.client import Transitions

    return Transitions(np.arange(len(dataset)), dataset.observations, dataset.actions, dataset.rewards,
                       dataset.next_observations, dataset.terminals, dataset.timeouts, len(dataset), "local")


def test_the_remote_buffer_draws_the_in_process_buffers_batches(small_datasets) -> None:
    from adept_client.sb3 import RemoteMixedReplayBuffer
    from stable_baselines3 import SAC

    from adept_env.data.dataset import load_dataset
    from adept_env.sb3 import MixedReplayBuffer

    dataset = load_dataset(small_datasets["hopper"])
    task, n_envs, k = dataset.task, 3, 4
    env = gym.make(task.env_id)
    model = SAC("MlpPolicy", env, policy_kwargs={"net_arch": [16, 16]}, seed=0, device="cpu")
    kwargs = {"real_ratio": 0.5, "value_penalty": 2.0}
    local = MixedReplayBuffer(200, env.observation_space, env.action_space, "cpu", n_envs=n_envs,
                              dataset=dataset, **kwargs)
    remote = RemoteMixedReplayBuffer(200, env.observation_space, env.action_space, "cpu", n_envs=n_envs,
                                     dataset=_transitions_of(dataset), **kwargs)
    for buffer in (local, remote):
        buffer.attach(model)
    rng = np.random.default_rng(2)
    for _ in range(50):
        obs = rng.normal(0, 0.3, (n_envs, task.obs_dim)).astype(np.float32) + np.eye(1, task.obs_dim, 0) * 1.25
        next_obs = obs + rng.normal(0, 0.05, obs.shape).astype(np.float32)
        action = rng.uniform(-1, 1, (n_envs, task.act_dim)).astype(np.float32)
        reward = rng.normal(size=n_envs).astype(np.float32)
        draws = next_obs[:, None] + rng.normal(0, 0.2, (n_envs, k, task.obs_dim)).astype(np.float32)
        done = rng.uniform(size=n_envs) < 0.1
        infos_local = [{"next_samples": draws[i]} for i in range(n_envs)]
        infos_remote = [{"next_samples": draws[i], "next_samples_terminated": task.is_terminated(draws[i])}
                        for i in range(n_envs)]
        local.add(obs, next_obs, action, reward, done, infos_local)
        remote.add(obs, next_obs, action, reward, done, infos_remote)
    for batch_size in (64, 7):
        np.random.seed(11)
        a = local.sample(batch_size)
        np.random.seed(11)
        b = remote.sample(batch_size)
        for name in a._fields:
            torch.testing.assert_close(getattr(b, name), getattr(a, name), rtol=0, atol=0, msg=name)
        assert remote.penalty_mean == pytest.approx(local.penalty_mean) and remote.penalty_mean > 0
    with pytest.raises(ValueError, match="next_samples_terminated"):
        remote.add(obs, next_obs, action, reward, done, infos_local)
    with pytest.raises(ValueError, match="real_ratio"):
        RemoteMixedReplayBuffer(10, env.observation_space, env.action_space, dataset=_transitions_of(dataset),
                                real_ratio=1.5)
    with pytest.raises(TypeError, match="RemoteSession"):
        RemoteMixedReplayBuffer(10, env.observation_space, env.action_space, dataset="hopper-random")


def test_remote_sac_trains_exactly_as_in_process_sac(live_server, small_datasets, quick_model_path) -> None:
    """One seed, the same world model and data: SAC over the server (real rows fetched in pages, draws over the
    wire, the value penalty on) ends with the very weights of SAC over the in-process env and buffer."""
    from adept_client.sb3 import RemoteMixedReplayBuffer, RemoteVecEnv
    from stable_baselines3 import SAC

    from adept_env.data.dataset import load_dataset
    from adept_env.diffusion import WorldModel
    from adept_env.envs.config import EnvConfig
    from adept_env.envs.core import WorldModelCore
    from adept_env.sb3 import MixedReplayBuffer, WorldModelVecEnv

    settings = {"horizon": 3, "penalty": 0.5, "n_samples": 4}  # settings of an engine no other test uses
    dataset = load_dataset(small_datasets["halfcheetah"])
    core = WorldModelCore(dataset, WorldModel.load(quick_model_path), EnvConfig(**settings))
    local_env = WorldModelVecEnv(num_envs=2, core=core, seed=7)
    remote_env = RemoteVecEnv(f"127.0.0.1:{live_server.grpc_port}", ENV_ID, num_envs=2, seed=7, overrides=settings,
                              draws=4, token=TOKENS[1])
    buffers = {local_env: (MixedReplayBuffer, {"dataset": dataset}),
               remote_env: (RemoteMixedReplayBuffer, {"dataset": remote_env.session, "page_rows": 1_200})}
    models = []
    for env, (buffer_class, buffer_kwargs) in buffers.items():
        model = SAC("MlpPolicy", env, batch_size=32, learning_starts=40, buffer_size=1_000, seed=3, device="cpu",
                    policy_kwargs={"net_arch": [32, 32]}, replay_buffer_class=buffer_class,
                    replay_buffer_kwargs={**buffer_kwargs, "real_ratio": 0.5, "value_penalty": 1.0})
        model.replay_buffer.attach(model)
        model.learn(160)  # 80 vector steps: 20 of warm-up, 60 gradient updates
        models.append(model)
    local, remote = models
    assert len(remote.replay_buffer.dataset.rewards) == len(dataset)
    np.testing.assert_array_equal(remote.replay_buffer.observations, local.replay_buffer.observations)
    np.testing.assert_array_equal(remote.replay_buffer.next_samples, local.replay_buffer.next_samples)
    assert remote.replay_buffer.penalty_mean == pytest.approx(local.replay_buffer.penalty_mean)
    assert remote.replay_buffer.penalty_mean > 0
    for (name, theirs), (_, ours) in zip(local.policy.state_dict().items(), remote.policy.state_dict().items(),
                                         strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0, msg=name)
    remote_env.close()


def test_the_examples_defaults_are_adept_env_trains_adept_sac_settings() -> None:
    from adept_env.envs.config import EnvConfig
    from adept_env.training.config import TrainConfig

    defaults = example_module().parser().parse_args([])
    config = TrainConfig(algo="adept-sac", updates=60_000)
    assert (defaults.num_envs, defaults.batch_size, defaults.real_ratio, defaults.critics) == (
        config.sac_envs, config.batch_size, config.real_ratio, config.sac_critics)
    assert (defaults.horizon, defaults.penalty, defaults.value_penalty, defaults.value_samples) == (
        config.horizon, config.penalty, config.value_penalty, config.value_samples)
    assert (defaults.refit_every, defaults.refit_steps, defaults.eval_every, defaults.eval_episodes) == (
        config.refit_every, config.refit_steps, config.eval_every, config.eval_episodes)
    assert defaults.seed == config.seed and defaults.device == config.device
    assert EnvConfig().horizon == defaults.horizon


def test_the_example_refuses_bad_settings(capsys: pytest.CaptureFixture[str]) -> None:
    module = example_module()
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--steps", "0", "--real-ratio", "2", "--value-samples", "1"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--steps must be >= 1, got 0" in err and "--real-ratio must be in [0, 1]" in err
    assert "--value-samples must be >= 2" in err
