"""``adept-env train``: its options are ``TrainConfig``'s fields (and ``IQLConfig``'s for the IQL
variants), generated with their defaults and help; ``adept_env.cli`` loads this module on first use."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from adept_env.agents.iql_config import IQLConfig
from adept_env.cli_config import ConfigOptions, Flag, Settings, config_command, fail
from adept_env.tasks import UnknownNameError
from adept_env.training.config import ALGOS, MODEL_ALGOS, TrainConfig, parse_uncertainty_threshold

TRAIN_OPTIONS = ConfigOptions(
    TrainConfig,
    exclude=("batch_size", "rollout_every", "rollout_batch", "synthetic_capacity", "refit_steps", "sac_envs", "iql"),
    flags={
        "updates": Flag("--budget", min=1),
        "eval_every": Flag(min=1),
        "eval_episodes": Flag(min=1),
        "horizon": Flag(min=1),
        "refit_every": Flag(min=1),
        "sac_critics": Flag("--critics", min=1),
        "value_penalty": Flag(min=0.0),
        "selection_episodes": Flag("--select-episodes", min=0),
        "value_samples": Flag(min=2),
        "uncertainty_threshold": Flag(type=str, parse=parse_uncertainty_threshold,
                                      show=lambda value: "none" if value is None else str(value)),
    },
)
"""The options of ``adept-env train`` that set a TrainConfig field (the others keep their defaults)."""

SAC_ALGOS = tuple(algo for algo in ALGOS if algo.endswith("sac"))
APPLIES_TO = {
    "horizon": MODEL_ALGOS,
    "refit_every": tuple(algo for algo in ALGOS if algo.startswith("adept")),
    "sac_critics": SAC_ALGOS,
    "policy_average": SAC_ALGOS,
    "value_penalty": MODEL_ALGOS,
    "value_samples": MODEL_ALGOS,
    "uncertainty_threshold": MODEL_ALGOS,
    "selection_episodes": MODEL_ALGOS,
}
"""Options that only some algorithms use (by field): given on the command line for another, they are refused."""


def check_applies(given: list[str], algo: str) -> None:
    """Refuse options (by field name) that ``algo`` would ignore, naming the algorithms they apply to."""
    for name in given:
        algos = APPLIES_TO.get(name, ALGOS)
        if algo not in algos:
            raise ValueError(f"{TRAIN_OPTIONS.option_name(name)} applies to {', '.join(algos)}, not {algo}")

IQL_OPTIONS = ConfigOptions(
    IQLConfig,
    include=("expectile", "beta", "normalize_states"),
    flags={
        "expectile": Flag(unset=True),
        "beta": Flag(unset=True),
        "normalize_states": Flag("--raw-states", switch=True, help=(
            "feed raw observations instead of standardising them by the dataset's mean and std (CORL's default, "
            "and ours).")),
    },
    help_prefix="IQL variants: ",
)
"""IQL settings on the command line; refused for the SAC variants, which do not use them."""


@config_command(fail=fail, train=TRAIN_OPTIONS, iql=IQL_OPTIONS)
def train_command(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="TASK-DATASET, e.g. halfcheetah-random, or a .hdf5 path")],
    train: Settings,
    iql: Settings,
    no_penalty: Annotated[bool, typer.Option(
        "--no-penalty", help="Ablation: no uncertainty penalty (the same as --penalty 0).")] = False,
    out: Annotated[Path | None, typer.Option(help="Run folder (default: runs/TASK-DATASET/ALGO-sSEED).")] = None,
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
    from adept_env.data.dataset import DatasetUnavailableError, load_dataset
    from adept_env.data.hdf5 import DatasetFileError
    from adept_env.training.loop import train as train_run
    from adept_env.training.run import RunMismatchError

    console = Console()
    algo = train["algo"]
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    try:
        given = [field for field in APPLIES_TO  # set on the command line, not defaulted
                 if getattr(ctx.get_parameter_source(field), "name", None) == "COMMANDLINE"]
        check_applies(given, algo)
        if iql and algo.endswith("sac"):
            given = [IQL_OPTIONS.option_name(f.name) for f in IQL_OPTIONS.fields]
            raise ValueError(f"{', '.join(given[:-1])} and {given[-1]} set IQL; {algo} does not use them")
        settings = {**train, "eval_every": min(train["eval_every"], train["updates"])}
        if no_penalty:
            settings["penalty"] = 0.0
        config = TrainConfig(**settings, iql=IQLConfig(**iql))
        if dataset_steps is not None:
            from adept_env.data.dataset import load_sized_dataset

            dataset = load_sized_dataset(name, dataset_steps, progress=progress)
        else:
            dataset = load_dataset(name, progress=progress)
    except (UnknownNameError, DatasetUnavailableError, DatasetFileError, NotImplementedError, ValueError) as exc:
        fail(str(exc))
    run_dir = out or Path("runs") / (dataset.name or dataset.task.name) / f"{algo}-s{config.seed}"
    try:
        result = train_run(dataset, config, run_dir, progress=progress)
    except RunMismatchError as exc:
        fail(str(exc))
    console.print(str(result.final))
    console.print(f"normalized_score={result.final.score_mean:.2f}")
    if result.selected is not None:
        kept = "policy_selected.safetensors" if algo.endswith("sac") else "agent_selected.safetensors"
        console.print(f"model-selected checkpoint (best return in the world model): update "
                      f"{result.selected['update']}, normalised score {result.selected['score_mean']:.1f} ± "
                      f"{result.selected['score_std']:.1f}  ({run_dir / kept})")
    console.print(f"learning curve: {run_dir / 'learning_curve.png'}  (TensorBoard: {run_dir / 'tensorboard'})")
