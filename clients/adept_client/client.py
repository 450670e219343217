"""Clients of the world-model service: ``GrpcClient`` and ``HttpClient`` with one API.

Both send the same ``adept.v1`` messages (gRPC, or binary protobuf over HTTP at
``/rpc/adept.v1.WorldModelService/<Method>``), apply a deadline to every call, retry calls that
fail with UNAVAILABLE (server not up yet, connection refused/reset) with exponential backoff and
jitter, and raise :mod:`adept_client.errors` exceptions carrying the server's message.
``RemoteSession`` is one session on either client, with numpy in and out.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from google.protobuf.message import Message

from adept_client.errors import AdeptError, DeadlineExceededError, ServerUnavailableError, error_for
from adept_client.proto.adept.v1 import world_model_pb2 as pb
from adept_client.tensors import from_tensor, to_tensor

SERVICE = "adept.v1.WorldModelService"
PROTOBUF = "application/x-protobuf"
AUTORESET = {"none": pb.AUTORESET_MODE_NONE, "next_step": pb.AUTORESET_MODE_NEXT_STEP,
             "same_step": pb.AUTORESET_MODE_SAME_STEP}
REFIT_STATES = {pb.REFIT_STATE_RUNNING: "running", pb.REFIT_STATE_DONE: "done", pb.REFIT_STATE_FAILED: "failed",
                pb.REFIT_STATE_UNSPECIFIED: "unspecified"}
RESPONSES: dict[str, type[Message]] = {
    "ListEnvironments": pb.ListEnvironmentsResponse, "CreateSession": pb.CreateSessionResponse,
    "Reset": pb.ResetResponse, "Step": pb.StepResponse, "GetDatasetPairs": pb.GetDatasetPairsResponse,
    "UpdatePolicy": pb.UpdatePolicyResponse, "Refit": pb.RefitStatus, "GetRefit": pb.RefitStatus,
    "CloseSession": pb.CloseSessionResponse,
}
R = TypeVar("R", bound=Message)


def default_token() -> str | None:
    """Return the first token of $ADEPT_API_TOKEN (comma-separated), or None."""
    tokens = [t.strip() for t in os.environ.get("ADEPT_API_TOKEN", "").split(",") if t.strip()]
    return tokens[0] if tokens else None


@dataclass
class RetryPolicy:
    """Retries of calls that failed with UNAVAILABLE: ``attempts`` in all, backoff doubling from ``initial_s``."""

    attempts: int = 5
    initial_s: float = 0.1
    max_s: float = 2.0
    multiplier: float = 2.0

    def delays(self) -> list[float]:
        """Return the sleep before each retry (seconds, with +-20% jitter)."""
        return [min(self.initial_s * self.multiplier**i, self.max_s) * random.uniform(0.8, 1.2)
                for i in range(max(self.attempts - 1, 0))]


class BaseClient:
    """The typed calls of the service over a transport (``_invoke``); see GrpcClient and HttpClient."""

    def __init__(self, token: str | None = None, timeout_s: float = 30.0, retry: RetryPolicy | None = None) -> None:
        self.token = token if token is not None else default_token()
        self.timeout_s = timeout_s
        self.retry = retry or RetryPolicy()

    def _invoke(self, method: str, request: Message, timeout_s: float) -> Message:
        raise NotImplementedError

    def call(self, method: str, request: Message, timeout_s: float | None = None) -> Any:
        """Send ``request`` to ``method``; return the response message. Retries UNAVAILABLE, raises AdeptError."""
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        delays = self.retry.delays()
        for attempt in range(len(delays) + 1):
            try:
                return self._invoke(method, request, timeout_s)
            except ServerUnavailableError:
                if attempt == len(delays):
                    raise
                time.sleep(delays[attempt])
        raise AssertionError("unreachable")

    # -- typed calls -----------------------------------------------------------------------------
    def list_environments(self) -> pb.ListEnvironmentsResponse:
        """Return the served environments and the overrides clients may set."""
        return self.call("ListEnvironments", pb.ListEnvironmentsRequest())

    def create_session(self, env_id: str, num_envs: int = 1, seed: int | None = None,
                       overrides: dict[str, Any] | None = None, timeout_s: float = 600.0) -> RemoteSession:
        """Open a session; return it. The first session of an env may wait while the server loads its model."""
        request = pb.CreateSessionRequest(env_id=env_id, num_envs=num_envs, seed=seed,
                                          overrides={k: json.dumps(v) for k, v in (overrides or {}).items()})
        return RemoteSession(self, self.call("CreateSession", request, timeout_s))

    def close(self) -> None:
        """Release the transport."""

    def __enter__(self: Any) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class GrpcClient(BaseClient):
    """The service over gRPC (``target`` like ``localhost:50051``)."""

    def __init__(self, target: str = "localhost:50051", token: str | None = None, timeout_s: float = 30.0,
                 retry: RetryPolicy | None = None, max_message_bytes: int = 64 * 1024 * 1024,
                 options: list[tuple[str, Any]] | None = None) -> None:
        import grpc

        from adept_client.proto.adept.v1 import world_model_pb2_grpc

        super().__init__(token, timeout_s, retry)
        self._grpc = grpc
        self.target = target
        self.channel = grpc.insecure_channel(target, options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            *(options or []),
        ])
        self.stub = world_model_pb2_grpc.WorldModelServiceStub(self.channel)
        self._metadata = (("authorization", f"Bearer {self.token}"),) if self.token else None

    def _invoke(self, method: str, request: Message, timeout_s: float) -> Message:
        grpc = self._grpc
        try:
            return getattr(self.stub, method)(request, timeout=timeout_s, metadata=self._metadata)
        except grpc.RpcError as exc:
            code = exc.code().name if exc.code() is not None else "UNKNOWN"
            raise error_for(code, exc.details() or str(exc)) from None

    def close(self) -> None:
        self.channel.close()


class HttpClient(BaseClient):
    """The service over HTTP (``base_url`` like ``http://localhost:8000``), binary protobuf bodies.

    Built on urllib3's connection pool (TCP_NODELAY on, kept-alive connections): about 0.2 ms
    less per call than httpx on loopback (BENCHMARKS.md, "Service").
    """

    def __init__(self, base_url: str = "http://localhost:8000", token: str | None = None, timeout_s: float = 30.0,
                 retry: RetryPolicy | None = None, max_connections: int = 4) -> None:
        import urllib3

        super().__init__(token, timeout_s, retry)
        self._urllib3 = urllib3
        self.base_url = base_url.rstrip("/")
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        headers = {"content-type": PROTOBUF, "accept": PROTOBUF}
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"
        # Our own RetryPolicy retries; urllib3 must not retry or follow redirects behind it.
        self.pool = urllib3.PoolManager(num_pools=1, maxsize=max_connections, headers=headers, retries=False)

    def _invoke(self, method: str, request: Message, timeout_s: float) -> Message:
        exceptions = self._urllib3.exceptions
        try:
            answer = self.pool.request("POST", f"{self.base_url}/rpc/{SERVICE}/{method}",
                                       body=request.SerializeToString(), timeout=timeout_s)
        except exceptions.NewConnectionError as exc:  # refused, unreachable (a ConnectTimeoutError subclass)
            raise ServerUnavailableError(f"{self.base_url}: {type(exc).__name__}: {exc}") from None
        except exceptions.TimeoutError as exc:
            raise DeadlineExceededError(f"{method} did not finish within {timeout_s:g} s: {exc}") from None
        except exceptions.HTTPError as exc:  # connection reset, protocol errors: worth retrying
            raise ServerUnavailableError(f"{self.base_url}: {type(exc).__name__}: {exc}") from None
        if answer.status != 200:
            raise http_error(answer.status, answer.data)
        return RESPONSES[method].FromString(answer.data)

    def get(self, path: str) -> tuple[int, bytes]:
        """GET ``path`` (e.g. ``/health``) with the client's headers; return (status, body)."""
        answer = self.pool.request("GET", f"{self.base_url}{path}", timeout=self.timeout_s)
        return answer.status, answer.data

    def close(self) -> None:
        self.pool.clear()


def http_error(status: int, body: bytes) -> AdeptError:
    """Return the error of a non-200 HTTP answer (the server's JSON ``{code, message}`` when present)."""
    try:
        payload = json.loads(body)
        return error_for(str(payload["code"]), str(payload["message"]))
    except (ValueError, KeyError, TypeError):
        codes = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 404: "NOT_FOUND", 409: "FAILED_PRECONDITION",
                 413: "RESOURCE_EXHAUSTED", 429: "RESOURCE_EXHAUSTED", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
        return error_for(codes.get(status, "UNKNOWN"), f"HTTP {status}: {body[:200]!r}")


def connect(target: str, token: str | None = None, **kwargs: Any) -> BaseClient:
    """Return an HttpClient for ``http(s)://...`` targets, else a GrpcClient (``host:port``)."""
    if target.startswith(("http://", "https://")):
        return HttpClient(target, token=token, **kwargs)
    return GrpcClient(target.removeprefix("grpc://"), token=token, **kwargs)


def wait_for_server(target: str, token: str | None = None, timeout_s: float = 600.0, poll_s: float = 2.0) -> None:
    """Poll ListEnvironments until the server at ``target`` answers; ServerUnavailableError after ``timeout_s``
    (a server that loads or trains its model first is unavailable until it is ready)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with connect(target, token=token, timeout_s=10.0) as client:
                client.list_environments()
                return
        except ServerUnavailableError:
            if time.monotonic() > deadline:
                raise
            time.sleep(poll_s)


# -- one session ----------------------------------------------------------------------------------
@dataclass
class Step:
    """One Step of every env of a session (numpy arrays of length num_envs)."""

    observations: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    uncertainty: np.ndarray
    raw_rewards: np.ndarray
    halted: np.ndarray
    model_version: int
    reset_mask: np.ndarray
    final_observations: np.ndarray | None
    next_state_draws: np.ndarray | None = None
    """``draws`` > 0: float32 (num_envs, draws, obs_dim), the model's draws of each next state."""
    draws_terminated: np.ndarray | None = None
    """``draws`` > 0: bool (num_envs, draws), the task's termination function on each draw."""


@dataclass
class Transitions:
    """Dataset rows with their whole transitions (``RemoteSession.dataset_transitions``)."""

    indices: np.ndarray
    """int64 (n,): dataset row numbers."""
    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminals: np.ndarray
    timeouts: np.ndarray
    total_rows: int
    dataset_fingerprint: str


@dataclass
class RefitState:
    """A refit job as the server reports it."""

    job_id: int
    state: str
    """'running', 'done' or 'failed'."""
    model_version: int
    effective_sample_size: float
    ess_fraction: float
    seconds: float
    error: str
    checkpointed: bool
    kept_start: bool = False
    """Done, but no refit step beat the starting weights: the new version has the old weights."""

    @classmethod
    def from_message(cls, message: pb.RefitStatus) -> RefitState:
        return cls(message.job_id, REFIT_STATES.get(message.state, "unspecified"), message.model_version,
                   message.effective_sample_size, message.ess_fraction, message.seconds, message.error,
                   message.checkpointed, message.kept_start)


def _box_bounds(spec: pb.BoxSpec) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    shape = tuple(int(d) for d in spec.shape)
    return (np.asarray(spec.low, np.float32).reshape(shape), np.asarray(spec.high, np.float32).reshape(shape), shape)


class RemoteSession:
    """One server session: ``num_envs`` episodes of ``env_id``. Calls return numpy arrays."""

    def __init__(self, client: BaseClient, info: pb.CreateSessionResponse) -> None:
        self.client = client
        self.info = info
        self.session_id = info.session_id
        self.num_envs = info.num_envs
        self.observation_low, self.observation_high, self.observation_shape = _box_bounds(info.observation_spec)
        self.action_low, self.action_high, self.action_shape = _box_bounds(info.action_spec)
        self.closed = False

    @property
    def model_version(self) -> int:
        """The model version at creation (Step and Reset report the current one)."""
        return int(self.info.model_version)

    def reset(self, seed: int | None = None, mask: np.ndarray | None = None) -> tuple[np.ndarray, int]:
        """Start new episodes (all, or where ``mask``); return (float32 (num_envs, obs_dim), model version)."""
        request = pb.ResetRequest(session_id=self.session_id, seed=seed)
        if mask is not None:
            request.mask.CopyFrom(to_tensor(np.asarray(mask, bool)))
        answer = self.client.call("Reset", request)
        return from_tensor(answer.observations, "observations"), int(answer.model_version)

    def step(self, actions: np.ndarray, autoreset: str = "none", draws: int = 0) -> Step:
        """Step every env with ``actions`` (num_envs, act_dim); ``autoreset``: none, next_step or same_step.

        ``draws`` > 0 also returns that many of the model's next-state draws per env (``next_state_draws``,
        ``draws_terminated``): at most the session's ``n_samples`` and the server's ``max_draws``."""
        request = pb.StepRequest(session_id=self.session_id, actions=to_tensor(np.asarray(actions)),
                                 autoreset_mode=AUTORESET[autoreset], draws=draws)
        answer = self.client.call("Step", request)

        def optional(name: str) -> np.ndarray | None:
            return from_tensor(getattr(answer, name), name) if answer.HasField(name) else None

        return Step(from_tensor(answer.observations), from_tensor(answer.rewards), from_tensor(answer.terminated),
                    from_tensor(answer.truncated), from_tensor(answer.uncertainty), from_tensor(answer.raw_rewards),
                    from_tensor(answer.halted), int(answer.model_version), from_tensor(answer.reset_mask),
                    optional("final_observations"), optional("next_state_draws"), optional("draws_terminated"))

    def dataset_pairs(self, start: int = 0, count: int = 0, sample_size: int = 0,
                      seed: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return (row indices int64, observations, actions) of a page or a uniform sample of dataset rows."""
        answer = self.client.call("GetDatasetPairs", pb.GetDatasetPairsRequest(
            session_id=self.session_id, start=start, count=count, sample_size=sample_size, seed=seed))
        return from_tensor(answer.indices), from_tensor(answer.observations), from_tensor(answer.actions)

    def dataset_transitions(self, start: int = 0, count: int = 0, sample_size: int = 0,
                            seed: int | None = None) -> Transitions:
        """Return a page (rows [start, start + count)) or a uniform sample of dataset rows with their rewards,
        next observations, terminals and timeouts (a server older than these fields: AdeptError)."""
        answer = self.client.call("GetDatasetPairs", pb.GetDatasetPairsRequest(
            session_id=self.session_id, start=start, count=count, sample_size=sample_size, seed=seed,
            include_transitions=True))
        missing = [name for name in ("rewards", "next_observations", "terminals", "timeouts")
                   if not answer.HasField(name)]
        if missing:
            raise AdeptError(f"the server sent no {', '.join(missing)}: it predates include_transitions; upgrade it")
        return Transitions(from_tensor(answer.indices), from_tensor(answer.observations), from_tensor(answer.actions),
                           from_tensor(answer.rewards), from_tensor(answer.next_observations),
                           from_tensor(answer.terminals), from_tensor(answer.timeouts), int(answer.total_rows),
                           answer.dataset_fingerprint)

    def fetch_transitions(self, page_rows: int = 65_536, max_rows: int | None = None,
                          on_page: Callable[[int, int], None] | None = None) -> Transitions:
        """Return the dataset's first ``max_rows`` rows (None: all) with their whole transitions, fetched in
        pages of ``page_rows`` rows; ``on_page(rows so far, rows in all)`` is called after each page."""
        if page_rows < 1:
            raise ValueError(f"page_rows must be >= 1, got {page_rows}")
        if max_rows is not None and max_rows < 1:
            raise ValueError(f"max_rows must be >= 1 or None, got {max_rows}")
        first = self.dataset_transitions(0, page_rows if max_rows is None else min(page_rows, max_rows))
        total = first.total_rows if max_rows is None else min(first.total_rows, max_rows)
        pages, done = [first], len(first.indices)
        if on_page is not None:
            on_page(done, total)
        while done < total:
            page = self.dataset_transitions(done, min(page_rows, total - done))
            if page.dataset_fingerprint != first.dataset_fingerprint:
                raise AdeptError("the server's dataset changed while it was being fetched; fetch it again")
            pages.append(page)
            done += len(page.indices)
            if on_page is not None:
                on_page(done, total)
        fields = ("indices", "observations", "actions", "rewards", "next_observations", "terminals", "timeouts")
        joined = {name: np.concatenate([getattr(p, name) for p in pages]) for name in fields}
        return Transitions(**joined, total_rows=first.total_rows, dataset_fingerprint=first.dataset_fingerprint)

    def update_policy_snapshot(self, safetensors: bytes, spec_json: str) -> pb.UpdatePolicyResponse:
        """Send a policy snapshot (safetensors bytes + JSON spec); return the server's answer."""
        return self.client.call("UpdatePolicy", pb.UpdatePolicyRequest(
            session_id=self.session_id, snapshot=pb.PolicySnapshot(safetensors=safetensors, spec_json=spec_json)))

    def update_policy_log_probs(self, indices: np.ndarray, log_probs: np.ndarray) -> pb.UpdatePolicyResponse:
        """Send log pi(a|s) (nats) of dataset rows ``indices``; rows not given get weight 0 in refits."""
        return self.client.call("UpdatePolicy", pb.UpdatePolicyRequest(
            session_id=self.session_id, log_probs=pb.LogProbs(
                indices=to_tensor(np.asarray(indices, np.int64)),
                log_probs=to_tensor(np.asarray(log_probs, np.float64)),
                dataset_fingerprint=self.info.dataset_fingerprint)))

    def update_policy(self, policy: Any) -> pb.UpdatePolicyResponse:
        """Send an SB3 SAC model/policy as a snapshot, or a ``(safetensors, spec_json)`` pair."""
        from adept_client.policy import sac_snapshot

        safetensors, spec_json = policy if isinstance(policy, tuple) else sac_snapshot(policy)
        return self.update_policy_snapshot(safetensors, spec_json)

    def refit(self, steps: int | None = None, weighted: bool = True) -> RefitState:
        """Start a background refit; return its state (FailedPreconditionError while one runs)."""
        return RefitState.from_message(self.client.call("Refit", pb.RefitRequest(
            session_id=self.session_id, steps=steps, unweighted=not weighted)))

    def get_refit(self, job_id: int = 0, wait_s: float = 0.0) -> RefitState:
        """Return a refit job's state (0: the latest), waiting up to ``wait_s`` seconds for it to end."""
        return RefitState.from_message(self.client.call("GetRefit", pb.GetRefitRequest(
            session_id=self.session_id, job_id=job_id, wait_seconds=wait_s), timeout_s=wait_s + self.client.timeout_s))

    def wait_refit(self, job_id: int = 0, timeout_s: float = 600.0, poll_s: float = 30.0) -> RefitState:
        """Wait (long-polling, bounded by ``timeout_s``) until a refit job ends; return its state."""
        deadline = time.monotonic() + timeout_s
        while True:
            state = self.get_refit(job_id, wait_s=min(poll_s, max(deadline - time.monotonic(), 0.0)))
            if state.state != "running" or time.monotonic() >= deadline:
                return state

    def close(self) -> None:
        """Close the session on the server (a session already gone is fine)."""
        if self.closed:
            return
        self.closed = True
        from adept_client.errors import SessionNotFoundError

        with contextlib.suppress(SessionNotFoundError, ServerUnavailableError):  # already gone is fine
            self.client.call("CloseSession", pb.CloseSessionRequest(session_id=self.session_id), timeout_s=5.0)
