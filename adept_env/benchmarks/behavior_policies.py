"""Behaviour policies and their datasets, beside D4RL's published figures.

Per task: each shipped actor's D4RL-normalised score over real episodes (sampled actions, as
the datasets are collected, and the deterministic mean action), and each generated dataset's
size and mean episode return next to D4RL's v2 dataset size.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np

from adept_env.tasks import DATASET_QUALITIES, TASKS

D4RL_V2_TRANSITIONS: dict[str, int] = {
    "random": 1_000_000,
    "medium": 1_000_000,
    "expert": 1_000_000,
    "medium-expert": 2_000_000,
    "halfcheetah-medium-replay": 202_000,
    "hopper-medium-replay": 402_000,
    "walker2d-medium-replay": 302_000,
}
"""Rows in D4RL's v2 MuJoCo files (medium-replay sizes differ by task: the buffer up to the
step at which each SAC run reached its medium point)."""


def d4rl_transitions(task: str, quality: str) -> int:
    """Return the number of rows of D4RL's ``{task}-{quality}-v2`` file."""
    return D4RL_V2_TRANSITIONS.get(f"{task}-{quality}", D4RL_V2_TRANSITIONS.get(quality, 0))


def cpu_model() -> str:
    """Return the CPU model name (from /proc/cpuinfo where available)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def measure_policies(episodes: int = 10) -> list[dict[str, Any]]:
    """Evaluate every shipped actor for ``episodes`` real episodes; return one record per actor.

    Records hold task, quality, source step, and the sampled and deterministic normalised
    score (mean, std) and return.
    """
    from adept_env.data.behavior import POLICIES_DIR
    from adept_env.data.train_behavior import evaluate_snapshot

    rows = []
    for spec_path in sorted(POLICIES_DIR.glob("*.json")):
        spec = json.loads(spec_path.read_text())
        scores = evaluate_snapshot(spec_path.with_suffix(""), episodes=episodes)
        rows.append(
            {
                "task": spec["task"],
                "quality": spec.get("quality", spec_path.stem),
                "step": spec["source"]["step"],
                "episodes": episodes,
                **{f"{mode}_{k}": scores[mode][k] for mode in scores for k in (
                    "normalized_mean", "normalized_std", "return_mean", "return_std")},
                "weights_bytes": (POLICIES_DIR / spec["weights_file"]).stat().st_size,
            }
        )
    return rows


def measure_datasets(make_steps: int | None = None, progress: bool = False) -> list[dict[str, Any]]:
    """Summarise each generated dataset in the cache; with ``make_steps``, make missing ones first.

    Returns one record per available dataset: name, rows, episodes, mean (std) episode return
    and normalised score, and D4RL's v2 row count.
    """
    from adept_env.data.dataset import default_path, load_dataset
    from adept_env.data.generate import make_dataset

    rows = []
    for task in TASKS:
        for quality in DATASET_QUALITIES:
            name = f"{task}-{quality}"
            path = default_path(name)
            if not path.exists() and make_steps is not None:
                try:
                    make_dataset(name, steps=make_steps, progress=progress)
                except (NotImplementedError, FileNotFoundError, ValueError) as exc:
                    print(f"  {name}: not made ({exc})")
            if not path.exists():
                continue
            summary = load_dataset(path, generate=False).summary()
            rows.append(
                {
                    "dataset": name,
                    "rows": summary["transitions"],
                    "episodes": summary["episodes"],
                    "return_mean": summary["return_mean"],
                    "return_std": summary["return_std"],
                    "normalized_mean": summary["normalized_score_mean"],
                    "d4rl_v2_rows": d4rl_transitions(task, quality),
                }
            )
    return rows


def bc_versus_exact(name: str, steps: int = 5_000, rows: int = 200_000, seed: int = 0) -> dict[str, Any] | None:
    """Fit the BC density on ``rows`` rows of cached dataset ``name``; compare it with the exact beta.

    Returns the mean log-likelihood (nats per action) of 20k held-out rows under the exact
    behaviour policy and under the BC fit, and the fit's time in seconds; None if the dataset
    is not in the cache or has no exact policy.
    """
    import time

    from adept_env.data.behavior import BCConfig, behavior_policy_for, fit_behavior_cloning
    from adept_env.data.dataset import default_path, load_dataset

    path = default_path(name)
    if not path.exists():
        return None
    dataset = load_dataset(path, generate=False)
    exact = behavior_policy_for(dataset)
    if exact.name.endswith("-bc"):
        return None
    order = np.random.default_rng(seed).permutation(len(dataset))
    train, test = order[:rows], order[rows : rows + 20_000]
    started = time.perf_counter()
    bc = fit_behavior_cloning(
        None,
        BCConfig(steps=steps, seed=seed),
        observations=dataset.observations[train],
        actions=dataset.actions[train],
    )
    seconds = time.perf_counter() - started
    obs, act = dataset.observations[test], dataset.actions[test]
    exact_ll = exact.log_prob(obs, act)
    bc_ll = bc.log_prob(obs, act)
    return {
        "dataset": name,
        "bc_steps": steps,
        "train_rows": int(len(train)),
        "fit_seconds": seconds,
        "exact_log_likelihood": float(np.mean(exact_ll)),
        "bc_log_likelihood": float(np.mean(bc_ll)),
        "log_ratio_abs_median": float(np.median(np.abs(exact_ll - bc_ll))),
    }


def summarize_runs(figures_dir: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """Print each local behaviour run's progress (steps, best and last evaluation); plot curves.

    Returns one record per task with a run under ``$ADEPT_HOME/behavior``.
    """
    from adept_env.data.train_behavior import default_run_dir, eval_history, plot_learning_curve

    rows = []
    for task in TASKS:
        run_dir = default_run_dir(task)
        if not (run_dir / "progress.json").exists():
            continue
        evals = eval_history(run_dir)
        if not evals:
            continue
        best = max(evals, key=lambda e: e["normalized_mean"])
        progress = json.loads((run_dir / "progress.json").read_text())
        record = {
            "task": task,
            "steps": progress["num_timesteps"],
            "train_hours": progress["train_seconds"] / 3600,
            "best_step": best["step"],
            "best_normalized": best["normalized_mean"],
            "last_normalized": evals[-1]["normalized_mean"],
        }
        if figures_dir is not None:
            record["figure"] = str(plot_learning_curve(run_dir, Path(figures_dir) / f"behavior-{task}.png"))
        rows.append(record)
        print(
            f"run {task}: {record['steps']:,} steps in {record['train_hours']:.2f} h; best deterministic eval "
            f"{record['best_normalized']:.1f} at {record['best_step']:,}; last {record['last_normalized']:.1f}"
        )
    return rows


def run(
    episodes: int = 10,
    make_steps: int | None = None,
    json_path: str | os.PathLike[str] | None = None,
    figures_dir: str | os.PathLike[str] | None = None,
    bc_steps: int | None = None,
) -> dict[str, Any]:
    """Measure shipped policies and cached datasets, print markdown tables, optionally write JSON.

    With ``figures_dir``, also plot each local behaviour run's learning curve there
    (``behavior-<task>.png``). With ``bc_steps``, fit the BC density on each cached
    medium/expert dataset and compare it with the exact actor (``bc``).
    Returns {"cpu", "policies", "datasets", "runs", "bc"}.
    """
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores")
    runs = summarize_runs(figures_dir)
    policies = measure_policies(episodes)
    print("\n| task | actor | SAC step | normalised, sampled (mean ± std) | normalised, deterministic | "
          "return, sampled | size |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in policies:
        print(
            f"| {r['task']} | {r['quality']} | {r['step']:,} | {r['stochastic_normalized_mean']:.1f} ± "
            f"{r['stochastic_normalized_std']:.1f} | {r['deterministic_normalized_mean']:.1f} ± "
            f"{r['deterministic_normalized_std']:.1f} | {r['stochastic_return_mean']:.0f} ± "
            f"{r['stochastic_return_std']:.0f} | {r['weights_bytes'] / 1024:.0f} KiB |"
        )
    datasets = measure_datasets(make_steps)
    print("\n| dataset | rows | D4RL v2 rows | episodes | mean episode return (± std) | normalised |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in datasets:
        print(
            f"| {r['dataset']} | {r['rows']:,} | {r['d4rl_v2_rows']:,} | {r['episodes']} | "
            f"{r['return_mean']:.0f} ± {r['return_std']:.0f} | {r['normalized_mean']:.1f} |"
        )
    bc_rows = []
    if bc_steps:
        print("\n| dataset | BC steps | BC fit s | held-out log-lik, exact beta | BC | median abs log-ratio |")
        print("| --- | --- | --- | --- | --- | --- |")
        for task in TASKS:
            for quality in ("medium", "expert"):
                r = bc_versus_exact(f"{task}-{quality}", steps=bc_steps)
                if r is None:
                    continue
                bc_rows.append(r)
                print(
                    f"| {r['dataset']} | {r['bc_steps']:,} | {r['fit_seconds']:.0f} | "
                    f"{r['exact_log_likelihood']:.2f} | {r['bc_log_likelihood']:.2f} | "
                    f"{r['log_ratio_abs_median']:.2f} |"
                )
    result = {"cpu": cpu_model(), "policies": policies, "datasets": datasets, "runs": runs, "bc": bc_rows}
    if json_path is not None:
        from adept_env.data.behavior import write_json

        write_json(json_path, json.loads(json.dumps(result, default=_plain)))
    return result


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot serialise {type(value).__name__}")
