"""Hostile input over both transports: every client mistake is a 4xx/INVALID_ARGUMENT-like status with a
short message and no server path; a server bug is INTERNAL with a request id only (the traceback is
logged under that id); an HTTP error never costs the client its keep-alive connection."""

from __future__ import annotations

import json
import logging
import re

import grpc
import httpx
import numpy as np
import pytest
from adept_client.proto.adept.v1 import world_model_pb2 as pb
from adept_client.tensors import TensorError, from_tensor, to_tensor

from .conftest import ENV_ID, TOKENS

AUTH = {"authorization": f"Bearer {TOKENS[0]}"}
RPC = "/rpc/adept.v1.WorldModelService"
REQUEST_ID = re.compile(r"^internal error \(request id ([0-9a-f]{8})\)$")
ACT_DIM = 6


# -- helpers -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def http(live_server) -> httpx.Client:
    with httpx.Client(base_url=f"http://127.0.0.1:{live_server.http_port}", headers=AUTH, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def channel(live_server) -> grpc.Channel:
    with grpc.insecure_channel(f"127.0.0.1:{live_server.grpc_port}") as channel:
        yield channel


def grpc_call(channel: grpc.Channel, method: str, message: pb.Message | bytes) -> tuple[str, str, bytes]:
    """Send a request over gRPC; return (status name, message, response bytes)."""
    body = message if isinstance(message, bytes) else message.SerializeToString()
    call = channel.unary_unary(f"/adept.v1.WorldModelService/{method}")
    try:
        return "OK", "", call(body, metadata=(("authorization", AUTH["authorization"]),), timeout=60)
    except grpc.RpcError as exc:
        return exc.code().name, exc.details(), b""


def http_call(http: httpx.Client, method: str, message: pb.Message | bytes) -> tuple[str, str, bytes]:
    """Send a request as binary protobuf over HTTP; return (status name or 'OK', message, response bytes)."""
    body = message if isinstance(message, bytes) else message.SerializeToString()
    answer = http.post(f"{RPC}/{method}", content=body, headers={"content-type": "application/x-protobuf"})
    if answer.status_code == 200:
        return "OK", "", answer.content
    error = answer.json()
    assert answer.status_code < 500 or error["code"] == "INTERNAL", answer.text
    return error["code"], error["message"], b""


@pytest.fixture(params=["grpc", "http"])
def call(request, channel, http):
    """``call(method, message) -> (status, message, bytes)`` over one transport."""
    if request.param == "grpc":
        return lambda method, message: grpc_call(channel, method, message)
    return lambda method, message: http_call(http, method, message)


@pytest.fixture
def session_id(call) -> str:
    status, _, raw = call("CreateSession", pb.CreateSessionRequest(env_id=ENV_ID, num_envs=2, seed=0))
    assert status == "OK"
    sid = pb.CreateSessionResponse.FromString(raw).session_id
    assert call("Reset", pb.ResetRequest(session_id=sid))[0] == "OK"
    yield sid
    call("CloseSession", pb.CloseSessionRequest(session_id=sid))


def local_port(response: httpx.Response) -> int:
    """The client-side port of the connection that carried ``response``."""
    return response.extensions["network_stream"].get_extra_info("client_addr")[1]


def assert_clean(message: str) -> None:
    """A message a caller may see: bounded, no server path, no traceback."""
    assert len(message) <= 1000, len(message)
    assert "/tmp" not in message and "Traceback" not in message and 'File "' not in message, message


# -- tensors -------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [[2**32, 2**32], [2**62, 2**62, 4], [0, 2**62], [-1, 6], [1] * 40, [2**63 - 1]])
def test_from_tensor_refuses_huge_negative_and_deep_shapes(shape: list[int]) -> None:
    with pytest.raises(TensorError):
        from_tensor(pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=shape, data=b""), "actions", 1024)
    with pytest.raises(TensorError):
        from_tensor(pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=shape, data=b""), "actions")


def test_from_tensor_round_trips_and_reads_bool_bytes_as_truth() -> None:
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(from_tensor(to_tensor(array)), array)
    assert from_tensor(pb.Tensor(dtype=pb.DTYPE_FLOAT64, shape=[0, 5], data=b"")).shape == (0, 5)
    mask = from_tensor(pb.Tensor(dtype=pb.DTYPE_BOOL, shape=[3], data=b"\x00\x02\x01"))
    assert mask.tolist() == [False, True, True]


@pytest.mark.parametrize("shape", [[2**32, 2**32], [0, 2**62], [-5, 6], [2, 6] * 20])
def test_huge_tensor_shapes_are_invalid_argument(call, session_id: str, shape: list[int]) -> None:
    request = pb.StepRequest(session_id=session_id, actions=pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=shape))
    status, message, _ = call("Step", request)
    assert status == "INVALID_ARGUMENT" and "actions" in message, (status, message)
    assert_clean(message)
    status, _, _ = call("Step", pb.StepRequest(session_id=session_id, actions=to_tensor(np.zeros((2, ACT_DIM)))))
    assert status == "OK"


# -- integer overflow ----------------------------------------------------------------------------
def test_log_prob_index_overflow_over_http_json(http: httpx.Client) -> None:
    sid = http.post("/v1/sessions", json={"env_id": ENV_ID}).json()["session_id"]
    for indices in ([2**70], [-(2**70)], [2**63], [2**63 - 1]):
        answer = http.post(f"/v1/sessions/{sid}/policy", json={"log_probs": {"indices": indices, "log_probs": [0.0]}})
        assert answer.status_code == 400 and answer.json()["code"] == "INVALID_ARGUMENT", answer.text
        assert "indices" in answer.json()["message"]
    http.delete(f"/v1/sessions/{sid}")


@pytest.mark.parametrize("indices", [[2**63 - 1], [-(2**63)], [0, 2**62]])
def test_log_prob_index_overflow_over_protobuf(call, session_id: str, indices: list[int]) -> None:
    lp = pb.LogProbs(indices=to_tensor(np.array(indices, np.int64)),
                     log_probs=to_tensor(np.zeros(len(indices))))
    status, message, _ = call("UpdatePolicy", pb.UpdatePolicyRequest(session_id=session_id, log_probs=lp))
    assert status == "INVALID_ARGUMENT" and "indices" in message, (status, message)


def test_huge_numbers_in_json_fields_are_400(http: httpx.Client) -> None:
    for body in ({"env_id": ENV_ID, "seed": 2**70}, {"env_id": ENV_ID, "seed": -1},
                 {"env_id": ENV_ID, "num_envs": 2**70}, {"env_id": ENV_ID, "overrides": {"horizon": 2**70}}):
        answer = http.post("/v1/sessions", json=body)
        assert answer.status_code == 400 and answer.json()["code"] == "INVALID_ARGUMENT", (body, answer.text)
    for overrides in (b'{"refit_steps": Infinity}', b'{"horizon": 1e999}', b'{"penalty": NaN}'):
        answer = http.post("/v1/sessions", content=b'{"env_id": "%s", "overrides": %s}' % (ENV_ID.encode(), overrides),
                           headers={"content-type": "application/json"})
        assert answer.status_code == 400 and answer.json()["code"] == "INVALID_ARGUMENT", (overrides, answer.text)
    sid = http.post("/v1/sessions", json={"env_id": ENV_ID}).json()["session_id"]
    for params in ({"start": 2**70, "count": 1}, {"count": 2**70}, {"sample_size": 2**70}, {"count": 1, "seed": -1}):
        answer = http.get(f"/v1/sessions/{sid}/dataset-pairs", params=params)
        assert answer.status_code == 400 and answer.json()["code"] == "INVALID_ARGUMENT", (params, answer.text)
    for path in (f"/v1/sessions/{sid}/refits/{2**70}", f"/v1/sessions/{sid}/refits/-{2**70}"):
        assert http.get(path).status_code == 404
    http.delete(f"/v1/sessions/{sid}")


def test_negative_seeds_over_protobuf(call) -> None:
    status, message, _ = call("CreateSession", pb.CreateSessionRequest(env_id=ENV_ID, seed=-1))
    assert status == "INVALID_ARGUMENT" and "seed" in message


# -- JSON nesting --------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", ["[" * 100_000, "[" * 100_000 + "]" * 100_000, '{"a":' * 65 + "1" + "}" * 65,
                                  json.dumps({"pad": "x" * (2 << 20)})])
def test_deep_or_huge_spec_json_is_invalid_argument(call, session_id: str, spec: str) -> None:
    snapshot = pb.PolicySnapshot(safetensors=b"x", spec_json=spec)
    status, message, _ = call("UpdatePolicy", pb.UpdatePolicyRequest(session_id=session_id, snapshot=snapshot))
    assert status == "INVALID_ARGUMENT" and "spec_json" in message, (status, message[:200])
    assert_clean(message)


def test_deep_json_over_http(http: httpx.Client) -> None:
    sid = http.post("/v1/sessions", json={"env_id": ENV_ID}).json()["session_id"]
    deep = b'{"snapshot": {"safetensors_base64": "", "spec": ' + b'{"a":' * 100 + b"1" + b"}" * 100 + b"}}"
    answer = http.post(f"/v1/sessions/{sid}/policy", content=deep, headers={"content-type": "application/json"})
    assert answer.status_code == 400 and "deeper" in answer.json()["message"], answer.text
    deepest = b'{"snapshot": {"safetensors_base64": "", "spec": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}"
    answer = http.post(f"/v1/sessions/{sid}/policy", content=deepest, headers={"content-type": "application/json"})
    assert answer.status_code == 400 and answer.json()["code"] == "INVALID_ARGUMENT", answer.text
    override = b'{"env_id": "%s", "overrides": {"horizon": %s}}' % (ENV_ID.encode(), b"[" * 70 + b"]" * 70)
    answer = http.post("/v1/sessions", content=override, headers={"content-type": "application/json"})
    assert answer.status_code == 400 and "deeper" in answer.json()["message"], answer.text
    http.delete(f"/v1/sessions/{sid}")


def test_deep_override_over_protobuf(call) -> None:
    request = pb.CreateSessionRequest(env_id=ENV_ID, overrides={"horizon": "[" * 100_000})
    status, message, _ = call("CreateSession", request)
    assert status == "INVALID_ARGUMENT" and "horizon" in message, (status, message)


# -- messages ------------------------------------------------------------------------------------
def test_messages_are_bounded_and_carry_no_server_paths(call, session_id: str) -> None:
    status, message, _ = call("CreateSession", pb.CreateSessionRequest(env_id="x" * 100_000))
    assert status in ("INVALID_ARGUMENT", "NOT_FOUND")
    assert_clean(message)
    status, message, _ = call("Step", pb.StepRequest(session_id="y" * 100_000, actions=to_tensor(np.zeros(6))))
    assert status in ("INVALID_ARGUMENT", "NOT_FOUND")
    assert_clean(message)
    snapshot = pb.PolicySnapshot(safetensors=b"not safetensors " * 1000, spec_json=json.dumps({"format": "x" * 5000}))
    status, message, _ = call("UpdatePolicy", pb.UpdatePolicyRequest(session_id=session_id, snapshot=snapshot))
    assert status == "INVALID_ARGUMENT"
    assert_clean(message)


def test_public_messages() -> None:
    from server.errors import ServiceError

    error = ServiceError("INVALID_ARGUMENT", "cannot read /tmp/adept-policy-3k2/policy.safetensors: " + "z" * 5000)
    assert len(error.message) <= 1000 and "/tmp" not in error.message and "<path>" in error.message
    kept = "shape (2, 6) of application/x-protobuf, 1/2 of a/b"
    assert ServiceError("INVALID_ARGUMENT", kept).message == kept


# -- server bugs: INTERNAL with a request id -----------------------------------------------------
def _boom(*args, **kwargs):
    raise RuntimeError("secret detail at /srv/adept/state/models/x.json")


def test_internal_errors_carry_a_request_id_only(call, live_server, monkeypatch, caplog) -> None:
    monkeypatch.setattr(live_server.core, "list_environments", _boom)
    with caplog.at_level(logging.ERROR, logger="adept.server"):
        status, message, _ = call("ListEnvironments", pb.ListEnvironmentsRequest())
    assert status == "INTERNAL", (status, message)
    match = REQUEST_ID.match(message)
    assert match, message
    logged = [r for r in caplog.records if match.group(1) in r.getMessage()]
    assert logged and logged[0].exc_info is not None and "secret detail" in str(logged[0].exc_info[1])


def test_http_errors_keep_the_connection(http: httpx.Client, live_server, monkeypatch, caplog) -> None:
    first = http.get("/health")
    port = local_port(first)
    monkeypatch.setattr(live_server.core, "list_environments", _boom)
    with caplog.at_level(logging.ERROR, logger="adept.server"):
        broken = http.get("/v1/environments")
    assert broken.status_code == 500 and broken.json()["code"] == "INTERNAL"
    assert REQUEST_ID.match(broken.json()["message"]) and "secret" not in broken.text
    assert broken.headers.get("connection", "").lower() != "close"
    monkeypatch.undo()
    for answer in (broken, http.post(f"{RPC}/Step", content=b"\x0a\xff\xff\xff"),  # malformed protobuf: 400
                   http.get("/v1/no-such-route"),                                 # 404
                   http.post("/v1/sessions", content=b"{", headers={"content-type": "application/json"}),
                   http.get("/v1/environments", headers={"authorization": "Bearer nope"})):  # 401
        assert answer.status_code in (400, 401, 404, 500) and set(answer.json()) == {"code", "message"}, answer.text
        assert answer.headers.get("connection", "").lower() != "close"
        assert local_port(answer) == port  # no new connection was opened
    again = http.get("/health")
    assert again.status_code == 200 and local_port(again) == port


def test_chunked_oversize_body_is_a_413(http: httpx.Client, live_server) -> None:
    limit = live_server.config.max_message_bytes

    def chunks():
        for _ in range(limit // 65536 + 2):
            yield b"x" * 65536

    for path in ("/v1/sessions", f"{RPC}/Step"):
        answer = http.post(path, content=chunks(), headers={"content-type": "application/json"})
        assert "content-length" not in answer.request.headers  # it went chunked
        assert answer.status_code == 413 and answer.json()["code"] == "RESOURCE_EXHAUSTED", answer.text
        assert "limit" in answer.json()["message"]
    assert http.get("/health").status_code == 200


# -- orphans -------------------------------------------------------------------------------------
def test_a_create_whose_answer_fails_leaves_no_session(call, live_server, monkeypatch) -> None:
    import server.codec

    before = live_server.core.session_count()
    monkeypatch.setattr(server.codec, "session_response", _boom)
    status, message, _ = call("CreateSession", pb.CreateSessionRequest(env_id=ENV_ID))
    assert status == "INTERNAL" and REQUEST_ID.match(message), (status, message)
    assert live_server.core.session_count() == before


def test_a_json_create_whose_answer_fails_leaves_no_session(http: httpx.Client, live_server, monkeypatch) -> None:
    import server.http_app

    before = live_server.core.session_count()
    monkeypatch.setattr(server.http_app, "_session_json", _boom)
    answer = http.post("/v1/sessions", json={"env_id": ENV_ID})
    assert answer.status_code == 500 and REQUEST_ID.match(answer.json()["message"]), answer.text
    assert live_server.core.session_count() == before
    monkeypatch.undo()
    created = http.post("/v1/sessions", json={"env_id": ENV_ID})
    assert created.status_code == 200
    http.delete(f"/v1/sessions/{created.json()['session_id']}")
