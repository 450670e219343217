"""The world-model service's cost: steps/s over gRPC and HTTP beside in-process stepping, the
round-trip overhead at batch 1 (beside a health check on the same channel: the transport's
floor), a bounded load test of concurrent clients, and step latency
while a refit runs.

Protocol: one dataset and world model (quick: a 20k-step halfcheetah-random dataset and the
quick profile, trained here; full: the cached 1M-step dataset and the default profile); the
server runs in its own process (``python -m server``, loopback, ephemeral ports, one torch
thread) and this process drives it. In-process stepping is the same ``EpisodeBatch`` work the
server does per Step (one thread too). In-process, gRPC and HTTP take turns (blocks of 0.25 s
for throughput, call by call for latency) so they share the machine's drifting background load.
Every loop is bounded by a step count and a time budget.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from adept_env.benchmarks.system import cpu_model

ENV_ID = "ADEPT-halfcheetah-random"
BATCHES = (1, 64, 256)


@dataclass
class Budget:
    """Sizes of one benchmark run."""

    dataset_steps: int | None
    """Uniform-action transitions (None: the cached 1M-step dataset)."""
    profile: str
    throughput_seconds: float
    """Time per (transport, batch) throughput measurement."""
    latency_calls: int
    """Batch-1 calls per latency measurement."""
    load_clients: int
    load_steps: int
    load_seconds: float
    """Time bound of the load test."""
    refit_steps: int
    refit_seconds: float
    """Time bound of the latency-during-refit measurement."""


QUICK = Budget(dataset_steps=20_000, profile="quick", throughput_seconds=3.0, latency_calls=400, load_clients=32,
               load_steps=1_000, load_seconds=120.0, refit_steps=3_000, refit_seconds=20.0)
FULL = Budget(dataset_steps=None, profile="default", throughput_seconds=8.0, latency_calls=2_000, load_clients=32,
              load_steps=1_000, load_seconds=300.0, refit_steps=3_000, refit_seconds=60.0)


def _prepare(budget: Budget, workdir: Path, console: Console) -> tuple[Path, Path]:
    """Return (dataset path, saved world-model path), generating/training what is missing."""
    from adept_env.data.dataset import load_dataset
    from adept_env.data.generate import make_dataset
    from adept_env.envs.model_store import load_or_train, model_dir

    if budget.dataset_steps is None:
        from adept_env.data.dataset import default_path

        dataset = load_dataset("halfcheetah-random", progress=False)  # generated into the cache if missing
        dataset_path = default_path("halfcheetah-random")
    else:
        dataset_path = workdir / "halfcheetah-random.hdf5"
        make_dataset("halfcheetah-random", steps=budget.dataset_steps, seed=0, out=dataset_path, progress=False)
        dataset = load_dataset(dataset_path)
    start = time.perf_counter()
    load_or_train(dataset, budget.profile, progress=False)  # cached under $ADEPT_HOME after the first run
    console.print(f"dataset {len(dataset)} rows; {budget.profile} world model ready in "
                  f"{time.perf_counter() - start:.0f} s")
    return dataset_path, model_dir(dataset, budget.profile)


class ServerProcess:
    """``python -m server`` on loopback with free ports; ``peak_rss_mib`` reads its high-water mark."""

    def __init__(self, model: Path, dataset: Path, state: Path, cpus: list[int] | None = None) -> None:
        command = [sys.executable, "-m", "server", "--grpc-port", "0", "--http-port", "0", "--env", ENV_ID,
                   "--model-path", str(model), "--dataset-path", str(dataset), "--state-dir", str(state),
                   "--torch-threads", "1", "--preload", "--max-sessions", "256"]
        if cpus:
            command += ["--cpus", ",".join(map(str, cpus))]
        env = {**os.environ, "CI": "true", "ADEPT_API_TOKEN": ""}
        root = Path(__file__).resolve().parents[2]
        self.process = subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
        deadline, seen = time.monotonic() + 300, []
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line and self.process.poll() is not None:
                break
            seen.append(line)
            match = re.search(r"gRPC (\S+):(\d+)\s+HTTP http://(\S+):(\d+)", line)
            if match:
                self.grpc = f"127.0.0.1:{match.group(2)}"
                self.http = f"http://127.0.0.1:{match.group(4)}"
                threading.Thread(target=self._drain, daemon=True).start()
                return
        self.process.kill()
        raise RuntimeError("the server did not start:\n" + "".join(seen))

    def _drain(self) -> None:
        for _ in self.process.stdout:
            pass

    def peak_rss_mib(self) -> float:
        """Return the server's peak resident memory (VmHWM) in MiB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> int:
        """SIGTERM, then wait (kill after 30 s); return the exit code."""
        self.process.terminate()
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(10)


def _interleaved_throughput(steppers: dict[str, Any], batch: int, seconds: float, block_s: float = 0.25,
                            max_calls: int = 100_000) -> dict[str, float]:
    """Return env steps/s of each stepper (one call steps ``batch`` envs), ``seconds`` of calls each.

    The steppers take turns in blocks of ``block_s`` so that all of them see the same background
    load (this machine's load drifts within seconds).
    """
    for step_once in steppers.values():  # warm-up
        step_once()
    calls = dict.fromkeys(steppers, 0)
    spent = dict.fromkeys(steppers, 0.0)
    while min(spent.values()) < seconds and max(calls.values()) < max_calls:
        for name, step_once in steppers.items():
            start = time.perf_counter()
            while time.perf_counter() - start < block_s:
                step_once()
                calls[name] += 1
            spent[name] += time.perf_counter() - start
    return {name: batch * calls[name] / spent[name] for name in steppers}


def _latencies_ms(step_once, calls: int, seconds: float = 120.0) -> np.ndarray:
    """Return per-call latencies (ms) of ``calls`` calls, stopping early after ``seconds``."""
    for _ in range(5):
        step_once()
    out, start = [], time.perf_counter()
    for _ in range(calls):
        t = time.perf_counter()
        step_once()
        out.append((time.perf_counter() - t) * 1e3)
        if t - start > seconds:
            break
    return np.asarray(out)


def _interleaved_latencies_ms(steppers: dict[str, Any], calls: int, seconds: float = 120.0) -> dict[str, np.ndarray]:
    """Return per-call latencies (ms) of each stepper, the steppers taking turns call by call."""
    for step_once in steppers.values():
        for _ in range(5):
            step_once()
    out: dict[str, list[float]] = {name: [] for name in steppers}
    start = time.perf_counter()
    for _ in range(calls):
        for name, step_once in steppers.items():
            t = time.perf_counter()
            step_once()
            out[name].append((time.perf_counter() - t) * 1e3)
        if time.perf_counter() - start > seconds:
            break
    return {name: np.asarray(values) for name, values in out.items()}


def _in_process_stepper(model: Path, dataset: Path, batch: int):
    from adept_env.envs.episodes import EpisodeBatch, build_core

    core = build_core(ENV_ID.removeprefix("ADEPT-"), progress=False, model_path=str(model),
                      dataset_path=str(dataset))
    episodes, rng = EpisodeBatch(core, batch), np.random.default_rng(0)
    episodes.reset(rng)
    actions = np.random.default_rng(1).uniform(-1, 1, (batch, core.task.act_dim)).astype(np.float32)

    def step_once() -> None:  # what the server does per Step with same-step autoreset
        out = episodes.step(actions, rng)
        done = out.terminated | out.truncated
        if done.any():
            episodes.reset(rng, mask=done)

    return step_once


def _remote_stepper(client: Any, batch: int):
    session = client.create_session(ENV_ID, num_envs=batch, seed=0)
    session.reset()
    actions = np.random.default_rng(1).uniform(-1, 1, (batch, 6)).astype(np.float32)
    return (lambda: session.step(actions, autoreset="same_step")), session


def _floor_callers(grpc_client: Any, http_client: Any) -> dict[str, Any]:
    """Calls that cross the same channels to the same server but do no model work: the transport floor.

    gRPC: ``grpc.health.v1.Health/Check``; HTTP: ``GET /health``.
    """
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    stub = health_pb2_grpc.HealthStub(grpc_client.channel)
    request = health_pb2.HealthCheckRequest()

    def grpc_health() -> None:
        stub.Check(request, timeout=60)

    def http_health() -> None:
        status, body = http_client.get("/health")
        if status != 200:
            raise RuntimeError(f"GET /health answered {status}: {body[:200]!r}")

    return {"grpc_health": grpc_health, "http_health": http_health}


def _load_test(target: str, budget: Budget) -> dict[str, Any]:
    """``load_clients`` threads, each with its own gRPC client and session, ``load_steps`` steps each."""
    from adept_client import GrpcClient, RetryPolicy

    errors: list[str] = []
    steps = [0] * budget.load_clients
    latencies: list[list[float]] = [[] for _ in range(budget.load_clients)]
    deadline = time.monotonic() + budget.load_seconds
    barrier = threading.Barrier(budget.load_clients)

    def worker(i: int) -> None:
        try:
            with GrpcClient(target, token="", timeout_s=60, retry=RetryPolicy(attempts=3)) as client:
                session = client.create_session(ENV_ID, num_envs=1, seed=i)
                session.reset()
                action = np.zeros((1, 6), np.float32)
                barrier.wait(timeout=120)
                for _ in range(budget.load_steps):
                    if time.monotonic() > deadline:
                        break
                    t = time.perf_counter()
                    session.step(action, autoreset="same_step")
                    latencies[i].append((time.perf_counter() - t) * 1e3)
                    steps[i] += 1
                session.close()
        except Exception as exc:  # counted, reported
            errors.append(f"client {i}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(budget.load_clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(budget.load_seconds + 180)
    seconds = time.perf_counter() - start
    flat = np.concatenate([np.asarray(x) for x in latencies if x]) if any(latencies) else np.zeros(1)
    return {"clients": budget.load_clients, "steps_per_client": budget.load_steps, "steps": int(sum(steps)),
            "completed": sum(s == budget.load_steps for s in steps), "errors": len(errors),
            "error_examples": errors[:3], "seconds": seconds, "steps_per_s": sum(steps) / seconds,
            "p50_ms": float(np.percentile(flat, 50)), "p99_ms": float(np.percentile(flat, 99))}


def _refit_latency(target: str, budget: Budget) -> dict[str, Any]:
    """Batch-1 step latency p50/p99 idle and while a refit of ``refit_steps`` runs (time-bounded)."""
    from adept_client import GrpcClient

    with GrpcClient(target, token="", timeout_s=60) as client:
        step_once, session = _remote_stepper(client, 1)
        idle = _latencies_ms(step_once, budget.latency_calls)
        indices, _, actions = session.dataset_pairs(sample_size=2_000, seed=0)
        session.update_policy_log_probs(indices, -0.5 * np.square(actions).sum(1))
        job = session.refit(steps=budget.refit_steps)
        during, start = [], time.monotonic()
        while time.monotonic() - start < budget.refit_seconds and len(during) < 100_000:
            t = time.perf_counter()
            step_once()
            during.append((time.perf_counter() - t) * 1e3)
            if len(during) % 50 == 0 and session.get_refit(job.job_id).state != "running":
                break
        state = session.wait_refit(job.job_id, timeout_s=600)
        session.close()
    during_ms = np.asarray(during)
    return {"idle_p50_ms": float(np.percentile(idle, 50)), "idle_p99_ms": float(np.percentile(idle, 99)),
            "refit_p50_ms": float(np.percentile(during_ms, 50)), "refit_p99_ms": float(np.percentile(during_ms, 99)),
            "refit_calls": len(during), "refit_state": state.state, "refit_seconds": state.seconds,
            "refit_steps": budget.refit_steps}


def run(quick: bool = False, json_path: Path | None = None, pin: bool = True) -> dict[str, Any]:
    """Run every measurement, print tables and the summary lines; return the figures.

    ``pin``: with two or more CPUs, the server runs on the upper half of them and this process
    (the clients and the in-process baseline) on the lower half, as a deployment would give the
    server its own cores; without it both float over every CPU.
    """
    import torch

    from server.affinity import available_cpus, split_cpus

    torch.set_num_threads(1)
    console = Console()
    budget = QUICK if quick else FULL
    halves = split_cpus(available_cpus()) if pin else None
    console.print(f"CPU: {cpu_model()}; budget: {'quick' if quick else 'full'}; "
                  + (f"client CPUs {halves[0]}, server CPUs {halves[1]}" if halves else "no CPU pinning"))
    figures: dict[str, Any] = {"date": _dt.date.today().isoformat(), "cpu": cpu_model(), "budget": asdict(budget),
                               "client_cpus": halves[0] if halves else None,
                               "server_cpus": halves[1] if halves else None}
    _measure(budget, console, figures, halves)
    b256 = next(r for r in figures["throughput"] if r["batch"] == 256)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(figures, indent=2) + "\n")
    console.print(f"server exit code after SIGTERM: {figures['server_exit_code']}")
    console.print(f"gRPC health check p50 {figures['overhead_b1']['grpc_health_p50_ms']:.3f} ms, HTTP "
                  f"{figures['overhead_b1']['http_health_p50_ms']:.3f} ms (the transport floor)")
    print(f"grpc_ratio_b256={b256['grpc_ratio']:.3f}")
    print(f"http_ratio_b256={b256['http_ratio']:.3f}")
    print(f"grpc_p50_overhead_ms_b1={figures['overhead_b1']['grpc_p50_overhead_ms']:.3f}")
    return figures


def _measure(budget: Budget, console: Console, figures: dict[str, Any],
             halves: tuple[list[int], list[int]] | None) -> None:
    """Start a server, take every measurement into ``figures``, stop it.

    ``halves``: (client CPUs, server CPUs); this process is pinned only after the server has
    started, since a child inherits its parent's affinity.
    """
    from adept_client import GrpcClient, HttpClient

    from server.affinity import pin_process

    with tempfile.TemporaryDirectory(prefix="adept-bench-service-") as tmp:
        dataset, model = _prepare(budget, Path(tmp), console)
        server = ServerProcess(model, dataset, Path(tmp) / "state", halves[1] if halves else None)
        restore = pin_process(halves[0]) if halves else None
        try:
            grpc_client = GrpcClient(server.grpc, token="", timeout_s=60)
            http_client = HttpClient(server.http, token="", timeout_s=60)
            rows = []
            for batch in BATCHES:
                grpc_step, grpc_session = _remote_stepper(grpc_client, batch)
                http_step, http_session = _remote_stepper(http_client, batch)
                rates = _interleaved_throughput({"in_process": _in_process_stepper(model, dataset, batch),
                                                 "grpc": grpc_step, "http": http_step}, batch,
                                                budget.throughput_seconds)
                grpc_session.close()
                http_session.close()
                row = {"batch": batch, **rates}
                row["grpc_ratio"], row["http_ratio"] = row["grpc"] / row["in_process"], row["http"] / row["in_process"]
                rows.append(row)
            figures["throughput"] = rows
            table = Table("batch", "in-process steps/s", "gRPC steps/s", "HTTP steps/s", "gRPC / in-proc",
                          "HTTP / in-proc", title="env steps/s (one model call per Step)")
            for r in rows:
                table.add_row(str(r["batch"]), f"{r['in_process']:.0f}", f"{r['grpc']:.0f}", f"{r['http']:.0f}",
                              f"{r['grpc_ratio']:.2f}", f"{r['http_ratio']:.2f}")
            console.print(table)

            grpc_step, grpc_session = _remote_stepper(grpc_client, 1)
            http_step, http_session = _remote_stepper(http_client, 1)
            latencies = _interleaved_latencies_ms({"in_process": _in_process_stepper(model, dataset, 1),
                                                   "grpc": grpc_step, "http": http_step,
                                                   **_floor_callers(grpc_client, http_client)},
                                                  budget.latency_calls)
            grpc_session.close()
            http_session.close()
            overhead = {}
            for name, ms in latencies.items():
                for q in (50, 99):
                    overhead[f"{name}_p{q}_ms"] = float(np.percentile(ms, q))
            for name in ("grpc", "http"):
                for q in (50, 99):
                    overhead[f"{name}_p{q}_overhead_ms"] = overhead[f"{name}_p{q}_ms"] - overhead[f"in_process_p{q}_ms"]
            figures["overhead_b1"] = overhead
            table = Table("path", "p50 ms", "p99 ms", "p50 overhead ms", "p99 overhead ms",
                          title="batch-1 step latency (overhead = transport percentile - in-process percentile)")
            table.add_row("in-process", f"{overhead['in_process_p50_ms']:.3f}", f"{overhead['in_process_p99_ms']:.3f}",
                          "", "")
            for name in ("grpc", "http"):
                table.add_row(name, *(f"{overhead[f'{name}_{k}']:.3f}" for k in
                                      ("p50_ms", "p99_ms", "p50_overhead_ms", "p99_overhead_ms")))
            for name, label in (("grpc_health", "gRPC Health/Check (no model: the floor)"),
                                ("http_health", "HTTP GET /health (no model: the floor)")):
                table.add_row(label, f"{overhead[f'{name}_p50_ms']:.3f}", f"{overhead[f'{name}_p99_ms']:.3f}", "", "")
            console.print(table)
            grpc_client.close()
            http_client.close()

            load = _load_test(server.grpc, budget)
            load["server_peak_rss_mib"] = server.peak_rss_mib()
            figures["load"] = load
            console.print(f"load test: {load['clients']} gRPC clients x {load['steps_per_client']} steps "
                          f"(bound {budget.load_seconds:.0f} s): {load['steps']} steps in {load['seconds']:.1f} s "
                          f"({load['steps_per_s']:.0f} steps/s), {load['completed']} clients finished, "
                          f"{load['errors']} errors, latency p50 {load['p50_ms']:.1f} ms p99 {load['p99_ms']:.1f} ms; "
                          f"server peak RSS {load['server_peak_rss_mib']:.0f} MiB")
            for example in load["error_examples"]:
                console.print(f"  {example}")

            refit = _refit_latency(server.grpc, budget)
            figures["refit_latency"] = refit
            console.print(f"batch-1 gRPC step latency idle p50 {refit['idle_p50_ms']:.2f} / p99 "
                          f"{refit['idle_p99_ms']:.2f} ms; during a {refit['refit_steps']}-step refit p50 "
                          f"{refit['refit_p50_ms']:.2f} / p99 {refit['refit_p99_ms']:.2f} ms "
                          f"({refit['refit_calls']} calls; refit {refit['refit_state']} in "
                          f"{refit['refit_seconds']:.1f} s)")
            figures["server_peak_rss_mib"] = server.peak_rss_mib()
        finally:
            figures["server_exit_code"] = server.stop()
            if restore is not None:
                pin_process(restore)
