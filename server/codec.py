"""``adept.v1`` messages <-> session-core calls, shared by the gRPC servicer and the binary HTTP route.

``METHODS`` maps each RPC name to its request class and a handler ``(core, owner, request) ->
response``; ``answer`` runs one call from request bytes to response bytes. Both front-ends parse
the request bytes themselves, so malformed protobuf is an INVALID_ARGUMENT with a message rather
than a transport-level failure. Every value a client sends is checked here or in the core before
it is used: tensor sizes (``adept_client.tensors.from_tensor``) and the size and nesting depth of
JSON text (overrides, policy specs) here; seeds, ids and overrides' types and ranges in the core.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
from adept_client.proto.adept.v1 import world_model_pb2 as pb
from adept_client.tensors import TensorError, from_tensor, to_tensor
from google.protobuf.message import DecodeError, Message

from adept_env.envs.episodes import AUTORESET_NAMES, StepResult
from server.errors import ServiceError, invalid
from server.sessions import DatasetPairs, RefitInfo, SessionCore, SessionInfo, UpdateResult

REFIT_STATES = {"running": pb.REFIT_STATE_RUNNING, "done": pb.REFIT_STATE_DONE, "failed": pb.REFIT_STATE_FAILED}
AUTORESET_BY_CODE = {pb.AUTORESET_MODE_NONE: "none", pb.AUTORESET_MODE_NEXT_STEP: "next_step",
                     pb.AUTORESET_MODE_SAME_STEP: "same_step"}
assert set(AUTORESET_BY_CODE.values()) == set(AUTORESET_NAMES)
log = logging.getLogger("adept.server")

MAX_JSON_DEPTH = 64
"""Nesting of arrays/objects a JSON value from a client may have at most (policy specs, overrides)."""
MAX_SPEC_CHARS = 1 << 20
"""Characters of a policy snapshot's JSON spec at most (the shipped ones are ~3 KB)."""
MAX_OVERRIDE_CHARS = 10_000
"""Characters of one CreateSession override's JSON value at most."""
TRANSITION_FIELDS = ("rewards", "next_observations", "terminals", "timeouts")
"""What GetDatasetPairs adds to each row with ``include_transitions``."""


def parse(cls: type[Message], data: bytes) -> Message:
    """Return ``data`` parsed as ``cls``; INVALID_ARGUMENT with the parser's message if it is malformed."""
    try:
        return cls.FromString(data)
    except (DecodeError, ValueError, RecursionError) as exc:
        raise invalid(f"malformed {cls.DESCRIPTOR.full_name} protobuf: {exc}") from exc


def json_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> int:
    """Return how deeply arrays/objects nest in a parsed JSON ``value`` (a scalar: 0; stops counting past ``limit``)."""
    depth, level = 0, [value]
    while depth <= limit:
        containers = [item for item in level if isinstance(item, (list, dict))]
        if not containers:
            break
        depth += 1
        level = [child for item in containers for child in (item.values() if isinstance(item, dict) else item)]
    return depth


def check_json(text: str, name: str, max_chars: int, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Return JSON ``text`` parsed; INVALID_ARGUMENT if it is longer than ``max_chars``, malformed, or nests
    deeper than ``max_depth`` (checked before any recursive use of it)."""
    if len(text) > max_chars:
        raise invalid(f"{name} is {len(text)} characters, more than the limit of {max_chars}")
    try:
        value = json.loads(text)
    except RecursionError as exc:
        raise invalid(f"{name} nests deeper than the limit of {max_depth}") from exc
    except ValueError as exc:
        raise invalid(f"{name} is not valid JSON: {exc}") from exc
    if json_depth(value, max_depth) > max_depth:
        raise invalid(f"{name} nests deeper than the limit of {max_depth}")
    return value


def seed_of(message: Message, name: str = "seed") -> int | None:
    """Return an optional seed field's value (None when unset); the core checks its range (``check_seed``)."""
    return getattr(message, name) if message.HasField(name) else None


def tensor(message: Message, name: str, max_elements: int | None = None, required: bool = True) -> np.ndarray | None:
    """Return the array of a Tensor field; INVALID_ARGUMENT if it is missing (when required) or bad."""
    if not message.HasField(name):
        if required:
            raise invalid(f"{name} is missing")
        return None
    try:
        return from_tensor(getattr(message, name), name, max_elements)
    except TensorError as exc:
        raise invalid(str(exc)) from exc


def box_spec(shape: tuple[int, ...], low: np.ndarray, high: np.ndarray) -> pb.BoxSpec:
    """Return a float32 BoxSpec with per-element bounds."""
    return pb.BoxSpec(shape=list(shape), dtype=pb.DTYPE_FLOAT32, low=np.ravel(low).tolist(),
                      high=np.ravel(high).tolist())


def session_response(info: SessionInfo) -> pb.CreateSessionResponse:
    """Return CreateSession's answer for ``info``."""
    inf = np.full(info.obs_dim, np.inf)
    return pb.CreateSessionResponse(
        session_id=info.session_id, env_id=info.env_id, num_envs=info.num_envs,
        observation_spec=box_spec((info.obs_dim,), -inf, inf),
        action_spec=box_spec((info.act_dim,), info.action_low, info.action_high),
        model_version=info.model_version, horizon=info.horizon, dataset_rows=info.dataset_rows,
        dataset_fingerprint=info.dataset_fingerprint, idle_timeout_seconds=info.idle_timeout_s,
        config={k: json.dumps(v) for k, v in info.config.items()},
    )


def step_response(result: StepResult) -> pb.StepResponse:
    """Return Step's answer for ``result`` (with its next-state draws when it is a StepAnswer that has them)."""
    response = pb.StepResponse(
        observations=to_tensor(result.observations), rewards=to_tensor(result.rewards),
        terminated=to_tensor(result.terminated), truncated=to_tensor(result.truncated),
        uncertainty=to_tensor(result.uncertainty), raw_rewards=to_tensor(result.raw_rewards),
        halted=to_tensor(result.halted), model_version=result.model_version,
        reset_mask=to_tensor(result.reset_mask),
    )
    if result.final_observations is not None:
        response.final_observations.CopyFrom(to_tensor(result.final_observations))
    if getattr(result, "draws", None) is not None:
        response.next_state_draws.CopyFrom(to_tensor(result.draws))
        response.draws_terminated.CopyFrom(to_tensor(result.draws_terminated))
    return response


def pairs_response(pairs: DatasetPairs) -> pb.GetDatasetPairsResponse:
    """Return GetDatasetPairs' answer (with the transitions' fields when ``pairs`` has them)."""
    response = pb.GetDatasetPairsResponse(indices=to_tensor(pairs.indices), observations=to_tensor(pairs.observations),
                                          actions=to_tensor(pairs.actions), total_rows=pairs.total_rows,
                                          dataset_fingerprint=pairs.dataset_fingerprint)
    for name in TRANSITION_FIELDS:
        value = getattr(pairs, name)
        if value is not None:
            getattr(response, name).CopyFrom(to_tensor(value))
    return response


def refit_status(info: RefitInfo) -> pb.RefitStatus:
    """Return a RefitStatus message."""
    return pb.RefitStatus(job_id=info.job_id, state=REFIT_STATES.get(info.state, pb.REFIT_STATE_UNSPECIFIED),
                          policy_updates=info.policy_updates, effective_sample_size=info.effective_sample_size,
                          ess_fraction=info.ess_fraction, clipped_fraction=info.clipped_fraction,
                          model_version=info.model_version, seconds=info.seconds, error=info.error,
                          checkpointed=info.checkpointed, kept_start=info.kept_start)


def update_response(result: UpdateResult) -> pb.UpdatePolicyResponse:
    """Return UpdatePolicy's answer."""
    response = pb.UpdatePolicyResponse(policy_updates=result.policy_updates, model_version=result.model_version)
    if result.started_refit is not None:
        response.started_refit.CopyFrom(refit_status(result.started_refit))
    return response


def decode_overrides(overrides: Any) -> dict[str, Any]:
    """Return CreateSession's overrides (field -> JSON text) as Python values."""
    out = {}
    for key, text in overrides.items():
        try:
            out[key] = check_json(text, f"override {key!r}", MAX_OVERRIDE_CHARS)
        except ServiceError as exc:
            raise invalid(f"override {key!r} must be a JSON value (e.g. 10, 0.5, null, \"initial\"), "
                          f"got {text[:100]!r}: {exc.message}") from exc
    return out


def close_orphan(core: SessionCore, owner: str, session_id: str) -> None:
    """Close a session whose CreateSession answer could not be sent (the caller never learns its id)."""
    try:
        core.close_session(owner, session_id)
    except Exception:  # the original error is what the caller must see
        log.exception("closing orphaned session %s… failed", session_id[:6])


def _list(core: SessionCore, owner: str, request: pb.ListEnvironmentsRequest) -> pb.ListEnvironmentsResponse:
    envs = [pb.EnvironmentInfo(env_id=e.env_id, task=e.task, dataset=e.dataset, obs_dim=e.obs_dim,
                               act_dim=e.act_dim, loaded=e.loaded) for e in core.list_environments()]
    return pb.ListEnvironmentsResponse(environments=envs, client_overrides=list(core.config.client_overrides))


def _create(core: SessionCore, owner: str, request: pb.CreateSessionRequest) -> pb.CreateSessionResponse:
    if not request.env_id:
        raise invalid("env_id is missing")
    seed = seed_of(request)
    info = core.create_session(owner, request.env_id, request.num_envs, seed, decode_overrides(request.overrides))
    try:
        return session_response(info)
    except BaseException:
        close_orphan(core, owner, info.session_id)
        raise


def _reset(core: SessionCore, owner: str, request: pb.ResetRequest) -> pb.ResetResponse:
    mask = tensor(request, "mask", core.config.max_num_envs, required=False)
    seed = seed_of(request)
    obs, version = core.reset(owner, request.session_id, seed, mask)
    return pb.ResetResponse(observations=to_tensor(obs), model_version=version)


def _step(core: SessionCore, owner: str, request: pb.StepRequest) -> pb.StepResponse:
    mode = AUTORESET_BY_CODE.get(request.autoreset_mode)
    if mode is None:
        raise invalid(f"unknown autoreset_mode {request.autoreset_mode}")
    actions = tensor(request, "actions", core.config.max_num_envs * 64)
    return step_response(core.step(owner, request.session_id, actions, mode, request.draws))


def _pairs(core: SessionCore, owner: str, request: pb.GetDatasetPairsRequest) -> pb.GetDatasetPairsResponse:
    seed = seed_of(request)
    return pairs_response(core.dataset_pairs(owner, request.session_id, request.start, request.count,
                                             request.sample_size, seed, request.include_transitions))


def _update(core: SessionCore, owner: str, request: pb.UpdatePolicyRequest) -> pb.UpdatePolicyResponse:
    which = request.WhichOneof("policy")
    if which == "snapshot":
        check_json(request.snapshot.spec_json, "spec_json", MAX_SPEC_CHARS)
        result = core.update_policy_snapshot(owner, request.session_id, request.snapshot.safetensors,
                                             request.snapshot.spec_json)
    elif which == "log_probs":
        lp = request.log_probs
        result = core.update_policy_log_probs(owner, request.session_id, tensor(lp, "indices"),
                                              tensor(lp, "log_probs"), lp.dataset_fingerprint)
    else:
        raise invalid("give a policy: snapshot or log_probs")
    return update_response(result)


def _refit(core: SessionCore, owner: str, request: pb.RefitRequest) -> pb.RefitStatus:
    steps = request.steps if request.HasField("steps") else None
    return refit_status(core.refit(owner, request.session_id, steps, weighted=not request.unweighted))


def _get_refit(core: SessionCore, owner: str, request: pb.GetRefitRequest) -> pb.RefitStatus:
    return refit_status(core.get_refit(owner, request.session_id, request.job_id, request.wait_seconds))


def _close(core: SessionCore, owner: str, request: pb.CloseSessionRequest) -> pb.CloseSessionResponse:
    core.close_session(owner, request.session_id)
    return pb.CloseSessionResponse()


Handler = Callable[[SessionCore, str, Any], Message]
METHODS: dict[str, tuple[type[Message], Handler]] = {
    "ListEnvironments": (pb.ListEnvironmentsRequest, _list),
    "CreateSession": (pb.CreateSessionRequest, _create),
    "Reset": (pb.ResetRequest, _reset),
    "Step": (pb.StepRequest, _step),
    "GetDatasetPairs": (pb.GetDatasetPairsRequest, _pairs),
    "UpdatePolicy": (pb.UpdatePolicyRequest, _update),
    "Refit": (pb.RefitRequest, _refit),
    "GetRefit": (pb.GetRefitRequest, _get_refit),
    "CloseSession": (pb.CloseSessionRequest, _close),
}
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["WorldModelService"].full_name
assert set(METHODS) == {m.name for m in pb.DESCRIPTOR.services_by_name["WorldModelService"].methods}


def answer(core: SessionCore, owner: str, method: str, data: bytes) -> bytes:
    """Run ``method`` on request bytes ``data``; return the response bytes.

    If CreateSession's answer cannot be encoded, the session it opened is closed before the error
    propagates, so no session lives on that its caller cannot know of.
    """
    request_class, handle = METHODS[method]
    response = handle(core, owner, parse(request_class, data))
    try:
        return response.SerializeToString()
    except BaseException:
        if method == "CreateSession":
            close_orphan(core, owner, response.session_id)
        raise
