"""``adept-env bench soak``: many clients, refits, and the server killed mid-refit, on loopback.

``clients`` gRPC clients step their sessions (same-step autoreset) as fast as they can; a pusher
sends a new policy (log-probs of dataset rows) and starts a refit every ``refit_every`` seconds;
``kills`` times, while a refit runs, the server is killed with SIGKILL and restarted on the same
state folder. Clients reconnect and open new sessions (the restart forgets sessions; that is the
expected unavailability window). It prints:

- ``requests=``: answered calls; ``errors=``: calls that failed other than by the server being
  down or restarting (connection refused/unavailable, or NOT_FOUND for a session the restart
  forgot): the target is 0;
- ``server_crashes=``: server exits that were not our SIGKILL (target 0);
- ``versions_lost=``: checkpointed versions that a restart did not serve (the restarted server's
  version is below the newest version a refit reported checkpointed before the kill; target 0);
- ``peak_rss_mb=``: the largest peak resident memory of any server process (bounded: it must
  not grow with the number of kills or refits).
"""

from __future__ import annotations

import contextlib
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from server.bench import ENV_ID, QUICK, ServerProcess, _prepare

EXPECTED_DOWN = ("UNAVAILABLE", "NOT_FOUND", "DEADLINE_EXCEEDED", "CANCELLED")
"""Status names a client sees while the server is down or after a restart forgot its session."""


@dataclass
class Tally:
    """Counters shared by the client threads (under ``lock``)."""

    requests: int = 0
    errors: int = 0
    expected_down: int = 0
    first_errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, ok: bool, error: Exception | None = None) -> None:
        with self.lock:
            if ok:
                self.requests += 1
            elif error is not None and _status(error) in EXPECTED_DOWN:
                self.expected_down += 1
            else:
                self.errors += 1
                if len(self.first_errors) < 5:
                    self.first_errors.append(f"{type(error).__name__}: {error}"[:300])


def _status(error: Exception) -> str:
    code = getattr(error, "code", None)
    name = getattr(code, "name", None) or (code() if callable(code) else code)
    name = getattr(name, "name", name)
    return str(name or type(error).__name__).upper().removesuffix("ERROR")


class Server:
    """The current server process and its target; ``restart`` keeps the state folder."""

    def __init__(self, model: Path, dataset: Path, state: Path) -> None:
        self.model, self.dataset, self.state = model, dataset, state
        self.lock = threading.Lock()
        self.peak_rss_mb = 0.0
        self.crashes = 0
        self.process = ServerProcess(model, dataset, state)

    @property
    def target(self) -> str:
        return self.process.grpc

    def sample_rss(self) -> None:
        with contextlib.suppress(OSError):  # the process just went away
            self.peak_rss_mb = max(self.peak_rss_mb, self.process.peak_rss_mib())

    def kill_and_restart(self) -> None:
        with self.lock:
            self.sample_rss()
            if self.process.process.poll() is not None:
                self.crashes += 1
            self.process.process.send_signal(signal.SIGKILL)
            self.process.process.wait(30)
            self.process = ServerProcess(self.model, self.dataset, self.state)


def _client_loop(server: Server, tally: Tally, stop: threading.Event, num_envs: int, seed: int) -> None:
    from adept_client import GrpcClient, RetryPolicy

    rng = np.random.default_rng(seed)
    client, session, target = None, None, None
    while not stop.is_set():
        try:
            if client is None or target != server.target:
                if client is not None:
                    client.close()
                target = server.target
                client = GrpcClient(target, token="", timeout_s=30, retry=RetryPolicy(attempts=1))
                session = None
            if session is None:
                session = client.create_session(ENV_ID, num_envs=num_envs, seed=seed)
                session.reset()
                tally.count(True)
            session.step(rng.uniform(-1, 1, (num_envs, 6)).astype(np.float32), autoreset="same_step")
            tally.count(True)
        except Exception as exc:  # counted: expected while the server is down, an error otherwise
            tally.count(False, exc)
            session = None
            time.sleep(0.05)
    if client is not None:
        client.close()


def run(seconds: float = 60.0, clients: int = 32, kills: int = 3, refit_every: float = 4.0,
        refit_steps: int = 3_000, num_envs: int = 4, workdir: Path | None = None,
        console: Console | None = None, data: tuple[Path, Path] | None = None) -> dict[str, Any]:
    """Run the soak for ``seconds`` (plus restarts); return the figures it prints.

    ``data``: (dataset .hdf5, saved world model) to serve; default: a 20k-row halfcheetah-random
    file and a quick model, made (and the model cached) on the first run."""
    from adept_client import GrpcClient, RetryPolicy

    console = console or Console()
    with tempfile.TemporaryDirectory(prefix="adept-soak-") as tmp:
        root = Path(workdir) if workdir is not None else Path(tmp)
        dataset, model = data if data is not None else _prepare(QUICK, root, console)
        server = Server(model, dataset, root / "state")
        tally, stop = Tally(), threading.Event()
        threads = [threading.Thread(target=_client_loop, args=(server, tally, stop, num_envs, i), daemon=True)
                   for i in range(clients)]
        for thread in threads:
            thread.start()
        checkpointed, lost, kills_done, refits = 0, 0, 0, 0
        kill_times = list(np.linspace(seconds * 0.2, seconds * 0.8, kills)) if kills else []
        start, next_refit = time.monotonic(), 0.0
        pusher: Any = None
        session: Any = None
        pending: int | None = None  # the refit job (of the current server) not yet seen checkpointed
        try:
            while time.monotonic() - start < seconds:
                server.sample_rss()
                if server.process.process.poll() is not None:  # died without our SIGKILL
                    server.crashes += 1
                    server.process = ServerProcess(model, dataset, root / "state")
                if pusher is None or pusher[0] != server.target:
                    pusher = (server.target, GrpcClient(server.target, token="", timeout_s=30,
                                                        retry=RetryPolicy(attempts=3)))
                    session, pending = pusher[1].create_session(ENV_ID, num_envs=1, seed=0), None
                    lost += max(checkpointed - session.model_version, 0)  # what the restart serves
                    indices, _, actions = session.dataset_pairs(sample_size=500, seed=0)
                elapsed = time.monotonic() - start
                if pending is not None:
                    info = session.get_refit(pending)
                    if info.checkpointed:
                        checkpointed, pending = max(checkpointed, info.model_version), None
                    elif info.state == "failed":
                        pending = None
                if elapsed >= next_refit and pending is None:
                    next_refit = elapsed + refit_every
                    session.update_policy_log_probs(indices, -np.square(actions - 0.1 * (refits % 5)).sum(1))
                    pending = session.refit(steps=refit_steps).job_id
                    refits += 1
                due = kill_times and elapsed >= kill_times[0] and pending is not None
                if due and session.get_refit(pending).state == "running":  # kill mid-refit
                    kill_times.pop(0)
                    server.kill_and_restart()
                    kills_done += 1
                    pusher = None
                time.sleep(0.1)
        finally:
            stop.set()
            for thread in threads:
                thread.join(60)
            server.sample_rss()
            code = server.process.stop()
            if code not in (0, -signal.SIGTERM):
                server.crashes += 1
    figures = {"requests": tally.requests, "errors": tally.errors, "server_crashes": server.crashes,
               "versions_lost": lost, "peak_rss_mb": round(server.peak_rss_mb, 1), "kills": kills_done,
               "refits": refits, "expected_unavailable": tally.expected_down, "clients": clients,
               "seconds": seconds}
    for key, value in figures.items():
        console.print(f"{key}={value}")
    for line in tally.first_errors:
        console.print(f"error: {line}")
    return figures
