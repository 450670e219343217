"""Offline RL algorithms side by side: same dataset, budget and seeds; a markdown table and curves."""

from __future__ import annotations

import datetime as _dt
import json
import time
from pathlib import Path

import numpy as np

from adept_env.agents.iql import IQLConfig
from adept_env.benchmarks.system import cpu_model
from adept_env.data.dataset import load_dataset
from adept_env.training.config import TrainConfig
from adept_env.training.loop import train


def wall_seconds(curve: list[dict]) -> float:
    """Training wall time of a run from its curve, summed over resumes.

    Each row's ``seconds`` counts from the start of the call that wrote it, so a resumed run's
    rows start again from zero; a drop marks a new call, whose time is added to the previous ones.
    """
    total = previous = 0.0
    for row in curve:
        seconds = float(row.get("seconds", float("nan")))
        if seconds < previous:
            total += previous
        previous = seconds
    return total + previous if curve else float("nan")


def run(dataset_name: str = "halfcheetah-random", algos: tuple[str, ...] = ("iql", "adept-iql"),
        seeds: tuple[int, ...] = (0,), updates: int = 50_000, eval_every: int = 10_000, eval_episodes: int = 5,
        profile: str = "default", out: Path = Path("runs/offline_rl"), progress: bool = True,
        threads: int = 1, penalty: float = TrainConfig.penalty, real_ratio: float = 0.5, value_penalty: float = 0.0,
        normalize_states: bool = True, device: str = TrainConfig.device,
        uncertainty_threshold: str | float | None = None) -> str:
    """Train every (algo, seed) on the dataset (resuming finished or cut runs); return the table.

    Writes ``out/results.md``, ``out/results.json`` and ``out/curves.png``. ``threads`` torch
    threads for every run (1: the fastest for these small networks on a shared 2-core machine).
    ``penalty`` (lambda), ``value_penalty`` (beta, MOBILE-style), ``uncertainty_threshold`` (None,
    'auto' or a number) and ``real_ratio`` apply to every algorithm that uses them (the penalties and
    the threshold to the world-model variants only);
    ``normalize_states=False`` feeds IQL raw observations (the "raw observations" figures in
    BENCHMARKS.md). Beside the
    final score the table gives the mean of the last three evaluations, a steadier read where
    scores swing from one evaluation to the next.
    """
    import matplotlib
    import torch

    from adept_env.atomic import atomic_path

    torch.set_num_threads(threads)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dataset = load_dataset(dataset_name, progress=progress)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[dict]] = {}
    for algo in algos:
        for seed in seeds:
            uses_model = algo.startswith(("adept", "diff"))
            config = TrainConfig(algo=algo, updates=updates, eval_every=eval_every, eval_episodes=eval_episodes,
                                 profile=profile, seed=seed, penalty=penalty, real_ratio=real_ratio,
                                 value_penalty=value_penalty if uses_model else 0.0, device=device,
                                 uncertainty_threshold=uncertainty_threshold if uses_model else None,
                                 iql=IQLConfig(normalize_states=normalize_states))
            start = time.process_time()
            result = train(dataset, config, out / dataset_name / f"{algo}-s{seed}", progress=progress)
            results.setdefault(algo, []).append({
                "seed": seed, "final_score": result.final.score_mean, "final_std": result.final.score_std,
                "curve": result.curve, "cpu_seconds_this_call": time.process_time() - start,
                "train_wall_seconds": wall_seconds(result.curve)})
    lines = [f"{dataset_name}, {updates} agent updates, seeds {list(seeds)}, penalty {penalty:g}, value penalty "
             f"{value_penalty:g}, uncertainty threshold {uncertainty_threshold or 'off'}, real ratio {real_ratio:g}, "
             f"CPU {cpu_model()}, {threads} torch thread(s), {_dt.date.today()}", "",
             "| algorithm | final normalised score (mean over seeds ± std) | per seed | mean of the last 3 evaluations "
             "(over seeds ± std) "
             "| wall minutes per seed (all resumes) |",
             "| --- | --- | --- | --- | --- |"]
    fig, ax = plt.subplots(figsize=(7, 4))
    for algo, rows in results.items():
        finals = np.array([r["final_score"] for r in rows])
        per_seed = ", ".join(f"{v:.1f}" for v in finals)
        minutes = ", ".join(f"{r['train_wall_seconds'] / 60:.0f}" for r in rows)
        last3 = np.array([np.mean([c["score_mean"] for c in r["curve"][-3:]]) for r in rows])
        lines.append(f"| {algo} | {finals.mean():.1f} ± {finals.std():.1f} | {per_seed} | "
                     f"{last3.mean():.1f} ± {last3.std():.1f} | {minutes} |")
        x = [c["update"] for c in rows[0]["curve"]]
        y = np.mean([[c["score_mean"] for c in r["curve"]] for r in rows], axis=0)
        (line,) = ax.plot(x, y, marker="o", label=algo if len(rows) == 1 else f"{algo} (mean of {len(rows)} seeds)")
        if len(rows) > 1:  # each seed faintly behind the mean: the mean alone hides swings
            for r in rows:
                ax.plot(x, [c["score_mean"] for c in r["curve"]], color=line.get_color(), alpha=0.3, lw=1)
    ax.set_xlabel("agent updates")
    ax.set_ylabel("D4RL-normalised score (real MuJoCo)")
    ax.set_title(dataset_name)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(out / "curves.png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    table = "\n".join(lines)
    (out / "results.md").write_text(table + "\n")
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(table)
    print(f"curves: {out / 'curves.png'}")
    return table
