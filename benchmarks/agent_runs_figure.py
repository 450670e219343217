"""Figures of the issue-20 agent runs, drawn from their run folders (``runs/``, made by the commands in BENCHMARKS.md).

Usage: python benchmarks/agent_runs_figure.py FIGURE OUT.png, FIGURE one of
  scale-uncertainty  "The scale uncertainty and the threshold at agent level"
                     (runs/unc_scale_walker2d, runs/unc_scale_hopper, runs/hopper_vp25_thr)
  one-recipe         "One recipe on the three random files"
                     (runs/recipe_halfcheetah, runs/recipe_walker2d, runs/hopper_vp25_thr, runs/hopper_vp25_thr_s1)
A run folder that is missing is left out of its panel (and named on stderr).
"""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RECIPE = "value penalty β = 25, threshold auto"
FIGURES = {
    "scale-uncertainty": {
        "walker2d-random": [("adept-sac, λ = 1, scale uncertainty", "runs/unc_scale_walker2d")],
        "hopper-random": [("adept-sac, λ = 1, scale uncertainty (stopped at 40k)", "runs/unc_scale_hopper"),
                          (f"adept-sac, {RECIPE}", "runs/hopper_vp25_thr")],
    },
    "one-recipe": {
        "halfcheetah-random": [(f"adept-sac, {RECIPE} (critic diverged; stopped)", "runs/recipe_halfcheetah")],
        "hopper-random": [(f"adept-sac, {RECIPE}, seed 0", "runs/hopper_vp25_thr"),
                          (f"adept-sac, {RECIPE}, seed 1", "runs/hopper_vp25_thr_s1")],
        "walker2d-random": [(f"adept-sac, {RECIPE} (stopped at 60k)", "runs/recipe_walker2d")],
    },
}
TARGETS = {"halfcheetah-random": 34.0, "walker2d-random": 17.9, "hopper-random": 31.9}


def draw(name: str, out: str) -> None:
    panels = FIGURES[name]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for ax, (task, items) in zip(axes[0], panels.items(), strict=True):
        for label, path in items:
            progress = Path(path) / "progress.json"
            if not progress.exists():
                print(f"{progress} is missing: left out", file=sys.stderr)
                continue
            curve = json.loads(progress.read_text())["curve"]
            ax.plot([r["update"] for r in curve], [r["score_mean"] for r in curve], marker="o", label=label)
        ax.axhline(TARGETS[task], color="grey", ls="--", label=f"target {TARGETS[task]}")
        ax.set_title(f"{task} (real MuJoCo)")
        ax.set_xlim(left=0)
        ax.set_xlabel("agent updates")
        ax.set_ylabel("D4RL-normalised score")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=100)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in FIGURES:
        sys.exit(f"usage: python benchmarks/agent_runs_figure.py {{{','.join(FIGURES)}}} OUT.png")
    draw(sys.argv[1], sys.argv[2])
