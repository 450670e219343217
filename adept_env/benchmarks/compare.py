"""Learning curves of several training runs on one plot, with a markdown summary."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from adept_env.atomic import atomic_path


def read_curve(run_dir: Path) -> list[dict[str, float]]:
    """Return the curve of a run folder (``adept-env train``'s progress.json, or the ``curve.json`` of
    ``clients/examples/train_sac_remote.py``), or raise a clear error."""
    path = Path(run_dir) / "progress.json"
    remote = Path(run_dir) / "curve.json"
    if not path.exists() and not remote.exists():
        raise FileNotFoundError(f"{run_dir} is not a training run folder: it has no progress.json or curve.json")
    curve = json.loads(path.read_text()).get("curve", []) if path.exists() else json.loads(remote.read_text())
    if not curve:
        raise ValueError(f"{path} has no evaluations yet")
    return curve


def compare(runs: dict[str, Path], out: Path, title: str = "") -> str:
    """Plot each labelled run's real-simulator scores over updates into ``out`` (PNG); return a
    markdown table: final score, mean of the last three evaluations, best evaluation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = ["| run | scores at each evaluation | final | mean of the last 3 | best (update) |",
             "| --- | --- | --- | --- | --- |"]
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, run_dir in runs.items():
        curve = read_curve(run_dir)
        x = np.array([row["update"] for row in curve])
        y = np.array([row["score_mean"] for row in curve])
        ax.plot(x, y, marker="o", label=label)
        best = int(np.argmax(y))
        scores = ", ".join(f"{v:.1f}" for v in y)
        lines.append(f"| {label} | {scores} | {y[-1]:.1f} | {y[-3:].mean():.1f} | {y[best]:.1f} ({x[best]}) |")
    ax.set_xlabel("agent updates")
    ax.set_ylabel("D4RL-normalised score (real MuJoCo)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return "\n".join(lines)
