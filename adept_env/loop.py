"""The ADEPT closed loop and its ablations, for the built-in IQL and for SB3 SAC.

``adept-iql``: H-step rollouts of the current policy in the world model from dataset states,
IQL updates on real + synthetic batches, importance-sampled refits of the model on a schedule.
``diff-iql``: the same with a model trained once, never refitted. ``iql``: real data only.
``adept-sac`` / ``diff-sac``: SB3 SAC trained against the world-model VecEnv with real data mixed
into its batches (with / without IS refits). ``sac``: SB3 SAC's updates on the real data only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from adept_env.agents.iql import IQL, IQLConfig
from adept_env.atomic import atomic_path
from adept_env.data.dataset import OfflineDataset
from adept_env.evaluation import EvalResult, evaluate
from adept_env.tasks import unknown_name
from adept_env.value_penalty import value_std

ALGOS = ("adept-iql", "adept-sac", "diff-iql", "diff-sac", "iql", "sac")


@dataclass
class TrainConfig:
    """Budget and schedule of one training run."""

    algo: str = "adept-iql"
    """One of ALGOS."""
    updates: int = 100_000
    """Gradient updates of the agent: the budget that is equal across algorithms."""
    batch_size: int = 256
    """Agent minibatch size."""
    real_ratio: float = 0.5
    """Share of each batch drawn from the real dataset (the rest is synthetic)."""
    rollout_every: int = 250
    """Updates between rounds of synthetic rollouts (IQL variants)."""
    rollout_batch: int = 2_000
    """Start states per rollout round, all stepped together in one model call per step."""
    horizon: int = 5
    """Rollout length H."""
    penalty: float = 1.0
    """Uncertainty penalty lambda; set use_penalty=False for the no-penalty ablation."""
    use_penalty: bool = True
    """Penalise synthetic rewards by the model's uncertainty."""
    synthetic_capacity: int = 500_000
    """Synthetic transitions kept (oldest dropped first)."""
    refit_every: int = 20_000
    """Updates between importance-sampled refits (adept-* only)."""
    refit_steps: int | None = None
    """Gradient steps of each refit (None: the world model's default)."""
    sac_envs: int = 8
    """Parallel world-model episodes of the SAC variants."""
    sac_critics: int = 2
    """Q-networks of the SAC variants; the target takes their minimum (SAC-N style pessimism when > 2)."""
    policy_average: float = 0.0
    """SAC variants: when > 0, also keep an exponential moving average of the actor's weights,
    updated by this fraction after every gradient update (time constant 1 / rate updates);
    evaluations and the saved policy then use the average, and each curve row also reports the
    raw actor's score (``raw_score_mean``). 0: off."""
    value_penalty: float = 0.0
    """Model variants: beta of a MOBILE-style Bellman-inconsistency penalty on synthetic transitions,
    ``r - beta * std_k V(s'_k)`` over the world model's K draws of the next state, with the agent's
    own value (SAC: min of the target critics at a' ~ pi(s'); IQL: its value network). Usually
    with ``penalty`` 0, as in MOBILE. 0: off."""
    value_samples: int = 8
    """K next-state draws per model step when ``value_penalty`` > 0 (the std needs K >= 2)."""
    selection_episodes: int = 20
    """Model variants: at every evaluation, also score the policy by its uncertainty-penalised return
    in the world model over this many episodes (``model_return`` in the curve; no real-env access)
    and keep the best-scoring checkpoint; the run then also reports that checkpoint's real score
    (``TrainResult.selected``). 0: off."""
    eval_every: int = 10_000
    """Updates between real-simulator evaluations (and checkpoints)."""
    eval_episodes: int = 5
    """Real episodes per evaluation."""
    profile: str = "default"
    """World-model profile ('quick' for demos and tests)."""
    seed: int = 0
    """Seed of the agent, the rollouts and the evaluations."""
    iql: IQLConfig = field(default_factory=IQLConfig)
    """IQL hyper-parameters (IQL variants)."""

    def __post_init__(self) -> None:
        if self.algo not in ALGOS:
            raise unknown_name("algorithm", self.algo, ALGOS)
        if not 0.0 <= self.real_ratio <= 1.0:
            raise ValueError(f"real_ratio must be in [0, 1], got {self.real_ratio}")
        if not 0.0 <= self.policy_average < 1.0:
            raise ValueError(f"policy_average must be in [0, 1), got {self.policy_average}")
        if self.value_penalty < 0:
            raise ValueError(f"value_penalty must be >= 0, got {self.value_penalty}")
        if self.value_penalty and not self.uses_model:
            raise ValueError(f"value_penalty applies to the world-model variants, not {self.algo}")
        if self.value_samples < 2:
            raise ValueError(f"value_samples must be >= 2, got {self.value_samples}")
        if self.policy_average and not self.algo.endswith("sac"):
            raise ValueError(f"policy_average applies to the SAC variants, not {self.algo}")
        if self.selection_episodes < 0:
            raise ValueError(f"selection_episodes must be >= 0, got {self.selection_episodes}")
        for name in ("updates", "batch_size", "rollout_every", "rollout_batch", "horizon", "eval_every",
                     "eval_episodes", "refit_every", "sac_envs", "sac_critics"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def uses_model(self) -> bool:
        return self.algo.startswith(("adept", "diff"))

    @property
    def refits(self) -> bool:
        return self.algo.startswith("adept")


@dataclass
class TrainResult:
    """A finished run: the learning curve and the final real evaluation."""

    curve: list[dict[str, float]]
    """One row per evaluation: update, score mean/std, return mean, model_version, refits_kept_start
    (refits since the run last (re)started that ended on their starting weights, so changed nothing),
    seconds."""
    final: EvalResult
    run_dir: Path
    agent: Any
    selected: dict[str, float] | None = None
    """The checkpoint with the best ``model_return`` (model variants): its update, model return and
    real score (``score_mean``/``score_std``, evaluated like the final policy). None when off."""


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


def _rollouts(core: Any, agent: IQL, n: int, horizon: int, rng: np.random.Generator, buffer: SyntheticBuffer,
              scale: float) -> dict[str, float]:
    """H-step rollouts of the agent's stochastic policy from n dataset states into ``buffer``."""
    from adept_env.envs.episodes import EpisodeBatch

    episodes = EpisodeBatch(core, n)
    obs = episodes.reset(rng)
    alive = np.ones(n, bool)
    uncertainty = []
    for _ in range(horizon):
        actions = np.zeros((n, core.task.act_dim), np.float32)
        actions[alive] = agent.actor.act(obs[alive], deterministic=False)
        out = episodes.step(actions, rng, mask=alive)
        idx = np.flatnonzero(alive)
        draws = None if buffer.draws is None else out.batch.samples.transpose(1, 0, 2)  # (B, K, D)
        buffer.add(obs[idx], actions[idx], out.rewards[idx] * scale, out.observations[idx],
                   out.terminated[idx].astype(np.float32), draws)
        uncertainty.append(out.batch.uncertainty.mean())
        obs = out.observations
        alive &= ~out.terminated
        if not alive.any():
            break
    return {"rollout_uncertainty": float(np.mean(uncertainty))}


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
            penalty = value_std(agent.value, draws[0], dataset.task).numpy()
            rew = rew - np.float32(config.value_penalty) * penalty
            if metrics is not None:
                metrics["value_penalty_mean"] = float(penalty.mean())
        parts.append((obs, act, rew, nxt, done))
    keys = ("observations", "actions", "rewards", "next_observations", "dones")
    return {k: torch.as_tensor(np.concatenate([p[i] for p in parts]).astype(np.float32))
            for i, k in enumerate(keys)}


class RunLog:
    """TensorBoard scalars, the learning curve (JSON + PNG) and the progress file of a run."""

    def __init__(self, run_dir: Path, title: str) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir, self.title = run_dir, title
        self.writer = SummaryWriter(str(run_dir / "tensorboard"))
        self.curve: list[dict[str, float]] = []

    def scalars(self, values: dict[str, float], step: int) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)

    def evaluation(self, step: int, result: EvalResult, extra: dict[str, float]) -> None:
        row = {"update": step, "score_mean": result.score_mean, "score_std": result.score_std,
               "return_mean": result.return_mean, **extra}
        self.curve.append(row)
        self.scalars({"eval/normalized_score": result.score_mean, "eval/return": result.return_mean}, step)
        self.writer.flush()
        self.plot()

    def save_progress(self, payload: dict[str, Any]) -> None:
        with atomic_path(self.run_dir / "progress.json") as tmp:
            tmp.write_text(json.dumps({**payload, "curve": self.curve}, indent=2))

    def plot(self) -> Path:
        """Write learning_curve.png (normalised score ± std over updates); return its path."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        x = np.array([r["update"] for r in self.curve])
        y = np.array([r["score_mean"] for r in self.curve])
        s = np.array([r["score_std"] for r in self.curve])
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(x, y, marker="o")
        ax.fill_between(x, y - s, y + s, alpha=0.2)
        ax.set_xlabel("agent updates")
        ax.set_ylabel("D4RL-normalised score (real MuJoCo)")
        ax.set_title(self.title)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = self.run_dir / "learning_curve.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
        plt.close(fig)
        return path


def _core(dataset: OfflineDataset, config: TrainConfig, run_dir: Path, progress: bool) -> Any:
    from adept_env.envs.config import EnvConfig
    from adept_env.envs.core import WorldModelCore
    from adept_env.envs.model_store import load_or_train

    saved = run_dir / "world_model"
    model = load_or_train(dataset, config.profile, str(saved) if saved.exists() else None, progress=progress,
                          seed=config.seed)
    env_config = EnvConfig(horizon=config.horizon, penalty=config.penalty if config.use_penalty else 0.0,
                           profile=config.profile, refit_steps=config.refit_steps,
                           n_samples=config.value_samples if config.value_penalty else None)
    return WorldModelCore(dataset, model, env_config)


def _model_return(core: Any, config: TrainConfig, act: Callable[[np.ndarray], np.ndarray]) -> float | None:
    """The policy's penalised return in the current world model (None when selection is off)."""
    if core is None or not config.selection_episodes:
        return None
    from adept_env.selection import model_return

    return model_return(act, core.model, core.dataset, episodes=config.selection_episodes, seed=config.seed)


def _score_in_model(core: Any, config: TrainConfig, curve: list[dict[str, float]],
                    act: Callable[[np.ndarray], np.ndarray], keep: Callable[[], None]) -> dict[str, float]:
    """The ``model_return`` column of a curve row (empty when selection is off); calls ``keep()``
    to save the checkpoint when it beats every earlier row."""
    estimate = _model_return(core, config, act)
    if estimate is None:
        return {}
    from adept_env.selection import is_new_best

    if is_new_best(curve, estimate):
        keep()
    return {"model_return": estimate}


def _selected(log: RunLog, config: TrainConfig, final: EvalResult,
              evaluate_saved: Callable[[int, int], EvalResult]) -> dict[str, float] | None:
    """The best-``model_return`` checkpoint's row, scored in the real env like the final policy;
    ``evaluate_saved(episodes, seed)`` scores the kept checkpoint when it is not the last one."""
    from adept_env.selection import best_row

    row = best_row(log.curve)
    if row is None:
        return None
    if row["update"] == log.curve[-1]["update"]:
        result = final
    else:
        try:
            result = evaluate_saved(max(config.eval_episodes, 10), config.seed * 1000 + config.updates)
        except FileNotFoundError:  # the kept checkpoint was removed from the run folder
            return None
    return {"update": row["update"], "model_return": row["model_return"], "score_mean": result.score_mean,
            "score_std": result.score_std}


def _model_columns(core: Any) -> dict[str, float]:
    """The world model's columns of a curve row (zeros for the real-data-only algorithms)."""
    return {"model_version": core.model_version if core else 0,
            "refits_kept_start": core.refits_kept_start() if core else 0}


def train(dataset: OfflineDataset, config: TrainConfig, run_dir: str | Path, progress: bool = True,
          resume: bool = True, on_eval: Callable[[dict[str, float]], None] | None = None) -> TrainResult:
    """Train ``config.algo`` on ``dataset``; evaluate in the real simulator; checkpoint into ``run_dir``.

    A run directory with a checkpoint resumes from it (``resume=True``). Returns the curve,
    the final evaluation (10 episodes at least) and the agent.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    saved = run_dir / "config.json"
    if resume and saved.exists() and (run_dir / "progress.json").exists():
        _check_same_run(json.loads(saved.read_text()), asdict(config), run_dir)
    with atomic_path(saved) as tmp:
        tmp.write_text(json.dumps(asdict(config), indent=2))
    if config.algo.endswith("sac"):
        from adept_env.loop_sac import train_sac

        return train_sac(dataset, config, run_dir, progress=progress, resume=resume, on_eval=on_eval)
    return _train_iql(dataset, config, run_dir, progress, resume, on_eval)


class RunMismatchError(ValueError):
    """A run folder holds a run made with other settings than the ones asked to resume it."""


RESUMABLE_CHANGES = ("updates", "eval_every", "eval_episodes", "selection_episodes")
"""Settings a resumed run may change (a longer budget, other evaluation points)."""


def _check_same_run(saved: dict[str, Any], wanted: dict[str, Any], run_dir: Path) -> None:
    """Refuse to resume a run folder whose saved settings differ from ``wanted`` (except RESUMABLE_CHANGES)."""
    differences = [f"{key}: {saved.get(key)!r} -> {value!r}" for key, value in wanted.items()
                   if key not in RESUMABLE_CHANGES and saved.get(key, value) != value]
    if differences:
        raise RunMismatchError(f"{run_dir} holds a run with other settings ({'; '.join(differences)}); "
                         "resume it with the same settings or train into another folder (--out)")


def _train_iql(dataset: OfflineDataset, config: TrainConfig, run_dir: Path, progress: bool, resume: bool,
               on_eval: Callable[[dict[str, float]], None] | None) -> TrainResult:
    iql_config = IQLConfig(**{**asdict(config.iql), "max_steps": config.updates, "seed": config.seed})
    agent = IQL(dataset.obs_dim, dataset.act_dim, iql_config)
    if iql_config.normalize_states:
        agent.set_state_normalizer(dataset.observations.mean(0), dataset.observations.std(0))
    log = RunLog(run_dir, f"{config.algo} on {dataset.name or dataset.task.name}")
    start_step = 0
    checkpoint = run_dir / "agent.safetensors"
    if resume and checkpoint.exists() and (run_dir / "progress.json").exists():
        agent.load(checkpoint)
        state = json.loads((run_dir / "progress.json").read_text())
        start_step, log.curve = int(state["update"]), list(state["curve"])
    core = _core(dataset, config, run_dir, progress) if config.uses_model else None
    draws = config.value_samples if config.value_penalty else 0
    synthetic = SyntheticBuffer(config.synthetic_capacity, dataset.obs_dim, dataset.act_dim, draws) if core else None
    scale = reward_scale(dataset)
    rng = np.random.default_rng(config.seed + start_step)
    started = time.perf_counter()
    bar = tqdm(range(start_step, config.updates), initial=start_step, total=config.updates, desc=config.algo,
               disable=not progress, mininterval=2.0)
    metrics: dict[str, float] = {}
    for step in bar:
        if core is not None and step % config.rollout_every == 0:
            metrics.update(_rollouts(core, agent, config.rollout_batch, config.horizon, rng, synthetic, scale))
        if core is not None and config.refits and step > 0 and step % config.refit_every == 0:
            core.update_policy(agent)
            job = core.refit(blocking=False)
            metrics["refit/ess_fraction"] = job.ess_fraction
        metrics.update(agent.update(_batch(dataset, synthetic, config, rng, scale, agent, metrics)))
        done = step + 1
        if done % 1000 == 0:
            log.scalars({f"train/{k}": v for k, v in metrics.items()}, done)
            if core is not None:
                log.scalars({"model/version": core.model_version}, done)
        if done % config.eval_every == 0 or done == config.updates:
            episodes = max(config.eval_episodes, 10) if done == config.updates else config.eval_episodes
            result = evaluate(agent, dataset.task, episodes=episodes, seed=config.seed * 1000 + done)
            extra = {**_model_columns(core), "seconds": time.perf_counter() - started}
            if config.value_penalty:
                extra["value_penalty_mean"] = metrics.get("value_penalty_mean", 0.0)
            extra.update(_score_in_model(core, config, log.curve, lambda o: agent.act(o, deterministic=True),
                                         lambda: agent.save(run_dir / "agent_selected.safetensors")))
            log.evaluation(done, result, extra)
            bar.set_postfix(score=f"{result.score_mean:.1f}")
            if on_eval:
                on_eval(log.curve[-1])
            agent.save(checkpoint)
            if core is not None and core.model_version > 0:
                core.model.save(run_dir / "world_model")
            log.save_progress({"update": done, "algo": config.algo})
    if core is not None:
        core.wait_for_refits()
    final = result if config.updates > start_step else evaluate(agent, dataset.task, max(config.eval_episodes, 10),
                                                                 seed=config.seed * 1000 + config.updates)

    def evaluate_saved(episodes: int, seed: int) -> EvalResult:
        kept = IQL(dataset.obs_dim, dataset.act_dim, iql_config)
        kept.load(run_dir / "agent_selected.safetensors")
        return evaluate(kept, dataset.task, episodes=episodes, seed=seed)

    selected = _selected(log, config, final, evaluate_saved)
    if selected is not None:
        log.save_progress({"update": config.updates, "algo": config.algo, "selected": selected})
    log.writer.close()
    return TrainResult(log.curve, final, run_dir, agent, selected)
