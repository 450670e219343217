"""``adept-env demo``: the product's point in one command (``make demo`` runs it)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from adept_env.cli_config import fail
from adept_env.diffusion.config import PROFILES
from adept_env.tasks import UnknownNameError, unknown_name
from adept_env.training.config import ALGOS, TrainConfig

DEMO = {"dataset": "halfcheetah-random", "dataset_steps": 200_000, "algo": "adept-sac", "updates": 20_000,
        "eval_every": 5_000, "profile": "small", "refit_every": 10_000}
"""The demo's settings, chosen by measurement (BENCHMARKS.md, "make demo")."""
WORLD_MODEL_ALGOS = tuple(algo for algo in ALGOS if algo.startswith(("adept", "diff")))


def demo_command(
    dataset: Annotated[str, typer.Option(help="TASK-DATASET to train on.")] = DEMO["dataset"],
    dataset_steps: Annotated[int, typer.Option(help="Rows of the (generated, cached) dataset.", min=1_000)] = (
        DEMO["dataset_steps"]),
    algo: Annotated[str, typer.Option(help="The ADEPT agent (a world-model variant).")] = DEMO["algo"],
    baseline: Annotated[str, typer.Option(help="The agent trained on the real data only.")] = "iql",
    budget: Annotated[int, typer.Option(help="Agent gradient updates of each run.", min=1)] = DEMO["updates"],
    eval_every: Annotated[int, typer.Option(help="Updates between real-simulator evaluations.", min=1)] = (
        DEMO["eval_every"]),
    profile: Annotated[str, typer.Option(help="World-model profile.")] = DEMO["profile"],
    refit_every: Annotated[int, typer.Option(help="Updates between importance-sampled refits.", min=1)] = (
        DEMO["refit_every"]),
    seed: Annotated[int, typer.Option(help="Seed of both runs.")] = 0,
    out: Annotated[Path, typer.Option(help="Folder of both run folders, demo.png and demo.json.")] = Path("runs/demo"),
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Train plain IQL and an ADEPT agent on the same data and budget, side by side on two cores, and print
    their real-MuJoCo D4RL-normalised scores; writes one figure with both learning curves.

    Rerunning the same command resumes both runs.
    """
    from adept_env.training.demo import run_demo

    console = Console()
    try:
        if algo not in WORLD_MODEL_ALGOS:
            raise ValueError(f"--algo must be a world-model variant ({', '.join(WORLD_MODEL_ALGOS)}), got {algo!r}")
        if profile not in PROFILES:
            raise unknown_name("world-model profile", profile, PROFILES)
        if baseline not in ("iql", "sac"):
            raise ValueError(f"--baseline must be iql or sac (the real data only), got {baseline!r}")
        config = TrainConfig(algo=algo, updates=budget, eval_every=min(eval_every, budget), profile=profile,
                             refit_every=refit_every, seed=seed)
        result = run_demo(dataset, config, out, dataset_steps=dataset_steps, baseline=baseline, progress=progress)
    except (UnknownNameError, ValueError) as exc:
        fail(str(exc))
    console.print(result.table())
    console.print(f"figure: {result.figure}")
