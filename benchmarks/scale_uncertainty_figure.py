"""Figure of the issue-20 agent runs (BENCHMARKS.md, "The scale uncertainty and the threshold at agent level").

Usage: python benchmarks/scale_uncertainty_figure.py benchmarks/figures/scale_uncertainty-random.png
(reads runs/unc_scale_walker2d, runs/unc_scale_hopper and runs/hopper_vp25_thr, made by the commands there).
"""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RUNS = {
    "walker2d-random": [("adept-sac, λ = 1, scale uncertainty", "runs/unc_scale_walker2d")],
    "hopper-random": [("adept-sac, λ = 1, scale uncertainty (stopped at 40k)", "runs/unc_scale_hopper"),
                      ("adept-sac, value penalty β = 25, threshold auto", "runs/hopper_vp25_thr")],
}
TARGETS = {"walker2d-random": 17.9, "hopper-random": 31.9}

if __name__ == "__main__":
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, (task, items) in zip(axes, RUNS.items(), strict=True):
        for label, path in items:
            curve = json.loads((Path(path) / "progress.json").read_text())["curve"]
            ax.plot([r["update"] for r in curve], [r["score_mean"] for r in curve], marker="o", label=label)
        ax.axhline(TARGETS[task], color="grey", ls="--", label=f"target {TARGETS[task]}")
        ax.set_title(f"{task} (seed 0, real MuJoCo)")
        ax.set_xlabel("agent updates")
        ax.set_ylabel("D4RL-normalised score")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(sys.argv[1], dpi=100)
