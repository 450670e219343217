"""Dataset generation and ground-truth oracle throughput, per task, in one run."""

from __future__ import annotations

import datetime as _dt
import json
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from adept_env.benchmarks.system import cpu_model
from adept_env.data.collect import collect, uniform_policy
from adept_env.data.oracle import GroundTruth
from adept_env.tasks import TASKS


def run(steps: int = 20_000, json_path: Path | None = None) -> dict:
    """Measure, per task, uniform-policy collection steps/s and batched oracle replays/s.

    Returns the figures; prints a table and, per task, ``oracle_to_generation_ratio``.
    """
    console = Console()
    console.print(f"CPU: {cpu_model()}  date: {_dt.date.today()}  steps per measurement: {steps}")
    results: dict[str, dict[str, float]] = {}
    for name, task in TASKS.items():
        policy = uniform_policy(task)
        start = time.perf_counter()
        arrays = collect(task, policy, steps, seed=0, progress=False)
        generation = steps / (time.perf_counter() - start)
        oracle = GroundTruth(task)
        start = time.perf_counter()
        oracle.step(arrays["observations"], arrays["actions"])
        replay = steps / (time.perf_counter() - start)
        oracle.close()
        results[name] = {"generation_steps_per_s": generation, "oracle_steps_per_s": replay}
    table = Table("task", "generation steps/s", "oracle steps/s", "oracle / generation")
    for name, row in results.items():
        ratio = row["oracle_steps_per_s"] / row["generation_steps_per_s"]
        table.add_row(name, f"{row['generation_steps_per_s']:.0f}", f"{row['oracle_steps_per_s']:.0f}", f"{ratio:.2f}")
    console.print(table)
    report = {"cpu": cpu_model(), "date": str(_dt.date.today()), "steps": steps, "tasks": results}
    if json_path is not None:
        Path(json_path).write_text(json.dumps(report, indent=2))
    return report
