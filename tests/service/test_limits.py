"""The session core under concurrent creates and hostile input: limits hold, failed creates leave nothing behind,
seeds and ids are checked, and no error message echoes a huge client value."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from .conftest import ENV_ID

Factory = Callable[..., object]


@pytest.fixture
def make_core(small_datasets: dict[str, Path], quick_model_path: Path, tmp_path: Path) -> Factory:
    """A SessionCore over the small halfcheetah dataset and the quick model, with a fresh state folder."""
    from server.config import ServerConfig
    from server.sessions import SessionCore

    def make(**limits: object) -> SessionCore:
        config = ServerConfig(
            state_dir=tmp_path / "state", env_ids=(ENV_ID,), max_num_envs=64, idle_timeout_s=120.0,
            env_settings={ENV_ID: {"model_path": str(quick_model_path),
                                   "dataset_path": str(small_datasets["halfcheetah"])}},
            **limits,
        )
        core = SessionCore(config)
        core.engines.base(ENV_ID)  # load once, up front
        return core

    return make


def slow_engines(core, delay_s: float = 0.05) -> None:
    """Make building an engine take a while (as a first load does), so concurrent creates overlap."""
    acquire = core.engines.acquire

    def slow(*args, **kwargs):
        time.sleep(delay_s)
        return acquire(*args, **kwargs)

    core.engines.acquire = slow


def create_concurrently(core, owners: list[str]) -> list[str]:
    """Call create_session once per entry of ``owners``, all at once; return each call's status code."""
    from server.errors import ServiceError

    barrier = threading.Barrier(len(owners))

    def create(owner: str) -> str:
        barrier.wait()
        try:
            core.create_session(owner, ENV_ID, num_envs=1, seed=0)
        except ServiceError as exc:
            return exc.code
        return "OK"

    with ThreadPoolExecutor(max_workers=len(owners)) as pool:
        return list(pool.map(create, owners))


def files_under(path: Path) -> set[Path]:
    return set(path.rglob("*")) if path.exists() else set()


def test_the_session_limit_holds_under_64_concurrent_creates(make_core) -> None:
    core = make_core(max_sessions=6)
    slow_engines(core)
    codes = create_concurrently(core, ["alice"] * 64)
    assert codes.count("OK") == 6, codes
    assert codes.count("RESOURCE_EXHAUSTED") == 58, codes
    assert core.session_count() == 6
    assert sum(engine.sessions for engine in core.engines.engines()) == 6


def test_the_per_token_limit_holds_under_concurrent_creates(make_core) -> None:
    core = make_core(max_sessions=64, max_sessions_per_owner=3)
    slow_engines(core)
    owners = ["alice", "bob"] * 32
    codes = create_concurrently(core, owners)
    assert codes.count("OK") == 6 and codes.count("RESOURCE_EXHAUSTED") == 58, codes
    for owner in ("alice", "bob"):
        assert sum(code == "OK" for code, o in zip(codes, owners, strict=True) if o == owner) == 3
        assert sum(s.owner == owner for s in core._sessions.values()) == 3
    assert core.session_count() == 6


def test_a_failed_create_leaves_no_session_engine_or_folder(make_core, monkeypatch: pytest.MonkeyPatch) -> None:
    from server.errors import ServiceError

    core = make_core(max_sessions=2)
    state = core.engines.state_dir
    before = files_under(state)
    for overrides in ({"horizon": 2.5}, {"penalty": float("nan")}, {"n_samples": 10**9}, {"refit_steps": -5},
                      {"weight_clip": float("inf")}, {"uncertainty_threshold": "high"}, {"horizon": 1e300}):
        with pytest.raises(ServiceError) as caught:
            core.create_session("alice", ENV_ID, overrides=overrides)
        assert caught.value.code == "INVALID_ARGUMENT", overrides
        assert next(iter(overrides)) in caught.value.message
    assert core.session_count() == 0 and core.engines.engines() == []
    assert files_under(state) == before

    # a failure after the engine was acquired gives the engine back too
    import server.sessions

    def broken(*args, **kwargs):
        raise RuntimeError("episode batch failed")

    monkeypatch.setattr(server.sessions, "EpisodeBatch", broken)
    for penalty in (0.3, 0.4, 0.6):  # three distinct override sets: three engines if any leaked
        with pytest.raises(RuntimeError, match="episode batch failed"):
            core.create_session("alice", ENV_ID, overrides={"penalty": penalty})
    assert core.session_count() == 0 and core.engines.engines() == []
    assert files_under(state) == before
    monkeypatch.undo()

    # the failed creates gave their slots back: the limit still allows two sessions
    first = core.create_session("alice", ENV_ID, seed=0)
    core.create_session("alice", ENV_ID, seed=0, overrides={"horizon": 3.0})
    with pytest.raises(ServiceError) as full:
        core.create_session("alice", ENV_ID)
    assert full.value.code == "RESOURCE_EXHAUSTED" and "max_sessions" in full.value.message
    assert files_under(state) == before  # no folder until a version is saved
    core.close_session("alice", first.session_id)
    assert core.session_count() == 1
    core.create_session("alice", ENV_ID)
    core.close_all()
    assert core.session_count() == 0 and core.engines.engines() == []
    with pytest.raises(ServiceError) as closed:
        core.create_session("alice", ENV_ID)
    assert closed.value.code == "UNAVAILABLE"


def test_operator_ceilings_on_samples_and_refit_steps(make_core) -> None:
    from server.errors import ServiceError

    core = make_core(max_samples=8, max_refit_steps=100)
    for overrides, limit in (({"n_samples": 9}, "max_samples"), ({"refit_steps": 101}, "max_refit_steps"),
                             ({"refit_steps": 1e300}, "max_refit_steps")):
        with pytest.raises(ServiceError) as caught:
            core.create_session("alice", ENV_ID, overrides=overrides)
        assert caught.value.code == "INVALID_ARGUMENT" and limit in caught.value.message, caught.value.message
    with pytest.raises(ServiceError) as caught:  # Infinity from JSON: a clear error, not OverflowError
        core.create_session("alice", ENV_ID, overrides={"refit_steps": float("inf")})
    assert caught.value.code == "INVALID_ARGUMENT" and "refit_steps" in caught.value.message
    info = core.create_session("alice", ENV_ID, overrides={"n_samples": 8, "refit_steps": 100.0})
    assert info.config["n_samples"] == 8 and info.config["refit_steps"] == 100
    assert core.engines.engines() and core.session_count() == 1


def test_seeds_must_be_in_the_int64_range(make_core) -> None:
    from server.errors import ServiceError

    core = make_core()
    for seed in (-1, 2**63, -(2**63)):
        with pytest.raises(ServiceError) as caught:
            core.create_session("alice", ENV_ID, seed=seed)
        assert caught.value.code == "INVALID_ARGUMENT" and "2**63 - 1" in caught.value.message
    assert core.session_count() == 0 and core.engines.engines() == []
    info = core.create_session("alice", ENV_ID, num_envs=2, seed=2**63 - 1)
    for call in (lambda seed: core.reset("alice", info.session_id, seed=seed),
                 lambda seed: core.dataset_pairs("alice", info.session_id, sample_size=4, seed=seed)):
        with pytest.raises(ServiceError) as caught:
            call(-5)
        assert caught.value.code == "INVALID_ARGUMENT" and "seed" in caught.value.message
        call(0)
        call(2**63 - 1)
    obs, _ = core.reset("alice", info.session_id, seed=0)
    assert obs.shape == (2, 17) and np.all(np.isfinite(obs))


def test_huge_ids_are_refused_and_never_echoed(make_core) -> None:
    from server.errors import ServiceError

    core = make_core()
    for env_id, code in (("E" * 300, "INVALID_ARGUMENT"), ("E" * 200, "NOT_FOUND"),
                         ("E" * 200_000, "INVALID_ARGUMENT")):
        with pytest.raises(ServiceError) as caught:
            core.create_session("alice", env_id)
        assert caught.value.code == code
        assert env_id[:65] not in caught.value.message and len(caught.value.message) < 300, caught.value.message
    info = core.create_session("alice", ENV_ID)
    for session_id in ("S" * 129, "S" * 200_000, info.session_id + "x" * 200):
        for call in (core.close_session, core.reset, lambda owner, sid: core.step(owner, sid, np.zeros((1, 6)))):
            with pytest.raises(ServiceError) as caught:
                call("alice", session_id)
            assert caught.value.code == "NOT_FOUND"
            assert session_id[:65] not in caught.value.message and len(caught.value.message) < 300
    assert core.session_count() == 1
