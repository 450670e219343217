"""World-model benchmark: fidelity against an ensemble, sampling speed against MuJoCo, fit cost.

Everything is measured side by side in one run on one task's uniform-action data (``task``:
halfcheetah, hopper or walker2d):

* fidelity: one-step normalised next-state MSE and reward MSE on held-out dataset pairs and on
  pairs from a different (smooth, correlated-action) policy, and the 5-step open-loop rollout
  error; diffusion world model vs a 7-member probabilistic ensemble trained for the same
  wall-clock time (and the flow-only "plain" form in the full run);
* uncertainty candidates (:func:`candidates`): the previous default (the draws' spread), the predicted
  residual scale, and scale + the disagreement of two mean members, each fitted with the same budget
  (configurations that differ only in ``uncertainty`` share one fit: it does not change training);
* sampler sweep: held-out error and speed for N sampler steps x K draws;
* speed: ``sample`` transitions/s at batch 1, 256, 1024 beside the real env's steps/s;
* fit cost: seconds per 1k gradient steps and one warm-start refit of the default size.

Ends with ``uncertainty_rank_corr_other_policy=``, ``ensemble_rank_corr_other_policy=`` (the better of
the ensemble's two measures), ``heldout_mse_ratio_vs_previous_default=``, ``speed_ratio_vs_mujoco=`` and
``fidelity_ratio_vs_ensemble=``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from adept_env.atomic import atomic_path
from adept_env.benchmarks.system import cpu_model
from adept_env.data.collect import collect, uniform_policy
from adept_env.data.dataset import OfflineDataset, from_d4rl_arrays, load_dataset
from adept_env.diffusion import WorldModel, WorldModelConfig
from adept_env.diffusion.ensemble import EnsembleConfig, ProbabilisticEnsemble
from adept_env.tasks import Task, get_task


def previous_default() -> WorldModelConfig:
    """The default before the uncertainty choice (issue #20): one mean member, the K draws' spread."""
    return WorldModelConfig(uncertainty="draws", mean_members=1)


def candidates() -> dict[str, WorldModelConfig]:
    """The uncertainty candidates measured side by side, by name."""
    base = previous_default()
    return {
        "previous default (draws)": base,
        "scale": dataclasses.replace(base, uncertainty="scale"),
        "scale+disagreement M=2": dataclasses.replace(base, mean_members=2, uncertainty="scale+disagreement"),
    }


def fit_key(config: WorldModelConfig) -> str:
    """Configurations with the same key train identically (``uncertainty`` only changes what ``sample`` reports)."""
    return json.dumps(config.training_dict(), sort_keys=True)


@dataclass
class SmoothPolicy:
    """Ornstein-Uhlenbeck actions: temporally correlated, unlike the dataset's uniform ones."""

    act_dim: int
    theta: float = 0.15
    sigma: float = 0.35
    name: str = "ou-noise"

    def __post_init__(self) -> None:
        self._x = np.zeros(self.act_dim)

    def act(self, observation: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float]:
        self._x = self._x - self.theta * self._x + self.sigma * rng.standard_normal(self.act_dim)
        return np.clip(self._x, -1.0, 1.0).astype(np.float32), 0.0

    def checksum(self) -> str:
        return f"ou-{self.theta}-{self.sigma}"


def subset(ds: OfflineDataset, idx: np.ndarray) -> OfflineDataset:
    """The rows ``idx`` of ``ds`` as a dataset of their own."""
    return dataclasses.replace(
        ds, observations=ds.observations[idx], actions=ds.actions[idx], rewards=ds.rewards[idx],
        next_observations=ds.next_observations[idx], terminals=ds.terminals[idx], timeouts=ds.timeouts[idx],
        behavior_log_probs=None if ds.behavior_log_probs is None else ds.behavior_log_probs[idx])


def rollout_starts(ds: OfflineDataset, horizon: int) -> np.ndarray:
    """Rows i where i..i+horizon-1 are consecutive steps of one episode."""
    n = len(ds)
    linked = np.zeros(n, bool)  # row j continues into row j + 1
    linked[:-1] = (~ds.terminals[:-1] & ~ds.timeouts[:-1]
                   & np.all(ds.next_observations[:-1] == ds.observations[1:], axis=1))
    ok = np.ones(max(n - horizon + 1, 0), bool)
    for j in range(horizon - 1):
        ok &= linked[j: n - horizon + 1 + j]
    return np.flatnonzero(ok)


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two 1-D arrays (ties broken by position); NaN when either is constant."""
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


Predict = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]]
"""(observations, actions) -> (next observations, rewards, uncertainty, a second uncertainty or None)."""


def state_errors(predicted: np.ndarray, ds: OfflineDataset, delta_std: np.ndarray) -> np.ndarray:
    """Per-pair next-state MSE against ``ds``, each dimension in units of the training data's s' - s std."""
    return np.mean(np.square((predicted - ds.next_observations) / delta_std), axis=1)


def one_step_fidelity(predict: Predict, sets: dict[str, OfflineDataset], delta_std: np.ndarray) -> dict[str, float]:
    """For each named set of real pairs: ``NAME state`` (normalised next-state MSE), ``NAME reward`` (reward MSE)
    and ``NAME unc-rank-corr`` (rank correlation of the uncertainty with the pair's own state error), plus
    ``NAME unc-rank-corr (MOPO max-std)`` when ``predict`` gives a second uncertainty."""
    row: dict[str, float] = {}
    for set_name, ds in sets.items():
        nxt, rew, unc, unc2 = predict(ds.observations, ds.actions)
        err = state_errors(nxt, ds, delta_std)
        row[f"{set_name} state"] = float(err.mean())
        row[f"{set_name} reward"] = float(np.mean(np.square(rew - ds.rewards)))
        row[f"{set_name} unc-rank-corr"] = rank_correlation(unc, err)
        if unc2 is not None:
            row[f"{set_name} unc-rank-corr (MOPO max-std)"] = rank_correlation(unc2, err)
    return row


def rollout_error(predict: Predict, ds: OfflineDataset, starts: np.ndarray, horizon: int,
                  obs_std: np.ndarray) -> float:
    """Open-loop error: from ``ds``'s observations at ``starts``, feed ``horizon`` logged actions through the
    model; the MSE of the final state against the real one, each dimension in units of the state's std."""
    s = ds.observations[starts]
    for j in range(horizon):
        s = predict(s, ds.actions[starts + j])[0]
    return float(np.mean(np.square((s - ds.next_observations[starts + horizon - 1]) / obs_std)))


def transitions_per_second(fn: Callable[[], Any], items: int, seconds: float) -> float:
    """Items per second of ``fn`` (which handles ``items`` per call), over at least ``seconds`` after a warm-up."""
    fn()
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return calls * items / elapsed


def mujoco_steps_per_second(task: Task, seconds: float) -> float:
    """Return the real env's single-process steps/s with uniform actions (resets included)."""
    env = gym.make(task.env_id)
    env.reset(seed=0)
    env.action_space.seed(0)
    actions = [env.action_space.sample() for _ in range(1000)]
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for action in actions:
            _, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                env.reset()
        steps += len(actions)
    rate = steps / (time.perf_counter() - start)
    env.close()
    return rate


def run(
    quick: bool = False,
    json_path: Path | None = None,
    train_seconds: float | None = None,
    dataset_path: Path | None = None,
    threads: int = 1,
    seed: int = 0,
    device: str = "cpu",
    task: str | None = None,
    train_steps: int | None = None,
) -> dict[str, Any]:
    """Run the benchmark, print tables and the summary lines; return every figure as a dict.

    ``quick``: 30k transitions, 25 s of training per model, no plain-form model (about two
    minutes). Full: 200k transitions (or ``dataset_path``), 240 s per model. ``device`` places the
    diffusion models (auto, cpu, cuda[:N]); the ensemble baseline and MuJoCo run on the CPU. ``task``
    (halfcheetah, hopper or walker2d; default halfcheetah, or ``dataset_path``'s task) must match
    ``dataset_path``'s task when both are given. ``train_steps`` trains every model for exactly that
    many gradient steps instead of ``train_seconds`` of wall clock: equal wall clock is only fair on a
    machine no other job competes for.
    """
    from adept_env.devices import resolve_device

    place = resolve_device(device)  # an unknown or absent device fails here, before any work
    data = load_dataset(dataset_path) if dataset_path is not None else None
    chosen = get_task(task or (data.task.name if data is not None else "halfcheetah"))
    if data is not None and data.task.name != chosen.name:
        raise ValueError(f"{dataset_path} holds {data.task.name} transitions, not {chosen.name} (--task)")
    task = chosen
    console = Console()
    torch.set_num_threads(threads)
    if train_steps is not None and train_steps < 1:
        raise ValueError(f"train_steps must be >= 1, got {train_steps}")
    train_seconds = None if train_steps is not None else train_seconds or (25.0 if quick else 240.0)
    budget = f"{train_steps} gradient steps" if train_steps is not None else f"{train_seconds:.0f} s"
    n_data = 30_000 if quick else 200_000
    console.print(f"task: {task.name}  CPU: {cpu_model()}  torch threads: {threads}  date: {_dt.date.today()}  "
                  f"mode: {'quick' if quick else 'full'}  training budget per model: {budget}  "
                  f"device: {place}")
    report: dict[str, Any] = {"task": task.name, "cpu": cpu_model(), "date": str(_dt.date.today()), "quick": quick,
                              "torch_threads": threads, "train_seconds": train_seconds,
                              "train_steps": train_steps, "device": str(place)}

    # ---------------------------------------------------------------- data
    if data is None:
        data = from_d4rl_arrays(collect(task, uniform_policy(task), n_data, seed=seed, progress=False), task)
    n_train = int(0.9 * len(data))
    train, test = subset(data, np.arange(n_train)), subset(data, np.arange(n_train, len(data)))
    shifted_steps = 2_000 if quick else 5_000
    shifted = from_d4rl_arrays(collect(task, SmoothPolicy(task.act_dim), shifted_steps, seed=seed + 1,
                                       progress=False), task)
    delta = train.next_observations - train.observations
    delta_std = np.maximum(delta.std(0), 1e-4)
    obs_std = np.maximum(train.observations.std(0), 1e-4)
    rng = np.random.default_rng(seed)
    n_eval = min(len(test), 2_000 if quick else 5_000)
    test_idx = rng.choice(len(test), n_eval, replace=False)
    sets = {"held-out": subset(test, test_idx), "other policy": shifted}
    horizon = 5
    starts = rollout_starts(test, horizon)
    starts = rng.choice(starts, min(len(starts), 200 if quick else 500), replace=False)
    report["data"] = {"train": len(train), "test": len(test), "shifted": len(shifted), "rollouts": len(starts)}
    console.print(f"data: {len(train)} train / {len(test)} test uniform-action transitions, "
                  f"{len(shifted)} OU-policy transitions, {len(starts)} {horizon}-step rollouts")

    # ---------------------------------------------------------------- training, equal budget
    models: dict[str, Any] = {}
    named = candidates()
    configs = {"diffusion": WorldModelConfig.default(), **named}
    if not quick:
        configs["diffusion-plain"] = WorldModelConfig(predictor="plain", denoiser_width=256, denoiser_blocks=3,
                                                      uncertainty="draws")
    fitted: dict[str, tuple[WorldModel, list[str]]] = {}  # fit key -> (model, names sharing the fit)
    fit_rows = []
    for name, config in configs.items():
        key = fit_key(config)
        if key not in fitted:
            budgeted = dataclasses.replace(config, steps=train_steps or 10**7, max_fit_seconds=train_seconds,
                                           patience=10**6)
            model = WorldModel.create(task, budgeted, seed=seed).to(place)
            fit = model.fit(train, progress=not quick, seed=seed)
            fitted[key] = (model, [])
            fit_rows.append((key, fit.steps, fit.seconds, fit.seconds_per_1k_steps))
        model, names = fitted[key]
        names.append(name)
        view = model.clone()
        view.config = dataclasses.replace(view.config, uncertainty=config.uncertainty)
        models[name] = view
    fit_rows = [(" = ".join(fitted[key][1]), *rest) for key, *rest in fit_rows]
    ensemble_config = EnsembleConfig(max_fit_seconds=train_seconds) if train_steps is None \
        else EnsembleConfig(steps=train_steps)
    ensemble = ProbabilisticEnsemble(task, ensemble_config, seed=seed)
    efit = ensemble.fit(train, progress=not quick)
    fit_rows.append(("ensemble", efit["steps"], efit["seconds"], 1000 * efit["seconds"] / max(efit["steps"], 1)))
    models["ensemble"] = ensemble
    report["training"] = {row[0]: {"steps": row[1], "seconds": row[2], "seconds_per_1k_steps": row[3]}
                          for row in fit_rows}

    # ---------------------------------------------------------------- fidelity
    def predict(name: str, obs: np.ndarray, act: np.ndarray, k: int | None = None) -> tuple[Any, ...]:
        model = models[name]
        if name == "ensemble":
            p = model.predict(obs, act)
            return p.next_observations, p.rewards, p.disagreement, p.aleatoric
        p = model.sample(obs, act, n_samples=k, seed=seed)
        return p.next_observations, p.rewards, p.uncertainty, None

    fidelity: dict[str, dict[str, float]] = {}
    for name in models:
        def of_model(obs: np.ndarray, act: np.ndarray, name: str = name) -> tuple[np.ndarray, ...]:
            return predict(name, obs, act)

        row = one_step_fidelity(of_model, sets, delta_std)
        if name not in named:
            row[f"rollout-{horizon} state"] = rollout_error(of_model, test, starts, horizon, obs_std)
        fidelity[name] = row
    for name in ("diffusion", "diffusion-plain"):  # the mean predictor alone, for the form comparison
        if name not in models:
            continue
        model = models[name]
        if model.nets.mean is not None:
            for set_name, ds in sets.items():
                with torch.inference_mode():
                    obs = torch.from_numpy(ds.observations)
                    cond = model.nets.normalizer.condition(obs, torch.from_numpy(ds.actions))
                    nxt = model.nets.normalizer.next_obs(obs, model.nets.mean(cond)[0].mean(0)).numpy()
                fidelity[name][f"{set_name} state (mean predictor alone)"] = float(
                    state_errors(nxt, ds, delta_std).mean())
    report["fidelity"] = fidelity
    shown = [m for m in fidelity if m not in named]
    keys = sorted({k for m in shown for k in fidelity[m]}, key=lambda k: (k.split(" ")[0], k))
    table = Table("metric (lower is better; rank-corr higher)", *shown)
    for key in keys:
        table.add_row(key, *[f"{fidelity[m][key]:.4f}" if key in fidelity[m] else "-" for m in shown])
    console.print(table)

    # ---------------------------------------------------------------- speed
    wm: WorldModel = models["diffusion"]
    default_k = wm.config.n_samples
    seconds = 0.5 if quick else 2.0
    pool = test.observations[: 1024], test.actions[: 1024]
    mujoco = mujoco_steps_per_second(task, 2.0 if quick else 5.0)

    # ---------------------------------------------------------------- uncertainty candidates
    per_1k = {name: row[3] for row in fit_rows for name in row[0].split(" = ")}
    default_name = next((n for n, c in named.items() if c == WorldModelConfig.default()), None)
    table = Table("candidate", "held-out MSE (x previous)", "rank-corr held-out / other", "x MuJoCo",
                  "fit s / 1k steps", title="uncertainty candidates (rank-corr: Spearman with own state error)")
    candidate_rows = {}
    previous_mse = fidelity["previous default (draws)"]["held-out state"]
    for name, config in named.items():
        row = fidelity[name]
        rate = transitions_per_second(lambda m=models[name]: m.sample(*pool), 1024, seconds)
        c = candidate_rows[name] = {
            "uncertainty": config.uncertainty, "mean_members": config.mean_members,
            "held_out_state_mse": row["held-out state"],
            "held_out_mse_ratio_vs_previous_default": row["held-out state"] / previous_mse,
            "held_out_rank_corr": row["held-out unc-rank-corr"],
            "other_policy_rank_corr": row["other policy unc-rank-corr"],
            "batch1024_per_s": rate, "vs_mujoco": rate / mujoco, "fit_seconds_per_1k_steps": per_1k[name]}
        table.add_row(name + (" (default)" if name == default_name else ""),
                      f"{c['held_out_state_mse']:.4f} ({c['held_out_mse_ratio_vs_previous_default']:.2f})",
                      f"{c['held_out_rank_corr']:.2f} / {c['other_policy_rank_corr']:.2f}",
                      f"{rate / mujoco:.2f}", f"{per_1k[name]:.1f}")
    ens = fidelity["ensemble"]
    for label, suffix in (("disagreement", ""), ("MOPO max-std", " (MOPO max-std)")):
        on_held, on_other = ens[f"held-out unc-rank-corr{suffix}"], ens[f"other policy unc-rank-corr{suffix}"]
        table.add_row(f"ensemble, {label}", f"{ens['held-out state']:.4f} ({ens['held-out state'] / previous_mse:.2f})",
                      f"{on_held:.2f} / {on_other:.2f}", "-", f"{1000 * efit['seconds'] / max(efit['steps'], 1):.1f}")
    console.print(table)
    report["candidates"] = candidate_rows
    speed: dict[str, float] = {}
    table = Table("batch", *[f"K={k} transitions/s" for k in sorted({1, default_k})], "MuJoCo steps/s")
    for batch in (1, 256, 1024):
        cells = []
        for k in sorted({1, default_k}):
            obs, act = pool[0][:batch], pool[1][:batch]
            rate = transitions_per_second(lambda obs=obs, act=act, k=k: wm.sample(obs, act, n_samples=k), batch,
                                          seconds if batch > 1 else seconds / 2)
            speed[f"batch{batch}_K{k}"] = rate
            cells.append(f"{rate:,.0f}")
        table.add_row(str(batch), *cells, f"{mujoco:,.0f}")
    console.print(f"sampling dtype (batch >= {wm.config.bf16_min_batch}): {wm.sample_dtype}; "
                  f"N = {wm.config.sampling_steps} Euler steps; antithetic draws: {wm.config.antithetic}")
    console.print(table)
    speed["mujoco_steps_per_s"] = mujoco
    report["speed"] = speed

    # ---------------------------------------------------------------- sampler sweep (N steps x K draws)
    sweep_rows = []
    held, other = sets["held-out"], sets["other policy"]
    for n_steps in (1, 2, 4, 8):
        for k in (1, 2, 4):
            for antithetic in ((False, True) if k > 1 else (False,)):
                probe = wm.clone()
                probe.config = dataclasses.replace(probe.config, sampling_steps=n_steps, antithetic=antithetic)
                err = float(state_errors(probe.sample(held.observations, held.actions, n_samples=k, seed=seed)
                                         .next_observations, held, delta_std).mean())
                p = probe.sample(other.observations, other.actions, n_samples=k, seed=seed)
                corr = rank_correlation(p.uncertainty, state_errors(p.next_observations, other, delta_std))
                rate = transitions_per_second(lambda probe=probe, k=k: probe.sample(*pool, n_samples=k), 1024,
                                              seconds / 2)
                sweep_rows.append({"N": n_steps, "K": k, "antithetic": antithetic, "held_out_state_mse": err,
                                   "other_policy_unc_rank_corr": corr, "batch1024_per_s": rate,
                                   "vs_mujoco": rate / mujoco})
    table = Table("N steps", "K draws", "antithetic", "held-out state MSE", "other-policy unc rank-corr",
                  "batch-1024 transitions/s", "x MuJoCo")
    for row in sweep_rows:
        table.add_row(str(row["N"]), str(row["K"]), "yes" if row["antithetic"] else "no",
                      f"{row['held_out_state_mse']:.4f}", f"{row['other_policy_unc_rank_corr']:.3f}",
                      f"{row['batch1024_per_s']:,.0f}", f"{row['vs_mujoco']:.2f}")
    console.print(table)
    report["sampler_sweep"] = sweep_rows

    # ---------------------------------------------------------------- refit cost
    weights = np.random.default_rng(seed).uniform(0.2, 2.0, len(train))
    refit_steps = 200 if quick else wm.config.refit_steps
    refit_model = wm.clone()
    refit_model.config = dataclasses.replace(refit_model.config, max_fit_seconds=None)
    refit = refit_model.fit(train, weights=weights, steps=refit_steps, warm_start=True, progress=False, seed=seed + 1)
    report["refit"] = {"steps": refit.steps, "seconds": refit.seconds,
                       "seconds_per_1k_steps": refit.seconds_per_1k_steps,
                       "default_refit_steps": WorldModelConfig.default().refit_steps,
                       "default_refit_seconds_estimate": refit.seconds_per_1k_steps
                       * WorldModelConfig.default().refit_steps / 1000}
    table = Table("model", "gradient steps", "seconds", "s / 1k steps")
    for name, steps, secs, per_k in fit_rows:
        table.add_row(name, str(steps), f"{secs:.1f}", f"{per_k:.1f}")
    table.add_row(f"diffusion warm refit (weighted, {refit.steps} steps)", str(refit.steps), f"{refit.seconds:.1f}",
                  f"{refit.seconds_per_1k_steps:.1f}")
    console.print(table)

    speed_ratio = speed[f"batch1024_K{default_k}"] / mujoco
    fidelity_ratio = fidelity["diffusion"]["held-out state"] / fidelity["ensemble"]["held-out state"]
    summary = {
        "uncertainty_rank_corr_other_policy": fidelity["diffusion"]["other policy unc-rank-corr"],
        "ensemble_rank_corr_other_policy": max(ens["other policy unc-rank-corr"],
                                               ens["other policy unc-rank-corr (MOPO max-std)"]),
        "heldout_mse_ratio_vs_previous_default": fidelity["diffusion"]["held-out state"] / previous_mse,
        "speed_ratio_vs_mujoco": speed_ratio,
        "fidelity_ratio_vs_ensemble": fidelity_ratio,
    }
    report.update(summary)
    if json_path is not None:
        with atomic_path(Path(json_path)) as tmp:
            tmp.write_text(json.dumps(report, indent=2))
    console.print(f"default uncertainty: {wm.config.uncertainty!r}, mean members: {wm.config.mean_members}; "
                  f"other policy: {len(shifted)} Ornstein-Uhlenbeck-action transitions")
    for key, value in summary.items():
        print(f"{key}={value:.2f}")
    return report
