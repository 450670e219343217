"""A restarted server serves the last complete world-model version, even after kill -9 mid-refit."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from adept_client import GrpcClient, RetryPolicy

from .conftest import ENV_ID

ROOT = Path(__file__).resolve().parents[2]


def start_server(model: Path, dataset: Path, state: Path) -> tuple[subprocess.Popen, str]:
    """Start ``python -m server`` on a free loopback gRPC port; return (process, target)."""
    command = [sys.executable, "-m", "server", "--grpc-port", "0", "--http-port", "-1", "--env", ENV_ID,
               "--model-path", str(model), "--dataset-path", str(dataset), "--state-dir", str(state),
               "--torch-threads", "1"]
    env = {**os.environ, "CI": "true", "ADEPT_API_TOKEN": ""}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    deadline = time.monotonic() + 120
    lines = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        lines.append(line)
        match = re.search(r"gRPC (\S+):(\d+)", line)
        if match:
            return process, f"127.0.0.1:{match.group(2)}"
    process.kill()
    raise AssertionError(f"server did not start: {''.join(lines)}")


def test_kill_9_mid_refit_then_restart_serves_last_complete_version(
        small_datasets: dict[str, Path], quick_model_path: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    process, target = start_server(quick_model_path, small_datasets["halfcheetah"], state)
    try:
        client = GrpcClient(target, token="", timeout_s=60, retry=RetryPolicy(attempts=3))
        session = client.create_session(ENV_ID, num_envs=2, seed=0)
        assert session.model_version == 0
        indices, _, actions = session.dataset_pairs(sample_size=500, seed=0)
        session.update_policy_log_probs(indices, -np.square(actions).sum(1))
        done = session.wait_refit(session.refit(steps=10).job_id, timeout_s=120)
        assert done.state == "done" and done.model_version == 1 and done.checkpointed
        long = session.refit(steps=20_000)  # minutes of work: still running when killed
        assert long.state == "running"
        time.sleep(1.0)
        client.close()
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    saved = sorted(p.name for p in state.rglob("v[0-9]*") if p.is_dir())
    assert saved == ["v000001"], saved
    # As if a later save had been cut off too: a torn version folder beside the complete one.
    torn = next(state.rglob("v000001")).with_name("v000002")
    torn.mkdir()
    (torn / "model.safetensors").write_bytes(b"\0" * 100)

    process, target = start_server(quick_model_path, small_datasets["halfcheetah"], state)
    try:
        with GrpcClient(target, token="", timeout_s=60) as client:
            session = client.create_session(ENV_ID, num_envs=2, seed=0)
            assert session.model_version == 1
            session.reset()
            assert session.step(np.zeros((2, 6), np.float32)).model_version == 1
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            assert process.wait(30) == 0  # graceful shutdown on SIGTERM
        except subprocess.TimeoutExpired:
            process.kill()
            pytest.fail("the server did not stop within 30 s of SIGTERM")


def test_sigterm_mid_refit_exits_0_and_keeps_the_last_complete_version(
        small_datasets: dict[str, Path], quick_model_path: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    process, target = start_server(quick_model_path, small_datasets["halfcheetah"], state)
    try:
        with GrpcClient(target, token="", timeout_s=60, retry=RetryPolicy(attempts=3)) as client:
            session = client.create_session(ENV_ID, num_envs=2, seed=0)
            indices, _, actions = session.dataset_pairs(sample_size=500, seed=0)
            session.update_policy_log_probs(indices, -np.square(actions).sum(1))
            done = session.wait_refit(session.refit(steps=10).job_id, timeout_s=120)
            assert done.state == "done" and done.model_version == 1 and done.checkpointed
            long = session.refit(steps=20_000)  # minutes of work: far past the 5 s grace
            time.sleep(1.0)
            assert session.get_refit(long.job_id).state == "running"
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = process.wait(60)
        output = process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
    assert code == 0, output  # a refit cut off no longer aborts the process ("terminate called ...", exit 134)
    assert "terminate called" not in output
    assert time.monotonic() - started < 30
    assert sorted(p.name for p in state.rglob("v[0-9]*") if p.is_dir()) == ["v000001"]  # the cut refit left nothing
    process, target = start_server(quick_model_path, small_datasets["halfcheetah"], state)
    try:
        with GrpcClient(target, token="", timeout_s=60) as client:
            assert client.create_session(ENV_ID, num_envs=1, seed=0).model_version == 1
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
