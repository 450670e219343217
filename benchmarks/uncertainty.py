"""Does the world model's uncertainty flag where it is wrong? Measured with the real simulator.

For a task's cached ``default`` world model (trained on TASK-random), the one-step state error
(MSE in units of the data's per-dimension std of s' - s) and the model's uncertainty on: dataset
pairs, the shipped medium and expert actors' actions from dataset states (branched), and those
actors' own real trajectories (on-policy: states outside uniform-action data). Prints each set's
mean error, mean uncertainty and their Spearman rank correlation, then the correlation over all
sets pooled (what a penalty r - lambda * u needs: high uncertainty where the error is high).

Usage: python benchmarks/uncertainty.py walker2d [--pairs 3000]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from adept_env.benchmarks.system import cpu_model
from adept_env.benchmarks.world_model import rank_correlation
from adept_env.data.behavior import shipped_actor
from adept_env.data.collect import collect
from adept_env.data.dataset import from_d4rl_arrays, load_dataset
from adept_env.data.oracle import GroundTruth
from adept_env.envs.model_store import load_or_train
from adept_env.tasks import get_task


def main(task_name: str, pairs: int, seed: int = 0) -> None:
    torch.set_num_threads(1)
    task = get_task(task_name)
    dataset = load_dataset(f"{task.name}-random")
    model = load_or_train(dataset, "default", progress=False)
    scale = np.maximum((dataset.next_observations - dataset.observations).std(0), 1e-4)
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(dataset), pairs, replace=False)
    sets = {"dataset pairs": (dataset.observations[rows], dataset.actions[rows], dataset.next_observations[rows])}
    oracle = GroundTruth(task)
    try:
        starts = dataset.observations[rows][~task.observation_clipped(dataset.observations[rows])].astype(np.float32)
        for quality in ("medium", "expert"):
            actor = shipped_actor(task.name, quality)
            actions, _ = actor.sample(starts, rng)
            actions = actions.astype(np.float32)
            sets[f"{quality} actor, branched"] = (starts, actions, oracle.step(starts, actions).next_observations)
            own = from_d4rl_arrays(collect(task, actor, pairs, seed=seed + 1, progress=False), task)
            sets[f"{quality} actor, on-policy"] = (own.observations, own.actions, own.next_observations)
    finally:
        oracle.close()
    print(f"{task.name}-random default world model; CPU {cpu_model()}; {pairs} pairs per set")
    print("| pairs | mean one-step error | mean uncertainty | rank correlation |")
    print("| --- | --- | --- | --- |")
    errors, uncertainties = [], []
    for name, (obs, act, nxt) in sets.items():
        prediction = model.sample(obs, act, seed=seed)
        error = np.mean(np.square((prediction.next_observations - nxt) / scale), axis=1)
        errors.append(error)
        uncertainties.append(prediction.uncertainty)
        print(f"| {name} | {error.mean():.4f} | {prediction.uncertainty.mean():.3f} | "
              f"{rank_correlation(prediction.uncertainty, error):.2f} |")
    pooled = rank_correlation(np.concatenate(uncertainties), np.concatenate(errors))
    print(f"pooled_rank_correlation={pooled:.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=["halfcheetah", "hopper", "walker2d"])
    parser.add_argument("--pairs", type=int, default=3000)
    args = parser.parse_args()
    main(args.task, args.pairs)
