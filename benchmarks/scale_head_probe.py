"""Probe: how well the world model's predicted residual scale ranks its own errors off the data.

Fits the default world model (``uncertainty="scale"``) for a fixed number of gradient steps on
uniform-action pairs of one task and prints the Spearman rank correlation of each uncertainty reading
(the scale, the draws' spread) with the model's own one-step state error, on held-out pairs and on an
Ornstein-Uhlenbeck-action policy's pairs (``adept-env bench world-model``'s data and metrics).

    python benchmarks/scale_head_probe.py --task halfcheetah --rows 30000 --steps 800 --scale-width 256
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import torch

from adept_env.benchmarks import world_model as bench
from adept_env.data.collect import collect, uniform_policy
from adept_env.data.dataset import from_d4rl_arrays
from adept_env.diffusion import WorldModel, WorldModelConfig
from adept_env.tasks import get_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="halfcheetah")
    parser.add_argument("--rows", type=int, default=30_000, help="uniform-action pairs (90%% train)")
    parser.add_argument("--steps", type=int, default=800, help="gradient steps of the fit")
    parser.add_argument("--scale-width", type=int, default=WorldModelConfig().scale_width)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    task = get_task(args.task)
    data = from_d4rl_arrays(collect(task, uniform_policy(task), args.rows, seed=args.seed, progress=False), task)
    n_train = int(0.9 * len(data))
    train, test = bench.subset(data, np.arange(n_train)), bench.subset(data, np.arange(n_train, len(data)))
    other = from_d4rl_arrays(collect(task, bench.SmoothPolicy(task.act_dim), 2_000, seed=args.seed + 1,
                                     progress=False), task)
    delta_std = np.maximum((train.next_observations - train.observations).std(0), 1e-4)
    sets = {"held-out": bench.subset(test, np.arange(min(2_000, len(test)))), "other": other}
    config = WorldModelConfig(uncertainty="scale", scale_width=args.scale_width, steps=args.steps, patience=10**6)
    model = WorldModel.create(task, config, seed=args.seed)
    model.fit(train, progress=False, seed=args.seed)
    for mode in ("scale", "draws"):
        view = model.clone()
        view.config = dataclasses.replace(view.config, uncertainty=mode)
        for name, ds in sets.items():
            pred = view.sample(ds.observations, ds.actions, seed=args.seed)
            err = bench.state_errors(pred.next_observations, ds, delta_std)
            print(f"{mode:6s} {name:9s} state MSE {err.mean():.4f}  "
                  f"rank-corr {bench.rank_correlation(pred.uncertainty, err):.3f}", flush=True)


if __name__ == "__main__":
    main()
