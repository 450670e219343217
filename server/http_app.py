"""The HTTP front-end: a FastAPI app over the session core (OpenAPI at /docs).

Two encodings of the same calls:

* JSON at ``/v1/...`` for convenience (arrays as nested lists), typed request/response models;
* binary protobuf at ``POST /rpc/adept.v1.WorldModelService/<Method>`` (Twirp-style; body and
  answer are the ``adept.v1`` messages, ``Content-Type: application/x-protobuf``) for speed.

Errors are JSON ``{"code": "INVALID_ARGUMENT", "message": "..."}`` with a 4xx/5xx status, every one
answered from inside the app (``ErrorBoundary``), so an error never costs the client its keep-alive
connection: a client's mistake with its status and message (``server.errors.answer_for``), a server
bug as 500 INTERNAL with a request id only (the traceback is logged under that id).
``Authorization: Bearer <token>`` is needed on every call but /health when tokens are configured.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from adept_env.envs.episodes import StepResult
from server.codec import (
    MAX_JSON_DEPTH,
    MAX_OVERRIDE_CHARS,
    MAX_SPEC_CHARS,
    METHODS,
    SERVICE_NAME,
    TRANSITION_FIELDS,
    answer,
    close_orphan,
    json_depth,
)
from server.errors import ServiceError, answer_for, invalid
from server.sessions import MAX_SEED, DatasetPairs, RefitInfo, SessionCore, SessionInfo, UpdateResult

log = logging.getLogger("adept.server")
PROTOBUF = "application/x-protobuf"
HTTP_CODES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
              405: "UNIMPLEMENTED", 409: "FAILED_PRECONDITION", 413: "RESOURCE_EXHAUSTED", 429: "RESOURCE_EXHAUSTED"}
"""HTTP status of a framework error (no route, wrong method, unreadable body) -> its status name."""


# -- JSON models ---------------------------------------------------------------------------------
class CreateSessionBody(BaseModel):
    env_id: str = Field(description="e.g. ADEPT-halfcheetah-random")
    num_envs: int = Field(1, description="episodes stepped together")
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="seeds start states and model draws")
    overrides: dict[str, Any] = Field(default_factory=dict, description="EnvConfig values, e.g. {'horizon': 10}")


class BoxSpecOut(BaseModel):
    shape: list[int]
    dtype: str
    low: list[float | None] = Field(description="per element; null where unbounded")
    high: list[float | None] = Field(description="per element; null where unbounded")


class SessionOut(BaseModel):
    session_id: str
    env_id: str
    num_envs: int
    observation_spec: BoxSpecOut
    action_spec: BoxSpecOut
    model_version: int
    horizon: int
    dataset_rows: int
    dataset_fingerprint: str
    idle_timeout_seconds: float
    config: dict[str, Any]


class ResetBody(BaseModel):
    seed: int | None = Field(None, ge=0, le=MAX_SEED)
    mask: list[bool] | None = Field(None, description="reset only these envs; null: all")


class ResetOut(BaseModel):
    observations: list[list[float]]
    model_version: int


class StepBody(BaseModel):
    actions: list[list[float]] | list[float] = Field(description="(num_envs, act_dim), or (act_dim,) for one env")
    autoreset: Literal["none", "next_step", "same_step"] = "none"
    draws: int = Field(0, description="also return this many of the model's next-state draws per env "
                                      "(0: none; at most the session's n_samples and the server's max_draws)")


class StepOut(BaseModel):
    observations: list[list[float]]
    rewards: list[float]
    terminated: list[bool]
    truncated: list[bool]
    uncertainty: list[float]
    raw_rewards: list[float]
    halted: list[bool]
    model_version: int
    reset_mask: list[bool]
    final_observations: list[list[float]] | None = None
    next_state_draws: list[list[list[float]]] | None = Field(None, description="draws > 0: (num_envs, draws, "
                                                                               "obs_dim)")
    draws_terminated: list[list[bool]] | None = Field(None, description="draws > 0: (num_envs, draws)")


class PairsOut(BaseModel):
    indices: list[int]
    observations: list[list[float]]
    actions: list[list[float]]
    total_rows: int
    dataset_fingerprint: str
    rewards: list[float] | None = Field(None, description="include_transitions only")
    next_observations: list[list[float]] | None = Field(None, description="include_transitions only")
    terminals: list[bool] | None = Field(None, description="include_transitions only")
    timeouts: list[bool] | None = Field(None, description="include_transitions only")


class SnapshotBody(BaseModel):
    safetensors_base64: str = Field(description="the actor's .safetensors file, base64")
    spec: dict[str, Any] = Field(description="the actor's JSON spec")


class LogProbsBody(BaseModel):
    indices: list[int]
    log_probs: list[float]
    dataset_fingerprint: str = ""


class UpdatePolicyBody(BaseModel):
    snapshot: SnapshotBody | None = None
    log_probs: LogProbsBody | None = None


class RefitBody(BaseModel):
    steps: int | None = None
    weighted: bool = True


class ErrorOut(BaseModel):
    code: str
    message: str


ERRORS: dict[int | str, dict[str, Any]] = {status: {"model": ErrorOut}
                                           for status in (400, 401, 404, 409, 413, 429, 500)}


# -- conversions ---------------------------------------------------------------------------------
def _bounds(values: np.ndarray) -> list[float | None]:
    return [float(v) if np.isfinite(v) else None for v in np.ravel(values)]


def _session_json(info: SessionInfo) -> dict[str, Any]:
    unbounded: list[float | None] = [None] * info.obs_dim
    return {
        "session_id": info.session_id, "env_id": info.env_id, "num_envs": info.num_envs,
        "observation_spec": {"shape": [info.obs_dim], "dtype": "float32", "low": unbounded, "high": unbounded},
        "action_spec": {"shape": [info.act_dim], "dtype": "float32", "low": _bounds(info.action_low),
                        "high": _bounds(info.action_high)},
        "model_version": info.model_version, "horizon": info.horizon, "dataset_rows": info.dataset_rows,
        "dataset_fingerprint": info.dataset_fingerprint, "idle_timeout_seconds": info.idle_timeout_s,
        "config": info.config,
    }


def _step_json(result: StepResult) -> dict[str, Any]:
    out = {name: getattr(result, name).tolist() for name in
           ("observations", "rewards", "terminated", "truncated", "uncertainty", "raw_rewards", "halted", "reset_mask")}
    out["model_version"] = result.model_version
    out["final_observations"] = None if result.final_observations is None else result.final_observations.tolist()
    draws = getattr(result, "draws", None)
    if draws is not None:
        out["next_state_draws"] = draws.tolist()
        out["draws_terminated"] = result.draws_terminated.tolist()
    return out


def _pairs_json(pairs: DatasetPairs) -> dict[str, Any]:
    out: dict[str, Any] = {"indices": pairs.indices.tolist(), "observations": pairs.observations.tolist(),
                           "actions": pairs.actions.tolist(), "total_rows": pairs.total_rows,
                           "dataset_fingerprint": pairs.dataset_fingerprint}
    for name in TRANSITION_FIELDS:
        value = getattr(pairs, name)
        if value is not None:
            out[name] = value.tolist()
    return out


def _refit_json(info: RefitInfo) -> dict[str, Any]:
    return dataclasses.asdict(info)


def _update_json(result: UpdateResult) -> dict[str, Any]:
    return dataclasses.asdict(result)


def _array(values: Any, name: str) -> np.ndarray:
    try:
        return np.asarray(values, dtype=np.float64)
    except (ValueError, TypeError) as exc:  # ragged lists
        raise invalid(f"{name} must be a rectangular array of numbers: {exc}") from exc


def _int_array(values: list[int], name: str) -> np.ndarray:
    """Return a list of ints as int64; INVALID_ARGUMENT if one does not fit (JSON ints are unbounded)."""
    try:
        return np.asarray(values, dtype=np.int64)
    except OverflowError as exc:
        raise invalid(f"{name} must fit in int64: {exc}") from exc


def _check_json_value(value: Any, name: str, max_chars: int) -> str:
    """Return a parsed JSON value as text; INVALID_ARGUMENT if it nests too deeply or is too long."""
    if json_depth(value) > MAX_JSON_DEPTH:
        raise invalid(f"{name} nests deeper than the limit of {MAX_JSON_DEPTH}")
    text = json.dumps(value)
    if len(text) > max_chars:
        raise invalid(f"{name} is {len(text)} characters as JSON, more than the limit of {max_chars}")
    return text


def error_response(exc: ServiceError, status: int | None = None) -> JSONResponse:
    """Return the JSON error answer of ``exc``."""
    return JSONResponse({"code": exc.code, "message": exc.message}, status_code=status or exc.http_status)


class ErrorBoundary:
    """ASGI middleware: any exception a route raises is answered here, as JSON ``{"code", "message"}``.

    Starlette's own last resort (ServerErrorMiddleware) answers 500 and then re-raises, so the
    server drops the keep-alive connection; answering here, the connection stays usable.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except ClientDisconnect:  # nobody is left to answer
            return
        except Exception as exc:
            error = answer_for(exc, f"{scope.get('method')} {str(scope.get('path'))[:200]}")
            if started:  # half an answer is out: nothing to do but end the connection
                raise
            await error_response(error)(scope, receive, send)


class _TooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: answer 413 to a request body over ``limit`` bytes (declared or streamed)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        too_large = ServiceError("RESOURCE_EXHAUSTED", f"request body is larger than the {self.limit}-byte limit")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await error_response(too_large, 413)(scope, receive, send)
            return
        received = 0
        started = cut = False

        async def limited_receive() -> dict:
            nonlocal received, cut
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    cut = True
                    raise _TooLarge
            return message

        async def guarded_send(message: dict) -> None:
            nonlocal started
            if cut and not started:  # the app's answer to a body it could not read (FastAPI says 400): ours is 413
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not cut:
                raise
        if cut and not started:
            await error_response(too_large, 413)(scope, receive, send)


def _owner(request: Request, authorization: Annotated[str | None, Header()] = None) -> str:
    """The caller's owner id from the Authorization header (UNAUTHENTICATED without a valid token)."""
    return request.app.state.core.authenticate(authorization)


Owner = Annotated[str, Depends(_owner)]


def create_app(core: SessionCore) -> FastAPI:
    """Return the FastAPI app of ``core``."""
    app = FastAPI(title="adept-env world-model service", version="1",
                  description="Gymnasium-style sessions over a diffusion world model. JSON at /v1, binary "
                              f"protobuf ({PROTOBUF}) at /rpc/{SERVICE_NAME}/<Method>.")

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, "INVALID_ARGUMENT" if exc.status_code < 500 else "INTERNAL")
        error = ServiceError(code, str(exc.detail))
        return JSONResponse({"code": error.code, "message": error.message}, exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors())
        return error_response(invalid(f"bad request: {problems}"))

    app.state.core = core

    @app.get("/health", summary="Liveness and readiness (no token needed)")
    def health_check() -> dict[str, Any]:
        return {"status": "SERVING", "sessions": core.session_count(), "auth": core.auth_enabled}

    @app.get("/v1/environments", summary="ListEnvironments", responses=ERRORS)
    def list_environments(who: Owner) -> dict[str, Any]:
        envs = [e.__dict__ for e in core.list_environments()]
        return {"environments": envs, "client_overrides": list(core.config.client_overrides)}

    @app.post("/v1/sessions", summary="CreateSession", response_model=SessionOut, responses=ERRORS)
    def create_session(body: CreateSessionBody, who: Owner) -> JSONResponse:
        for key, value in body.overrides.items():
            _check_json_value(value, f"override {key[:100]!r}", MAX_OVERRIDE_CHARS)
        info = core.create_session(who, body.env_id, body.num_envs, body.seed, body.overrides)
        try:
            return JSONResponse(_session_json(info))
        except BaseException:
            close_orphan(core, who, info.session_id)
            raise

    @app.post("/v1/sessions/{session_id}/reset", summary="Reset", response_model=ResetOut, responses=ERRORS)
    def reset(session_id: str, who: Owner, body: ResetBody | None = None) -> JSONResponse:
        body = body or ResetBody()
        mask = None if body.mask is None else np.asarray(body.mask, bool)
        obs, version = core.reset(who, session_id, body.seed, mask)
        return JSONResponse({"observations": obs.tolist(), "model_version": version})

    @app.post("/v1/sessions/{session_id}/step", summary="Step", response_model=StepOut, responses=ERRORS)
    def step(session_id: str, body: StepBody, who: Owner) -> JSONResponse:
        result = core.step(who, session_id, _array(body.actions, "actions"), body.autoreset, body.draws)
        return JSONResponse(_step_json(result))

    @app.get("/v1/sessions/{session_id}/dataset-pairs", summary="GetDatasetPairs", response_model=PairsOut,
             responses=ERRORS)
    def dataset_pairs(session_id: str, who: Owner, start: Annotated[int, Query(ge=0)] = 0,
                      count: Annotated[int, Query(ge=0)] = 0, sample_size: Annotated[int, Query(ge=0)] = 0,
                      seed: Annotated[int | None, Query(ge=0, le=MAX_SEED)] = None,
                      include_transitions: bool = False) -> JSONResponse:
        pairs = core.dataset_pairs(who, session_id, start, count, sample_size, seed, include_transitions)
        return JSONResponse(_pairs_json(pairs))

    @app.post("/v1/sessions/{session_id}/policy", summary="UpdatePolicy", response_model=UpdateResult,
              responses=ERRORS)
    def update_policy(session_id: str, body: UpdatePolicyBody, who: Owner) -> JSONResponse:
        if (body.snapshot is None) == (body.log_probs is None):
            raise invalid("give exactly one of snapshot or log_probs")
        if body.snapshot is not None:
            spec = _check_json_value(body.snapshot.spec, "spec", MAX_SPEC_CHARS)
            try:
                weights = base64.b64decode(body.snapshot.safetensors_base64, validate=True)
            except ValueError as exc:
                raise invalid(f"safetensors_base64 is not base64: {exc}") from exc
            result = core.update_policy_snapshot(who, session_id, weights, spec)
        else:
            lp = body.log_probs
            result = core.update_policy_log_probs(who, session_id, _int_array(lp.indices, "indices"),
                                                  _array(lp.log_probs, "log_probs"), lp.dataset_fingerprint)
        return JSONResponse(_update_json(result))

    @app.post("/v1/sessions/{session_id}/refits", summary="Refit", response_model=RefitInfo, responses=ERRORS)
    def refit(session_id: str, who: Owner, body: RefitBody | None = None) -> JSONResponse:
        body = body or RefitBody()
        return JSONResponse(_refit_json(core.refit(who, session_id, body.steps, body.weighted)))

    @app.get("/v1/sessions/{session_id}/refits/{job_id}", summary="GetRefit (job 0: the latest)",
             response_model=RefitInfo, responses=ERRORS)
    def get_refit(session_id: str, job_id: int, who: Owner,
                  wait_seconds: Annotated[float, Query(ge=0)] = 0.0) -> JSONResponse:
        return JSONResponse(_refit_json(core.get_refit(who, session_id, job_id, wait_seconds)))

    @app.delete("/v1/sessions/{session_id}", summary="CloseSession", responses=ERRORS)
    def close_session(session_id: str, who: Owner) -> dict[str, Any]:
        core.close_session(who, session_id)
        return {}

    @app.post(f"/rpc/{SERVICE_NAME}/{{method}}", summary="Any RPC as binary protobuf (request/response messages)",
              responses={200: {"content": {PROTOBUF: {}}}, **ERRORS},
              openapi_extra={"requestBody": {"content": {PROTOBUF: {"schema": {"type": "string",
                                                                              "format": "binary"}}}}})
    async def rpc(method: str, request: Request) -> Response:
        if method not in METHODS:
            raise ServiceError("NOT_FOUND", f"no method {method[:100]!r}; methods: {sorted(METHODS)}")
        who = core.authenticate(request.headers.get("authorization"))
        body = await request.body()
        return Response(await run_in_threadpool(answer, core, who, method, body), media_type=PROTOBUF)

    app.add_middleware(BodyLimit, limit=core.config.max_message_bytes)
    app.add_middleware(ErrorBoundary)  # added last: the outermost of ours, around everything the app does
    return app
