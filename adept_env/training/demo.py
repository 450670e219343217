"""``adept-env demo``: plain IQL and an ADEPT agent on the same data and budget, side by side.

The baseline (real data only) trains in a second process while this one fits the world model and
trains the ADEPT agent, so on two cores the pair takes about as long as the ADEPT run alone. Both
are ordinary run folders under ``out`` (rerunning resumes them); the result is a table of real-MuJoCo
D4RL-normalised scores and one figure with both learning curves.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from adept_env.atomic import atomic_path
from adept_env.training.config import TrainConfig


@dataclass
class DemoResult:
    """Final scores of both runs, their ratio, the figure and the wall time."""

    dataset: str
    updates: int
    scores: dict[str, float]
    """Algorithm -> final real-simulator normalised score (mean over the final evaluation's episodes)."""
    curves: dict[str, list[float]]
    """Algorithm -> normalised score at each evaluation."""
    figure: Path
    seconds: float

    @property
    def ratio(self) -> float:
        """The ADEPT agent's final score over the baseline's (inf when the baseline is at or below 0)."""
        (base, adept) = (self.scores[name] for name in self.scores)
        return adept / base if base > 0 else float("inf")

    def table(self) -> str:
        """A plain-text table: one row per agent, then the ratio."""
        width = max(len(name) for name in self.scores)
        lines = [f"{self.dataset}, {self.updates:,} updates each; real MuJoCo, D4RL-normalised score"]
        for name, score in self.scores.items():
            curve = ", ".join(f"{v:.1f}" for v in self.curves[name])
            lines.append(f"  {name:<{width}}  final {score:5.1f}   (evaluations: {curve})")
        base, adept = self.scores
        lines.append(f"  {adept} / {base}: {self.ratio:.1f}x   wall time {self.seconds / 60:.1f} min")
        return "\n".join(lines)


def exit_with_parent(parent_pid: int, poll_seconds: float = 1.0) -> None:
    """Make this (child) process exit soon after ``parent_pid`` dies, even by SIGKILL.

    A process-pool initializer: a daemon thread polls the parent id, which changes when the parent
    is gone (the child is re-parented). Without it a killed ``adept-env demo`` would leave its
    baseline training on, holding a core.
    """
    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll_seconds)
        os._exit(1)

    if os.getppid() != parent_pid:
        os._exit(1)
    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _train_quietly(dataset_name: str, dataset_steps: int | None, config: TrainConfig, run_dir: str) -> dict[str, Any]:
    """Train one run in this (child) process on one torch thread, without progress bars."""
    import torch

    from adept_env.data.dataset import load_dataset, load_sized_dataset
    from adept_env.training.loop import train

    torch.set_num_threads(1)
    dataset = (load_sized_dataset(dataset_name, dataset_steps, progress=False) if dataset_steps
               else load_dataset(dataset_name, progress=False))
    result = train(dataset, config, run_dir, progress=False)
    return {"score": result.final.score_mean}


def run_demo(dataset_name: str, config: TrainConfig, out: Path, dataset_steps: int | None = None,
             baseline: str = "iql", progress: bool = True) -> DemoResult:
    """Train ``baseline`` (in a child process) and ``config.algo`` (here) on the same data and budget.

    Writes ``out/<algo>`` run folders, ``out/demo.png`` (both curves) and ``out/demo.json``.
    """
    import torch

    from adept_env.benchmarks.compare import compare, read_curve
    from adept_env.data.dataset import load_dataset, load_sized_dataset
    from adept_env.training.loop import train

    if baseline == config.algo:
        raise ValueError(f"the baseline and the ADEPT agent are both {baseline}; choose two algorithms")
    out = Path(out)
    start = time.perf_counter()
    # Made here first, so the child finds the dataset in the cache instead of generating it too.
    dataset = (load_sized_dataset(dataset_name, dataset_steps, progress=progress) if dataset_steps
               else load_dataset(dataset_name, progress=progress))
    base_config = replace(config, algo=baseline)
    spawn = multiprocessing.get_context("spawn")  # a fresh interpreter: no copied torch thread pools
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn, initializer=exit_with_parent,
                             initargs=(os.getpid(),)) as pool:
        pending = pool.submit(_train_quietly, dataset_name, dataset_steps, base_config, str(out / baseline))
        torch.set_num_threads(1)
        adept = train(dataset, config, out / config.algo, progress=progress)
        if progress and not pending.done():
            print(f"{config.algo} done; waiting for {baseline} ...", flush=True)
        base = pending.result()
    runs = {baseline: out / baseline, config.algo: out / config.algo}
    compare(runs, out / "demo.png", title=f"{dataset.name}: {baseline} vs {config.algo} (same data, same budget)")
    result = DemoResult(
        dataset=dataset.name or dataset.task.name, updates=config.updates,
        scores={baseline: float(base["score"]), config.algo: adept.final.score_mean},
        curves={name: [row["score_mean"] for row in read_curve(path)] for name, path in runs.items()},
        figure=out / "demo.png", seconds=time.perf_counter() - start)
    with atomic_path(out / "demo.json") as tmp:
        tmp.write_text(json.dumps({"dataset": result.dataset, "updates": result.updates, "scores": result.scores,
                                   "curves": result.curves, "ratio": result.ratio, "seconds": result.seconds},
                                  indent=2))
    return result
