"""``adept-env model fit|list|info|eval``: the cached world models as objects of their own.

``gym.make("ADEPT-...")`` fits its world model on first use and caches it under ``$ADEPT_HOME/models``
(``adept_env/envs/model_store.py``); these commands fit it ahead of time, list the cache, describe one model
and check it against the real simulator. Torch loads only inside the commands, so ``adept-env --help`` stays fast.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from adept_env.cli_config import fail

if TYPE_CHECKING:
    from adept_env.data.dataset import OfflineDataset

model_app = typer.Typer(help="Fit world models ahead of time; list, inspect and check the cached ones.",
                        no_args_is_help=True)
console = Console()

NAME_HELP = "TASK-DATASET, e.g. halfcheetah-random, or a .hdf5 path"
TARGET_HELP = "TASK-DATASET (its cached model of --profile) or the folder of a saved world model"
Profile = Annotated[str, typer.Option(help="World-model profile: default, small or quick.")]
DatasetSteps = Annotated[int | None, typer.Option(
    help="The dataset of this many steps that `adept-env train --dataset-steps` uses, instead of the full one.",
    min=1)]


def _check_profile(profile: str) -> None:
    from adept_env.diffusion.config import WorldModelConfig
    from adept_env.tasks import UnknownNameError

    try:
        WorldModelConfig.profile(profile)
    except UnknownNameError as exc:
        fail(str(exc))


def _torch_settings(threads: int | None, device: str) -> str:
    """Apply ``--threads``; return the device ``--device`` names (exit 2 for one torch does not see)."""
    import torch

    from adept_env.devices import resolve_device

    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return str(resolve_device(device))
    except ValueError as exc:
        fail(str(exc))


def _load_dataset(name: str, dataset_steps: int | None, generate: bool, progress: bool = True) -> OfflineDataset:
    """A dataset by name or path, as ``adept-env train`` loads it (``--dataset-steps``: ``load_sized_dataset``)."""
    from adept_env.data.dataset import DatasetUnavailableError, load_dataset, load_sized_dataset
    from adept_env.data.hdf5 import DatasetFileError
    from adept_env.tasks import UnknownNameError

    try:
        if dataset_steps is not None:
            return load_sized_dataset(name, dataset_steps, progress=progress)
        return load_dataset(name, generate=generate, progress=progress)
    except (UnknownNameError, DatasetUnavailableError, DatasetFileError, NotImplementedError, ValueError,
            OSError) as exc:
        fail(str(exc))


def _is_folder(target: str) -> bool:
    return Path(target).is_dir() or os.sep in target


def _resolve(target: str, profile: str, dataset_steps: int | None) -> tuple[Path, OfflineDataset | None]:
    """The model folder ``target`` names, and the dataset loaded to find it (None for a folder)."""
    from adept_env.envs.model_store import dataset_fingerprint, dataset_label, model_dir, prefit_command

    if _is_folder(target):
        path = Path(target)
        if not (path / "config.json").exists():
            fail(f"{path} is not a saved world model (no config.json); `adept-env model list` shows the cached ones")
        return path, None
    _check_profile(profile)
    dataset = _load_dataset(target, dataset_steps, generate=False, progress=False)
    path = model_dir(dataset, profile)
    if not (path / "config.json").exists():
        fail(f"no cached {profile} world model for {dataset_label(dataset)} (fingerprint "
             f"{dataset_fingerprint(dataset)}, {len(dataset):,} rows) at {path}; fit one with: "
             f"{prefit_command(dataset, profile)}")
    return path, dataset


def _shown(value: Any) -> str:
    if value is None:
        return "?"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def _fit_line(fit: dict[str, Any]) -> str:
    best = fit.get("best_val_loss")
    return (f"{fit['steps']:,} steps in {fit['seconds']:.1f} s; best held-out loss "
            f"{'-' if best is None else f'{best:.4f}'}; stopped early: {'yes' if fit['stopped_early'] else 'no'}")


@model_app.command("fit")
def model_fit(
    name: Annotated[str, typer.Argument(help=NAME_HELP)],
    profile: Profile = "default",
    dataset_steps: DatasetSteps = None,
    seed: Annotated[int, typer.Option(help="Seed of the weights and the fit (gym.make fits with 0).")] = 0,
    threads: Annotated[int | None, typer.Option(help="Torch CPU threads.", min=1)] = None,
    device: Annotated[str, typer.Option(help="Where the fit runs: auto, cpu, cuda or cuda:N.")] = "auto",
    force: Annotated[bool, typer.Option("--force", help="Refit even if the model is cached.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar (off when CI=true).")] = True,
) -> None:
    """Fit the world model that gym.make would fit on first use, and cache it now."""
    _check_profile(profile)
    place = _torch_settings(threads, device)
    from adept_env.diffusion import WorldModel, WorldModelFileError
    from adept_env.envs.model_store import (
        dataset_fingerprint,
        dataset_label,
        describe,
        fit_and_save,
        fit_summary,
        model_dir,
        profile_config,
    )

    dataset = _load_dataset(name, dataset_steps, generate=True, progress=progress)
    path = model_dir(dataset, profile)
    if path.exists() and not force:
        try:
            WorldModel.load(path)
        except WorldModelFileError as exc:
            console.print(f"the cached model cannot be read ({exc}); fitting it again")
        else:
            facts = describe(path)
            fitted = f", fitted {facts['written']}" + (f" in {facts['fit_seconds']:.0f} s" if facts["fit_seconds"]
                                                         is not None else "")
            console.print(f"already cached: {path}{fitted}; --force refits it")
            return
    console.print(f"fitting the {profile} world model of {dataset_label(dataset)} ({len(dataset):,} rows, fingerprint "
                  f"{dataset_fingerprint(dataset)}) on {place}: at most {profile_config(profile).steps:,} steps")
    _, report, path = fit_and_save(dataset, profile, seed=seed, progress=progress, device=place)
    console.print(f"saved {path}")
    console.print(f"fit: {_fit_line(fit_summary(report))}")


@model_app.command("list")
def model_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Every cached world model: dataset, fingerprint, profile, size, when it was written, fit time, folder."""
    from adept_env.envs.model_store import cached_models, models_root

    models = cached_models()
    if as_json:
        print(json.dumps(models, indent=2))
        return
    if not models:
        console.print(f"no cached world models under {models_root()}; fit one with `adept-env model fit TASK-DATASET "
                      "--profile default|small|quick` (gym.make also fits one on first use)")
        return
    table = Table("dataset", "fingerprint", "profile", "current", "MB", "written", "fit s")
    table.add_column("path", overflow="fold")
    for m in models:
        table.add_row(m["dataset"] or "?", m["fingerprint"] or "?", m["profile"] or "?",
                      "yes" if m["current"] else "no", f"{m['size_mb']:.1f}", m["written"] or "?",
                      "-" if m["fit_seconds"] is None else f"{m['fit_seconds']:.0f}", m["path"])
    console.print(table)
    console.print("current: the profile's settings are still the ones it was fitted with (gym.make loads it)")


@model_app.command("info")
def model_info(
    target: Annotated[str, typer.Argument(help=TARGET_HELP)],
    profile: Profile = "default",
    dataset_steps: DatasetSteps = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """A world model's dataset and fingerprint, profile and config, parameter count, fit report and history."""
    path, _ = _resolve(target, profile, dataset_steps)
    from adept_env.diffusion import WorldModel, WorldModelFileError
    from adept_env.envs.model_store import describe

    try:
        model = WorldModel.load(path)
    except WorldModelFileError as exc:
        fail(str(exc))
    facts = describe(path)
    facts["parameters"] = sum(p.numel() for p in model.nets.parameters())
    facts["config"] = model.config.to_dict()
    if as_json:
        print(json.dumps(facts, indent=2))
        return
    table = Table("field", show_header=False)
    table.add_column("value", overflow="fold")
    for key in ("path", "task", "dataset", "fingerprint", "rows", "dataset_source", "profile", "current", "version",
                "seed", "parameters", "size_mb", "written"):
        table.add_row(key, _shown(facts[key]))
    fit = facts["fit"]
    table.add_row("fit", "? (cached before fit records were kept)" if fit is None else _fit_line(fit))
    if fit is not None and fit["val_losses"]:
        table.add_row("held-out losses", " ".join(f"{v:.4f}" for v in fit["val_losses"]))
    for i, old in enumerate(facts["history"], 1):
        table.add_row(f"earlier fit {i}", f"{old.get('written')}: {_fit_line(old['fit']) if old.get('fit') else '?'}")
    console.print(table)
    config = Table("config field", "value")
    for key, value in facts["config"].items():
        config.add_row(key, str(value))
    console.print(config)


@model_app.command("eval")
def model_eval(
    target: Annotated[str, typer.Argument(help=TARGET_HELP)],
    profile: Profile = "default",
    dataset: Annotated[str | None, typer.Option(
        help="Evaluate on this dataset (name or .hdf5); it must be the one the model was fitted on.")] = None,
    dataset_steps: DatasetSteps = None,
    policy: Annotated[str, typer.Option(
        help="Other policy: auto (one whose data the dataset lacks), random, medium or expert.")] = "auto",
    pairs: Annotated[int, typer.Option(help="Held-out pairs at most.", min=1)] = 2_000,
    other_pairs: Annotated[int, typer.Option(help="Pairs the other policy collects in the real env.", min=1)] = 2_000,
    rollouts: Annotated[int, typer.Option(help="5-step rollouts at most, per set.", min=1)] = 200,
    speed_seconds: Annotated[float, typer.Option(help="Seconds of timed sampling.", min=0.01)] = 2.0,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the figures as JSON.")] = None,
    threads: Annotated[int | None, typer.Option(help="Torch CPU threads.", min=1)] = None,
    device: Annotated[str, typer.Option(help="Where the model runs: auto, cpu, cuda or cuda:N.")] = "cpu",
    seed: Annotated[int, typer.Option(help="Seed of the draws and the other policy's episodes.")] = 0,
) -> None:
    """Check a world model against the real simulator: held-out and other-policy one-step errors, 5-step rollout
    error, uncertainty rank correlation and speed."""
    from adept_env.model_eval import POLICIES
    from adept_env.tasks import unknown_name

    if policy not in POLICIES:
        fail(str(unknown_name("policy", policy, POLICIES)))
    path, named = _resolve(target, profile, dataset_steps)
    place = _torch_settings(threads, device)
    from adept_env.atomic import atomic_path
    from adept_env.diffusion import WorldModel, WorldModelFileError
    from adept_env.envs.model_store import DatasetMismatchError, check_dataset, dataset_label, describe
    from adept_env.model_eval import EvalBudget, evaluate

    facts = describe(path)
    if dataset is not None:
        data = _load_dataset(dataset, None, generate=False, progress=False)
    elif named is not None:
        data = named
    elif facts["dataset_source"] and Path(facts["dataset_source"]).exists():
        data = _load_dataset(facts["dataset_source"], None, generate=False, progress=False)
    else:
        fail(f"the dataset the model at {path} was fitted on is not known here; name it with --dataset NAME|PATH")
    try:
        check_dataset(path, data)
    except DatasetMismatchError as exc:
        fail(str(exc))
    if facts["fingerprint"] is None:
        console.print(f"note: the model at {path} has no record of its dataset, so neither the dataset nor the "
                      "held-out rows could be checked")
    try:
        model = WorldModel.load(path, device=place)
    except WorldModelFileError as exc:
        fail(str(exc))
    budget = EvalBudget(pairs=pairs, other_pairs=other_pairs, rollouts=rollouts, speed_seconds=speed_seconds)
    try:
        result = evaluate(model, data, fit_seed=facts["seed"] or 0, policy=policy, budget=budget, seed=seed)
    except (FileNotFoundError, ValueError) as exc:  # no shipped actor; a model of another task
        fail(str(exc))
    result = {"path": str(path), "dataset": dataset_label(data), "fingerprint": facts["fingerprint"],
              "device": place, **result}
    console.print(f"{path}: {result['held_out_pairs']:,} held-out pairs of {result['dataset']}, "
                  f"{result['other_pairs']:,} pairs of {result['other_policy']} in the real env, "
                  f"{result['rollouts']['held-out']} + {result['rollouts']['other policy']} rollouts, "
                  f"K = {result['n_samples']} draws, on {place}")
    table = Table("metric (state and reward: MSE, lower is better; unc-rank-corr: higher)", "value")
    for key, value in result["metrics"].items():
        table.add_row(key, f"{value:,.0f}" if key.startswith("steps/s") else f"{value:.4f}")
    console.print(table)
    if json_path is not None:
        with atomic_path(json_path) as tmp:
            tmp.write_text(json.dumps(result, indent=2))
        console.print(f"wrote {json_path}")
