"""One process, two front-ends: ``WorldModelServer`` starts gRPC and HTTP over one session core.

``serve(config)`` runs until SIGINT/SIGTERM, then shuts down gracefully and exits 0: health turns
NOT_SERVING, new calls are refused, in-flight ones get ``config.grace_s`` seconds, running
refits get the same to finish (and be checkpointed); a refit still running then is cancelled
(it stops after its current gradient step and is not installed or saved), so a restart serves
the last complete version.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from typing import Any

from adept_env.progress import in_ci
from server.config import ServerConfig
from server.sessions import SessionCore

log = logging.getLogger("adept.server")


class WorldModelServer:
    """The gRPC server, the uvicorn server and the idle-session reaper over one ``SessionCore``."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.core = SessionCore(config)
        self.grpc_port: int | None = None
        self.http_port: int | None = None
        self._grpc: Any = None
        self._health: Any = None
        self._uvicorn: Any = None
        self._http_thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._reaper: threading.Thread | None = None

    def start(self, timeout: float = 30.0) -> WorldModelServer:
        """Bind and start both front-ends (ports 0 pick free ones); return self once they accept calls."""
        if self.config.cpus:
            from server.affinity import pin_process

            pin_process(self.config.cpus)
        if self.config.torch_threads:
            import torch

            torch.set_num_threads(self.config.torch_threads)
        if self.config.preload:
            for env_id in self.core.engines.env_ids:
                self.core.engines.base(env_id)
        if self.config.grpc_port is not None:
            from server.grpc_service import build_grpc_server

            self._grpc, self.grpc_port, self._health = build_grpc_server(self.core, self.config.host,
                                                                         self.config.grpc_port)
            self._grpc.start()
        if self.config.http_port is not None:
            self._start_http(timeout)
        self._reaper = threading.Thread(target=self._reap, daemon=True, name="adept-reaper")
        self._reaper.start()
        log.info("serving gRPC on %s:%s and HTTP on %s:%s (auth %s, state %s)", self.config.host, self.grpc_port,
                 self.config.host, self.http_port, "on" if self.core.auth_enabled else "off",
                 self.core.engines.state_dir)
        return self

    def _start_http(self, timeout: float) -> None:
        import uvicorn

        from server.http_app import create_app

        family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # asyncio sets TCP_NODELAY only then
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.config.host, self.config.http_port))
        self.http_port = sock.getsockname()[1]
        config = uvicorn.Config(create_app(self.core), log_level="warning", access_log=False, lifespan="off",
                                timeout_graceful_shutdown=int(max(self.config.grace_s, 1)))
        self._uvicorn = uvicorn.Server(config)
        self._uvicorn.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # the process owns them
        self._http_thread = threading.Thread(target=self._uvicorn.run, kwargs={"sockets": [sock]}, daemon=True,
                                             name="adept-http")
        self._http_thread.start()
        deadline = time.monotonic() + timeout
        while not self._uvicorn.started:
            if not self._http_thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the HTTP server did not start on {self.config.host}:{self.http_port}")
            time.sleep(0.01)

    def _reap(self) -> None:
        period = min(max(self.config.idle_timeout_s / 10, 0.05), 30.0)
        while not self._stop.wait(period):
            try:
                self.core.expire_idle()
            except Exception:  # the reaper must outlive any one bad session
                log.exception("expiring idle sessions failed")

    def stop(self, grace: float | None = None) -> None:
        """Stop both front-ends, giving in-flight calls and running refits ``grace`` seconds."""
        grace = self.config.grace_s if grace is None else grace
        self._stop.set()
        if self._health is not None:
            self._health.enter_graceful_shutdown()
        done = self._grpc.stop(grace) if self._grpc is not None else None
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True
        deadline = time.monotonic() + grace
        engines = self.core.engines.engines()
        for engine in engines:
            job = engine.running_job()
            if job is not None:
                job.wait(max(deadline - time.monotonic(), 0.0))
        for engine in engines:  # past the grace: abandon what still runs, and wait for it to let go
            if not engine.core.cancel_refits(timeout=30.0):
                log.warning("a refit of %s did not stop within 30 s", engine.key[1])
            for job in engine.core.jobs:
                event = engine.checkpointed.get(job.job_id)
                if event is not None:
                    event.wait(max(deadline - time.monotonic(), 0.0) + (5.0 if job.status == "done" else 0.0))
        if done is not None:
            done.wait(max(deadline - time.monotonic(), 0.1))
        if self._http_thread is not None:
            self._http_thread.join(max(deadline - time.monotonic(), 0.1) + 1.0)
        self.core.close_all()

    def __enter__(self) -> WorldModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(config: ServerConfig) -> None:
    """Run the server in this process until SIGINT or SIGTERM, then stop it gracefully."""
    level = logging.WARNING if in_ci() else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    server = WorldModelServer(config).start()
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        log.info("signal %d: shutting down (grace %.1f s)", signum, config.grace_s)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    print(f"adept-env server: gRPC {config.host}:{server.grpc_port}  HTTP http://{config.host}:{server.http_port} "
          f"(docs at /docs)  state {server.core.engines.state_dir}", flush=True)
    while not stop.wait(1.0):
        pass
    server.stop()
