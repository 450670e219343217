"""RLlib, unmodified, trains SAC against the service: 2 env runners step one shared world model over gRPC.

Each env runner's env is an ``adept_client.RemoteEnv`` (a server session) with the same token and
overrides, so every session steps one engine; ``PushPolicyCallback`` sends the learner's policy as
log-probs of dataset rows and starts refits. Once on a local Ray, once on a two-node Ray cluster
simulated on this machine (one env runner per node).
"""

from __future__ import annotations

import collections
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from .conftest import ENV_ID, TOKENS

pytest.importorskip("ray.rllib")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*")  # Ray's own, on its internals

ITERATIONS = 4
GCS_WAIT_S = "120"  # Ray waits 30 s for its GCS to start by default: too short on a busy 2-core machine


@pytest.fixture
def stepped(live_server, monkeypatch: pytest.MonkeyPatch) -> collections.Counter:
    """Step calls the server answers during the test, per (engine settings hash, session id)."""
    core = live_server.core
    counts: collections.Counter = collections.Counter()
    lock = threading.Lock()
    original = core.step

    def counting(owner: str, session_id: str, *args: Any, **kwargs: Any) -> Any:
        session = core._sessions.get(session_id)
        if session is not None:
            with lock:
                counts[session.engine.key[2], session_id] += 1
        return original(owner, session_id, *args, **kwargs)

    monkeypatch.setattr(core, "step", counting)
    return counts


@pytest.fixture
def local_ray(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A fresh single-node Ray (never another Ray running on this machine: address="local")."""
    import ray

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_gcs_server_port_wait_time_s", GCS_WAIT_S)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture
def two_node_ray(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Two Ray nodes of one CPU each, simulated on this machine; the driver joins that cluster."""
    import ray
    from ray.cluster_utils import Cluster

    monkeypatch.setenv("RAY_gcs_server_port_wait_time_s", GCS_WAIT_S)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        try:
            yield cluster
        finally:
            ray.shutdown()
    finally:
        cluster.shutdown()


def _sac_module(action_space: Any) -> Any:
    import gymnasium as gym
    from ray.rllib.algorithms.sac import SACConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    config = SACConfig().rl_module(model_config=DefaultModelConfig(fcnet_hiddens=[16]))
    spec = config.get_default_rl_module_spec()
    return RLModuleSpec(module_class=spec.module_class, catalog_class=spec.catalog_class,
                        observation_space=gym.spaces.Box(-np.inf, np.inf, (5,), np.float32),
                        action_space=action_space, model_config=config.model_config).build()


def test_log_probs_are_those_of_the_actions_sac_samples() -> None:
    """module_log_probs(a) equals the log-prob SAC's own sampler reports for a (tanh-squashed Gaussian)."""
    import gymnasium as gym
    import torch
    from adept_client.rllib import module_log_probs
    from ray.rllib.core.columns import Columns

    torch.manual_seed(0)
    module = _sac_module(gym.spaces.Box(-1, 1, (3,), np.float32))
    observations = np.random.default_rng(0).normal(size=(500, 5)).astype(np.float32)
    with torch.no_grad():
        logits = module.forward_exploration({Columns.OBS: torch.as_tensor(observations)})[Columns.ACTION_DIST_INPUTS]
        actions, expected = module.get_exploration_action_dist_cls().from_logits(logits).sample_and_logp()
    actions, expected = actions.numpy(), expected.numpy()
    got = module_log_probs(module, observations, actions, chunk=128)
    assert got.dtype == np.float64 and got.shape == (500,)
    interior = np.abs(actions).max(1) < 0.99  # atanh of float32 actions near +-1 loses digits
    assert interior.mean() > 0.8
    np.testing.assert_allclose(got[interior], expected[interior], atol=1e-4)
    # by hand: a Gaussian in atanh(a) (log std clipped to [-5, 2]) minus the tanh Jacobian
    loc, log_std = np.split(logits.numpy().astype(np.float64), 2, axis=1)
    log_std = np.clip(log_std, -5, 2)
    u = np.arctanh(actions.astype(np.float64))
    by_hand = (-0.5 * ((u - loc) / np.exp(log_std)) ** 2 - log_std - 0.5 * np.log(2 * np.pi)
               - np.log1p(-np.tanh(u) ** 2)).sum(1)
    np.testing.assert_allclose(got[interior], by_hand[interior], atol=1e-4)
    edge = module_log_probs(module, observations[:2], np.array([[1, -1, 1], [-1, 1, 0]], np.float32))
    assert np.all(np.isfinite(edge))  # dataset actions on the bounds stay finite


def test_env_actions_map_to_the_modules_range() -> None:
    from adept_client.rllib import normalized_actions

    low, high = np.array([-2.0, 0.0]), np.array([2.0, 1.0])
    mapped, log_det = normalized_actions(np.array([[-2.0, 0.0], [0.0, 0.5], [2.0, 1.0]]), low, high)
    np.testing.assert_allclose(mapped, [[-1, -1], [0, 0], [1, 1]])
    assert log_det == pytest.approx(np.log(2.0) + np.log(0.5))
    same, zero = normalized_actions(np.array([[0.3, -0.7]]), -np.ones(2), np.ones(2))
    np.testing.assert_allclose(same, [[0.3, -0.7]], rtol=1e-6)
    assert zero == 0.0
    with pytest.raises(ValueError, match="finite action bounds"):
        normalized_actions(np.zeros((1, 1)), np.array([-np.inf]), np.array([np.inf]))


class _FakeSession:
    """Just enough of a RemoteSession for the callback's schedule: a refit runs until ``finish()``."""

    def __init__(self) -> None:
        from types import SimpleNamespace

        self.info = SimpleNamespace(dataset_rows=100, dataset_fingerprint="f")
        self.action_low, self.action_high = -np.ones(6, np.float32), np.ones(6, np.float32)
        self.version, self.jobs, self.running, self.sent = 0, 0, False, []

    def dataset_pairs(self, sample_size: int, seed: int) -> tuple:
        return np.arange(sample_size), np.zeros((sample_size, 17), np.float32), np.zeros((sample_size, 6), np.float32)

    def update_policy_log_probs(self, indices: np.ndarray, log_probs: np.ndarray) -> Any:
        from types import SimpleNamespace

        self.sent.append((indices, log_probs))
        return SimpleNamespace(model_version=self.version, HasField=lambda name: False)

    def _state(self) -> Any:
        from adept_client.client import RefitState

        return RefitState(self.jobs, "running" if self.running else "done", self.version, 1.0, 0.5, 0.0, "", True)

    def refit(self, steps: int | None = None) -> Any:
        from adept_client import FailedPreconditionError

        if self.running:
            raise FailedPreconditionError("refit still running", "FAILED_PRECONDITION")
        self.jobs, self.running = self.jobs + 1, True
        return self._state()

    def finish(self) -> None:
        self.running, self.version = False, self.version + 1

    def get_refit(self, job_id: int) -> Any:
        return self._state()

    def reset(self) -> tuple:
        return np.zeros((1, 17), np.float32), self.version

    def close(self) -> None:
        pass


def test_the_callback_pushes_on_schedule_and_skips_refits_while_one_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    import adept_client.rllib as rllib

    monkeypatch.setattr(rllib, "learner_log_probs", lambda algo, obs, act, module_id=None: -np.abs(act).sum(1) - 1)
    algo = SimpleNamespace(config=SimpleNamespace(normalize_actions=True, env_config={}))
    callback = rllib._PushPolicy(every_env_steps=100, refit_steps=3, sample_size=1_000)
    session = callback._session = _FakeSession()

    def train(steps: int) -> dict:
        result = {"env_runners": {"num_env_steps_sampled_lifetime": steps}}
        callback.on_train_result(algorithm=algo, result=result)
        return result["adept"]

    assert train(40)["policy_pushes"] == 0 and train(80)["policy_pushes"] == 0
    metrics = train(120)  # 100 steps since the start: push, refit
    assert metrics["policy_pushes"] == 1 and metrics["refits_started"] == 1 and metrics["refit_running"]
    indices, log_probs = session.sent[0]
    assert len(indices) == 100 and np.all(log_probs == -1)  # the whole (100-row) dataset, sample capped
    metrics = train(230)  # due again, but the refit still runs: push without a refit
    assert metrics["policy_pushes"] == 2 and metrics["refits_started"] == 1 and metrics["refits_skipped"] == 1
    session.finish()
    metrics = train(260)  # not due; the finished refit is noticed
    assert metrics["refits_done"] == 1 and not metrics["refit_running"] and metrics["model_version"] == 1
    assert metrics["last_refit_ess_fraction"] == 0.5 and metrics["policy_pushes"] == 2
    session.running = True  # another client's refit on the shared engine: FAILED_PRECONDITION, skipped
    assert train(400)["refits_skipped"] == 2
    assert rllib._PushPolicy(every=2).every == 2
    with pytest.raises(ValueError, match="every must be"):
        rllib._PushPolicy(every=0)


def _sac(live_server, overrides: dict[str, Any], remote_learner: bool = False) -> Any:
    """The example's own SAC config (clients/examples/train_rllib_remote.py), at tiny sizes."""
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "clients" / "examples" / "train_rllib_remote.py"
    spec = importlib.util.spec_from_file_location("train_rllib_remote", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    args = example.parser().parse_args([
        "--target", f"127.0.0.1:{live_server.grpc_port}", "--token", TOKENS[0], "--env-id", ENV_ID,
        *(f"--override={key}={json.dumps(value)}" for key, value in overrides.items()),
        "--env-runners", "2", "--rollout-fragment-length", "8", "--batch-size", "32", "--learning-starts", "32",
        "--hidden", "32", "32", "--steps-per-iteration", "48", "--push-every", "2", "--refit-steps", "5",
        "--sample-size", "1000", "--seed", "0"])
    config = example.sac_config(args, timeout_s=60.0)
    config.env_runners(num_cpus_per_env_runner=1)  # one runner per node on the two-node cluster
    config.training(replay_buffer_config={"type": "PrioritizedEpisodeReplayBuffer", "capacity": 5_000})
    if remote_learner:  # a Learner actor: the callback's log-probs are computed there
        config.learners(num_learners=1, num_cpus_per_learner=0)
    return config.build_algo()


def _train_and_check(live_server, stepped: collections.Counter, overrides: dict[str, Any],
                     check: Any = None, remote_learner: bool = False) -> list[dict]:
    """Train ITERATIONS iterations; check sessions, pushes, a refit, the served version (and ``check(algo)``)."""
    from adept_client import connect
    from adept_client.rllib import push_callbacks

    with connect(f"127.0.0.1:{live_server.grpc_port}", token=TOKENS[0], timeout_s=60.0) as client:
        probe = client.create_session(ENV_ID, 1, overrides=overrides)  # a session of the runners' engine
        engine = live_server.core._sessions[probe.session_id].engine
        _, before = probe.reset()
        algo = _sac(live_server, overrides, remote_learner)
        try:
            results = [algo.train() for _ in range(ITERATIONS)]
            (callback,) = push_callbacks(algo)
            final = callback.wait(algo, timeout_s=120.0)
            assert final is not None and final.state == "done", final

            sessions = {sid for (key, sid), n in stepped.items() if key == engine.key[2] and n > 0}
            assert len(sessions) >= 2, stepped  # both env runners stepped the one engine through the server
            assert probe.session_id not in sessions
            steps = results[-1]["env_runners"]["num_env_steps_sampled_lifetime"]
            assert sum(n for (key, _), n in stepped.items() if key == engine.key[2]) >= steps > 0

            metrics = results[-1]["adept"]
            assert metrics["policy_pushes"] == callback.pushes == ITERATIONS // 2, metrics
            assert metrics["refits_started"] >= 1 and metrics["refits_failed"] == 0, metrics
            _, after = probe.reset()
            assert after > before and after == final.model_version == engine.core.model_version, (before, after)
            if check is not None:
                check(algo)
        finally:
            for callback in push_callbacks(algo):
                with contextlib.suppress(Exception):  # leave no refit running for the other tests
                    callback.wait(algo, timeout_s=120.0)
                callback.close()
            algo.stop()
            deadline = time.monotonic() + 30
            while engine.sessions > 1 and time.monotonic() < deadline:  # the runners' envs close their sessions
                time.sleep(0.2)
            probe.close()
    assert engine.sessions == 0, "the env runners' sessions outlived algo.stop()"
    return results


@pytest.mark.slow
@pytest.mark.timeout(900)  # Ray start-up and SAC iterations: minutes on a busy 2-core machine
def test_sac_with_two_env_runners_on_local_ray(live_server, stepped, local_ray) -> None:
    results = _train_and_check(live_server, stepped, {"horizon": 40})
    assert len(results) == ITERATIONS
    returns = [r["env_runners"].get("episode_return_mean", np.nan) for r in results]
    assert any(np.isfinite(returns)), returns  # episodes ended (horizon 40) and RLlib reported them


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sac_env_runners_on_two_ray_nodes(live_server, stepped, two_node_ray) -> None:
    import ray

    nodes = {node["NodeID"] for node in ray.nodes() if node["Alive"]}
    assert len(nodes) == 2

    def spread(algo: Any) -> None:
        runner_nodes = algo.env_runner_group.foreach_env_runner(lambda runner: ray.get_runtime_context().get_node_id(),
                                                                local_env_runner=False)
        assert sorted(set(runner_nodes)) == sorted(nodes), runner_nodes  # one env runner on each node
        assert not algo.learner_group.is_local

    _train_and_check(live_server, stepped, {"horizon": 41}, check=spread, remote_learner=True)
