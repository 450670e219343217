"""The ADEPT claim, measured with the real simulator: an importance-sampled refit makes the world
model more accurate on the target policy's state-action distribution than an unweighted refit.

Protocol: fit a world model on a dataset (default TASK-random, uniform actions); take a target
policy that differs from the behaviour policy; measure the model's one-step and 5-step open-loop
errors on two distributions of that policy, with the simulator as ground truth:

* on-policy: the policy's own real trajectories from the simulator's initial states;
* branched: the policy's actions from dataset states, stepped 5 times in the simulator. This is
  where the environment queries the model (episodes start at dataset states and last H steps),
  and the distribution that importance weights pi/beta over the dataset can reach (they reweight
  actions, not states).

Then refit copies of the model for the same number of steps with importance weights and with
uniform weights, and measure again. Also env steps/s.

On uniform-action data the target's states are not in the data, so no reweighting of its rows
can reach them; ``--dataset medium-expert`` (half medium, half expert actor) with the expert
actor as the target is the case the weights are made for: the target's states are in the data,
mixed with another policy's.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from adept_env.benchmarks.system import cpu_model
from adept_env.data.collect import collect
from adept_env.data.dataset import OfflineDataset, from_d4rl_arrays, load_dataset
from adept_env.data.generate import make_dataset
from adept_env.importance import importance_weights
from adept_env.tasks import get_task


@dataclass
class Budget:
    """Sizes of one benchmark run."""

    dataset_steps: int | None
    """Transitions generated for the run (None: the full cached TASK-DATASET)."""
    profile: str
    eval_steps: int
    refit_steps: int
    speed_seconds: float


ERROR_KEYS = ("one_step", "five_step", "branched_one_step", "branched_five_step")
"""Errors reported per model: on-policy and branched, one-step and 5-step (``<key>_nmse``)."""

QUICK = Budget(dataset_steps=50_000, profile="quick", eval_steps=4_000, refit_steps=1_000, speed_seconds=2.0)
FULL = Budget(dataset_steps=None, profile="default", eval_steps=20_000, refit_steps=2_000, speed_seconds=5.0)


class _SB3Acting:
    """An SB3 model as an ActingPolicy (stochastic actions, log-probs from the env's adapter)."""

    name = "sb3"

    def __init__(self, model: Any, log_prob) -> None:
        self.model, self._log_prob = model, log_prob

    def act(self, observation: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float]:
        actions, log_probs = self.sample(observation[None], rng)
        return actions[0], float(log_probs[0])

    def sample(self, observations: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        actions, _ = self.model.predict(observations, deterministic=False)
        actions = actions.astype(np.float32)
        return actions, self._log_prob(observations, actions)

    def checksum(self) -> str:
        return "sb3"


SHIPPED_TARGETS = ("medium", "expert")


def default_target(quality: str) -> str:
    """The shipped actor used as the target on a ``quality`` dataset: one its behaviour is not."""
    return "medium" if quality == "random" else "expert"


def _target_policy(task_name: str, policy_path: str | None, dataset: OfflineDataset, model: Any,
                   console: Console, quality: str = "random") -> tuple[Any, str]:
    """Return (acting policy with log_prob, description).

    ``policy_path``: "medium" or "expert" (a shipped actor), or an actor snapshot stem; None:
    :func:`default_target` of the dataset's ``quality``, or, when this version ships no such
    actor, a SAC agent trained briefly against the world model itself.
    """
    from adept_env.data.behavior import load_actor, shipped_actor

    if policy_path is not None and policy_path not in SHIPPED_TARGETS:
        return load_actor(policy_path), f"snapshot {policy_path}"
    actor_quality = policy_path or default_target(quality)
    try:
        actor = shipped_actor(task_name, actor_quality)
        return actor, f"shipped {task_name}-{actor_quality} SAC actor"
    except FileNotFoundError:
        if policy_path is not None:
            raise
    # No snapshot: a SAC agent trained briefly against the world model itself (the ADEPT setting).
    from stable_baselines3 import SAC

    from adept_env.envs.config import EnvConfig
    from adept_env.envs.core import WorldModelCore
    from adept_env.sb3 import WorldModelVecEnv
    from adept_env.target_policy import as_target_policy

    venv = WorldModelVecEnv(num_envs=8, core=WorldModelCore(dataset, model, EnvConfig(penalty=0.0)), seed=0)
    agent = SAC("MlpPolicy", venv, learning_starts=1000, batch_size=256, seed=0, device="cpu")
    console.print("training a SAC target policy on the world model (8k steps) ...")
    agent.learn(8_000)
    target = as_target_policy(agent, dataset.obs_dim, dataset.act_dim)

    class Acting(_SB3Acting):
        def log_prob(self, obs: np.ndarray, act: np.ndarray) -> np.ndarray:
            return target.log_prob(obs, act)

    return Acting(agent, target.log_prob), "SAC trained 8k steps on the world model"


def _errors(model: Any, pairs: OfflineDataset, segments: np.ndarray, scale: np.ndarray) -> dict[str, float]:
    """One-step and 5-step normalised MSE of next states, and reward MAE, on real pairs."""
    pred = model.sample(pairs.observations, pairs.actions, seed=0)
    one_step = float(np.mean(np.square((pred.next_observations - pairs.next_observations) / scale)))
    reward = float(np.mean(np.abs(pred.rewards - pairs.rewards)))
    obs = pairs.observations[segments[:, 0]]
    errs = []
    for k in range(segments.shape[1]):
        rows = segments[:, k]
        obs = model.sample(obs, pairs.actions[rows], seed=k).next_observations
        errs.append(np.mean(np.square((obs - pairs.next_observations[rows]) / scale)))
    return {"one_step_nmse": one_step, "five_step_nmse": float(np.mean(errs)), "reward_mae": reward}


@dataclass
class Branched:
    """The target policy's actions at dataset states, stepped in the simulator (ground truth)."""

    states: np.ndarray
    """(T + 1, B, obs_dim): dataset start states, then the simulator's states."""
    actions: np.ndarray
    """(T, B, act_dim): the target policy's sampled actions."""


def _branched(task: Any, dataset: OfflineDataset, policy: Any, n: int, length: int, seed: int) -> Branched:
    """Roll ``policy`` ``length`` steps in the simulator from ``n`` random dataset states.

    Start states whose velocities sit at the observation clip bound (Hopper, Walker2d) are
    skipped, since the simulator state cannot be recovered from them exactly.
    """
    from adept_env.data.oracle import GroundTruth

    rng = np.random.default_rng(seed)
    candidates = rng.permutation(len(dataset))
    recoverable = ~task.observation_clipped(dataset.observations[candidates])
    state = dataset.observations[candidates[recoverable][:n]].astype(np.float32)
    if len(state) == 0:
        raise ValueError(f"no recoverable start state in {dataset.name or task.name}")
    oracle = GroundTruth(task)
    states, actions = [state], []
    try:
        for _ in range(length):
            action, _ = policy.sample(state, rng)
            state = oracle.step(state, action).next_observations.astype(np.float32)
            actions.append(action.astype(np.float32))
            states.append(state)
    finally:
        oracle.close()
    return Branched(np.stack(states), np.stack(actions))


def _branched_errors(model: Any, branched: Branched, scale: np.ndarray) -> dict[str, float]:
    """One-step and 5-step open-loop normalised MSE on branched rollouts (no termination cut)."""
    first = model.sample(branched.states[0], branched.actions[0], seed=0).next_observations
    one_step = float(np.mean(np.square((first - branched.states[1]) / scale)))
    obs, errs = branched.states[0], []
    for k in range(len(branched.actions)):
        obs = model.sample(obs, branched.actions[k], seed=k).next_observations
        errs.append(np.mean(np.square((obs - branched.states[k + 1]) / scale)))
    return {"branched_one_step_nmse": one_step, "branched_five_step_nmse": float(np.mean(errs))}


def _segments(pairs: OfflineDataset, length: int = 5) -> np.ndarray:
    """Index rows of every non-overlapping run of ``length`` steps inside one episode."""
    ends = pairs.terminals | pairs.timeouts
    starts = []
    i = 0
    while i + length <= len(pairs):
        if not ends[i : i + length - 1].any():
            starts.append(i)
            i += length
        else:
            i += 1
    return np.asarray(starts)[:, None] + np.arange(length)[None, :]


def _speed(model: Any, dataset: OfflineDataset, seconds: float) -> dict[str, float]:
    """Env steps/s: the single env and the vector env at N = 1, 64, 1024 (same model)."""
    from adept_env.envs.config import EnvConfig
    from adept_env.envs.core import WorldModelCore
    from adept_env.envs.vector import WorldModelVectorEnv
    from adept_env.envs.world_model_env import WorldModelEnv

    core = WorldModelCore(dataset, model, EnvConfig(horizon=1000))
    out: dict[str, float] = {}
    env = WorldModelEnv(core=core)
    env.reset(seed=0)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
        steps += 1
    out["single_env"] = steps / (time.perf_counter() - start)
    for n in (1, 64, 1024):
        venv = WorldModelVectorEnv(num_envs=n, core=core)
        venv.reset(seed=0)
        actions = np.zeros((n, dataset.act_dim), np.float32)
        venv.step(actions)  # warm-up
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            venv.step(actions)
            steps += n
        out[f"vector_n{n}"] = steps / (time.perf_counter() - start)
    return out


def run(quick: bool = False, json_path: Path | None = None, task: str = "halfcheetah",
        policy_path: str | None = None, seed: int = 0, ablation: bool = False,
        quality: str = "random", refit_steps: int | None = None, device: str = "cpu") -> dict[str, Any]:
    """Run the benchmark on TASK-``quality``; print a table and the summary lines; return the figures.

    ``policy_path``: "medium", "expert" (shipped actors) or a snapshot stem; default
    :func:`default_target` of ``quality``.
    """
    from adept_env.devices import resolve_device
    from adept_env.envs.model_store import load_or_train

    device = str(resolve_device(device))  # an absent device fails here, before any work
    budget = QUICK if quick else FULL
    if refit_steps is not None:
        if refit_steps < 1:
            raise ValueError(f"refit_steps must be at least 1, got {refit_steps}")
        budget = dataclasses.replace(budget, refit_steps=refit_steps)
    console = Console(width=max(Console().width, 170))  # the error table is wide
    t = get_task(task)
    console.print(f"CPU: {cpu_model()}  date: {_dt.date.today()}  mode: {'quick' if quick else 'full'}")
    name = f"{task}-{quality}"
    if budget.dataset_steps is None or quality == "medium-replay":  # a replay buffer is made once, not resampled
        dataset = load_dataset(name)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            path = make_dataset(name, steps=budget.dataset_steps, seed=seed, out=Path(tmp) / "data.hdf5",
                                progress=False)
            dataset = load_dataset(path)
    start = time.perf_counter()
    model = load_or_train(dataset, budget.profile, progress=True, seed=seed).to(device)  # refits run there too
    console.print(f"world model ready ({budget.profile} profile, {time.perf_counter() - start:.0f} s)")
    policy, description = _target_policy(task, policy_path, dataset, model, console, quality)
    arrays = collect(t, policy, budget.eval_steps, seed=seed + 1, progress=False)
    pairs = from_d4rl_arrays(arrays, t, name="target-policy pairs")
    segments = _segments(pairs)
    scale = np.std(dataset.next_observations - dataset.observations, axis=0) + 1e-6

    iw = importance_weights(policy.log_prob(dataset.observations, dataset.actions),
                            dataset.behavior_log_probs if dataset.behavior_log_probs is not None
                            else np.full(len(dataset), -t.act_dim * np.log(2.0)))
    branched = _branched(t, dataset, policy, budget.eval_steps // 5, 5, seed + 2)

    def errors(candidate: Any) -> dict[str, float]:
        return {**_errors(candidate, pairs, segments, scale), **_branched_errors(candidate, branched, scale)}

    before = errors(model)
    results = {"no_refit": before}
    # (label, weights, config changes, keep_start: the refit may hand back its starting weights)
    variants: list[tuple[str, np.ndarray | None, dict[str, Any], bool]] = [
        ("is_refit", iw.weights, {}, True), ("unweighted_refit", None, {}, True)]
    if ablation:  # the choices behind the defaults: loss-multiplied weights, the fresh-fit learning rate,
        # and the safeguard that lets a refit hand back its starting weights
        fresh_lr = {"refit_learning_rate": model.config.learning_rate}
        variants += [("is_loss_weighted", iw.weights, {"weighted_sampling": False}, True),
                     ("is_refit_fit_lr", iw.weights, fresh_lr, True),
                     ("is_loss_weighted_fit_lr", iw.weights, {"weighted_sampling": False, **fresh_lr}, True),
                     ("unweighted_fit_lr", None, fresh_lr, True),
                     ("is_refit_no_keep", iw.weights, {}, False),
                     ("unweighted_no_keep", None, {}, False)]
    for label, weights, settings, keep_start in variants:
        candidate = model.clone()
        candidate.config = dataclasses.replace(candidate.config, **settings)
        report = candidate.fit(dataset, weights=weights, steps=budget.refit_steps, warm_start=True, progress=False,
                               keep_start=keep_start)
        results[label] = {**errors(candidate), "refit_seconds": float(report.seconds),
                          "kept_start": report.kept_start}

    table = Table("model", "on-policy 1-step", "on-policy 5-step", "reward MAE", "branched 1-step",
                  "branched 5-step", "reduction (on-policy 1 / 5, branched 1 / 5)", "kept start")
    for label, row in results.items():
        for key in ERROR_KEYS:
            row[f"{key}_reduction"] = 1 - row[f"{key}_nmse"] / before[f"{key}_nmse"]
        table.add_row(label, f"{row['one_step_nmse']:.4f}", f"{row['five_step_nmse']:.4f}",
                      f"{row['reward_mae']:.4f}", f"{row['branched_one_step_nmse']:.4f}",
                      f"{row['branched_five_step_nmse']:.4f}",
                      " / ".join(f"{row[f'{k}_reduction']:+.1%}" for k in ERROR_KEYS),
                      {True: "yes", False: "no"}.get(row.get("kept_start"), "-"))
    console.print(f"target policy: {description}; {len(pairs)} real pairs, {len(segments)} 5-step segments; "
                  f"branched: {branched.actions.shape[1]} dataset states x {branched.actions.shape[0]} steps")
    console.print(f"importance weights: ESS {iw.effective_sample_size:.0f} of {len(dataset)} "
                  f"({iw.ess_fraction:.1%}), clipped {iw.clipped_fraction:.1%}; refit {budget.refit_steps} steps")
    console.print(table)
    speed = _speed(model, dataset, budget.speed_seconds)
    speed_table = Table("env", "steps/s")
    for label, value in speed.items():
        speed_table.add_row(label, f"{value:.0f}")
    console.print(speed_table)
    report = {
        "cpu": cpu_model(), "date": str(_dt.date.today()), "quick": quick, "task": task, "dataset": name,
        "dataset_size": len(dataset), "profile": budget.profile, "target_policy": description,
        "ess": iw.effective_sample_size, "ess_fraction": iw.ess_fraction, "refit_steps": budget.refit_steps,
        "refit_learning_rate": model.config.refit_learning_rate, "weighted_sampling": model.config.weighted_sampling,
        "errors": results, "env_steps_per_s": speed,
    }
    if json_path is not None:
        Path(json_path).write_text(json.dumps(report, indent=2))
    print(f"is_refit_error_reduction={results['is_refit']['one_step_reduction']:.4f}")
    print(f"unweighted_refit_error_reduction={results['unweighted_refit']['one_step_reduction']:.4f}")
    print(f"is_refit_branched_error_reduction={results['is_refit']['branched_one_step_reduction']:.4f}")
    print(f"unweighted_refit_branched_error_reduction="
          f"{results['unweighted_refit']['branched_one_step_reduction']:.4f}")
    return report
