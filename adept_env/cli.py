"""The ``adept-env`` command line.

Commands that need torch (``train``) or Ray (``sweep``) are imported only when they run or are listed, and other
packages add commands through the ``adept_env.commands`` entry-point group (the server's
``serve`` and ``bench service``): the library never imports them.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from adept_env.cli_config import fail
from adept_env.model_cli import model_app
from adept_env.tasks import DATASET_QUALITIES, TASKS, UnknownNameError

PLUGIN_GROUP = "adept_env.commands"
"""Entry-point group of packages that add commands. Each entry point names a callable
``register(app, groups)``, which adds Typer commands to ``app`` (top level) or to ``groups["data"]``
/ ``groups["bench"]`` (e.g. ``server = "server.cli:register"``)."""

EXTRAS = {("serve",): "server", ("bench", "service"): "server"}
"""Commands that a package extra provides, for a helpful error when it is not installed."""


def _load_train() -> Callable[..., Any]:
    from adept_env.training.cli import train_command

    return train_command


def _load_demo() -> Callable[..., Any]:
    from adept_env.training.demo_cli import demo_command

    return demo_command


def _load_sweep() -> Callable[..., Any]:
    from adept_env.training.sweep_cli import sweep_command  # imports Ray only when the sweep runs

    return sweep_command


LAZY_COMMANDS: dict[tuple[str, ...], dict[str, Callable[[], Callable[..., Any]]]] = {
    (): {"train": _load_train, "sweep": _load_sweep, "demo": _load_demo}}
"""This package's commands imported on first use (their modules import torch): group path ->
command name -> a function returning the Typer command function."""


Command = Any
"""A command of Typer's click (Typer ships its own copy of click)."""
CommandTable = dict[tuple[str, ...], dict[str, Command]]
"""Click commands by group path (``()``: the top level, ``("bench",)``) and name."""


def _click_commands(top: typer.Typer, groups: dict[str, typer.Typer]) -> CommandTable:
    """The commands registered on ``top`` and on each of ``groups``, converted to click."""
    found: CommandTable = {(): typer.main.get_group(top).commands if top.registered_commands else {}}
    for name, group in groups.items():
        found[(name,)] = typer.main.get_group(group).commands if group.registered_commands else {}
    return found


@functools.cache
def _lazy_command(path: tuple[str, ...], name: str) -> Command | None:
    load = LAZY_COMMANDS.get(path, {}).get(name)
    if load is None:
        return None
    top = typer.Typer()
    top.command(name)(load())
    return _click_commands(top, {})[()][name]


_plugins: CommandTable | None = None
_broken_plugins: dict[str, str] = {}


def plugin_commands(path: tuple[str, ...]) -> dict[str, Command]:
    """The commands that plugins (the ``adept_env.commands`` entry points) add to group ``path``
    (``()``: the top level). The first call imports every plugin; one that fails to import is left
    out, and its commands then say why (see EXTRAS)."""
    global _plugins
    if _plugins is None:
        top, groups = typer.Typer(), {"data": typer.Typer(), "bench": typer.Typer()}
        for entry in entry_points(group=PLUGIN_GROUP):
            try:
                entry.load()(top, groups)
            except ImportError as exc:
                _broken_plugins[entry.name] = f"{entry.value}: {exc}"
        _plugins = _click_commands(top, groups)
    return _plugins.get(path, {})


def _unavailable(name: str, message: str) -> Command:
    """A command whose package extra is missing: whatever its arguments, it says how to install it."""
    top = typer.Typer()

    @top.command(name, help=message, add_help_option=False,
                 context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
    def command(ctx: typer.Context) -> None:
        fail(message)

    return _click_commands(top, {})[()][name]


def _group_class(path: tuple[str, ...]) -> type[TyperGroup]:
    class Group(TyperGroup):
        """A Typer group that also offers ``path``'s lazily loaded commands and those of plugins."""

        def list_commands(self, ctx: typer.Context) -> list[str]:
            own = super().list_commands(ctx)
            first_group = next((i for i, n in enumerate(own) if isinstance(self.commands[n], TyperGroup)), len(own))
            extra = [*LAZY_COMMANDS.get(path, {}), *plugin_commands(path)]
            return [*own[:first_group], *(n for n in extra if n not in own), *own[first_group:]]

        def get_command(self, ctx: typer.Context | None, name: str) -> Command | None:  # type: ignore[override]
            found = super().get_command(ctx, name) or _lazy_command(path, name) or plugin_commands(path).get(name)
            if found is None and (*path, name) in EXTRAS:
                extra = EXTRAS[(*path, name)]
                why = "; ".join(_broken_plugins.values()) or f"no {PLUGIN_GROUP!r} entry point provides it"
                found = _unavailable(name, f"adept-env {' '.join((*path, name))} needs the {extra} extra: "
                                           f"pip install 'adept-env[{extra}]' ({why})")
            return found

    return Group


app = typer.Typer(help="Offline RL with an adaptive diffusion world model, as Gymnasium environments.",
                  no_args_is_help=True, pretty_exceptions_enable=False, cls=_group_class(()))
data_app = typer.Typer(help="Make, inspect and export D4RL-protocol datasets.", no_args_is_help=True,
                       cls=_group_class(("data",)))
bench_app = typer.Typer(help="Measure speed and fidelity; figures go in BENCHMARKS.md.", no_args_is_help=True,
                        cls=_group_class(("bench",)))
app.add_typer(data_app, name="data")
app.add_typer(bench_app, name="bench")
app.add_typer(model_app, name="model")
console = Console()


@data_app.command("make")
def data_make(
    name: Annotated[str, typer.Argument(help="TASK-DATASET, e.g. halfcheetah-random")],
    steps: Annotated[int, typer.Option(help="Transitions to collect (D4RL: 1,000,000).", min=1)] = 1_000_000,
    seed: Annotated[int, typer.Option(help="Seed of the environment and the policy's sampling.")] = 0,
    out: Annotated[
        Path | None, typer.Option(help="Output .hdf5 path (default: the cache under $ADEPT_HOME).")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    run_dir: Annotated[
        Path | None, typer.Option(help="medium-replay: the behaviour SAC run (default $ADEPT_HOME/behavior/TASK).")
    ] = None,
    medium_step: Annotated[
        int | None,
        typer.Option(help="medium-replay: end at this snapshot step of the run (default: the shipped medium "
                          "actor's step, which the run must have produced).", min=1),
    ] = None,
    replay_source: Annotated[
        str, typer.Option(help="medium-replay: auto (the behaviour run's buffer if there is a run, else the "
                               "shipped recipe), run or recipe.")
    ] = "auto",
    ramp_exponent: Annotated[
        float | None,
        typer.Option(help="medium-replay recipe: shape k of the ramp p(t) = (fraction of the buffer after the "
                          "warm-up)^k from uniform to the medium actor (default 1, linear).", min=0.0),
    ] = None,
) -> None:
    """Generate a dataset with the real MuJoCo simulator and write it atomically as D4RL HDF5.

    medium/expert: STEPS of the shipped actor; medium-expert: STEPS of each; medium-replay: the
    behaviour SAC run's replay buffer up to the shipped medium actor's step (or --medium-step)
    when there is a run, else the shipped recipe (uniform warm-up, then a per-step mixture ramping
    from uniform to the medium actor; adept_env/data/replay_recipe.py), the first STEPS rows.
    """
    from adept_env.data.dataset import load_dataset
    from adept_env.data.generate import make_dataset

    try:
        path = make_dataset(name, steps=steps, seed=seed, out=out, progress=progress, run_dir=run_dir,
                            medium_step=medium_step, replay_source=replay_source, ramp_exponent=ramp_exponent)
    except (UnknownNameError, NotImplementedError, FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    dataset = load_dataset(path)
    _print_summary(dataset.summary())
    made_from = dataset.attrs.get("replay_source")
    console.print(f"wrote {path}" + (f" (from the {made_from})" if made_from else ""))


@data_app.command("train-behavior")
def data_train_behavior(
    task: Annotated[str, typer.Argument(help="halfcheetah, hopper or walker2d")],
    steps: Annotated[int | None, typer.Option(help="Total SAC steps (new run default 1,000,000).", min=1)] = None,
    run_dir: Annotated[
        Path | None, typer.Option(help="Run folder (default $ADEPT_HOME/behavior/TASK); resumed if it exists.")
    ] = None,
    eval_every: Annotated[int, typer.Option(help="Steps between evaluations/snapshots/checkpoints.", min=1)] = 10_000,
    eval_episodes: Annotated[int, typer.Option(help="Evaluation episodes each time.", min=1)] = 5,
    learning_starts: Annotated[int, typer.Option(help="Uniform warm-up steps.", min=0)] = 10_000,
    seed: Annotated[int, typer.Option(help="Seed of a new run.")] = 0,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many steps in this call.", min=1)] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar (off when CI=true).")] = True,
) -> None:
    """Train (or resume) the SAC behaviour policy of TASK on the real MuJoCo env, with checkpoints."""
    from adept_env.data.train_behavior import BehaviorTrainConfig, train_behavior
    from adept_env.tasks import get_task

    try:
        name = get_task(task).name
    except UnknownNameError as exc:
        fail(str(exc))
    config = BehaviorTrainConfig(
        task=name,
        total_steps=steps or 1_000_000,
        eval_every=eval_every,
        eval_episodes=eval_episodes,
        learning_starts=learning_starts,
        seed=seed,
    )
    try:
        state = train_behavior(
            name, run_dir=run_dir, total_steps=steps, config=config, progress=progress, max_steps_this_call=max_steps
        )
    except ValueError as exc:
        fail(str(exc))
    last = state["evals"][-1] if state["evals"] else None
    summary = f"; last eval normalised {last['normalized_mean']:.1f} at step {last['step']}" if last else ""
    console.print(f"{name}: {state['num_timesteps']} steps done{summary}")


@data_app.command("ship-behavior")
def data_ship_behavior(
    task: Annotated[str, typer.Argument(help="halfcheetah, hopper or walker2d")],
    quality: Annotated[str, typer.Argument(help="medium or expert")],
    step: Annotated[int, typer.Option(help="The run's snapshot step to ship.", min=1)],
    run_dir: Annotated[Path | None, typer.Option(help="Run folder (default $ADEPT_HOME/behavior/TASK).")] = None,
    episodes: Annotated[int, typer.Option(help="Evaluation episodes (at least 10).", min=10)] = 10,
    note: Annotated[str, typer.Option(help="Caveat stored in the actor's metadata.")] = "",
) -> None:
    """Evaluate a training snapshot and install it as the package's TASK-QUALITY behaviour actor."""
    from adept_env.data.train_behavior import ship_actor

    try:
        path = ship_actor(task, quality, step=step, run_dir=run_dir, episodes=episodes, note=note)
    except (UnknownNameError, ValueError, FileNotFoundError) as exc:
        fail(str(exc))
    spec = json.loads(path.with_suffix(".json").read_text())
    for key in ("evaluation", "evaluation_deterministic"):
        ev = spec[key]
        console.print(f"{key}: normalised {ev['normalized_mean']:.1f} +- {ev['normalized_std']:.1f} "
                      f"(return {ev['return_mean']:.0f} +- {ev['return_std']:.0f}, {ev['episodes']} episodes)")
    console.print(f"wrote {path}")


@data_app.command("info")
def data_info(
    path: Annotated[str, typer.Argument(help="A .hdf5 file (ours or D4RL's) or a dataset name.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Describe a dataset: size, episodes, returns, normalised score, provenance."""
    from adept_env.data.dataset import DatasetUnavailableError, load_dataset
    from adept_env.data.hdf5 import DatasetFileError

    try:
        summary = load_dataset(path, generate=False).summary()
    except (DatasetFileError, DatasetUnavailableError, UnknownNameError) as exc:
        fail(str(exc))
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        _print_summary(summary)


@data_app.command("list")
def data_list() -> None:
    """List every dataset name: on disk, a D4RL file, can be made now (and how long), or what it needs first."""
    from adept_env.data.status import dataset_status

    table = Table("dataset", "status", "path")
    for task in TASKS:
        for quality in DATASET_QUALITIES:
            status = dataset_status(f"{task}-{quality}")
            table.add_row(status.name, str(status), str(status.path))
    console.print(table)


@data_app.command("export-minari")
def data_export_minari(
    path: Annotated[str, typer.Argument(help="A .hdf5 file or a dataset name.")],
    dataset_id: Annotated[
        str | None, typer.Option(help="Minari id (default: adept/TASK-QUALITY-v0).")
    ] = None,
) -> None:
    """Export a dataset to Minari's local store (needs the ``minari`` extra)."""
    from adept_env.data.dataset import load_dataset
    from adept_env.data.minari_export import export_minari

    try:
        out = export_minari(load_dataset(path, generate=False), dataset_id)
    except (ImportError, ValueError) as exc:
        fail(str(exc))
    console.print(f"exported Minari dataset {out}")


@bench_app.command("behavior")
def bench_behavior(
    episodes: Annotated[int, typer.Option(help="Real episodes per shipped actor.", min=10)] = 10,
    make_steps: Annotated[int | None, typer.Option(help="Make missing datasets with this many steps.")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the figures as JSON.")] = None,
    figures: Annotated[Path | None, typer.Option(help="Plot the local runs' learning curves in this folder.")] = None,
    bc_steps: Annotated[int | None, typer.Option(help="Also fit BC densities (this many steps) vs exact.")] = None,
) -> None:
    """Shipped behaviour actors' scores and generated datasets' sizes and returns, beside D4RL."""
    from adept_env.benchmarks.behavior_policies import run

    run(episodes=episodes, make_steps=make_steps, json_path=json_path, figures_dir=figures, bc_steps=bc_steps)


@bench_app.command("data")
def bench_data(
    steps: Annotated[int, typer.Option(help="Steps per task for each measurement.", min=100)] = 20_000,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the figures as JSON.")] = None,
) -> None:
    """Dataset generation and ground-truth oracle throughput per task."""
    from adept_env.benchmarks.data_throughput import run

    run(steps=steps, json_path=json_path)


@bench_app.command("world-model")
def bench_world_model(
    quick: Annotated[bool, typer.Option("--quick", help="Small dataset and budget (about two minutes).")] = False,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the figures as JSON.")] = None,
    train_seconds: Annotated[
        float | None, typer.Option(help="Training seconds per model (default 25 quick, 240 full).", min=1)
    ] = None,
    dataset: Annotated[Path | None, typer.Option(help="Use this .hdf5 instead of generating data.")] = None,
    threads: Annotated[int, typer.Option(help="torch intra-op threads (1: the fair match for one MuJoCo process).",
                                         min=1)] = 1,
    device: Annotated[str, typer.Option(help="Device of the diffusion models: auto, cpu, cuda or cuda:N.")] = "cpu",
    task: Annotated[str | None, typer.Option(
        help="halfcheetah, hopper or walker2d (default: halfcheetah, or --dataset's task).")] = None,
    train_steps: Annotated[int | None, typer.Option(
        help="Train every model for this many gradient steps instead of --train-seconds of wall clock "
             "(fair when other jobs share the CPUs).", min=1)] = None,
) -> None:
    """Diffusion world model vs a probabilistic ensemble (fidelity), vs MuJoCo (speed), and fit cost."""
    from adept_env.benchmarks.world_model import run

    try:
        run(quick=quick, json_path=json_path, train_seconds=train_seconds, dataset_path=dataset, threads=threads,
            device=device, task=task, train_steps=train_steps)
    except ValueError as exc:  # a device torch does not see, an unknown task, a dataset of another task
        fail(str(exc))


@bench_app.command("refit")
def bench_refit(
    quick: Annotated[bool, typer.Option("--quick", help="Small data and budget (about two minutes).")] = False,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the figures as JSON.")] = None,
    task: Annotated[str, typer.Option(help="halfcheetah, hopper or walker2d.")] = "halfcheetah",
    dataset: Annotated[str, typer.Option(
        help="Dataset quality: random, medium, medium-replay, medium-expert or expert.")] = "random",
    policy: Annotated[str | None, typer.Option(
        help="Target policy: medium or expert (shipped actors) or a snapshot stem "
             "(default: medium on random data, expert otherwise).")] = None,
    ablation: Annotated[bool, typer.Option(
        "--ablation", help="Also refit with loss-multiplied weights and/or the fresh-fit learning rate, "
                           "and without the keep-the-start safeguard.")] = False,
    refit_steps: Annotated[int | None, typer.Option(
        help="Gradient steps of each refit (default: 1,000 quick, 2,000 full).", min=1)] = None,
    device: Annotated[str, typer.Option(help="Device of the world model: auto, cpu, cuda or cuda:N.")] = "cpu",
) -> None:
    """World-model error on a target policy's real transitions before/after IS and unweighted refits."""
    from adept_env.benchmarks.refit import run
    from adept_env.tasks import DATASET_QUALITIES

    if dataset not in DATASET_QUALITIES:
        raise typer.BadParameter(f"unknown dataset quality {dataset!r}; choose from {list(DATASET_QUALITIES)}",
                                 param_hint="--dataset")
    try:
        run(quick=quick, json_path=json_path, task=task, policy_path=policy, ablation=ablation, quality=dataset,
            refit_steps=refit_steps, device=device)
    except (UnknownNameError, FileNotFoundError, ValueError) as exc:  # missing data or actor; an absent device
        fail(str(exc))


def _print_summary(summary: dict) -> None:
    table = Table("field", "value", show_header=False)
    for key, value in summary.items():
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    console.print(table)


if __name__ == "__main__":
    app()
