"""The ``adept-env`` command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from adept_env.tasks import DATASET_QUALITIES, TASKS, UnknownNameError

app = typer.Typer(help="Offline RL with an adaptive diffusion world model, as Gymnasium environments.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
data_app = typer.Typer(help="Make, inspect and export D4RL-protocol datasets.", no_args_is_help=True)
bench_app = typer.Typer(help="Measure speed and fidelity; figures go in BENCHMARKS.md.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(bench_app, name="bench")
console = Console()


def _fail(message: str) -> None:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(2)


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
) -> None:
    """Generate a dataset with the real MuJoCo simulator and write it atomically as D4RL HDF5.

    medium/expert: STEPS of the shipped actor; medium-expert: STEPS of each; medium-replay: the
    behaviour SAC run's replay buffer up to the shipped medium actor's step (or --medium-step).
    """
    from adept_env.data.dataset import load_dataset
    from adept_env.data.generate import make_dataset

    try:
        path = make_dataset(name, steps=steps, seed=seed, out=out, progress=progress, run_dir=run_dir,
                            medium_step=medium_step)
    except (UnknownNameError, NotImplementedError, FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    _print_summary(load_dataset(path).summary())
    console.print(f"wrote {path}")


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
        _fail(str(exc))
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
        _fail(str(exc))
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
        _fail(str(exc))
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
        _fail(str(exc))
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        _print_summary(summary)


@data_app.command("list")
def data_list() -> None:
    """List every dataset name and whether it is available locally."""
    from adept_env.data.dataset import d4rl_path, default_path

    table = Table("dataset", "available", "path")
    for task in TASKS:
        for quality in DATASET_QUALITIES:
            name = f"{task}-{quality}"
            real = d4rl_path(name)
            path = real or default_path(name)
            table.add_row(name, "D4RL file" if real else ("yes" if path.exists() else "no"), str(path))
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
        _fail(str(exc))
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


@app.command("train")
def train_command(
    name: Annotated[str, typer.Argument(help="TASK-DATASET, e.g. halfcheetah-random, or a .hdf5 path")],
    algo: Annotated[str, typer.Option(help="adept-iql, adept-sac, diff-iql, diff-sac, iql or sac.")] = "adept-iql",
    budget: Annotated[int, typer.Option(help="Agent gradient updates.", min=1)] = 100_000,
    seed: Annotated[int, typer.Option(help="Seed of agent, rollouts and evaluations.")] = 0,
    out: Annotated[Path | None, typer.Option(help="Run folder (default: runs/TASK-DATASET/ALGO-sSEED).")] = None,
    eval_every: Annotated[int, typer.Option(help="Updates between real evaluations.", min=1)] = 10_000,
    eval_episodes: Annotated[int, typer.Option(help="Real episodes per evaluation.", min=1)] = 5,
    real_ratio: Annotated[float, typer.Option(help="Share of real transitions per batch.")] = 0.5,
    penalty: Annotated[float, typer.Option(help="Uncertainty penalty lambda.")] = 1.0,
    horizon: Annotated[int, typer.Option(help="Length H of the synthetic rollouts (model episodes).", min=1)] = 5,
    no_penalty: Annotated[bool, typer.Option("--no-penalty", help="Ablation: no uncertainty penalty.")] = False,
    refit_every: Annotated[int, typer.Option(help="Updates between IS refits (adept-*).", min=1)] = 20_000,
    critics: Annotated[int, typer.Option(help="SAC variants: Q-networks, the target takes their minimum.", min=1)] = 2,
    policy_average: Annotated[float, typer.Option(
        help="SAC variants: evaluate and save a moving average of the actor, updated by this fraction per update "
             "(e.g. 0.001); 0: off.")] = 0.0,
    value_penalty: Annotated[float, typer.Option(
        help="Model variants: beta of a MOBILE-style penalty r - beta * std of the agent's value over the model's "
             "next-state draws (use with --penalty 0); 0: off.", min=0.0)] = 0.0,
    select_episodes: Annotated[int, typer.Option(
        help="World-model variants: episodes in the model that score each checkpoint offline; the best is kept "
             "and reported beside the final policy (0: off).", min=0)] = 20,
    value_samples: Annotated[int, typer.Option(help="Next-state draws per model step for --value-penalty.",
                                               min=2)] = 8,
    expectile: Annotated[float | None, typer.Option(
        help="IQL variants: expectile of the value loss [default: 0.7, CORL's locomotion setting].")] = None,
    beta: Annotated[float | None, typer.Option(
        help="IQL variants: inverse temperature of the advantage weights [default: 3].")] = None,
    raw_states: Annotated[bool, typer.Option(
        "--raw-states", help="IQL variants: feed raw observations instead of standardising them by the "
                             "dataset's mean and std (CORL's default, and ours).")] = False,
    profile: Annotated[str, typer.Option(help="World-model profile: default or quick.")] = "default",
    dataset_steps: Annotated[
        int | None, typer.Option(help="Generate (and cache) a random dataset of this many steps instead of 1M.")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    threads: Annotated[
        int | None, typer.Option(help="Torch CPU threads (1 is fastest for these small nets on a busy machine).")
    ] = None,
) -> None:
    """Train an agent offline; evaluate in real MuJoCo; write TensorBoard logs, checkpoints and a curve PNG.

    Rerunning the same command resumes from the run folder's last checkpoint.
    """
    from adept_env.agents.iql import IQLConfig
    from adept_env.data.dataset import DatasetUnavailableError, load_dataset
    from adept_env.data.hdf5 import DatasetFileError
    from adept_env.loop import TrainConfig, train

    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    try:
        iql_settings = {k: v for k, v in {"expectile": expectile, "beta": beta}.items() if v is not None}
        if raw_states:
            iql_settings["normalize_states"] = False
        if iql_settings and algo.endswith("sac"):
            raise ValueError(f"--expectile, --beta and --raw-states set IQL; {algo} does not use them")
        config = TrainConfig(algo=algo, updates=budget, seed=seed, eval_every=min(eval_every, budget),
                             eval_episodes=eval_episodes, real_ratio=real_ratio, penalty=penalty, horizon=horizon,
                             use_penalty=not no_penalty, refit_every=refit_every, profile=profile,
                             policy_average=policy_average, sac_critics=critics,
                             value_penalty=value_penalty, value_samples=value_samples,
                             selection_episodes=select_episodes,
                             iql=IQLConfig(**iql_settings))
        if dataset_steps is not None:
            from adept_env.data.dataset import default_path
            from adept_env.data.generate import make_dataset
            from adept_env.tasks import parse_dataset_name

            task, quality = parse_dataset_name(name)
            path = default_path(name).with_name(f"{task.name}-{quality}-{dataset_steps}.hdf5")
            if not path.exists():
                make_dataset(name, steps=dataset_steps, out=path, progress=progress)
            dataset = load_dataset(path)
            dataset.name = f"{task.name}-{quality}"
        else:
            dataset = load_dataset(name, progress=progress)
    except (UnknownNameError, DatasetUnavailableError, DatasetFileError, NotImplementedError, ValueError) as exc:
        _fail(str(exc))
    from adept_env.loop import RunMismatchError

    run_dir = out or Path("runs") / (dataset.name or dataset.task.name) / f"{algo}-s{seed}"
    try:
        result = train(dataset, config, run_dir, progress=progress)
    except RunMismatchError as exc:
        _fail(str(exc))
    console.print(str(result.final))
    console.print(f"normalized_score={result.final.score_mean:.2f}")
    if result.selected is not None:
        kept = "policy_selected.safetensors" if algo.endswith("sac") else "agent_selected.safetensors"
        console.print(f"model-selected checkpoint (best return in the world model): update "
                      f"{result.selected['update']}, normalised score {result.selected['score_mean']:.1f} ± "
                      f"{result.selected['score_std']:.1f}  ({run_dir / kept})")
    console.print(f"learning curve: {run_dir / 'learning_curve.png'}  (TensorBoard: {run_dir / 'tensorboard'})")


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
) -> None:
    """Diffusion world model vs a probabilistic ensemble (fidelity), vs MuJoCo (speed), and fit cost."""
    from adept_env.benchmarks.world_model import run

    run(quick=quick, json_path=json_path, train_seconds=train_seconds, dataset_path=dataset, threads=threads)


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
) -> None:
    """World-model error on a target policy's real transitions before/after IS and unweighted refits."""
    from adept_env.benchmarks.refit import run
    from adept_env.tasks import DATASET_QUALITIES

    if dataset not in DATASET_QUALITIES:
        raise typer.BadParameter(f"unknown dataset quality {dataset!r}; choose from {list(DATASET_QUALITIES)}",
                                 param_hint="--dataset")
    try:
        run(quick=quick, json_path=json_path, task=task, policy_path=policy, ablation=ablation, quality=dataset,
            refit_steps=refit_steps)
    except (UnknownNameError, FileNotFoundError) as exc:  # a dataset or target policy that is not there yet
        _fail(str(exc))


@app.command("serve")
def serve_command(
    grpc_port: Annotated[int, typer.Option(help="gRPC port (0: a free one; -1: no gRPC).", min=-1)] = 50051,
    http_port: Annotated[int, typer.Option(help="HTTP port, OpenAPI at /docs (0: a free one; -1: no HTTP).",
                                           min=-1)] = 8000,
    host: Annotated[str, typer.Option(help="Interface to bind (0.0.0.0 to accept remote clients).")] = "127.0.0.1",
    env: Annotated[list[str] | None, typer.Option("--env", help="Serve only this env id (repeatable).")] = None,
    profile: Annotated[str | None, typer.Option(help="World-model profile trained on first use: default or quick.")]
    = None,
    device: Annotated[str | None, typer.Option(help="Torch device of the world models, e.g. cuda.")] = None,
    model_path: Annotated[Path | None, typer.Option(help="Saved world model (needs exactly one --env).")] = None,
    dataset_path: Annotated[Path | None, typer.Option(help="Dataset .hdf5 (needs exactly one --env).")] = None,
    state_dir: Annotated[Path | None, typer.Option(help="Checkpoints of refitted models ($ADEPT_HOME/server).")]
    = None,
    max_sessions: Annotated[int, typer.Option(help="Open sessions in all.", min=1)] = 256,
    max_num_envs: Annotated[int, typer.Option(help="Largest num_envs of a session.", min=1)] = 4096,
    max_message_mb: Annotated[int, typer.Option(help="Largest request/response in MiB.", min=1)] = 64,
    idle_timeout: Annotated[float, typer.Option(help="Seconds before an idle session is closed.", min=1)] = 900.0,
    preload: Annotated[bool, typer.Option(help="Load every served env's dataset and model at start-up.")] = False,
    torch_threads: Annotated[int | None, typer.Option(help="torch intra-op threads.", min=1)] = None,
    cpus: Annotated[str | None, typer.Option(help="Pin the server to these CPUs, e.g. 1 or 0-3 (Linux).")] = None,
    progress: Annotated[bool, typer.Option(help="Progress bars while generating/training on first use.")] = False,
) -> None:
    """Serve world-model sessions over gRPC and HTTP in one process (ADEPT_API_TOKEN: bearer tokens)."""
    from server.config import MIB, ServerConfig
    from server.service import serve

    settings = {k: v for k, v in {"profile": profile, "device": device}.items() if v is not None}
    per_env = {k: str(v) for k, v in {"model_path": model_path, "dataset_path": dataset_path}.items() if v}
    if per_env and len(env or []) != 1:
        _fail("--model-path/--dataset-path need exactly one --env")
    pinned = None
    if cpus is not None:
        from server.affinity import parse_cpus

        try:
            pinned = parse_cpus(cpus)
        except ValueError as exc:
            _fail(str(exc))
    config = ServerConfig(
        host=host, grpc_port=None if grpc_port < 0 else grpc_port, http_port=None if http_port < 0 else http_port,
        state_dir=state_dir, env_ids=tuple(env) if env else None, default_settings=settings,
        env_settings={env[0]: per_env} if per_env else {}, max_sessions=max_sessions, max_num_envs=max_num_envs,
        max_message_bytes=max_message_mb * MIB, idle_timeout_s=idle_timeout, preload=preload,
        torch_threads=torch_threads, cpus=pinned, progress=progress,
    ).with_environ()
    try:
        serve(config)
    except (ValueError, OSError) as exc:
        _fail(str(exc))


@bench_app.command("service")
def bench_service(
    quick: Annotated[bool, typer.Option("--quick", help="Small model and fewer steps (a few minutes).")] = False,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the figures as JSON.")] = None,
    pin: Annotated[bool, typer.Option(help="Server on the upper half of the CPUs, clients on the lower half.")]
    = True,
) -> None:
    """Steps/s over gRPC and HTTP vs in-process, round-trip overhead, a load test, latency during a refit."""
    from adept_env.benchmarks.service import run

    run(quick=quick, json_path=json_path, pin=pin)


def _print_summary(summary: dict) -> None:
    table = Table("field", "value", show_header=False)
    for key, value in summary.items():
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    console.print(table)


if __name__ == "__main__":
    app()
