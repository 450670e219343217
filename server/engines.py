"""World-model engines: one ``WorldModelCore`` per (owner, env id, settings), checkpointed on disk.

Datasets and base models are loaded once per env id and shared read-only. An engine wraps a
core over them; sessions of one token with the same env id and overrides share it, so a policy
update or refit through one of them reaches all. Every refitted version is saved under the
state dir as ``<owner>/<env id>/<settings hash>/vNNNNNN/`` (``WorldModel.save``: each file
atomic, the pair checked by a checksum), then ``current.json`` is replaced atomically to name it.
A restarted server (even after kill -9 mid-refit or mid-save) loads the version ``current.json``
names, or the newest one that loads, so it serves the last complete version.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from adept_env.atomic import atomic_path
from adept_env.data.dataset import OfflineDataset
from adept_env.envs.config import EnvConfig, shown
from adept_env.envs.core import RefitJob, WorldModelCore
from adept_env.target_policy import PolicyMismatchError, TargetPolicy
from server.config import ServerConfig
from server.errors import ServiceError, invalid

log = logging.getLogger("adept.server")

CURRENT_FILE = "current.json"


@dataclass
class Base:
    """The dataset and starting world model of one env id (shared, never mutated)."""

    env_id: str
    dataset: OfflineDataset
    model: Any
    fingerprint: str
    settings: dict[str, Any]
    behavior: SharedBehavior


class SharedBehavior:
    """log beta(a|s) of a dataset's rows, computed once and shared by every engine over it.

    The core asks for the behaviour log-probs of exactly ``dataset.observations/actions``; this
    object answers from a cache instead of recomputing (a BC fit can take minutes).
    """

    def __init__(self, dataset: OfflineDataset) -> None:
        self.dataset = dataset
        self._values: np.ndarray | None = None
        self._lock = threading.Lock()

    def log_prob(self, observations: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Return float64 log-densities of the dataset's rows (nats)."""
        if observations is not self.dataset.observations:
            raise ValueError("SharedBehavior answers only for the dataset's own rows")
        with self._lock:
            if self._values is None:
                from adept_env.data.behavior import dataset_behavior_log_probs

                self._values = np.asarray(dataset_behavior_log_probs(self.dataset), np.float64)
        return self._values


class DatasetRowLogProbs(TargetPolicy):
    """A policy known only by log pi(a|s) of some dataset rows (sent by a remote client).

    ``log_prob`` of the dataset's own rows returns the table: the given values, and -inf for
    rows without one, which the importance weights turn into weight 0, so a refit trains on the
    given rows (a random subsample of the dataset) with their pi/beta weights.
    """

    def __init__(self, dataset: OfflineDataset, table: np.ndarray, rows: int) -> None:
        super().__init__(log_prob_fn=self._unavailable, description=f"remote log-probs of {rows} dataset rows")
        self.dataset = dataset
        self.table = table
        self.rows = rows

    def _unavailable(self, observations: np.ndarray, actions: np.ndarray) -> np.ndarray:
        raise PolicyMismatchError("this policy is known only by its log-probs of the dataset's rows")

    def log_prob(self, observations: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Return the float64 table (one value per dataset row, -inf where none was given)."""
        if len(observations) == len(self.table) and np.shares_memory(observations, self.dataset.observations):
            return self.table.copy()
        return self._unavailable(observations, actions)


@dataclass
class Engine:
    """A core for one (owner, env id, settings) with its checkpoint folder and refit watchers."""

    key: tuple[str, str, str]
    base: Base
    core: WorldModelCore
    directory: Path
    keep_versions: int
    sessions: int = 0
    checkpointed: dict[int, threading.Event] = field(default_factory=dict)
    """job_id -> set once the job's model is saved (or the job failed)."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    save_lock: threading.Lock = field(default_factory=threading.Lock)
    """Serialises this engine's checkpoints (the version folders, ``current.json`` and pruning)."""

    def running_job(self) -> RefitJob | None:
        """Return the refit still running on this engine's core, if any (at most one runs)."""
        return self.core.running_job()

    def watch(self, job: RefitJob) -> None:
        """Checkpoint ``job``'s model when it ends (in a daemon thread)."""
        event = self.checkpointed.setdefault(job.job_id, threading.Event())

        def run() -> None:
            try:
                job.wait()
                if job.status == "done":
                    with self.save_lock:
                        model = self.core.model
                        if int(getattr(model, "version", -1)) == job.model_version:
                            save_version(self.directory, model, self.keep_versions)
            except Exception:  # a failed save leaves the previous version current
                log.exception("checkpoint of refit %s failed", job.job_id)
            finally:
                event.set()

        threading.Thread(target=run, daemon=True, name=f"adept-checkpoint-{job.job_id}").start()

    def is_checkpointed(self, job: RefitJob) -> bool:
        """Return True if ``job``'s model has been saved."""
        event = self.checkpointed.get(job.job_id)
        return bool(event and event.is_set() and job.status == "done")


def version_dir(directory: Path, version: int) -> Path:
    """Return the folder of one saved version."""
    return directory / f"v{version:06d}"


def save_version(directory: Path, model: Any, keep: int) -> Path:
    """Save ``model`` as its version, then point ``current.json`` at it (atomically); prune old ones."""
    path = version_dir(directory, int(model.version))
    directory.mkdir(parents=True, exist_ok=True)  # the engine's folder appears with its first saved version
    model.save(path)
    with atomic_path(directory / CURRENT_FILE) as tmp:
        tmp.write_text(json.dumps({"version": int(model.version), "dir": path.name, "saved_at": time.time()}))
    versions = sorted(p for p in directory.glob("v[0-9]*") if p.is_dir() and p != path)
    for old in versions[: max(len(versions) - (keep - 1), 0)]:
        shutil.rmtree(old, ignore_errors=True)
    return path


def load_latest(directory: Path, task_name: str) -> Any | None:
    """Return the model ``current.json`` names, else the newest version that loads, else None (also when
    ``directory`` does not exist: nothing was saved yet)."""
    from adept_env.diffusion import WorldModel

    if not directory.is_dir():
        return None
    candidates: list[Path] = []
    current = directory / CURRENT_FILE
    if current.exists():
        try:
            candidates.append(directory / json.loads(current.read_text())["dir"])
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring unreadable %s", current)
    candidates += sorted((p for p in directory.glob("v[0-9]*") if p.is_dir()), reverse=True)
    for path in candidates:
        try:
            model = WorldModel.load(path)
        except Exception as exc:  # torn or partial save: fall back to an older version
            log.warning("skipping world model %s: %s", path, exc)
            continue
        if model.task.name == task_name:
            return model
    return None


def settings_hash(settings: dict[str, Any]) -> str:
    """Return a short stable hash of a settings dict (JSON, sorted keys)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]


class EngineStore:
    """Loads bases once per env id and hands out engines per (owner, env id, settings)."""

    def __init__(self, config: ServerConfig) -> None:
        from adept_env.envs.registration import env_ids

        self.config = config
        self.state_dir = config.resolved_state_dir()
        self.env_ids = tuple(config.env_ids) if config.env_ids is not None else tuple(env_ids())
        unknown = sorted(set(self.env_ids) - set(env_ids()))
        if unknown:
            raise ValueError(f"unknown environment ids {unknown}; known: {env_ids()}")
        self._bases: dict[str, Base] = {}
        self._engines: dict[tuple[str, str, str], Engine] = {}
        self._lock = threading.Lock()
        self._base_locks: dict[str, threading.Lock] = {}

    def server_settings(self, env_id: str) -> dict[str, Any]:
        """Return the operator's EnvConfig values for ``env_id``."""
        return {**self.config.default_settings, **self.config.env_settings.get(env_id, {})}

    def is_loaded(self, env_id: str) -> bool:
        """Return True if ``env_id``'s dataset and model are in memory."""
        return env_id in self._bases

    def base(self, env_id: str) -> Base:
        """Return the base of ``env_id``, loading (or generating/training) it on first use."""
        if env_id not in self.env_ids:
            raise ServiceError("NOT_FOUND", f"unknown environment {env_id!r}; this server serves {list(self.env_ids)}")
        with self._lock:
            if env_id in self._bases:
                return self._bases[env_id]
            lock = self._base_locks.setdefault(env_id, threading.Lock())
        with lock:  # one load per env id; other env ids load in parallel
            if env_id not in self._bases:
                self._bases[env_id] = self._load_base(env_id)
        return self._bases[env_id]

    def _load_base(self, env_id: str) -> Base:
        from adept_env.envs.model_store import dataset_fingerprint, load_world

        settings = self.server_settings(env_id)
        start = time.perf_counter()
        try:
            dataset, model = load_world(env_id.removeprefix("ADEPT-"), EnvConfig.from_overrides(settings),
                                        progress=self.config.progress)
        except ValueError as exc:
            raise ValueError(f"{env_id}: {exc}") from exc
        log.info("loaded %s (%d rows) in %.1f s", env_id, len(dataset), time.perf_counter() - start)
        return Base(env_id, dataset, model, dataset_fingerprint(dataset), settings, SharedBehavior(dataset))

    def client_settings(self, overrides: dict[str, Any]) -> dict[str, Any]:
        """Validate a client's overrides (names, then types and ranges by ``EnvConfig``, then the operator's
        ceilings); return them as EnvConfig holds them (5.0 -> 5). Raises INVALID_ARGUMENT naming what is wrong."""
        fields = EnvConfig.__dataclass_fields__
        for key in overrides:
            if key not in fields:
                raise invalid(f"unknown override {shown(key)}; clients may set {list(self.config.client_overrides)}")
            if key not in self.config.client_overrides:
                raise invalid(f"override {key!r} is set by the server operator; clients may set "
                              f"{list(self.config.client_overrides)}")
        try:
            checked = EnvConfig.from_overrides(overrides)
        except (TypeError, ValueError) as exc:
            raise invalid(f"bad overrides: {exc}") from exc
        ceilings = {"refit_steps": ("max_refit_steps", "--max-refit-steps"),
                    "n_samples": ("max_samples", "--max-samples")}
        for key, (limit, option) in ceilings.items():
            value, most = getattr(checked, key), getattr(self.config, limit)
            if key in overrides and value is not None and value > most:
                raise invalid(f"{key} {value} is more than this server's limit of {most} ({limit}, {option})")
        return {key: getattr(checked, key) for key in overrides}

    def acquire(self, owner: str, env_id: str, overrides: dict[str, Any]) -> Engine:
        """Return the engine of (owner, env id, overrides), counting one more session on it (give it back with
        :meth:`release`). Nothing is written to disk here: the engine's folder appears with its first saved version."""
        client = self.client_settings(overrides)
        base = self.base(env_id)
        try:
            env_config = EnvConfig.from_overrides({**base.settings, **client})
        except (TypeError, ValueError) as exc:
            raise invalid(f"bad overrides: {exc}") from exc
        key = (owner, env_id, settings_hash({"server": base.settings, "client": client}))
        with self._lock:
            engine = self._engines.get(key)
            if engine is None:
                directory = self.state_dir / "models" / owner / env_id / key[2]
                model = load_latest(directory, base.dataset.task.name) or base.model
                core = WorldModelCore(base.dataset, model, env_config, behavior=base.behavior)
                engine = Engine(key, base, core, directory, self.config.keep_versions)
                self._engines[key] = engine
            engine.sessions += 1
            return engine

    def release(self, engine: Engine) -> None:
        """Count one session less; drop the engine when none is left and no refit runs."""
        with self._lock:
            engine.sessions -= 1
            if engine.sessions <= 0 and engine.running_job() is None:
                self._engines.pop(engine.key, None)

    def engines(self) -> list[Engine]:
        """Return the engines in memory."""
        with self._lock:
            return list(self._engines.values())
