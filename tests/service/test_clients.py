"""The client package: Gymnasium Env/VectorEnv, the SB3 VecEnv, retries, and a gone session."""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest
from adept_client import (
    GrpcClient,
    HttpClient,
    RemoteEnv,
    RemoteVectorEnv,
    RetryPolicy,
    ServerUnavailableError,
    SessionNotFoundError,
)

from .conftest import ENV_ID, TOKENS


def test_remote_env_passes_gymnasium_check_env(target: str) -> None:
    from gymnasium.utils.env_checker import check_env

    env = RemoteEnv(target, ENV_ID, token=TOKENS[0], seed=0)
    check_env(env, skip_render_check=True)
    obs, info = env.reset(seed=1)
    assert env.observation_space.contains(obs) and info["model_version"] >= 0
    for _ in range(5):
        obs, reward, terminated, truncated, info = env.step(np.full(6, 2.0, np.float32))  # clipped client-side
        assert {"raw_reward", "uncertainty", "halted", "model_version"} <= set(info)
    assert truncated  # horizon 5
    env.close()


def test_remote_vector_env_next_step_autoreset(target: str) -> None:
    venv = RemoteVectorEnv(target, ENV_ID, num_envs=8, token=TOKENS[0], seed=0, overrides={"horizon": 1})
    obs, _ = venv.reset(seed=0)
    assert obs.shape == (8, 17) and venv.single_action_space.shape == (6,)
    _, _, _, truncated, _ = venv.step(venv.action_space.sample())
    assert truncated.all()
    _, rewards, _, truncated, info = venv.step(venv.action_space.sample())
    assert not truncated.any() and np.all(rewards == 0) and not info["_raw_reward"].any()
    venv.close()


def test_sb3_vec_env_and_policy_push(live_server, target: str) -> None:
    pytest.importorskip("stable_baselines3")
    from adept_client.sb3 import PushPolicy, RemoteVecEnv
    from stable_baselines3 import SAC

    venv = RemoteVecEnv(target, ENV_ID, num_envs=4, token=TOKENS[0], seed=0, overrides={"horizon": 3})
    venv.seed(0)
    obs = venv.reset()
    assert obs.shape == (4, 17)
    venv.step_async(np.zeros((4, 6), np.float32))
    venv.step_wait()
    venv.step_async(np.zeros((4, 6), np.float32))
    venv.step_wait()
    venv.step_async(np.zeros((4, 6), np.float32))
    _, _, dones, infos = venv.step_wait()
    assert dones.all() and infos[0]["TimeLimit.truncated"] and infos[0]["terminal_observation"].shape == (17,)
    model = SAC("MlpPolicy", venv, learning_starts=8, batch_size=16, train_freq=1, gradient_steps=1,
                policy_kwargs={"net_arch": [32, 32]}, seed=0, device="cpu")
    push = PushPolicy(every=16, refit=True, refit_steps=5)
    model.learn(32, callback=push)
    assert push.pushes >= 1 and push.refits
    state = venv.session.wait_refit(push.refits[-1].job_id, timeout_s=60)
    assert state.state == "done", state
    venv.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("kind", ["grpc", "http"])
def test_retries_with_backoff_then_unavailable(kind: str) -> None:
    port = _free_port()  # nothing listens there
    retry = RetryPolicy(attempts=3, initial_s=0.05, max_s=0.1)
    client = (GrpcClient(f"127.0.0.1:{port}", token="", timeout_s=2.0, retry=retry) if kind == "grpc"
              else HttpClient(f"http://127.0.0.1:{port}", token="", timeout_s=2.0, retry=retry))
    start = time.monotonic()
    with pytest.raises(ServerUnavailableError):
        client.list_environments()
    assert time.monotonic() - start >= 0.05 + 0.1 * 0.8  # two backoff sleeps happened
    client.close()


def test_idle_sessions_expire_with_a_clear_error(live_server, client) -> None:
    session = client.create_session(ENV_ID, num_envs=1, seed=0)
    session.reset()
    core = live_server.core
    timeout = core.config.idle_timeout_s
    with core._lock:
        core._sessions[session.session_id].last_used -= timeout + 1  # as if idle for longer than the timeout
    assert core.expire_idle() >= 1
    with pytest.raises(SessionNotFoundError, match="expired"):
        session.step(np.zeros((1, 6), np.float32))


def test_http_deadline_is_a_deadline_error_not_a_hang() -> None:
    from adept_client.errors import DeadlineExceededError

    with socket.socket() as listener:  # accepts connections, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]
        client = HttpClient(f"http://127.0.0.1:{port}", token="", timeout_s=0.3,
                            retry=RetryPolicy(attempts=1, initial_s=0.01, max_s=0.01))
        start = time.monotonic()
        with pytest.raises(DeadlineExceededError, match="ListEnvironments did not finish within 0.3 s"):
            client.list_environments()
        assert time.monotonic() - start < 5.0
        client.close()


def test_http_client_refuses_a_base_url_without_a_scheme() -> None:
    with pytest.raises(ValueError, match="http:// or https://"):
        HttpClient("localhost:8000")
