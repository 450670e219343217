"""Offline RL algorithms side by side on one dataset (resumable: rerun to continue).

Usage: python benchmarks/offline_rl.py --dataset halfcheetah-random --algos iql adept-iql --seeds 0 \
           --updates 50000 [--profile default] [--out runs/offline_rl]
"""

import argparse
from pathlib import Path

from adept_env.benchmarks.offline_rl import run
from adept_env.training.config import TrainConfig, parse_uncertainty_threshold

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="halfcheetah-random")
    parser.add_argument("--algos", nargs="+", default=["iql", "adept-iql"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--updates", type=int, default=50_000)
    parser.add_argument("--eval-every", type=int, default=10_000)
    parser.add_argument("--eval-episodes", type=int, default=5)
    parser.add_argument("--profile", default="default")
    parser.add_argument("--out", type=Path, default=Path("runs/offline_rl"))
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    parser.add_argument("--penalty", type=float, default=TrainConfig.penalty, help="uncertainty penalty lambda")
    parser.add_argument("--value-penalty", type=float, default=0.0,
                        help="beta of the MOBILE-style value penalty (world-model variants; 0: off)")
    parser.add_argument("--uncertainty-threshold", default=None, type=parse_uncertainty_threshold,
                        help="world-model variants: end a synthetic rollout where the model's uncertainty passes "
                             "this; 'auto' (a quantile of it on held-out dataset pairs), a number > 0, or none (off)")
    parser.add_argument("--raw-states", dest="normalize_states", action="store_false",
                        help="IQL variants: raw observations (no standardisation), as before 2026-11-27")
    parser.add_argument("--real-ratio", type=float, default=0.5, help="share of real transitions per batch")
    parser.add_argument("--device", default=TrainConfig.device, help="auto, cpu, cuda or cuda:N (agent and model)")
    args = parser.parse_args()
    run(args.dataset, tuple(args.algos), tuple(args.seeds), args.updates, args.eval_every, args.eval_episodes,
        args.profile, args.out, args.progress, args.threads, args.penalty, args.real_ratio,
        args.value_penalty, args.normalize_states, args.device, args.uncertainty_threshold)
