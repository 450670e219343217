"""Generated hostile input against the live server, over HTTP JSON, HTTP binary protobuf and gRPC.

Thousands of random and mutated requests (``hypothesis``, derandomized so CI sees the same ones):
random JSON bodies, query parameters and path ids at ``/v1/...``; random bytes and mutated valid
``adept.v1`` messages (random field values, tensor shapes, dtypes and data; then bit flips and cut
or spliced bytes) at ``/rpc/adept.v1.WorldModelService/<Method>`` and through raw gRPC calls. No
answer may be a 5xx, INTERNAL or UNKNOWN; every HTTP error is ``{"code", "message"}`` with a bounded
message; and afterwards the server still serves a full create/reset/step/close on both transports
and holds no session the fuzzer did not close.

Known-hostile values (int64 edges, NaN/inf, ints past int64, deep JSON) are drawn often, and every
strategy is built once at import: generating examples, not the server, is most of the time.

The valid sessions the mutated messages aim at are created once per transport with overrides of
their own, so their engines are the fuzzer's alone: ``target`` (every call but Refit) never has a
refit job, and ``refit_target`` (Refit, GetRefit) never gets a policy, so no refit ever trains.
"""

from __future__ import annotations

import json
import math
import time
import urllib.parse
from collections import Counter
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from adept_client.proto.adept.v1 import world_model_pb2 as pb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.config import CLIENT_OVERRIDES

from .conftest import ENV_ID, TOKENS

SERVICE = "adept.v1.WorldModelService"
METHODS = [m.name for m in pb.DESCRIPTOR.services_by_name["WorldModelService"].methods]
AUTH = f"Bearer {TOKENS[0]}"
BAD_STATUSES = {"INTERNAL", "UNKNOWN", "DATA_LOSS"}
FUZZ = settings(deadline=None, derandomize=True, database=None, print_blob=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
                                       HealthCheck.large_base_example])
EXAMPLES = {"bytes": 400, "messages": 850, "json": 750}
"""Examples per test. Each random-bytes and message example is sent over both HTTP binary and gRPC:
2 x 400 + 2 x 850 + 750 = 3,250 requests (and the closes of sessions a fuzzed call opened)."""
SENT: Counter[str] = Counter()
"""Requests sent: 'http' (binary protobuf), 'grpc', 'json' (HTTP JSON)."""
OUTCOMES: Counter[str] = Counter()
"""Answers by status name ('OK' or the error code): the fuzz must reach the handlers, not only be refused."""


# -- the fuzzer's sessions and connections ---------------------------------------------------------
class Sessions:
    """A transport's two valid sessions: ``target`` (everything but Refit) and ``refit_target`` (Refit only)."""

    def __init__(self, target: str, refit_target: str) -> None:
        self.target, self.refit_target = target, refit_target


@pytest.fixture(scope="module")
def http(live_server) -> httpx.Client:
    with httpx.Client(base_url=f"http://127.0.0.1:{live_server.http_port}", headers={"authorization": AUTH},
                      timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def channel(live_server) -> grpc.Channel:
    with grpc.insecure_channel(f"127.0.0.1:{live_server.grpc_port}") as channel:
        yield channel


def open_sessions(live_server) -> set[str]:
    """The ids of the sessions open on the server now."""
    with live_server.core._lock:
        return set(live_server.core._sessions)


@pytest.fixture(scope="module")
def sessions_before(live_server) -> set[str]:
    return open_sessions(live_server)


@pytest.fixture(scope="module")
def fuzz_sessions(sessions_before: set[str], http: httpx.Client, channel: grpc.Channel) -> dict[str, Sessions]:
    """Per transport, two sessions on engines of their own (distinct overrides), reset once."""
    out = {}
    for transport in ("http", "grpc"):
        ids = []
        for penalty in (0.111, 0.222):
            request = pb.CreateSessionRequest(env_id=ENV_ID, num_envs=2, seed=0,
                                              overrides={"penalty": json.dumps(penalty), "horizon": "3"})
            status, raw = send(transport, "CreateSession", request.SerializeToString(), http, channel)
            assert status == "OK", status
            ids.append(pb.CreateSessionResponse.FromString(raw).session_id)
            send(transport, "Reset", pb.ResetRequest(session_id=ids[-1]).SerializeToString(), http, channel)
        out[transport] = Sessions(*ids)
    yield out
    for transport, pair in out.items():
        for sid in (pair.target, pair.refit_target):
            send(transport, "CloseSession", pb.CloseSessionRequest(session_id=sid).SerializeToString(), http, channel)


# -- sending and judging -----------------------------------------------------------------------------
def check_http(answer: httpx.Response) -> str:
    """No 5xx; an error is JSON {"code", "message"} with a known, non-INTERNAL code and a bounded message.
    Return 'OK' or the error's code."""
    assert answer.status_code < 500, (answer.status_code, answer.text[:2000])
    if answer.status_code >= 400:
        error = answer.json()
        assert set(error) == {"code", "message"}, answer.text[:2000]
        assert error["code"] not in BAD_STATUSES and len(error["message"]) <= 1000, error
    return "OK" if answer.status_code < 400 else error["code"]


def send(transport: str, method: str, body: bytes, http: httpx.Client, channel: grpc.Channel,
         token: str | None = AUTH) -> tuple[str, bytes]:
    """Send request bytes to ``method``; return (status name, response bytes); fail on a server error."""
    SENT[transport] += 1
    if transport == "http":
        headers = {"content-type": "application/x-protobuf"}
        if token != AUTH:
            headers["authorization"] = token or ""
        answer = http.post(f"/rpc/{SERVICE}/{method}", content=body, headers=headers)
        status = check_http(answer)
        raw = answer.content if status == "OK" else b""
    else:
        metadata = (("authorization", token),) if token else ()
        try:
            status, raw = "OK", channel.unary_unary(f"/{SERVICE}/{method}")(body, metadata=metadata, timeout=60)
        except grpc.RpcError as exc:
            assert exc.code().name not in BAD_STATUSES, (method, exc.code(), exc.details())
            assert len(exc.details() or "") <= 1000
            status, raw = exc.code().name, b""
    OUTCOMES[status] += 1
    return status, raw


def close_if_created(transport: str, method: str, status: str, raw: bytes, http, channel) -> None:
    """A CreateSession the fuzzer got through opened a session: close it."""
    if method == "CreateSession" and status == "OK":
        sid = pb.CreateSessionResponse.FromString(raw).session_id
        status, _ = send(transport, "CloseSession", pb.CloseSessionRequest(session_id=sid).SerializeToString(),
                         http, channel)
        assert status == "OK", status


# -- strategies ------------------------------------------------------------------------------------
HOSTILE_INTS = [0, 1, 2, 3, -1, 2**31 - 1, -(2**31), 2**32, 2**62, 2**63 - 1, -(2**63)]
"""int64 values that break sizes, counts, indices and seeds."""
HOSTILE_NUMBERS = [0.0, 0.5, -1.0, 1.0, 3.0, math.nan, math.inf, -math.inf, 1e308, -1e-310, 2**70, -(2**70), 2**63]
"""Numbers for JSON and tensor data: NaN, inf, extremes, ints past int64."""
HOSTILE_JSON = [*HOSTILE_NUMBERS, 10**400, -1, None, True, "", "x" * 300, [], {}, [[[]]], {"a": {"b": None}}, [1, 2]]
INT64 = st.one_of(st.sampled_from(HOSTILE_INTS), st.integers(-(2**63), 2**63 - 1))
TEXT = st.text(max_size=10)
JSON_VALUES = st.one_of(st.sampled_from(HOSTILE_JSON), st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), TEXT),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(TEXT, inner, max_size=3)), max_leaves=5))


def deep(depth: int, open_: str = "[", close: str = "]") -> str:
    return open_ * depth + close * depth


JSON_TEXT = st.one_of(
    st.sampled_from([deep(200), deep(5000), "[" * 100_000, '{"a":' * 80 + "1" + "}" * 80, "Infinity", "-Infinity",
                     "NaN", "1e999", str(2**70), "", "null", "{", '"' + "x" * 20_000 + '"']),
    JSON_VALUES.map(json.dumps), TEXT)
DTYPES = {1: "<f4", 2: "<f8", 3: "<i4", 4: "<i8", 5: "u1", 6: "u1"}
# Strategies are built once, here: building them inside a draw costs a validation per example. Where
# a choice has an ordinary and a hostile side, the ordinary one comes first: hypothesis leans to it.
DTYPE_CODES = st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7, 99, -1])
SHAPES = st.one_of(st.lists(st.integers(0, 6), max_size=3), st.lists(INT64, max_size=3),
                   st.integers(33, 40).map(lambda n: [1] * n))
HOSTILE_NUMBER = st.sampled_from(HOSTILE_NUMBERS)
SMALL_BINARY = st.binary(max_size=48)
BOOLEANS = st.booleans()


@st.composite
def tensors(draw: Any, dtype: int | None = None, shape: list[int] | None = None) -> pb.Tensor:
    """A Tensor: random or given dtype (unknown codes too), random or given shape (negative, huge, deep),
    and either exactly the bytes the shape needs (a hostile value among ordinary ones) or random bytes."""
    code = draw(DTYPE_CODES) if dtype is None else dtype
    if shape is None:
        shape = draw(SHAPES)
    itemsize = np.dtype(DTYPES.get(code, "<f4")).itemsize
    count = math.prod(shape) if all(d >= 0 for d in shape) else -1
    if 0 <= count * itemsize <= 4096 and not draw(BOOLEANS):  # hypothesis leans to False: the right size
        values = np.resize(np.array([draw(HOSTILE_NUMBER), 0.25, -0.5], np.float64), count)
        with np.errstate(all="ignore"):
            data = values.astype(DTYPES.get(code, "<f4")).tobytes()
    else:
        data = draw(SMALL_BINARY)
    return pb.Tensor(dtype=code, shape=shape, data=data)


ANY_TENSOR = tensors()
MASKS = st.one_of(tensors(5, [2]), ANY_TENSOR)
ACTIONS = st.one_of(*(tensors(code, [2, 6]) for code in (1, 2, 3, 4)), ANY_TENSOR)
INDICES = {n: st.one_of(tensors(4, [n]), ANY_TENSOR) for n in range(4)}
LOG_PROBS = {n: st.one_of(tensors(2, [n]), ANY_TENSOR) for n in range(4)}
OPTIONAL_INT64 = st.one_of(st.none(), INT64)
OVERRIDE_KEYS = st.one_of(st.sampled_from(CLIENT_OVERRIDES + ("model_path", "profile")), TEXT)
ENV_IDS = st.one_of(st.just(ENV_ID), TEXT)
NUM_ENVS = st.one_of(st.integers(-1, 3), st.integers(-(2**31), 2**31 - 1))
AUTORESET_MODES = st.sampled_from([0, 1, 2, 3, -1, 2**31 - 1])
SIZES = st.one_of(st.just(0), INT64)
POLICY_KINDS = st.sampled_from(["snapshot", "log_probs", "neither"])
SMALL_N = st.integers(0, 3)
FINGERPRINTS = st.one_of(st.just(""), TEXT)
WAITS = st.sampled_from([0.0, -1.0, math.nan, math.inf, 1e308, 0.01])


VALID = "<the transport's valid session>"
"""Placeholder session id, replaced per transport by its valid session (Refit/GetRefit: its refit target)."""
SESSION_IDS = st.one_of(st.just(VALID), st.just(VALID), st.just(VALID), st.just(""), TEXT, st.just("s" * 10_000))


def maybe(request: pb.Message, field: str, value: Any) -> None:
    if value is not None:
        setattr(request, field, value)


# A safetensors header with no tensors (it parses; then the spec decides), and specs that look right.
_HEADER = b'{"__metadata__": {}}'
SAFETENSORS_HEADER_ONLY = len(_HEADER).to_bytes(8, "little") + _HEADER
_SPEC = {"format": "adept-env/sac-actor", "format_version": 1, "obs_dim": 17, "act_dim": 6, "hidden_sizes": [256, 256],
         "activation": "relu", "weights_sha256": "0" * 64}
SPECS = [json.dumps(_SPEC), json.dumps({**_SPEC, "obs_dim": 2**70}), json.dumps({**_SPEC, "hidden_sizes": [-1, 10**9]}),
         json.dumps({**_SPEC, "activation": None, "format_version": math.inf}), json.dumps({**_SPEC, "act_dim": -6})]
SPEC_TEXTS = st.one_of(JSON_TEXT, st.sampled_from(SPECS))
WEIGHTS = st.one_of(st.sampled_from([b"", SAFETENSORS_HEADER_ONLY]), SMALL_BINARY)
METHOD_NAMES = st.sampled_from(METHODS)


@st.composite
def messages(draw: Any) -> tuple[str, pb.Message]:
    """A method and a request for it with random field values; its session id is often ``VALID``."""
    method = draw(METHOD_NAMES)
    sid = draw(SESSION_IDS)
    if method == "ListEnvironments":
        return method, pb.ListEnvironmentsRequest()
    if method == "CreateSession":
        request = pb.CreateSessionRequest(env_id=draw(ENV_IDS), num_envs=draw(NUM_ENVS),
                                          overrides={draw(OVERRIDE_KEYS): draw(JSON_TEXT)} if draw(BOOLEANS) else {})
        maybe(request, "seed", draw(OPTIONAL_INT64))
        return method, request
    if method == "Reset":
        request = pb.ResetRequest(session_id=sid)
        maybe(request, "seed", draw(OPTIONAL_INT64))
        if draw(BOOLEANS):
            request.mask.CopyFrom(draw(MASKS))
        return method, request
    if method == "Step":
        return method, pb.StepRequest(session_id=sid, actions=draw(ACTIONS), autoreset_mode=draw(AUTORESET_MODES))
    if method == "GetDatasetPairs":
        request = pb.GetDatasetPairsRequest(session_id=sid, start=draw(INT64), count=draw(INT64),
                                            sample_size=draw(SIZES))
        maybe(request, "seed", draw(OPTIONAL_INT64))
        return method, request
    if method == "UpdatePolicy":
        request = pb.UpdatePolicyRequest(session_id=sid)
        which = draw(POLICY_KINDS)
        if which == "snapshot":
            request.snapshot.CopyFrom(pb.PolicySnapshot(safetensors=draw(WEIGHTS), spec_json=draw(SPEC_TEXTS)))
        elif which == "log_probs":
            n = draw(SMALL_N)
            request.log_probs.CopyFrom(pb.LogProbs(indices=draw(INDICES[n]), log_probs=draw(LOG_PROBS[n]),
                                                   dataset_fingerprint=draw(FINGERPRINTS)))
        return method, request
    if method == "Refit":
        request = pb.RefitRequest(session_id=sid, unweighted=draw(BOOLEANS))
        maybe(request, "steps", draw(OPTIONAL_INT64))
        return method, request
    if method == "GetRefit":
        return method, pb.GetRefitRequest(session_id=sid, job_id=draw(INT64), wait_seconds=draw(WAITS))
    assert method == "CloseSession"
    return method, pb.CloseSessionRequest(session_id=draw(TEXT))  # never the fuzzer's own sessions


MUTATION_KINDS = st.sampled_from(["as-is", "as-is", "flip", "cut", "splice", "repeat"])
FRACTIONS = st.floats(0, 1)
BYTE_VALUES = st.integers(1, 255)
SPLICES = st.binary(min_size=1, max_size=6)


@st.composite
def mutations(draw: Any) -> tuple[str, float, int, bytes]:
    """How to mutate a message's bytes: (kind, relative position, xor byte, bytes to splice in)."""
    kind = draw(MUTATION_KINDS)
    if kind == "as-is":
        return kind, 0.0, 0, b""
    return kind, draw(FRACTIONS), draw(BYTE_VALUES), draw(SPLICES)


def mutate(data: bytes, mutation: tuple[str, float, int, bytes]) -> bytes:
    kind, where, xor, splice = mutation
    if kind == "as-is" or not data:
        return data
    at = min(int(where * len(data)), len(data) - 1)
    if kind == "flip":
        return data[:at] + bytes([data[at] ^ xor]) + data[at + 1:]
    if kind == "cut":
        return data[:at]
    if kind == "splice":
        return data[:at] + splice + data[at:]
    return data + data


def for_transport(method: str, request: pb.Message, sessions: Sessions) -> pb.Message:
    """``request`` with the ``VALID`` placeholder replaced by the transport's session."""
    if getattr(request, "session_id", None) != VALID:
        return request
    copy = type(request)()
    copy.CopyFrom(request)
    copy.session_id = sessions.refit_target if method in ("Refit", "GetRefit") else sessions.target
    return copy


# -- the fuzz tests: protobuf (HTTP binary and gRPC) -------------------------------------------------
def test_random_bytes(http: httpx.Client, channel: grpc.Channel, fuzz_sessions) -> None:
    @settings(FUZZ, max_examples=EXAMPLES["bytes"])
    @given(method=st.sampled_from(METHODS), body=st.binary(max_size=200),
           token=st.sampled_from([AUTH, AUTH, AUTH, None, "Bearer nope", "Basic x"]))
    def fuzz(method: str, body: bytes, token: str | None) -> None:
        for transport in ("http", "grpc"):
            status, raw = send(transport, method, body, http, channel, token)
            close_if_created(transport, method, status, raw, http, channel)

    started, before = time.perf_counter(), SENT.total()
    fuzz()
    print(f"random bytes: {SENT.total() - before} requests in {time.perf_counter() - started:.1f} s")


def test_mutated_messages(http: httpx.Client, channel: grpc.Channel, fuzz_sessions) -> None:
    @settings(FUZZ, max_examples=EXAMPLES["messages"])
    @given(messages(), mutations())
    def fuzz(call: tuple[str, pb.Message], mutation: tuple[str, float, int, bytes]) -> None:
        method, request = call
        for transport in ("http", "grpc"):
            body = mutate(for_transport(method, request, fuzz_sessions[transport]).SerializeToString(), mutation)
            status, raw = send(transport, method, body, http, channel)
            close_if_created(transport, method, status, raw, http, channel)

    started, before = time.perf_counter(), SENT.total()
    fuzz()
    print(f"messages: {SENT.total() - before} requests in {time.perf_counter() - started:.1f} s")


# -- the fuzz tests: HTTP JSON -----------------------------------------------------------------------
ENDPOINTS = st.sampled_from(["list", "create", "reset", "step", "pairs", "policy", "refit", "get_refit", "close",
                             "wrong"])
QUERIES = st.dictionaries(st.sampled_from(["start", "count", "sample_size", "seed", "wait_seconds", "x"]), st.one_of(
    st.sampled_from([str(v) for v in HOSTILE_INTS + HOSTILE_NUMBERS] + ["", "abc", "1e5"]), st.integers().map(str)),
    max_size=3)
RAW_BODIES = st.one_of(st.sampled_from([b"", b"{", b"null", b"[]", b"{}", deep(3000).encode(), b'{"a":' * 3000,
                                        b"\xff\xfe", b'{"x": NaN}']), st.binary(max_size=32))
BODY_SHAPES = st.sampled_from(["fields", "fields", "fields", "any", "raw"])
JSON_TYPE = {"content-type": "application/json"}
HEADERS = st.sampled_from([JSON_TYPE] * 6 + [{}, {"content-type": "text/plain"},
                                             {**JSON_TYPE, "authorization": "Bearer nope"},
                                             {**JSON_TYPE, "authorization": ""}])
WRONG_VERBS = st.sampled_from(["PUT", "PATCH", "GET", "POST", "DELETE"])
PATH_TEXT = TEXT.map(lambda text: urllib.parse.quote(text, safe=""))
ONE_IN_TEN, ONE_IN_FIVE = st.integers(0, 9), st.integers(0, 4)
HOSTILE = st.sampled_from(HOSTILE_JSON)
OPTIONAL_JSON = st.one_of(st.none(), JSON_VALUES)
CREATE_KEYS = st.one_of(st.sampled_from(CLIENT_OVERRIDES), st.sampled_from(CLIENT_OVERRIDES), TEXT)
OVERRIDE_VALUES = st.one_of(HOSTILE, JSON_VALUES)
ENV_ID_VALUES = st.one_of(st.just(ENV_ID), JSON_VALUES)
NUM_ENVS_VALUES = st.one_of(st.integers(-1, 3), JSON_VALUES)
OVERRIDE_SHAPES = st.sampled_from(["none", "one", "one", "any"])
MASK_VALUES = st.one_of(st.none(), st.just([True, False]), JSON_VALUES)
ROW, COLUMN = st.integers(0, 1), st.integers(0, 5)
AUTORESETS = st.one_of(st.sampled_from(["none", "next_step", "same_step"]), JSON_VALUES)
POLICY_BODIES = st.sampled_from(["log_probs", "log_probs", "snapshot", "neither", "both"])
ROWS = st.integers(1, 3)
INDEX_VALUES = st.one_of(st.integers(0, 5000), st.sampled_from([-1, 5000, 2**63, 2**64, 2**70, -(2**70)]))
LOG_PROB_VALUES = st.one_of(st.floats(-100, 0), HOSTILE_NUMBER)
SPEC_VALUES = st.one_of(st.sampled_from([json.loads(s) for s in SPECS]), JSON_VALUES)
BASE64 = st.sampled_from(["", "AAAA", "!!", "QUJD"])
OPTIONAL_HOSTILE = st.one_of(st.none(), HOSTILE)
FINGERPRINT_VALUES = st.one_of(st.just(""), TEXT, JSON_VALUES)
CLOSE_IDS = st.text(min_size=1, max_size=10).map(lambda text: urllib.parse.quote(text, safe=""))
JOB_IDS = st.one_of(INT64.map(str), PATH_TEXT)


def _body(draw: Any, endpoint: str) -> Any:
    """A body with the endpoint's own fields, hostile values in them."""
    if endpoint == "create":
        overrides = {"none": lambda: {}, "one": lambda: {draw(CREATE_KEYS): draw(OVERRIDE_VALUES)},
                     "any": lambda: draw(JSON_VALUES)}[draw(OVERRIDE_SHAPES)]()
        return {"env_id": draw(ENV_ID_VALUES), "num_envs": draw(NUM_ENVS_VALUES), "seed": draw(OPTIONAL_JSON),
                "overrides": overrides}
    if endpoint == "reset":
        return {"seed": draw(OPTIONAL_JSON), "mask": draw(MASK_VALUES)}
    if endpoint == "step":
        actions: Any = [[0.1] * 6, [-0.2] * 6]
        actions[draw(ROW)][draw(COLUMN)] = draw(HOSTILE)
        return {"actions": draw(JSON_VALUES) if draw(BOOLEANS) else actions, "autoreset": draw(AUTORESETS)}
    if endpoint == "policy":
        which = draw(POLICY_BODIES)
        if which == "log_probs":
            n = draw(ROWS)
            return {"log_probs": {"indices": [draw(INDEX_VALUES) for _ in range(n)],
                                  "log_probs": [draw(LOG_PROB_VALUES) for _ in range(n)],
                                  "dataset_fingerprint": draw(FINGERPRINT_VALUES)}}
        if which == "snapshot":
            return {"snapshot": {"safetensors_base64": draw(BASE64), "spec": draw(SPEC_VALUES)}}
        return {} if which == "neither" else {"snapshot": {}, "log_probs": {}}
    if endpoint == "refit":
        return {"steps": draw(OPTIONAL_HOSTILE), "weighted": draw(JSON_VALUES)}
    return draw(JSON_VALUES)


@st.composite
def json_requests(draw: Any, sessions: Sessions) -> tuple[str, str, dict[str, str], bytes | None, dict[str, str]]:
    """(HTTP method, path, query, body, headers) for a /v1 endpoint, with random ids, parameters and bodies."""
    endpoint = draw(ENDPOINTS)
    if endpoint == "close":  # never the fuzzer's own sessions
        sid = draw(CLOSE_IDS)
    else:
        choice = draw(ONE_IN_FIVE)  # hypothesis leans to 0: the valid session
        sid = draw(PATH_TEXT) if choice == 4 else "" if choice == 3 else (
            sessions.refit_target if endpoint == "refit" else sessions.target)
    verb, path = {
        "list": ("GET", "/v1/environments"), "create": ("POST", "/v1/sessions"),
        "reset": ("POST", f"/v1/sessions/{sid}/reset"), "step": ("POST", f"/v1/sessions/{sid}/step"),
        "pairs": ("GET", f"/v1/sessions/{sid}/dataset-pairs"), "policy": ("POST", f"/v1/sessions/{sid}/policy"),
        "refit": ("POST", f"/v1/sessions/{sid}/refits"), "get_refit": ("GET", f"/v1/sessions/{sid}/refits/"),
        "close": ("DELETE", f"/v1/sessions/{sid}"), "wrong": ("", ""),
    }[endpoint]
    if endpoint == "get_refit":
        path += draw(JOB_IDS)
    if endpoint == "wrong":
        verb = draw(WRONG_VERBS)
        path = draw(st.sampled_from(["/v1/sessions", f"/v1/sessions/{sid}/step", f"/v1/{sid}",
                                     f"/rpc/{SERVICE}/{sid}", "/health", "/v1/environments"]))
    query = draw(QUERIES) if endpoint in ("pairs", "get_refit") or draw(ONE_IN_TEN) == 0 else {}
    body = None
    if verb in ("POST", "PUT", "PATCH"):
        shape = draw(BODY_SHAPES)
        if shape == "raw":
            body = draw(RAW_BODIES)
        else:
            body = json.dumps(_body(draw, endpoint) if shape == "fields" else draw(JSON_VALUES)).encode()
    return verb, path, query, body, draw(HEADERS)


def test_http_json(http: httpx.Client, fuzz_sessions) -> None:
    @settings(FUZZ, max_examples=EXAMPLES["json"])
    @given(json_requests(fuzz_sessions["http"]))
    def fuzz(request: tuple[str, str, dict[str, str], bytes | None, dict[str, str]]) -> None:
        verb, path, query, body, headers = request
        SENT["json"] += 1
        answer = http.request(verb, path, params=query, content=body, headers=headers)
        OUTCOMES[check_http(answer)] += 1
        if verb == "POST" and path == "/v1/sessions" and answer.status_code == 200:
            SENT["json"] += 1
            check_http(http.delete(f"/v1/sessions/{answer.json()['session_id']}"))

    started, before = time.perf_counter(), SENT.total()
    fuzz()
    print(f"HTTP JSON: {SENT.total() - before} requests in {time.perf_counter() - started:.1f} s")


def test_server_serves_after_the_fuzz(live_server, fuzz_sessions, sessions_before: set[str]) -> None:
    from adept_client import connect

    total = SENT.total()
    print(f"fuzz: {total} requests ({dict(SENT)}); answers {dict(OUTCOMES.most_common())}")
    assert total >= 3000, dict(SENT)
    assert OUTCOMES["OK"] >= 200 and OUTCOMES["INVALID_ARGUMENT"] >= 1000, OUTCOMES
    for target in (f"127.0.0.1:{live_server.grpc_port}", f"http://127.0.0.1:{live_server.http_port}"):
        with connect(target, token=TOKENS[0], timeout_s=60.0) as client:
            session = client.create_session(ENV_ID, num_envs=2, seed=1)
            session.reset()
            out = session.step(np.zeros((2, 6), np.float32))
            assert out.observations.shape == (2, 17) and np.all(np.isfinite(out.observations))
            session.close()
    # Besides those open before, only the fuzzer's own four are: every session a fuzzed call opened was closed.
    own = {sid for pair in fuzz_sessions.values() for sid in (pair.target, pair.refit_target)}
    assert open_sessions(live_server) - sessions_before <= own
