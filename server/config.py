"""Settings of the world-model server (one dataclass; ``ServerConfig.from_environ`` adds $ADEPT_* values)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

CLIENT_OVERRIDES = ("horizon", "penalty", "uncertainty_threshold", "n_samples", "start_states", "refit_every",
                    "refit_steps", "weight_clip")
"""EnvConfig fields a client may set per session. The others (model_path, dataset_path, profile,
device) name files or decide what the server trains, so only the server's operator sets them."""

MIB = 1024 * 1024


@dataclass
class ServerConfig:
    """Where the server listens, what it serves, and the limits it enforces."""

    host: str = "127.0.0.1"
    """Interface to bind; loopback unless told otherwise (0.0.0.0 in containers)."""
    grpc_port: int | None = 50051
    """gRPC port; 0 picks a free one; None: no gRPC front-end."""
    http_port: int | None = 8000
    """HTTP port; 0 picks a free one; None: no HTTP front-end."""
    state_dir: Path | None = None
    """Folder of the refitted world models' checkpoints (None: $ADEPT_HOME/server)."""
    api_tokens: tuple[str, ...] = ()
    """Bearer tokens accepted; empty: no authentication. Sessions belong to the token that made them."""
    env_ids: tuple[str, ...] | None = None
    """Environment ids served; None: every registered ADEPT id."""
    env_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Server-side EnvConfig values per env id (e.g. model_path, dataset_path), over ``default_settings``."""
    default_settings: dict[str, Any] = field(default_factory=dict)
    """Server-side EnvConfig values for every env id (e.g. profile='quick')."""
    client_overrides: tuple[str, ...] = CLIENT_OVERRIDES
    """EnvConfig fields clients may override in CreateSession."""
    max_message_bytes: int = 64 * MIB
    """Largest request or response, in bytes, on both transports."""
    max_num_envs: int = 4096
    """Largest num_envs of one session."""
    max_sessions: int = 256
    """Open sessions in all."""
    max_sessions_per_owner: int = 128
    """Open sessions of one token."""
    idle_timeout_s: float = 900.0
    """A session without calls for this many seconds is closed."""
    max_refit_steps: int = 20_000
    """Largest gradient-step count of one refit (a Refit call's steps, a session's refit_steps)."""
    max_samples: int = 64
    """Largest n_samples (K next-state draws per step) a client may ask for."""
    max_draws: int = 32
    """Most next-state draws per env a Step answer may carry (a Step's ``draws``, for client-side value
    penalties): an answer holds num_envs x draws x obs_dim float32 values. 0: never return draws."""
    max_wait_s: float = 60.0
    """Longest a GetRefit call may wait for its job."""
    keep_versions: int = 3
    """Checkpointed world-model versions kept per engine (the current one always)."""
    grpc_workers: int = 64
    """Threads serving gRPC calls."""
    torch_threads: int | None = None
    """torch intra-op threads in the server process (None: torch's default)."""
    cpus: tuple[int, ...] | None = None
    """CPUs the whole server process is pinned to (Linux); None: every CPU it may use."""
    preload: bool = False
    """Load every served environment's dataset and model at start-up (else on first use)."""
    progress: bool = False
    """Show progress bars while datasets are generated or models trained on first use."""
    grace_s: float = 5.0
    """Seconds in-flight calls get to finish on shutdown."""

    def resolved_state_dir(self) -> Path:
        """Return the state folder (created), defaulting to $ADEPT_HOME/server."""
        if self.state_dir is not None:
            path = Path(self.state_dir).expanduser()
        else:
            from adept_env.paths import adept_home

            path = adept_home() / "server"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def with_environ(self) -> ServerConfig:
        """Return a copy with $ADEPT_API_TOKEN (comma-separated tokens) applied when set."""
        tokens = parse_tokens(os.environ.get("ADEPT_API_TOKEN", ""))
        return replace(self, api_tokens=tokens) if tokens else self


def parse_tokens(text: str) -> tuple[str, ...]:
    """Return the non-empty, stripped tokens of a comma-separated list."""
    return tuple(t.strip() for t in text.split(",") if t.strip())
