"""The command line: options generated from the settings dataclasses, and commands from plugins."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import pytest
import typer
from typer.testing import CliRunner

from adept_env.cli_config import ConfigOptions, Flag, Settings, config_command, field_docs

ROOT = Path(__file__).resolve().parents[1]


@dataclasses.dataclass
class Toy:
    """A settings dataclass for the generator."""

    steps: int = 10
    """Steps to take; see ``rate``."""
    rate: float = 0.5
    """Share to keep [between 0 and 1]."""
    name: str | None = None
    """A name (None: none)."""
    normalize: bool = True
    """Standardise the inputs."""
    hidden: int = 64
    """Not on the command line."""
    tags: tuple[str, ...] = ()
    """Repeatable tags."""


@dataclasses.dataclass
class Extra:
    """A second group of settings."""

    depth: int = 2
    """How deep."""


TOY = ConfigOptions(Toy, exclude=("hidden",), flags={
    "steps": Flag("--budget", min=1),
    "rate": Flag(unset=True),
    "normalize": Flag("--raw", switch=True, help="Do not standardise."),
    "tags": Flag("--tag", type=list[str] | None, parse=lambda tags: tuple(tags or ())),
})


def _toy_app(seen: list[Settings]) -> typer.Typer:
    app = typer.Typer()

    @app.command()
    @config_command(toy=TOY, extra=ConfigOptions(Extra))
    def run(label: Annotated[str, typer.Argument()], toy: Settings, extra: Settings,
            loud: Annotated[bool, typer.Option("--loud")] = False) -> None:
        seen.append({"label": label, "loud": loud, **toy, **extra})

    return app


def _flags(text: str) -> set[str]:
    return set(re.findall(r"--[a-z][a-z-]*", text))


def test_field_docs_reads_the_string_under_each_field() -> None:
    docs = field_docs(Toy)
    assert docs["steps"] == "Steps to take; see ``rate``." and docs["hidden"] == "Not on the command line."


def test_generated_options_take_defaults_names_and_help_from_the_dataclass() -> None:
    assert [f.name for f in TOY.fields] == ["steps", "rate", "name", "normalize", "tags"]
    assert TOY.option_name("steps") == "--budget" and TOY.option_name("name") == "--name"
    assert TOY.help("steps") == "Steps to take; see --rate."  # a field named in the docstring reads as its option
    assert TOY.help("rate") == r"Share to keep \[between 0 and 1]."  # not read as rich markup
    params = {p.name: p for p in TOY.parameters()}
    assert params["steps"].default == 10 and params["rate"].default is None and params["normalize"].default is False
    with pytest.raises(ValueError, match="no field"):
        ConfigOptions(Toy, exclude=("nope",))


def test_a_generated_command_parses_to_field_values() -> None:
    seen: list[Settings] = []
    app = _toy_app(seen)
    result = CliRunner().invoke(app, ["x"])
    assert result.exit_code == 0, result.output
    assert seen[-1] == {"label": "x", "loud": False, "steps": 10, "name": None, "tags": (), "depth": 2}  # rate unset
    result = CliRunner().invoke(app, ["y", "--budget", "3", "--rate", "0.25", "--raw", "--tag", "a", "--tag", "b",
                                      "--loud", "--name", "n", "--depth", "5"])
    assert result.exit_code == 0, result.output
    assert seen[-1] == {"label": "y", "loud": True, "steps": 3, "rate": 0.25, "name": "n", "normalize": False,
                        "tags": ("a", "b"), "depth": 5}
    assert CliRunner().invoke(app, ["z", "--budget", "0"]).exit_code == 2  # the Flag's bound
    help_text = CliRunner().invoke(app, ["--help"]).output
    assert {"--budget", "--rate", "--name", "--raw", "--tag", "--loud"} <= _flags(help_text)
    assert "--hidden" not in help_text and "--no-raw" not in help_text


def test_train_and_serve_keep_every_flag() -> None:
    from adept_env.cli import app

    train = CliRunner().invoke(app, ["train", "--help"], terminal_width=200, env={"COLUMNS": "200"})
    assert train.exit_code == 0, train.output
    assert _flags(train.output) == {
        "--algo", "--budget", "--seed", "--out", "--eval-every", "--eval-episodes", "--real-ratio", "--penalty",
        "--horizon", "--no-penalty", "--refit-every", "--critics", "--policy-average", "--value-penalty",
        "--select-episodes", "--value-samples", "--uncertainty-threshold", "--expectile", "--beta", "--raw-states",
        "--profile", "--dataset-steps", "--progress", "--no-progress", "--threads", "--device", "--help"}
    # rich sizes the help from $COLUMNS (not terminal_width): wide enough for --max-sessions-per-owner whole
    serve = CliRunner().invoke(app, ["serve", "--help"], terminal_width=200, env={"COLUMNS": "200"})
    assert serve.exit_code == 0, serve.output
    assert _flags(serve.output) == {
        "--grpc-port", "--http-port", "--host", "--env", "--profile", "--device", "--model-path", "--dataset-path",
        "--state-dir", "--max-sessions", "--max-sessions-per-owner", "--max-num-envs", "--max-message-mb",
        "--idle-timeout", "--max-refit-steps", "--max-samples", "--max-draws", "--preload", "--no-preload",
        "--torch-threads", "--cpus", "--progress", "--no-progress", "--help"}
    bench = CliRunner().invoke(app, ["bench", "--help"], terminal_width=200)
    assert {"behavior", "data", "world-model", "refit", "service"} <= set(re.findall(r"│ ([a-z-]+) ", bench.output))


def test_serve_options_map_onto_the_server_config() -> None:
    import typer.main

    from adept_env.cli import app
    from server.cli import SERVER_OPTIONS, WORLD_MODEL_OPTIONS
    from server.config import MIB, ServerConfig

    serve = typer.main.get_command(app).get_command(None, "serve")
    params = serve.make_context("serve", ["--grpc-port", "-1", "--env", "a", "--max-message-mb", "2"]).params
    settings = SERVER_OPTIONS.settings(params)
    assert settings["grpc_port"] is None and settings["env_ids"] == ("a",) and settings["max_message_bytes"] == 2 * MIB
    limits = SERVER_OPTIONS.settings(serve.make_context("serve", ["--max-samples", "8", "--max-sessions-per-owner", "3",
                                                                  "--max-refit-steps", "50"]).params)
    assert (limits["max_samples"], limits["max_sessions_per_owner"], limits["max_refit_steps"]) == (8, 3, 50)
    defaults = SERVER_OPTIONS.settings(serve.make_context("serve", []).params)
    assert ServerConfig(**defaults) == ServerConfig()  # no option given: the dataclass's defaults
    assert WORLD_MODEL_OPTIONS.settings(serve.make_context("serve", []).params) == {}  # the server's defaults apply


def test_serve_checks_its_options_before_starting(tmp_path: Path) -> None:
    from adept_env.cli import app

    per_env = CliRunner().invoke(app, ["serve", "--model-path", "m", "--state-dir", str(tmp_path)], terminal_width=200)
    assert per_env.exit_code == 2 and "need exactly one --env" in per_env.output
    cpus = CliRunner().invoke(app, ["serve", "--cpus", "0-x", "--state-dir", str(tmp_path)], terminal_width=200)
    assert cpus.exit_code == 2 and "--cpus: bad CPU list" in cpus.output


def test_a_missing_plugin_says_which_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import adept_env.cli

    monkeypatch.setattr(adept_env.cli, "plugin_commands", lambda path: {})
    result = CliRunner().invoke(adept_env.cli.app, ["serve", "--host", "0.0.0.0"], terminal_width=200)
    assert result.exit_code == 2
    assert "pip install 'adept-env[server]'" in result.output


def test_python_m_server_runs_without_the_library_cli() -> None:
    script = ("import runpy, sys\n"
              "sys.argv = ['server', '--help']\n"
              "try:\n"
              "    runpy.run_module('server', run_name='__main__')\n"
              "except SystemExit as exit:\n"
              "    assert exit.code == 0, exit.code\n"
              "assert 'adept_env.cli' not in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    assert "Usage: python -m server [OPTIONS]" in done.stdout and "--grpc-port" in done.stdout
