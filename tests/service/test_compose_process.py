"""docker-compose.yml's recipe end to end, without Docker: its datagen, server and trainer commands run as
local processes, at a tiny scale.

The commands are read from docker-compose.yml and run as they are, but for their sizes (a 2,000-row
dataset, the quick world-model profile, a few hundred agent updates, one-episode evaluations, a refit
every 100 updates) and where they are (the volume /data is a temporary folder, /app the repository,
the ports free loopback ones). The server is waited for with the compose healthcheck's own command,
which must fail while the server fits its model and pass once it serves. The trainer must train with
real rows mixed in, push policies and start refits, evaluate in MuJoCo and write its learning curve
(PNG) and score (JSON) to the volume.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
yaml = pytest.importorskip("yaml")
VOLUME = "/data"
APP = "/app/"
ENV_ID = "ADEPT-halfcheetah-random"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def resized(command: list[str], values: dict[str, str]) -> list[str]:
    """``command`` with the value after each flag of ``values`` replaced (the flag must be in it)."""
    out = list(command)
    for flag, value in values.items():
        assert flag in out, f"{flag} is not in the compose command {command}; the test no longer matches it"
        out[out.index(flag) + 1] = value
    return out


def local(command: list[str], volume: Path) -> list[str]:
    """A container's arguments on this machine: paths on the volume moved into ``volume``."""
    return [str(volume / arg.removeprefix(VOLUME + "/")) if arg.startswith(VOLUME + "/") else arg for arg in command]


def executable(service: dict) -> list[str]:
    """What a service's container runs before its arguments: the image's ``adept-env``, or its entrypoint."""
    entrypoint = service.get("entrypoint")
    if entrypoint is None:
        return [str(Path(sys.executable).parent / "adept-env")]
    assert entrypoint[0] == "python" and entrypoint[1].startswith(APP), entrypoint
    script = ROOT / entrypoint[1].removeprefix(APP)
    assert script.exists(), f"{entrypoint[1]} is not in the image (the Dockerfile copies the repository to {APP})"
    return [sys.executable, str(script), *entrypoint[2:]]


def environment(service: dict, volume: Path) -> dict[str, str]:
    """The process environment: ours, the service's (compose's ${VAR:-default} resolved) and the volume."""
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "ADEPT_API_TOKEN")}
    for key, value in (service.get("environment") or {}).items():
        value = str(value)
        if value.startswith("${") and ":-" in value:
            name, default = value[2:-1].split(":-", 1)
            value = os.environ.get(name, default) if name != "ADEPT_API_TOKEN" else default
        env[key] = value.replace(VOLUME, str(volume)) if value.startswith(VOLUME) else value
    mounts = [m for m in service.get("volumes", []) if m.endswith(":" + VOLUME)]
    assert mounts or "ADEPT_HOME" not in env, "a service that uses $ADEPT_HOME must mount the volume"
    env.update(ADEPT_HOME=str(volume), OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def healthcheck(server: dict, http_port: int, compose_port: int) -> list[str]:
    """The compose healthcheck's command, for a server whose HTTP port is ``http_port``."""
    test = server["healthcheck"]["test"]
    assert test[0] == "CMD" and test[1] == "python", test
    url = f"127.0.0.1:{compose_port}/health"
    assert any(url in part for part in test), test
    return [sys.executable, *[part.replace(url, f"127.0.0.1:{http_port}/health") for part in test[2:]]]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_compose_recipe_runs_end_to_end_as_local_processes(compose: dict, tmp_path: Path) -> None:
    services = compose["services"]
    volume = tmp_path / "data"
    volume.mkdir()
    logs = tmp_path / "logs"
    logs.mkdir()

    datagen = services["datagen"]
    done = subprocess.run(executable(datagen) + resized(datagen["command"], {"--steps": "2000"}),
                          env=environment(datagen, volume), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr

    server = services["server"]
    assert "--preload" in server["command"] and "--progress" in server["command"]
    compose_http = int(server["command"][server["command"].index("--http-port") + 1])
    grpc_port, http_port = free_port(), free_port()
    command = resized(server["command"], {"--profile": "quick", "--host": "127.0.0.1",
                                          "--grpc-port": str(grpc_port), "--http-port": str(http_port)})
    with open(logs / "server.log", "w") as server_log:
        process = subprocess.Popen(executable(server) + local(command, volume), env=environment(server, volume),
                                   stdout=server_log, stderr=subprocess.STDOUT)
    try:
        check = healthcheck(server, http_port, compose_http)
        failures, deadline = 0, time.monotonic() + 150
        while True:
            assert process.poll() is None, (logs / "server.log").read_text()
            if subprocess.run(check, capture_output=True, timeout=30).returncode == 0:
                break
            failures += 1
            assert time.monotonic() < deadline, "the healthcheck never passed:\n" + (logs / "server.log").read_text()
            time.sleep(0.5)
        server_output = (logs / "server.log").read_text()
        assert failures > 0, "the healthcheck passed before the server had fitted its model"
        assert f"loaded {ENV_ID}" in server_output  # the fit (or load) is in the log, before serving
        assert "it/s" in server_output or "%|" in server_output  # --progress: the fit's progress bar

        trainer = services["trainer"]
        sizes = {"--target": f"127.0.0.1:{grpc_port}", "--steps": "240", "--eval-every": "120",
                 "--eval-episodes": "1"}
        smaller = ["--final-episodes", "1", "--refit-every", "100", "--refit-steps", "50", "--batch-size", "64"]
        command = local(resized(trainer["command"], sizes), volume) + smaller
        out_dir = Path(command[command.index("--out") + 1])
        assert out_dir.is_relative_to(volume), "the trainer must write its results to the volume"
        done = subprocess.run(executable(trainer) + command, env=environment(trainer, volume),
                              capture_output=True, text=True, timeout=200)
        assert done.returncode == 0, done.stdout + done.stderr
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
    assert process.returncode == 0, (logs / "server.log").read_text()

    assert "fetched 2000 real transitions" in done.stdout, done.stdout  # the real rows, all of them
    score = json.loads((out_dir / "score.json").read_text())
    assert score["updates"] == 240 and score["settings"]["real_ratio"] == 0.5
    assert [row["update"] for row in score["curve"]] == [120, 240]
    assert score["final"]["episodes"] == 1 and score["final"]["task"] == "halfcheetah"
    assert score["final"]["lengths"] == [1000]  # a whole real MuJoCo episode
    assert isinstance(score["final"]["score_mean"], float)
    assert score["pushes"] == 2 and score["refits"] >= 1
    assert f"final D4RL-normalised score {score['final']['score_mean']:.1f}" in done.stdout
    assert json.loads((out_dir / "curve.json").read_text()) == score["curve"]
    assert (out_dir / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    spec = json.loads((out_dir / "policy.json").read_text())
    assert spec["format"] == "adept-env/sac-actor" and (out_dir / "policy.safetensors").stat().st_size > 0
