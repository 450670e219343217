"""The transport compliance suite: every case runs over gRPC and over HTTP against one live server."""

from __future__ import annotations

import json

import grpc
import httpx
import numpy as np
import pytest
from adept_client import (
    FailedPreconditionError,
    InvalidArgumentError,
    ResourceExhaustedError,
    SessionNotFoundError,
    UnauthenticatedError,
    connect,
)
from adept_client.proto.adept.v1 import world_model_pb2 as pb
from adept_client.tensors import to_tensor

from .conftest import ENV_ID, TOKENS

OBS_DIM, ACT_DIM = 17, 6


def send_raw(target: str, method: str, body: bytes, token: str = TOKENS[0],
             content_type: str = "application/x-protobuf") -> tuple[str, str]:
    """Send raw request bytes; return (status name or HTTP status, message)."""
    if target.startswith("http"):
        answer = httpx.post(f"{target}/rpc/adept.v1.WorldModelService/{method}", content=body,
                            headers={"authorization": f"Bearer {token}", "content-type": content_type})
        payload = answer.json() if answer.status_code != 200 else {}
        return str(answer.status_code), payload.get("message", "")
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(f"/adept.v1.WorldModelService/{method}")
        try:
            call(body, metadata=(("authorization", f"Bearer {token}"),), timeout=30)
        except grpc.RpcError as exc:
            return exc.code().name, exc.details()
    return "OK", ""


def assert_serving(client) -> None:
    """The server still answers a full create/reset/step/close after a bad request."""
    session = client.create_session(ENV_ID, num_envs=2, seed=1)
    session.reset()
    out = session.step(np.zeros((2, ACT_DIM), np.float32))
    assert out.observations.shape == (2, OBS_DIM)
    session.close()


def test_list_create_reset_step_close(client) -> None:
    envs = client.list_environments()
    assert [e.env_id for e in envs.environments] == [ENV_ID]
    assert envs.environments[0].obs_dim == OBS_DIM and "horizon" in envs.client_overrides
    session = client.create_session(ENV_ID, num_envs=1, seed=0)
    assert session.observation_shape == (OBS_DIM,) and session.action_shape == (ACT_DIM,)
    assert np.all(session.action_low == -1) and np.all(session.action_high == 1)
    assert np.all(np.isinf(session.observation_low)) and session.info.horizon == 5
    obs, version = session.reset(seed=3)
    assert obs.shape == (1, OBS_DIM) and obs.dtype == np.float32 and version >= 0
    again, _ = session.reset(seed=3)
    np.testing.assert_array_equal(obs, again)  # a seeded reset is reproducible
    out = session.step(np.full((1, ACT_DIM), 0.5, np.float32))
    assert out.observations.shape == (1, OBS_DIM) and np.all(np.isfinite(out.observations))
    assert out.rewards.dtype == np.float32 and out.terminated.dtype == bool
    np.testing.assert_allclose(out.rewards, out.raw_rewards - out.uncertainty, rtol=1e-5, atol=1e-5)
    session.close()
    with pytest.raises(SessionNotFoundError, match="create a new one"):
        session.step(np.zeros((1, ACT_DIM), np.float32))


def test_batched_shapes_and_autoreset(client) -> None:
    n = 64
    session = client.create_session(ENV_ID, num_envs=n, seed=0, overrides={"horizon": 2})
    obs, _ = session.reset()
    assert obs.shape == (n, OBS_DIM)
    actions = np.random.default_rng(0).uniform(-1, 1, (n, ACT_DIM)).astype(np.float32)
    first = session.step(actions, autoreset="next_step")
    for name in ("rewards", "terminated", "truncated", "uncertainty", "raw_rewards", "halted", "reset_mask"):
        assert getattr(first, name).shape == (n,), name
    assert not first.reset_mask.any() and not first.truncated.any()
    second = session.step(actions, autoreset="next_step")
    assert second.truncated.all()  # horizon 2 (halfcheetah never terminates)
    with pytest.raises(FailedPreconditionError, match="ended"):
        session.step(actions)  # autoreset none: ended envs must be reset first
    third = session.step(actions, autoreset="next_step")
    assert third.reset_mask.all() and not third.truncated.any() and np.all(third.rewards == 0)
    session.step(actions, autoreset="same_step")
    same = session.step(actions, autoreset="same_step")
    assert same.reset_mask.all() and same.final_observations.shape == (n, OBS_DIM)
    assert not np.allclose(same.final_observations, same.observations)
    obs, _ = session.reset(mask=np.arange(n) < 3)
    assert obs.shape == (n, OBS_DIM)
    session.close()


def test_update_policy_snapshot_and_refit_bump_version(client, live_server) -> None:
    from adept_env.data.behavior import actor_paths, shipped_actor_stem

    weights, spec = actor_paths(shipped_actor_stem("halfcheetah", "medium"))
    session = client.create_session(ENV_ID, num_envs=4, seed=0)
    session.reset()
    before = session.step(np.zeros((4, ACT_DIM), np.float32)).model_version
    update = session.update_policy_snapshot(weights.read_bytes(), spec.read_text())
    assert update.policy_updates >= 1
    job = session.refit(steps=20)
    assert job.state == "running" and 0 < job.ess_fraction <= 1
    done = session.wait_refit(job.job_id, timeout_s=120)
    assert done.state == "done" and done.model_version == before + 1 and done.checkpointed, done
    from server.sessions import owner_of_token

    engine = live_server.core._session(owner_of_token(TOKENS[0]), session.session_id).engine
    engine_job = engine.core.jobs[done.job_id - 1]
    assert done.kept_start is engine_job.kept_start  # the refit's own outcome travels on both transports...
    engine_job.fit_report.kept_start = not engine_job.kept_start  # ...and so does the other value
    try:
        assert session.wait_refit(done.job_id, timeout_s=5).kept_start is engine_job.kept_start
    finally:
        engine_job.fit_report.kept_start = done.kept_start
    assert session.step(np.zeros((4, ACT_DIM), np.float32)).model_version == before + 1
    session.close()


def test_update_policy_log_probs_and_refit(client) -> None:
    session = client.create_session(ENV_ID, num_envs=1, seed=0)
    session.reset()
    indices, observations, actions = session.dataset_pairs(sample_size=1000, seed=0)
    assert indices.shape == (1000,) and observations.shape == (1000, OBS_DIM) and actions.shape == (1000, ACT_DIM)
    page, _, _ = session.dataset_pairs(start=10, count=5)
    np.testing.assert_array_equal(page, np.arange(10, 15))
    log_probs = -0.5 * np.square(actions - 0.3).sum(1)  # any finite log-density
    session.update_policy_log_probs(indices, log_probs)
    job = session.wait_refit(session.refit(steps=20).job_id, timeout_s=120)
    assert job.state == "done" and job.ess_fraction <= 1000 / 5000 + 1e-9
    with pytest.raises(InvalidArgumentError, match="distinct"):
        session.update_policy_log_probs(np.array([1, 1]), np.array([0.0, 0.0]))
    with pytest.raises(InvalidArgumentError, match="finite"):
        session.update_policy_log_probs(np.array([1, 2]), np.array([0.0, np.nan]))
    with pytest.raises(InvalidArgumentError, match="indices"):
        session.update_policy_log_probs(np.array([10**9]), np.array([0.0]))
    session.close()


def test_auth_and_cross_session_denial(client, target: str) -> None:
    session = client.create_session(ENV_ID, num_envs=1, seed=0)
    session.reset()
    for token in (None, "wrong-token"):
        with connect(target, token=token or "") as anonymous, pytest.raises(UnauthenticatedError):
            anonymous.list_environments()
    with connect(target, token=TOKENS[1]) as bob:
        assert bob.list_environments().environments  # Bob is a valid user...
        stolen = type(session)(bob, session.info)  # ...but Alice's session does not exist for him
        with pytest.raises(SessionNotFoundError):
            stolen.step(np.zeros((1, ACT_DIM), np.float32))
        with pytest.raises(SessionNotFoundError):
            stolen.reset()
        with pytest.raises(SessionNotFoundError):
            stolen.refit()
        stolen.close()  # swallowed NOT_FOUND; Alice's session survives
    assert session.step(np.zeros((1, ACT_DIM), np.float32)).observations.shape == (1, OBS_DIM)
    session.close()


@pytest.mark.parametrize("case", ["shape", "nan", "inf", "dtype", "rank"])
def test_bad_actions(client, case: str) -> None:
    session = client.create_session(ENV_ID, num_envs=2, seed=0)
    session.reset()
    actions = {
        "shape": np.zeros((2, ACT_DIM + 1), np.float32),
        "nan": np.array([[0.0] * ACT_DIM, [np.nan] + [0.0] * (ACT_DIM - 1)], np.float32),
        "inf": np.full((2, ACT_DIM), np.inf, np.float32),
        "dtype": np.zeros((2, ACT_DIM), bool),
        "rank": np.zeros((2, ACT_DIM, 1), np.float32),
    }[case]
    message = {"shape": "shape", "nan": "NaN", "inf": "inf", "dtype": "numbers",
               "rank": "shape"}[case]
    with pytest.raises(InvalidArgumentError, match=message):
        session.step(actions)
    session.close()
    assert_serving(client)


def test_out_of_bounds_actions_are_clipped_as_in_the_local_envs(client) -> None:
    """One action policy everywhere (EpisodeBatch.step): finite actions outside [-1, 1] are clipped, as MuJoCo
    clamps the controls; integer actions are numbers too."""
    outside, clipped, ints = (client.create_session(ENV_ID, num_envs=2, seed=3) for _ in range(3))
    for session in (outside, clipped, ints):
        session.reset()
    wild = np.array([[1.5] * ACT_DIM, [-7.0] * ACT_DIM], np.float32)
    a, b = outside.step(wild), clipped.step(np.clip(wild, -1, 1))
    np.testing.assert_array_equal(a.observations, b.observations)
    np.testing.assert_array_equal(a.rewards, b.rewards)
    c = ints.step(np.array([[2] * ACT_DIM, [-3] * ACT_DIM], np.int64))
    np.testing.assert_array_equal(c.observations, b.observations)
    for session in (outside, clipped, ints):
        session.close()


def test_bad_requests(client, target: str) -> None:
    with pytest.raises(SessionNotFoundError):
        client.call("Step", pb.StepRequest(session_id="no-such-session", actions=to_tensor(np.zeros((1, ACT_DIM)))))
    with pytest.raises(SessionNotFoundError, match="unknown environment"):
        client.create_session("ADEPT-hopper-random")
    with pytest.raises(InvalidArgumentError, match="num_envs"):
        client.create_session(ENV_ID, num_envs=100_000)
    with pytest.raises(InvalidArgumentError, match="set by the server"):
        client.create_session(ENV_ID, overrides={"model_path": "/etc/passwd"})
    with pytest.raises(InvalidArgumentError, match="unknown override"):
        client.create_session(ENV_ID, overrides={"horizonn": 3})
    with pytest.raises(InvalidArgumentError, match="horizon"):
        client.create_session(ENV_ID, overrides={"horizon": 0})
    fresh = client.create_session(ENV_ID, overrides={"penalty": 0.25 if target.startswith("http") else 0.5})
    with pytest.raises(FailedPreconditionError, match="policy"):  # a fresh engine has no policy to weight by
        fresh.refit(steps=5)
    fresh.close()
    session = client.create_session(ENV_ID, num_envs=2, seed=0)
    with pytest.raises(FailedPreconditionError, match="Reset"):
        session.step(np.zeros((2, ACT_DIM), np.float32))
    with pytest.raises(InvalidArgumentError, match="mask"):
        session.reset(mask=np.ones(3, bool))
    bad = pb.StepRequest(session_id=session.session_id, actions=pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=[2, ACT_DIM],
                                                                          data=b"\0" * 7))
    with pytest.raises(InvalidArgumentError, match="bytes"):
        client.call("Step", bad)
    with pytest.raises(InvalidArgumentError, match="snapshot|checksum|safetensors"):
        session.update_policy_snapshot(b"not a safetensors file", json.dumps({"format": "adept-env/sac-actor"}))
    with pytest.raises(InvalidArgumentError, match="JSON"):
        session.update_policy_snapshot(b"x", "{not json")
    with pytest.raises(InvalidArgumentError, match="count|sample"):
        session.dataset_pairs()
    with pytest.raises(ResourceExhaustedError):  # 8 MB of actions over the 4 MiB limit
        session.step(np.zeros((2, 1_000_000), np.float32))
    session.close()
    assert_serving(client)


def test_malformed_messages(client, target: str) -> None:
    status, message = send_raw(target, "Step", b"\x0a\xff\xff\xff")  # a truncated length-delimited field
    assert status in ("INVALID_ARGUMENT", "400") and "malformed" in message
    status, message = send_raw(target, "NoSuchMethod", b"")
    assert status in ("UNIMPLEMENTED", "404")
    status, message = send_raw(target, "ListEnvironments", b"", token="nope")
    assert status in ("UNAUTHENTICATED", "401") and "token" in message
    assert_serving(client)


BAD_OVERRIDES = [{"n_samples": 10**9}, {"penalty": float("nan")}, {"weight_clip": float("inf")}, {"refit_steps": -5},
                 {"refit_steps": float("inf")}, {"uncertainty_threshold": "high"}, {"horizon": 2.5},
                 {"horizon": 1e300}]
"""Each is carried by both transports: overrides travel as JSON text in the protobuf (NaN, Infinity included)."""


def test_bad_override_values_are_invalid_arguments(client) -> None:
    for overrides in BAD_OVERRIDES:
        name = next(iter(overrides))
        with pytest.raises(InvalidArgumentError, match=name):
            client.create_session(ENV_ID, overrides=overrides)
    assert_serving(client)


def test_seeds_outside_int64_are_invalid_arguments(client) -> None:
    with pytest.raises(InvalidArgumentError, match=r"seed.*\[0, 2\*\*63"):
        client.create_session(ENV_ID, seed=-1)
    session = client.create_session(ENV_ID, num_envs=1, seed=2**63 - 1)
    with pytest.raises(InvalidArgumentError, match="seed"):
        session.reset(seed=-1)
    with pytest.raises(InvalidArgumentError, match="seed"):
        session.dataset_pairs(sample_size=4, seed=-(2**63))
    session.reset(seed=2**63 - 1)
    assert len(session.dataset_pairs(sample_size=4, seed=0)[0]) == 4
    session.close()
    assert_serving(client)


def test_huge_ids_are_refused_and_not_echoed(client) -> None:
    with pytest.raises(InvalidArgumentError, match="env_id") as caught:
        client.create_session("E" * 200_000)
    assert "E" * 65 not in str(caught.value)
    with pytest.raises(SessionNotFoundError) as missing:
        client.call("Step", pb.StepRequest(session_id="S" * 200_000, actions=to_tensor(np.zeros((1, ACT_DIM)))))
    assert "S" * 65 not in str(missing.value)
    assert_serving(client)
