"""The session core: sessions, owners, limits and every call of the service, transport-free.

The gRPC servicer and the FastAPI app translate their requests into these methods and their
``ServiceError`` into a status; the methods take and return numpy arrays and dataclasses.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import logging
import numbers
import secrets
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from adept_env.envs.config import shown
from adept_env.envs.core import RefitJob
from adept_env.envs.episodes import EpisodeBatch, ResetNeeded, StepResult
from adept_env.envs.world_model_env import action_space
from adept_env.target_policy import PolicyMismatchError
from server.config import ServerConfig
from server.engines import DatasetRowLogProbs, Engine, EngineStore
from server.errors import ServiceError, invalid, not_found

log = logging.getLogger("adept.server")

ANONYMOUS = "anonymous"
MAX_SEED = 2**63 - 1
"""Seeds are integers in [0, MAX_SEED] (numpy's generators refuse negative ones; the wire carries int64)."""
MAX_ENV_ID = 256
"""Longest env id accepted (the served ids are far shorter); a longer one is refused before any use."""
MAX_SESSION_ID = 128
"""Longest session id looked up (ours have 24 characters)."""


def check_seed(seed: Any, name: str = "seed") -> int | None:
    """Return ``seed`` as an int in [0, 2**63 - 1] (or None); else INVALID_ARGUMENT naming the range."""
    if seed is None:
        return None
    integral = isinstance(seed, numbers.Integral) and not isinstance(seed, bool)
    if not integral or not 0 <= int(seed) <= MAX_SEED:
        raise invalid(f"{name} must be an integer in [0, 2**63 - 1], got {shown(seed)}")
    return int(seed)


@dataclass
class EnvironmentInfo:
    """One served environment id and its sizes."""

    env_id: str
    task: str
    dataset: str
    obs_dim: int
    act_dim: int
    loaded: bool


@dataclass
class SessionInfo:
    """What CreateSession returns: the id, the specs (bounds per element) and the effective config."""

    session_id: str
    env_id: str
    num_envs: int
    obs_dim: int
    act_dim: int
    action_low: np.ndarray
    action_high: np.ndarray
    model_version: int
    horizon: int
    dataset_rows: int
    dataset_fingerprint: str
    idle_timeout_s: float
    config: dict[str, Any]


@dataclass
class DatasetPairs:
    """Dataset rows handed out for log-prob policy updates (and, when asked, their whole transitions)."""

    indices: np.ndarray
    observations: np.ndarray
    actions: np.ndarray
    total_rows: int
    dataset_fingerprint: str
    rewards: np.ndarray | None = None
    """include_transitions only: float32 (n,)."""
    next_observations: np.ndarray | None = None
    """include_transitions only: float32 (n, obs_dim)."""
    terminals: np.ndarray | None = None
    """include_transitions only: bool (n,)."""
    timeouts: np.ndarray | None = None
    """include_transitions only: bool (n,)."""


@dataclass
class StepAnswer(StepResult):
    """A Step's result, with ``draws`` of the model's K next-state draws per env when the caller asked."""

    draws: np.ndarray | None = None
    """float32 (n, draws, obs_dim): the first ``draws`` of the model's next-state draws of each env."""
    draws_terminated: np.ndarray | None = None
    """bool (n, draws): the task's termination function on each draw."""


@dataclass
class RefitInfo:
    """A refit job's state, as plain values."""

    job_id: int
    state: str
    """'running', 'done' or 'failed'."""
    policy_updates: int
    effective_sample_size: float
    ess_fraction: float
    clipped_fraction: float
    model_version: int
    seconds: float
    error: str
    checkpointed: bool
    kept_start: bool = False
    """The refit ended on its starting weights (see RefitJob.kept_start)."""


@dataclass
class UpdateResult:
    """What UpdatePolicy returns."""

    policy_updates: int
    model_version: int
    started_refit: RefitInfo | None


@dataclass
class Session:
    """``num_envs`` episodes of one env id, owned by one token."""

    session_id: str
    owner: str
    env_id: str
    engine: Engine
    episodes: EpisodeBatch
    rng: np.random.Generator
    last_used: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)
    closed: bool = False


def owner_of_token(token: str) -> str:
    """Return the owner id of a token: a short hash, so tokens never reach logs or disk."""
    return "t" + hashlib.sha256(token.encode()).hexdigest()[:16]


class SessionCore:
    """Every call of the service over an EngineStore; thread-safe."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.engines = EngineStore(config)
        self._sessions: dict[str, Session] = {}
        self._creating: Counter[str] = Counter()
        """Owner -> CreateSession calls past the limit checks and not yet done: they hold a slot."""
        self._closing = False
        """Set by close_all (shutdown): no session is created after it."""
        self._lock = threading.Lock()
        self._tokens = tuple(t.encode() for t in config.api_tokens)

    # -- identity ------------------------------------------------------------------------------
    @property
    def auth_enabled(self) -> bool:
        return bool(self._tokens)

    def authenticate(self, authorization: str | None) -> str:
        """Return the caller's owner id from an ``authorization`` header/metadata value.

        Without configured tokens every caller is 'anonymous'. Raises UNAUTHENTICATED.
        """
        if not self._tokens:
            return ANONYMOUS
        if not authorization:
            raise ServiceError("UNAUTHENTICATED", "this server needs 'authorization: Bearer <token>'")
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise ServiceError("UNAUTHENTICATED", "the authorization value must be 'Bearer <token>'")
        given = token.strip().encode()
        matched = False
        for candidate in self._tokens:  # compare with every token: time does not reveal which matched
            matched |= hmac.compare_digest(given, candidate)
        if not matched:
            raise ServiceError("UNAUTHENTICATED", "unknown API token")
        return owner_of_token(token.strip())

    def _session(self, owner: str, session_id: str) -> Session:
        session = None
        if isinstance(session_id, str) and len(session_id) <= MAX_SESSION_ID:  # a longer id is never ours
            with self._lock:
                session = self._sessions.get(session_id)
        # Another owner's session answers exactly like a missing one: its existence is not revealed.
        if session is None or session.owner != owner or session.closed:
            raise not_found(f"no session {shown(session_id)} for this token (closed, expired after "
                            f"{self.config.idle_timeout_s:g} s idle, or the server restarted); create a new one")
        session.last_used = time.monotonic()
        return session

    # -- environments and sessions ------------------------------------------------------------
    def list_environments(self) -> list[EnvironmentInfo]:
        """Return the served environment ids with their task sizes."""
        from adept_env.tasks import get_task

        out = []
        for env_id in self.engines.env_ids:
            dataset = env_id.removeprefix("ADEPT-")
            task = get_task(dataset.split("-", 1)[0])
            out.append(EnvironmentInfo(env_id, task.name, dataset, task.obs_dim, task.act_dim,
                                       self.engines.is_loaded(env_id)))
        return out

    def create_session(self, owner: str, env_id: str, num_envs: int = 1, seed: int | None = None,
                       overrides: dict[str, Any] | None = None) -> SessionInfo:
        """Open a session of ``num_envs`` episodes; its engine loads (or trains) the model on first use.

        The limits hold under concurrency: a slot is reserved under the lock before the engine is built
        (creates in flight count as sessions) and given back if the create fails. A failed create leaves
        no session, no engine reference and no folder (the engine's folder appears with its first checkpoint).
        """
        num_envs = int(num_envs) if num_envs else 1
        if not 1 <= num_envs <= self.config.max_num_envs:
            raise invalid(f"num_envs must be in [1, {self.config.max_num_envs}], got {num_envs}")
        self._check_env_id(env_id)
        seed = check_seed(seed)
        self._reserve(owner)
        engine: Engine | None = None
        try:
            try:
                engine = self.engines.acquire(owner, env_id, dict(overrides or {}))
            except ServiceError:
                raise
            except (ValueError, TypeError, OverflowError, RecursionError, FileNotFoundError) as exc:
                raise invalid(f"cannot serve {env_id}: {exc}") from exc
            session = Session(
                session_id=secrets.token_urlsafe(18),
                owner=owner,
                env_id=env_id,
                engine=engine,
                episodes=EpisodeBatch(engine.core, num_envs),
                rng=np.random.default_rng(seed),
            )
            info = self._session_info(session, num_envs)
        except BaseException:
            with self._lock:
                self._unreserve(owner)
            if engine is not None:
                self.engines.release(engine)
            raise
        with self._lock:
            self._unreserve(owner)
            opened = not self._closing
            if opened:
                self._sessions[session.session_id] = session
        if not opened:
            self.engines.release(engine)
            raise ServiceError("UNAVAILABLE", "the server is shutting down")
        log.info("session %s… %s x%d opened", session.session_id[:6], env_id, num_envs)
        return info

    def _check_env_id(self, env_id: Any) -> None:
        """Refuse an env id that is too long (INVALID_ARGUMENT) or not served (NOT_FOUND), quoting at most
        64 characters of it."""
        if not isinstance(env_id, str) or len(env_id) > MAX_ENV_ID:
            size = f"{len(env_id)} characters" if isinstance(env_id, str) else type(env_id).__name__
            raise invalid(f"env_id must be a string of at most {MAX_ENV_ID} characters, got {size}: {shown(env_id)}")
        if env_id not in self.engines.env_ids:
            raise not_found(f"unknown environment {shown(env_id)}; this server serves {list(self.engines.env_ids)}")

    def _reserve(self, owner: str) -> None:
        """Take one session slot of the server and of ``owner`` (RESOURCE_EXHAUSTED if none is left)."""
        with self._lock:
            if self._closing:
                raise ServiceError("UNAVAILABLE", "the server is shutting down")
            creating = sum(self._creating.values())
            if len(self._sessions) + creating >= self.config.max_sessions:
                raise ServiceError("RESOURCE_EXHAUSTED", f"the server has its maximum of {self.config.max_sessions} "
                                   "sessions (max_sessions); close some or wait for idle ones to expire")
            mine = sum(s.owner == owner for s in self._sessions.values()) + self._creating[owner]
            if mine >= self.config.max_sessions_per_owner:
                raise ServiceError("RESOURCE_EXHAUSTED", f"this token has its maximum of "
                                   f"{self.config.max_sessions_per_owner} sessions (max_sessions_per_owner); "
                                   "close some first")
            self._creating[owner] += 1

    def _unreserve(self, owner: str) -> None:
        """Give back a slot taken by _reserve (call with the lock held)."""
        self._creating[owner] -= 1
        if self._creating[owner] <= 0:
            del self._creating[owner]

    def _session_info(self, session: Session, num_envs: int) -> SessionInfo:
        engine = session.engine
        core = engine.core
        space = action_space(core.task.act_dim)
        config = {k: getattr(core.config, k) for k in core.config.__dataclass_fields__
                  if k not in ("model_path", "dataset_path")}
        return SessionInfo(
            session_id=session.session_id,
            env_id=session.env_id,
            num_envs=num_envs,
            obs_dim=core.task.obs_dim,
            act_dim=core.task.act_dim,
            action_low=space.low.astype(np.float64),
            action_high=space.high.astype(np.float64),
            model_version=core.model_version,
            horizon=core.config.horizon,
            dataset_rows=len(core.dataset),
            dataset_fingerprint=engine.base.fingerprint,
            idle_timeout_s=self.config.idle_timeout_s,
            config=config,
        )

    def close_session(self, owner: str, session_id: str) -> None:
        """Close a session (NOT_FOUND if it is not this owner's)."""
        session = self._session(owner, session_id)
        self._drop(session)

    def _drop(self, session: Session) -> None:
        with self._lock:
            if self._sessions.pop(session.session_id, None) is None:
                return
        session.closed = True
        self.engines.release(session.engine)

    def expire_idle(self, now: float | None = None) -> int:
        """Close sessions idle longer than the timeout; return how many were closed."""
        now = time.monotonic() if now is None else now
        with self._lock:
            idle = [s for s in self._sessions.values() if now - s.last_used > self.config.idle_timeout_s]
        for session in idle:
            log.info("session %s… expired after %.0f s idle", session.session_id[:6], now - session.last_used)
            self._drop(session)
        return len(idle)

    def session_count(self) -> int:
        """Return the number of open sessions."""
        with self._lock:
            return len(self._sessions)

    def close_all(self) -> None:
        """Close every session and refuse new ones (shutdown): a create still in flight gives its slot back."""
        with self._lock:
            self._closing = True
            sessions = list(self._sessions.values())
        for session in sessions:
            self._drop(session)

    # -- episodes ------------------------------------------------------------------------------
    def reset(self, owner: str, session_id: str, seed: int | None = None,
              mask: np.ndarray | None = None) -> tuple[np.ndarray, int]:
        """Start new episodes (all, or where ``mask``); return (observations (n, obs_dim) float32, version)."""
        session = self._session(owner, session_id)
        seed = check_seed(seed)
        with session.lock:
            if seed is not None:
                session.rng = np.random.default_rng(seed)
            try:
                obs = session.episodes.reset(session.rng, mask=mask)
            except ValueError as exc:
                raise invalid(str(exc)) from exc
            return obs, session.engine.core.model_version

    def step(self, owner: str, session_id: str, actions: np.ndarray, autoreset: str = "none",
             draws: int = 0) -> StepAnswer:
        """Step every env of the session with one model call, handling ended envs by ``autoreset``
        (EpisodeBatch.step: actions are validated and clipped there). ``draws`` > 0 also returns that many
        of the model's next-state draws per env, with the task's termination flag of each."""
        session = self._session(owner, session_id)
        draws = self._check_draws(session, draws)
        with session.lock:
            try:
                result = session.episodes.step(actions, session.rng, autoreset=autoreset)
            except ResetNeeded as exc:
                raise ServiceError("FAILED_PRECONDITION", f"Reset needed: {exc}") from exc
            except ValueError as exc:
                raise invalid(str(exc)) from exc
        answer = StepAnswer(**{f.name: getattr(result, f.name) for f in dataclasses.fields(StepResult)})
        if draws:
            task = session.engine.core.task
            n, dim = len(result.rewards), task.obs_dim
            if result.next_samples is None:  # no env was stepped (all were reset instead)
                answer.draws = np.zeros((n, draws, dim), np.float32)
            else:  # (K, n, obs_dim) -> (n, draws, obs_dim)
                answer.draws = np.ascontiguousarray(np.asarray(result.next_samples[:draws], np.float32)
                                                    .transpose(1, 0, 2))
            ended = task.is_terminated(answer.draws.reshape(n * draws, dim)).reshape(n, draws)
            answer.draws_terminated = ended & result.stepped[:, None]
        return answer

    @staticmethod
    def _draws_per_step(session: Session) -> int:
        """K: the next-state draws the session's model makes per step (its n_samples, or the model's default)."""
        core = session.engine.core
        configured = core.config.n_samples
        return int(configured if configured is not None else core.model.config.n_samples)

    def _check_draws(self, session: Session, draws: Any) -> int:
        """Return a Step's ``draws`` as an int in [0, min(K, max_draws)]; else INVALID_ARGUMENT naming the range."""
        ceiling = self.config.max_draws
        integral = isinstance(draws, numbers.Integral) and not isinstance(draws, bool)
        if not integral or not 0 <= int(draws) <= ceiling:
            raise invalid(f"draws must be an integer in [0, {ceiling}] (this server's max_draws), got {shown(draws)}")
        draws = int(draws)
        if not draws:
            return 0
        k = self._draws_per_step(session)
        if draws > k:
            raise invalid(f"draws must be in [0, {min(k, ceiling)}]: this session's model makes {k} next-state draws "
                          f"per step; create the session with the override n_samples >= {draws} "
                          f"(at most {self.config.max_samples}) to get {draws}, got {draws}")
        dim = session.engine.core.task.obs_dim
        size = session.episodes.n * draws * dim * 4
        if size > self.config.max_message_bytes // 2:
            most = max(self.config.max_message_bytes // 2 // (session.episodes.n * dim * 4), 0)
            raise invalid(f"draws {draws} x {session.episodes.n} envs x {dim} floats is {size} bytes, more than "
                          f"half the {self.config.max_message_bytes}-byte message limit; ask for at most {most}")
        return draws

    # -- following the policy ------------------------------------------------------------------
    def dataset_rows_per_answer(self, obs_dim: int, act_dim: int, include_transitions: bool = False) -> int:
        """The most dataset rows one GetDatasetPairs answer holds under the message limit."""
        floats = 2 * obs_dim + act_dim + 1 if include_transitions else obs_dim + act_dim
        row_bytes = 4 * floats + 8 + (2 if include_transitions else 0)
        return max(self.config.max_message_bytes // row_bytes - 16, 1)

    def dataset_pairs(self, owner: str, session_id: str, start: int = 0, count: int = 0, sample_size: int = 0,
                      seed: int | None = None, include_transitions: bool = False) -> DatasetPairs:
        """Return a page of dataset rows [start, start + count) or a uniform sample of ``sample_size`` rows;
        with ``include_transitions`` also their rewards, next observations, terminals and timeouts."""
        session = self._session(owner, session_id)
        seed = check_seed(seed)
        dataset = session.engine.core.dataset
        rows = len(dataset)
        limit = self.dataset_rows_per_answer(dataset.observations.shape[1], dataset.actions.shape[1],
                                             include_transitions)
        for name, value in (("start", start), ("count", count), ("sample_size", sample_size)):
            if value < 0:
                raise invalid(f"{name} must be >= 0, got {value}")
        if sample_size > 0:
            if sample_size > min(rows, limit):
                raise invalid(f"sample_size must be in [1, {min(rows, limit)}] (the rows one answer holds), "
                              f"got {sample_size}")
            indices = np.sort(np.random.default_rng(seed).choice(rows, size=sample_size, replace=False))
        else:
            if count == 0:
                raise invalid("give count > 0 (a page) or sample_size > 0 (a sample)")
            if count > limit:
                raise invalid(f"count must be in [1, {limit}] (the rows one answer holds), got {count}; "
                              "page through them")
            if start >= rows:
                raise invalid(f"start must be in [0, {rows - 1}] (the dataset has {rows} rows), got {start}: "
                              "the page is past the last row")
            indices = np.arange(start, min(start + count, rows))
        pairs = DatasetPairs(indices.astype(np.int64), dataset.observations[indices].astype(np.float32, copy=False),
                             dataset.actions[indices].astype(np.float32, copy=False), rows,
                             session.engine.base.fingerprint)
        if include_transitions:
            pairs.rewards = dataset.rewards[indices].astype(np.float32, copy=False)
            pairs.next_observations = dataset.next_observations[indices].astype(np.float32, copy=False)
            pairs.terminals = dataset.terminals[indices].astype(bool, copy=False)
            pairs.timeouts = dataset.timeouts[indices].astype(bool, copy=False)
        return pairs

    def _after_update(self, engine: Engine, jobs_before: int, updates: int) -> UpdateResult:
        core = engine.core
        started = None
        for job in core.jobs[jobs_before:]:  # refit_every started one
            engine.watch(job)
            started = self._refit_info(engine, job)
        return UpdateResult(updates, core.model_version, started)

    def update_policy_snapshot(self, owner: str, session_id: str, safetensors: bytes, spec_json: str) -> UpdateResult:
        """Install a policy snapshot (safetensors + JSON spec, checksum verified) on the session's engine."""
        session = self._session(owner, session_id)
        try:
            spec = json.loads(spec_json)
        except (ValueError, RecursionError) as exc:
            raise invalid(f"spec_json is not valid JSON or nests too deeply: {exc}") from exc
        if not isinstance(spec, dict):
            raise invalid("spec_json must be a JSON object")
        if not safetensors:
            raise invalid("the snapshot has no weights (empty safetensors)")
        engine = session.engine
        with tempfile.TemporaryDirectory(prefix="adept-policy-") as tmp:
            stem = Path(tmp) / "policy"
            stem.with_name("policy.safetensors").write_bytes(safetensors)
            stem.with_name("policy.json").write_text(json.dumps(spec))
            with engine.lock:
                before = len(engine.core.jobs)
                try:
                    updates = engine.core.update_policy(str(stem))
                except PolicyMismatchError as exc:
                    raise invalid(str(exc)) from exc
                except Exception as exc:  # safetensors/JSON/spec errors: the client's bytes are bad
                    raise invalid(f"bad policy snapshot: {type(exc).__name__}: {exc}") from exc
        return self._after_update(engine, before, updates)

    def update_policy_log_probs(self, owner: str, session_id: str, indices: np.ndarray, log_probs: np.ndarray,
                                fingerprint: str = "") -> UpdateResult:
        """Install a policy given by log pi(a|s) of dataset rows; rows without a value get weight 0 in refits."""
        session = self._session(owner, session_id)
        engine = session.engine
        dataset = engine.core.dataset
        if fingerprint and fingerprint != engine.base.fingerprint:
            raise invalid(f"dataset_fingerprint {fingerprint!r} is not this dataset's ({engine.base.fingerprint!r}); "
                          "fetch the pairs again")
        indices, log_probs = np.asarray(indices), np.asarray(log_probs)
        if indices.dtype.kind not in "iu" or indices.ndim != 1:
            raise invalid(f"indices must be a 1-D integer array, got {indices.dtype} {indices.shape}")
        if log_probs.dtype not in (np.float32, np.float64) or log_probs.shape != indices.shape:
            raise invalid(f"log_probs must be float32/float64 of shape {indices.shape}, got {log_probs.dtype} "
                          f"{log_probs.shape}")
        if len(indices) == 0:
            raise invalid("no log-probs given")
        if indices.min() < 0 or indices.max() >= len(dataset):
            raise invalid(f"indices must be in [0, {len(dataset)})")
        if len(np.unique(indices)) != len(indices):
            raise invalid("indices must be distinct")
        if not np.all(np.isfinite(log_probs)):
            raise invalid("log_probs must be finite")
        table = np.full(len(dataset), -np.inf)
        table[indices] = log_probs
        with engine.lock:
            before = len(engine.core.jobs)
            updates = engine.core.update_policy(DatasetRowLogProbs(dataset, table, len(indices)))
        return self._after_update(engine, before, updates)

    def _refit_info(self, engine: Engine, job: RefitJob) -> RefitInfo:
        return RefitInfo(job.job_id, job.status, job.policy_updates, float(job.effective_sample_size),
                         float(job.ess_fraction), float(job.clipped_fraction), int(job.model_version or 0),
                         float(job.seconds or 0.0), job.error or "", engine.is_checkpointed(job), job.kept_start)

    def refit(self, owner: str, session_id: str, steps: int | None = None, weighted: bool = True) -> RefitInfo:
        """Start a background refit of the session's engine; FAILED_PRECONDITION while one runs."""
        session = self._session(owner, session_id)
        if steps is not None and not 1 <= steps <= self.config.max_refit_steps:
            raise invalid(f"steps must be in [1, {self.config.max_refit_steps}], got {steps}")
        engine = session.engine
        with engine.lock:
            running = engine.running_job()
            if running is not None:
                raise ServiceError("FAILED_PRECONDITION", f"refit {running.job_id} is still running; wait for it "
                                   "(GetRefit) before starting another")
            try:
                job = engine.core.refit(blocking=False, steps=steps, weighted=weighted)
            except RuntimeError as exc:  # no policy yet
                raise ServiceError("FAILED_PRECONDITION", str(exc)) from exc
            except ValueError as exc:
                raise invalid(f"cannot weight the dataset: {exc}") from exc
            engine.watch(job)
        return self._refit_info(engine, job)

    def get_refit(self, owner: str, session_id: str, job_id: int = 0, wait_s: float = 0.0) -> RefitInfo:
        """Return a refit job's state (0: the latest), waiting up to ``wait_s`` (capped) for it to be saved."""
        session = self._session(owner, session_id)
        engine = session.engine
        jobs = engine.core.jobs
        if not jobs:
            raise not_found("this session's engine has no refit jobs")
        if job_id == 0:
            job = jobs[-1]
        elif 1 <= job_id <= len(jobs):
            job = jobs[job_id - 1]
        else:
            raise not_found(f"no refit job {job_id} (jobs 1..{len(jobs)})")
        wait_s = min(max(float(wait_s), 0.0), self.config.max_wait_s)
        if wait_s > 0:
            deadline = time.monotonic() + wait_s
            job.wait(wait_s)
            event = engine.checkpointed.get(job.job_id)
            if event is not None:
                event.wait(max(deadline - time.monotonic(), 0.0))
        session.last_used = time.monotonic()
        return self._refit_info(engine, job)
