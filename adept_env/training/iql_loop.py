"""The IQL variants of the loop (``adept-iql``, ``diff-iql``, ``iql``): the built-in IQL agent on
real batches, mixed with H-step synthetic rollouts of its policy in the world model when it uses one."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from adept_env.agents.iql import IQL, IQLConfig
from adept_env.data.dataset import OfflineDataset
from adept_env.progress import show_progress
from adept_env.training.config import TrainConfig, TrainResult
from adept_env.training.evaluation import EvalResult, evaluate
from adept_env.training.run import (
    RunLog,
    Throughput,
    model_columns,
    reward_span,
    run_state,
    score_in_model,
    selected_checkpoint,
    world_model_core,
)
from adept_env.training.value_penalty import value_std


def reward_scale(dataset: OfflineDataset) -> float:
    """CORL's locomotion reward scaling for IQL: 1000 / (max - min episode return)."""
    returns = dataset.episode_returns()
    spread = float(returns.max() - returns.min()) if len(returns) > 1 else 0.0
    return 1000.0 / spread if spread > 1e-6 else 1.0


class SyntheticBuffer:
    """A FIFO ring of synthetic transitions (numpy); with ``draws`` K > 0 it also keeps the world
    model's K draws of each next state (for the value penalty)."""

    def __init__(self, capacity: int, obs_dim: int, act_dim: int, draws: int = 0) -> None:
        self.capacity, self.size, self.pos = capacity, 0, 0
        self.obs = np.zeros((capacity, obs_dim), np.float32)
        self.act = np.zeros((capacity, act_dim), np.float32)
        self.rew = np.zeros(capacity, np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), np.float32)
        self.done = np.zeros(capacity, np.float32)
        self.draws = np.zeros((capacity, draws, obs_dim), np.float32) if draws else None

    def add(self, obs: np.ndarray, act: np.ndarray, rew: np.ndarray, next_obs: np.ndarray, done: np.ndarray,
            draws: np.ndarray | None = None) -> None:
        """Append transitions; ``draws`` (n, K, obs_dim) is required when the buffer keeps draws."""
        n = min(len(obs), self.capacity)
        idx = (self.pos + np.arange(n)) % self.capacity
        columns = [(self.obs, obs), (self.act, act), (self.rew, rew), (self.next_obs, next_obs), (self.done, done)]
        if self.draws is not None:
            if draws is None or draws.shape[1:] != self.draws.shape[1:]:
                raise ValueError(f"this buffer keeps {self.draws.shape[1]} draws per next state; got "
                                 f"{None if draws is None else draws.shape}")
            columns.append((self.draws, draws))
        for array, values in columns:
            array[idx] = values[-n:]
        self.pos = int((self.pos + n) % self.capacity)
        self.size = min(self.size + n, self.capacity)

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        """Return (obs, act, rew, next_obs, done), plus the draws when the buffer keeps them."""
        idx = rng.integers(0, self.size, size=n)
        picked = (self.obs[idx], self.act[idx], self.rew[idx], self.next_obs[idx], self.done[idx])
        return picked if self.draws is None else (*picked, self.draws[idx])


def synthetic_rollouts(core: Any, agent: IQL, n: int, horizon: int, rng: np.random.Generator,
                       buffer: SyntheticBuffer, scale: float) -> dict[str, float]:
    """H-step rollouts of the agent's stochastic policy from n dataset states into ``buffer``; returns
    their mean uncertainty, the transitions made and how many of them the uncertainty threshold halted."""
    from adept_env.envs.episodes import EpisodeBatch

    episodes = EpisodeBatch(core, n, horizon=horizon)
    obs = episodes.reset(rng)
    alive = np.ones(n, bool)
    uncertainty, transitions, halted = [], 0, 0
    for _ in range(horizon):
        actions = np.zeros((n, core.task.act_dim), np.float32)
        actions[alive] = agent.actor.act(obs[alive], deterministic=False)
        out = episodes.step(actions, rng, mask=alive)
        idx = np.flatnonzero(alive)
        draws = None if buffer.draws is None else out.next_samples[:, idx].transpose(1, 0, 2)  # (B, K, D)
        buffer.add(obs[idx], actions[idx], out.rewards[idx] * scale, out.observations[idx],
                   out.terminated[idx].astype(np.float32), draws)
        uncertainty.append(out.uncertainty[idx].mean())
        transitions, halted = transitions + len(idx), halted + int(out.halted[idx].sum())
        obs = out.observations
        alive &= ~out.terminated
        if not alive.any():
            break
    return {"rollout_uncertainty": float(np.mean(uncertainty)), "rollout_transitions": float(transitions),
            "rollout_halted": float(halted)}


def _batch(dataset: OfflineDataset, synthetic: SyntheticBuffer | None, config: TrainConfig,
           rng: np.random.Generator, scale: float, agent: IQL | None = None,
           metrics: dict[str, float] | None = None) -> dict[str, torch.Tensor]:
    n_real = config.batch_size if synthetic is None or synthetic.size == 0 else round(
        config.batch_size * config.real_ratio)
    idx = rng.integers(0, len(dataset), size=n_real)
    parts = [(dataset.observations[idx], dataset.actions[idx], dataset.rewards[idx] * scale,
              dataset.next_observations[idx], dataset.terminals[idx].astype(np.float32))]
    if n_real < config.batch_size and synthetic is not None:
        obs, act, rew, nxt, done, *draws = synthetic.sample(config.batch_size - n_real, rng)
        if draws and agent is not None and config.value_penalty:
            penalty = value_std(agent.value, draws[0], dataset.task, device=agent.device).cpu().numpy()
            rew = rew - np.float32(config.value_penalty) * penalty
            if metrics is not None:
                metrics["value_penalty_mean"] = float(penalty.mean())
        parts.append((obs, act, rew, nxt, done))
    keys = ("observations", "actions", "rewards", "next_observations", "dones")
    return {k: torch.as_tensor(np.concatenate([p[i] for p in parts]).astype(np.float32))
            for i, k in enumerate(keys)}


def train_iql(dataset: OfflineDataset, config: TrainConfig, run_dir: Path, progress: bool = True, resume: bool = True,
              on_eval: Callable[[dict[str, float]], None] | None = None) -> TrainResult:
    """Train ``iql``, ``diff-iql`` or ``adept-iql``; the contract of ``adept_env.training.loop.train``
    (which also checks and saves the run's settings)."""
    iql_config = IQLConfig(**{**asdict(config.iql), "max_steps": config.updates, "seed": config.seed})
    agent = IQL(dataset.obs_dim, dataset.act_dim, iql_config, device=config.device)
    if iql_config.normalize_states:
        agent.set_state_normalizer(dataset.observations.mean(0), dataset.observations.std(0))
    scale = reward_scale(dataset)  # IQL's rewards, and so its value penalty, are the dataset's times this
    log = RunLog(run_dir, f"{config.algo} on {dataset.name or dataset.task.name}", reward_span(dataset),
                 config.value_penalty / scale)
    start_step = 0
    checkpoint = run_dir / "agent.safetensors"
    state: dict = {}
    if resume and checkpoint.exists() and (run_dir / "progress.json").exists():
        agent.load(checkpoint)
        state = json.loads((run_dir / "progress.json").read_text())
        start_step, log.curve = int(state["update"]), list(state["curve"])
    core = world_model_core(dataset, config, run_dir, progress, state.get("uncertainty_threshold")) \
        if config.uses_model else None
    draws = config.value_samples if config.value_penalty else 0
    synthetic = SyntheticBuffer(config.synthetic_capacity, dataset.obs_dim, dataset.act_dim, draws) if core else None
    rng = np.random.default_rng(config.seed + start_step)
    started = time.perf_counter()
    bar = tqdm(range(start_step, config.updates), initial=start_step, total=config.updates, desc=config.algo,
               unit="upd", disable=not show_progress(progress), mininterval=2.0)
    metrics: dict[str, float] = {}
    throughput = Throughput(start_step)

    def value_penalty(draws: np.ndarray) -> np.ndarray:
        """The run's value penalty of synthetic transitions in reward units (IQL's are scaled by ``scale``)."""
        std = value_std(agent.value, draws, dataset.task, device=agent.device).cpu().numpy()
        return config.value_penalty / scale * std

    for step in bar:
        if core is not None and step % config.rollout_every == 0:
            metrics.update(synthetic_rollouts(core, agent, config.rollout_batch, config.horizon, rng, synthetic, scale))
            throughput.add(metrics["rollout_transitions"], metrics["rollout_halted"])
        if core is not None and config.refits and step > 0 and step % config.refit_every == 0:
            core.update_policy(agent)
            job = core.refit_if_idle()  # one refit at a time: skipped (and counted) while one runs
            if job is not None:
                metrics["refit/ess_fraction"] = job.ess_fraction
        metrics.update(agent.update(_batch(dataset, synthetic, config, rng, scale, agent, metrics)))
        done = step + 1
        if done % 1000 == 0:
            log.scalars({f"train/{k}": v for k, v in metrics.items()}, done)
            if core is not None:
                log.scalars({"model/version": core.model_version}, done)
        if done % config.eval_every == 0 or done == config.updates:
            episodes = max(config.eval_episodes, 10) if done == config.updates else config.eval_episodes
            speed = throughput.columns(done, core)
            result = evaluate(agent, dataset.task, episodes=episodes, seed=config.seed * 1000 + done)
            extra = {**model_columns(core), "seconds": time.perf_counter() - started, **speed}
            if config.value_penalty:
                extra["value_penalty_mean"] = metrics.get("value_penalty_mean", 0.0)
            extra.update(score_in_model(core, config, log.curve, lambda o: agent.act(o, deterministic=True),
                                        lambda: agent.save(run_dir / "agent_selected.safetensors"),
                                        value_penalty if config.value_penalty else None))
            log.evaluation(done, result, extra)
            bar.set_postfix(score=f"{result.score_mean:.1f}")
            if on_eval:
                on_eval(log.curve[-1])
            agent.save(checkpoint)
            if core is not None and core.model_version > 0:
                core.model.save(run_dir / "world_model")
            log.save_progress({"update": done, "algo": config.algo, **run_state(core)})
            throughput.restart(done)
    if core is not None:
        core.wait_for_refits()
    final = result if config.updates > start_step else evaluate(agent, dataset.task, max(config.eval_episodes, 10),
                                                                 seed=config.seed * 1000 + config.updates)

    def evaluate_saved(episodes: int, seed: int) -> EvalResult:
        kept = IQL(dataset.obs_dim, dataset.act_dim, iql_config, device=config.device)
        kept.load(run_dir / "agent_selected.safetensors")
        return evaluate(kept, dataset.task, episodes=episodes, seed=seed)

    selected = selected_checkpoint(log, config, final, evaluate_saved)
    if selected is not None:
        log.save_progress({"update": config.updates, "algo": config.algo, **run_state(core), "selected": selected})
    log.writer.close()
    return TrainResult(log.curve, final, run_dir, agent, selected)
