"""The server's commands: ``adept-env serve`` (also ``python -m server``) and ``adept-env bench service``.

The library does not import the server: ``adept-env`` finds these commands through the
``adept_env.commands`` entry point (pyproject.toml), which names :func:`register`. The options of
``serve`` are ``ServerConfig``'s fields, plus the world-model settings of ``EnvConfig`` that only
the operator may set, generated with their defaults and help.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from adept_env.cli_config import ConfigOptions, Flag, Settings, config_command, fail
from adept_env.envs.config import EnvConfig
from server.config import MIB, ServerConfig

SERVER_OPTIONS = ConfigOptions(
    ServerConfig,
    exclude=("api_tokens", "env_settings", "default_settings", "client_overrides", "max_wait_s", "keep_versions",
             "grpc_workers", "grace_s"),
    flags={
        "grpc_port": Flag(type=int, min=-1, show=lambda port: -1 if port is None else port,
                          parse=lambda port: None if port < 0 else port,
                          help="gRPC port (0: a free one; -1: no gRPC)."),
        "http_port": Flag(type=int, min=-1, show=lambda port: -1 if port is None else port,
                          parse=lambda port: None if port < 0 else port,
                          help="HTTP port, OpenAPI at /docs (0: a free one; -1: no HTTP)."),
        "env_ids": Flag("--env", type=list[str] | None, parse=lambda ids: tuple(ids) if ids else None,
                        help="Serve only this env id (repeatable; default: every registered ADEPT id)."),
        "max_message_bytes": Flag("--max-message-mb", type=int, min=1, show=lambda size: size // MIB,
                                  parse=lambda mib: mib * MIB, help="Largest request or response in MiB."),
        "max_sessions": Flag(min=1),
        "max_sessions_per_owner": Flag(min=1),
        "max_refit_steps": Flag(min=1),
        "max_samples": Flag(min=1),
        "max_draws": Flag(min=0),
        "max_num_envs": Flag(min=1),
        "idle_timeout_s": Flag("--idle-timeout", min=1),
        "torch_threads": Flag(min=1),
        "cpus": Flag(type=str | None, parse=lambda text: None if text is None else _parse_cpus(text),
                     help="Pin the server to these CPUs, e.g. 1 or 0-3 (Linux)."),
    },
)
"""The options of ``serve`` that set a ServerConfig field (the others keep their defaults;
``api_tokens`` comes from $ADEPT_API_TOKEN)."""

WORLD_MODEL_OPTIONS = ConfigOptions(
    EnvConfig,
    include=("profile", "device", "model_path", "dataset_path"),
    flags={
        "profile": Flag(unset=True),
        "device": Flag(unset=True),
        "model_path": Flag(type=Path, unset=True, parse=str, help="Saved world model (needs exactly one --env)."),
        "dataset_path": Flag(type=Path, unset=True, parse=str, help="Dataset .hdf5 (needs exactly one --env)."),
    },
)
"""World-model settings of the served envs that only the operator sets (clients may not override them)."""

PER_ENV = ("model_path", "dataset_path")


def _parse_cpus(text: str) -> tuple[int, ...]:
    from server.affinity import parse_cpus

    return parse_cpus(text)


@config_command(fail=fail, server=SERVER_OPTIONS, world_model=WORLD_MODEL_OPTIONS)
def serve_command(server: Settings, world_model: Settings) -> None:
    """Serve world-model sessions over gRPC and HTTP in one process (ADEPT_API_TOKEN: bearer tokens)."""
    per_env = {key: world_model.pop(key) for key in PER_ENV if key in world_model}
    env_ids = server["env_ids"]
    if per_env and len(env_ids or ()) != 1:
        fail("--model-path/--dataset-path need exactly one --env")
    if "device" in world_model:
        from adept_env.devices import resolve_device

        try:  # before anything starts: a device torch does not see is an error, not a CPU fallback
            resolve_device(world_model["device"])
        except ValueError as exc:
            fail(str(exc))
    config = ServerConfig(**server, default_settings=world_model,
                          env_settings={env_ids[0]: per_env} if per_env else {}).with_environ()
    try:
        from server.service import serve

        serve(config)
    except ModuleNotFoundError as exc:  # grpcio, uvicorn or fastapi: the server extra is not installed
        fail(f"{exc}; the server needs the server extra: pip install 'adept-env[server]'")
    except (ValueError, OSError) as exc:
        fail(str(exc))


def bench_service(
    quick: Annotated[bool, typer.Option("--quick", help="Small model and fewer steps (a few minutes).")] = False,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the figures as JSON.")] = None,
    pin: Annotated[bool, typer.Option(help="Server on the upper half of the CPUs, clients on the lower half.")]
    = True,
) -> None:
    """Steps/s over gRPC and HTTP vs in-process, round-trip overhead, a load test, latency during a refit."""
    from server.bench import run

    run(quick=quick, json_path=json_path, pin=pin)


def bench_soak(
    seconds: Annotated[float, typer.Option(help="How long the clients step (plus restarts).", min=5)] = 90.0,
    clients: Annotated[int, typer.Option(help="gRPC clients stepping their own sessions.", min=1)] = 32,
    kills: Annotated[int, typer.Option(help="Times the server is killed (SIGKILL) mid-refit and restarted.",
                                       min=0)] = 3,
    refit_every: Annotated[float, typer.Option(help="Seconds between policy pushes with a refit.", min=0.5)] = 4.0,
    refit_steps: Annotated[int, typer.Option(help="Gradient steps of each refit.", min=1)] = 3_000,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the figures as JSON.")] = None,
) -> None:
    """Soak on loopback: many clients, refits, the server killed mid-refit and restarted; prints requests=,
    errors=, server_crashes=, versions_lost=, peak_rss_mb= (targets: 0 errors, crashes and versions lost)."""
    import json

    from server.soak import run

    figures = run(seconds=seconds, clients=clients, kills=kills, refit_every=refit_every, refit_steps=refit_steps)
    if json_path is not None:
        json_path.write_text(json.dumps(figures, indent=2))


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    """Add the server's commands to ``adept-env`` (the ``adept_env.commands`` entry point)."""
    app.command("serve")(serve_command)
    groups["bench"].command("service")(bench_service)
    groups["bench"].command("soak")(bench_soak)


def main() -> None:
    """``python -m server [OPTIONS]``: ``adept-env serve`` on its own."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(serve_command)
    app(prog_name="python -m server")
