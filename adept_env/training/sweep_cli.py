"""``adept-env sweep``: the options of ``adept-env train`` that every trial shares (generated from
``TrainConfig`` as ``train``'s are, less ``--algo`` and ``--seed``), plus the grid and Ray's settings.
Ray is imported only when the command runs (``adept_env.training.sweep``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Annotated

import typer

from adept_env.cli_config import ConfigOptions, Settings, config_command, fail
from adept_env.tasks import UnknownNameError
from adept_env.training.cli import IQL_OPTIONS, TRAIN_OPTIONS
from adept_env.training.config import TrainConfig

SWEEP_TRAIN_OPTIONS = ConfigOptions(
    TrainConfig, include=[f.name for f in TRAIN_OPTIONS.fields if f.name not in ("algo", "seed")],
    flags=TRAIN_OPTIONS.flags)
"""``adept-env train``'s TrainConfig options but --algo and --seed, which the sweep takes as lists."""


@config_command(fail=fail, train=SWEEP_TRAIN_OPTIONS, iql=IQL_OPTIONS)
def sweep_command(
    *,
    datasets: Annotated[list[str], typer.Option(
        "--datasets", "-d", help="TASK-DATASET (e.g. halfcheetah-random) or a .hdf5 path; repeat for several.")],
    algos: Annotated[list[str], typer.Option(
        "--algos", "-a", help="adept-iql, adept-sac, diff-iql, diff-sac, iql or sac; repeat for several.")],
    seeds: Annotated[list[int] | None, typer.Option(
        "--seeds", "-s", help="Seeds; repeat for several.  [default: 0]")] = None,
    grid: Annotated[list[str] | None, typer.Option(
        "--grid", metavar="KEY=V1,V2",
        help="Also sweep a TrainConfig field over these values (e.g. --grid penalty=0,1 --grid real_ratio=0.25,0.5; "
             "IQL's as iql.NAME or expectile/beta); repeat for several: every combination runs. Overrides the "
             "shared option of the same field; the run folder names include the values.")] = None,
    train: Settings,
    iql: Settings,
    out: Annotated[Path, typer.Option(
        help="Sweep folder: run folders OUT/DATASET/ALGO-sSEED[-key=value...], results.md, results.json, "
             "curves.png and Tune's logs (tune/).")] = Path("runs/sweep"),
    dataset_steps: Annotated[int | None, typer.Option(
        help="Generate (and cache) a random dataset of this many steps instead of 1M.", min=1)] = None,
    cpus_per_trial: Annotated[int, typer.Option(
        help="CPUs Ray reserves for each trial (and its torch threads).", min=1)] = 1,
    num_cpus: Annotated[int | None, typer.Option(
        help="CPUs of the local Ray this command starts (default: the machine's); not with --address.", min=1)] = None,
    address: Annotated[str | None, typer.Option(
        help="Run on this Ray cluster (HOST:PORT as `ray start --head` prints it, ray://HOST:PORT or auto) instead "
             "of a local Ray; $ADEPT_HOME and --out must be on a filesystem every node shares.")] = None,
    progress: Annotated[bool, typer.Option(help="Show Ray Tune's trial status (never when CI=true).")] = True,
) -> None:
    """Train a grid of datasets x algorithms x seeds (x --grid settings) offline, as Ray Tune trials.

    World models are fitted once per dataset before the trials start. Each trial is one `adept-env
    train` run with its own run folder; a failed trial is reported in the table and does not stop
    the others. Writes OUT/results.md (mean ± std over seeds), OUT/results.json and OUT/curves.png.
    Rerunning the same command resumes: finished runs are read back, unfinished ones continue.
    """
    from adept_env.training.sweep import RAY_MISSING, SweepError, check_address, parse_grid, plan, run_sweep

    if importlib.util.find_spec("ray") is None:
        fail(RAY_MISSING)
    if address and num_cpus is not None:
        fail("--num-cpus sizes the local Ray; a cluster given with --address has its own CPUs")
    try:
        sweep = plan(datasets, algos, seeds or [0], parse_grid(grid or []), train, iql, out, dataset_steps,
                     cpus_per_trial)
        if address:
            check_address(address)
        elif cpus_per_trial > (num_cpus or _machine_cpus()):
            raise SweepError(f"--cpus-per-trial {cpus_per_trial} is more than the local Ray's "
                             f"{num_cpus or _machine_cpus()} CPUs: no trial could start")
        if iql and not any(t.config.algo.endswith("iql") for t in sweep.trials):
            raise SweepError("--expectile, --beta and --raw-states set IQL; none of the algorithms uses them")
        run_sweep(sweep, address=address, num_cpus=num_cpus, progress=progress)
    except (SweepError, UnknownNameError) as exc:
        fail(str(exc))


def _machine_cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
