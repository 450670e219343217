"""MixedReplayBuffer keeps SB3's sampling (VecNormalize, optimize_memory_usage) under the value penalty."""

from __future__ import annotations

from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from adept_env.data.dataset import OfflineDataset
from adept_env.sb3 import MixedReplayBuffer
from adept_env.tasks import get_task

HOPPER = get_task("hopper")
K = 3


class _HopperShaped(gym.Env):
    """An env with Hopper's spaces; the buffers are filled by hand, so it never really steps."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (HOPPER.obs_dim,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (HOPPER.act_dim,), np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        return np.zeros(HOPPER.obs_dim, np.float32), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        return np.zeros(HOPPER.obs_dim, np.float32), 0.0, False, False, {}


def _dataset(n: int = 16) -> OfflineDataset:
    obs = np.zeros((n, HOPPER.obs_dim), np.float32)
    obs[:, 0] = 1.25  # a standing hopper
    return OfflineDataset(HOPPER, obs, np.zeros((n, HOPPER.act_dim), np.float32), np.ones(n, np.float32), obs.copy(),
                          np.zeros(n, bool), np.zeros(n, bool))


def _vec_normalize(n_envs: int) -> VecNormalize:
    """A VecNormalize with fixed, far-from-identity statistics."""
    venv = VecNormalize(DummyVecEnv([_HopperShaped] * n_envs), clip_obs=1e6, clip_reward=1e6)
    venv.obs_rms.mean = np.full(HOPPER.obs_dim, 0.5)
    venv.obs_rms.var = np.full(HOPPER.obs_dim, 4.0)
    # z: a raw healthy 1.25 normalises to 0.5, which would read as fallen (z < 0.7) if the
    # termination function were given normalised draws.
    venv.obs_rms.mean[0], venv.obs_rms.var[0] = 1.2, 0.01
    venv.ret_rms.var = np.float64(4.0)
    return venv


def _buffer(venv: VecNormalize, value_penalty: float, optimize_memory_usage: bool = False) -> MixedReplayBuffer:
    return MixedReplayBuffer(50, venv.observation_space, venv.action_space, device="cpu", n_envs=venv.num_envs,
                             optimize_memory_usage=optimize_memory_usage,
                             handle_timeout_termination=not optimize_memory_usage, dataset=_dataset(),
                             real_ratio=0.0, value_penalty=value_penalty)


def _fill(buffer: MixedReplayBuffer, steps: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Add ``steps`` transitions per env along one chain of raw healthy states (s_t -> s_t+1).

    Env 0's K draws of each next state coincide (no penalty), env e > 0's spread by 0.1 * e, so a
    draw looked up under the wrong env index gives the wrong penalty.
    """
    rng = np.random.default_rng(seed)
    n_envs, dim = buffer.n_envs, HOPPER.obs_dim
    states = rng.uniform(-0.1, 0.1, (steps + 1, n_envs, dim)).astype(np.float32)
    states[..., 0] = 1.25 + rng.uniform(-0.03, 0.03, (steps + 1, n_envs))  # healthy z, unhealthy once normalised
    rewards = rng.uniform(-1.0, 1.0, (steps, n_envs)).astype(np.float32)
    actions = rng.uniform(-1.0, 1.0, (steps, n_envs, HOPPER.act_dim)).astype(np.float32)
    spread = 0.1 * np.arange(n_envs, dtype=np.float32)[:, None, None]
    draws = np.empty((steps, n_envs, K, dim), np.float32)
    for t in range(steps):
        noise = rng.uniform(-1.0, 1.0, (n_envs, K, dim)).astype(np.float32)
        noise[..., 0] = 0.0  # keep z (and so the raw termination flag) as is
        draws[t] = states[t + 1][:, None] + spread * noise
        buffer.add(states[t], states[t + 1], actions[t], rewards[t], np.zeros(n_envs),
                   [{"next_samples": draws[t, e]} for e in range(n_envs)])
    return {"states": states, "rewards": rewards, "draws": draws}


def _sac(venv: VecNormalize):
    from stable_baselines3 import SAC

    return SAC("MlpPolicy", venv, buffer_size=100, seed=0, device="cpu", policy_kwargs={"net_arch": [16, 16]})


def _penalty(model, draws: np.ndarray, venv: VecNormalize) -> float:
    """Independently: std over the draws of min_j Q'_j at the normalised draw, zero where the raw draw ends."""
    with torch.no_grad():
        states = torch.as_tensor(venv.normalize_obs(draws))
        q = torch.minimum(*model.policy.critic_target(states, model.policy.actor(states, deterministic=True)))
    return float(np.std(q.squeeze(-1).numpy() * ~HOPPER.is_terminated(draws), ddof=1))


def _check_rows(samples, raw: dict[str, np.ndarray], batch_inds: np.ndarray, venv: VecNormalize, beta: float,
                model=None) -> np.ndarray:
    """Check every sampled row against the normalised raw transition it came from; return its env."""
    obs, next_obs = samples.observations.numpy(), samples.next_observations.numpy()
    rewards = samples.rewards.numpy().ravel()
    envs = []
    for row, b in enumerate(batch_inds):
        candidates = venv.normalize_obs(raw["states"][b])  # (n_envs, D): the row is one env's
        matches = [e for e in range(len(candidates)) if np.allclose(obs[row], candidates[e], rtol=1e-5, atol=1e-5)]
        assert len(matches) == 1, f"row {row}: observation is not a normalised stored one"
        e = matches[0]
        np.testing.assert_allclose(next_obs[row], venv.normalize_obs(raw["states"][b + 1, e]), rtol=1e-5, atol=1e-5)
        expected = float(venv.normalize_reward(raw["rewards"][b, e]))
        if beta:
            expected -= beta * _penalty(model, raw["draws"][b, e], venv)
        np.testing.assert_allclose(rewards[row], expected, rtol=1e-4, atol=1e-5)
        envs.append(e)
    return np.array(envs)


@pytest.mark.parametrize("beta", [0.0, 1.5])
def test_synthetic_samples_are_normalised_like_sb3s(beta: float) -> None:
    venv = _vec_normalize(n_envs=2)
    model = _sac(venv)
    buffer = _buffer(venv, beta)
    raw = _fill(buffer, steps=12)
    buffer.attach(model)
    batch_inds = np.arange(12).repeat(3)
    np.random.seed(0)
    samples = buffer._get_samples(batch_inds, env=venv)
    envs = _check_rows(samples, raw, batch_inds, venv, beta, model)
    assert set(envs) == {0, 1}  # both envs drawn, so the draws' env lookup was exercised
    if beta:
        assert buffer.penalty_mean > 0
        assert np.all(samples.rewards.numpy().ravel()[envs == 1] <
                      venv.normalize_reward(raw["rewards"][batch_inds, envs])[envs == 1])


def test_the_penalty_leaves_sb3s_random_draws_alone() -> None:
    venv = _vec_normalize(n_envs=3)
    model = _sac(venv)
    batch_inds = np.arange(10).repeat(4)
    picked, after = [], []
    for beta in (0.0, 1.0):
        buffer = _buffer(venv, beta)
        _fill(buffer, steps=10)
        buffer.attach(model)
        np.random.seed(7)
        picked.append(buffer._get_samples(batch_inds, env=venv).observations)
        after.append(np.random.rand())
    torch.testing.assert_close(picked[0], picked[1])
    assert after[0] == after[1]


def test_optimize_memory_usage_works_with_the_value_penalty() -> None:
    venv = _vec_normalize(n_envs=2)
    model = _sac(venv)
    buffer = _buffer(venv, value_penalty=1.0, optimize_memory_usage=True)
    assert getattr(buffer, "next_observations", None) is None  # SB3's memory layout: s' is the next row's s
    raw = _fill(buffer, steps=12)
    buffer.attach(model)
    np.random.seed(1)
    batch = buffer.sample(32, env=venv)  # SB3's sample: never the row at pos, whose s' is not stored yet
    assert batch.observations.shape == (32, HOPPER.obs_dim)
    batch_inds = np.arange(12).repeat(3)
    samples = buffer._get_samples(batch_inds, env=venv)
    envs = _check_rows(samples, raw, batch_inds, venv, 1.0, model)
    assert set(envs) == {0, 1}


def test_penalty_by_hand_scores_normalised_draws_and_terminates_raw_ones() -> None:
    """beta * std_k[(1 - done(raw s'_k)) * min_j Q'_j(norm(s'_k))], with min Q' = the normalised z."""
    venv = VecNormalize(DummyVecEnv([_HopperShaped]), clip_obs=1e6, clip_reward=1e6)
    venv.obs_rms.mean[0], venv.obs_rms.var[0] = 1.0, 0.25  # z normalises to (z - 1) / 0.5
    venv.ret_rms.var = np.float64(4.0)  # rewards are halved
    buffer = _buffer(venv, value_penalty=2.0)
    draws = np.zeros((K, HOPPER.obs_dim), np.float32)
    draws[:, 0] = [1.25, 1.5, 0.2]  # normalised z: 0.5, 1, -1.6; only the last has fallen (raw z < 0.7)
    obs = np.zeros((1, HOPPER.obs_dim), np.float32)
    obs[0, 0] = 1.25
    buffer.add(obs, obs, np.zeros((1, HOPPER.act_dim)), np.array([3.0]), np.array([0.0]), [{"next_samples": draws}])
    critic = SimpleNamespace(actor=lambda s, deterministic: torch.zeros(len(s), HOPPER.act_dim),
                             critic_target=lambda s, a: (s[:, :1] + 1.0, s[:, :1]))
    buffer.attach(SimpleNamespace(policy=critic))
    samples = buffer._get_samples(np.array([0]), env=venv)
    # values (1 - done) * z_norm = [0.5, 1, 0]: std (ddof 1) = 0.5; reward 3 / 2 - 2 * 0.5. (Raw values
    # [1.25, 1.5, 0] or the termination read off the normalised z, [0, 1, 0], give other stds.)
    np.testing.assert_allclose(buffer.penalty_mean, 0.5, rtol=1e-5)
    np.testing.assert_allclose(samples.rewards.item(), 0.5, rtol=1e-5)
