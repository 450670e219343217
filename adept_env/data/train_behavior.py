"""Train the behaviour policies: Stable-Baselines3 SAC on the real Gymnasium v5 task.

A run lives in one folder (default ``$ADEPT_HOME/behavior/<task>/``) and can be stopped and
resumed any number of times; nothing in it is pickled:

* ``config.json`` -- the hyperparameters (a resumed run must use the same ones);
* ``progress.json`` -- the commit point: steps done, evaluation history, buffer chunks,
  snapshots, checkpoint file, resume seeds and the steps at which the run was interrupted;
* ``checkpoint_<step>.pt`` -- actor, critic, critic-target, optimiser and entropy-coefficient
  state, ``torch.save`` of tensors only, read back with ``torch.load(weights_only=True)``;
* ``buffer/rows_<start>_<end>.npz`` -- the replay buffer, append-only, in collection order,
  with the log-probability of every action under the policy that took it. Chunks are never
  rewritten, so the buffer up to any snapshot step (medium-replay) is a prefix of them;
* ``snapshots/actor_<step>.safetensors`` + ``.json`` -- actor snapshots with their evaluation;
* ``train.log`` -- one line per evaluation.

Files are written atomically, chunks and snapshots before the checkpoint, ``progress.json``
last, so a run killed at any moment resumes from its last complete checkpoint.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from adept_env.atomic import atomic_path
from adept_env.data.behavior import LOG_STD_MAX, LOG_STD_MIN, save_actor, write_json
from adept_env.paths import adept_home
from adept_env.progress import show_progress
from adept_env.sim import make_real_env
from adept_env.tasks import Task, get_task, normalized_score

BUFFER_KEYS: tuple[str, ...] = (
    "observations",
    "next_observations",
    "actions",
    "rewards",
    "dones",
    "timeouts",
    "log_probs",
)
"""Arrays of each buffer chunk; ``dones`` = terminated or truncated, ``timeouts`` = truncated only."""


@dataclass
class BehaviorTrainConfig:
    """Hyperparameters of a behaviour-policy SAC run (SB3 defaults / RL Zoo MuJoCo settings)."""

    task: str
    """Task name: halfcheetah, hopper or walker2d."""
    total_steps: int = 1_000_000
    """Environment steps to train for; also the replay-buffer size, so nothing is overwritten."""
    learning_starts: int = 10_000
    """Uniform-random warm-up steps before the first gradient step (as in the RL Zoo)."""
    eval_every: int = 10_000
    """Steps between evaluations; each evaluation also writes an actor snapshot and a checkpoint."""
    eval_episodes: int = 5
    """Deterministic (mean-action) evaluation episodes per evaluation."""
    seed: int = 0
    """Seed of the first segment; resumed segments use seed + 1000 * (number of resumes)."""
    batch_size: int = 256
    """SAC minibatch size."""
    learning_rate: float = 3e-4
    """Adam learning rate of actor, critics and entropy coefficient."""
    gamma: float = 0.99
    """Discount factor."""
    tau: float = 0.005
    """Polyak coefficient of the target critics."""
    hidden_sizes: tuple[int, ...] = (256, 256)
    """Hidden layer widths of actor and critics (ReLU)."""
    segment_steps: int = 1_000
    """Steps per ``learn`` call (granularity of the progress bar and of stopping)."""

    def to_json(self) -> dict[str, Any]:
        """Return the config as plain JSON values."""
        out = dataclasses.asdict(self)
        out["hidden_sizes"] = list(self.hidden_sizes)
        return out

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> BehaviorTrainConfig:
        """Return the config stored by :meth:`to_json`."""
        fields = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in payload.items() if k in fields}
        kwargs["hidden_sizes"] = tuple(kwargs.get("hidden_sizes", (256, 256)))
        return cls(**kwargs)


def default_run_dir(task: str | Task) -> Path:
    """Return ``$ADEPT_HOME/behavior/<task>``, where a task's behaviour run lives by default."""
    return adept_home() / "behavior" / get_task(task).name


def _progress_enabled(progress: bool) -> bool:
    return show_progress(progress)


def _make_sac(config: BehaviorTrainConfig, seed: int) -> Any:
    """Build the SAC model (with action log-prob logging) for ``config``, seeded with ``seed``."""
    from stable_baselines3 import SAC

    task = get_task(config.task)

    class LoggingSAC(SAC):
        """SAC that records log pi(a|s) of every action it takes, at the moment it takes it."""

        sampled_log_probs: np.ndarray

        def _sample_action(self, learning_starts: int, action_noise: Any = None, n_envs: int = 1) -> Any:
            action, buffer_action = super()._sample_action(learning_starts, action_noise, n_envs)
            low = self.action_space.low.astype(np.float64)
            high = self.action_space.high.astype(np.float64)
            rescale = float(np.sum(np.log((high - low) / 2.0)))
            if self.num_timesteps < learning_starts:
                log_prob = -float(np.sum(np.log(high - low)))
            else:
                with torch.no_grad():
                    obs, _ = self.policy.obs_to_tensor(self._last_obs)
                    mean, log_std, _ = self.actor.get_action_dist_params(obs)
                    dist = self.actor.action_dist.proba_distribution(mean, log_std)
                    log_prob = float(dist.log_prob(torch.as_tensor(buffer_action, dtype=mean.dtype))[0]) - rescale
            self.sampled_log_probs[self.num_timesteps] = log_prob
            return action, buffer_action

    env = make_real_env(task.env_id, max_episode_steps=task.max_episode_steps)
    model = LoggingSAC(
        "MlpPolicy",
        env,
        learning_rate=config.learning_rate,
        buffer_size=config.total_steps,
        learning_starts=config.learning_starts,
        batch_size=config.batch_size,
        tau=config.tau,
        gamma=config.gamma,
        train_freq=1,
        gradient_steps=1,
        ent_coef="auto",
        policy_kwargs={"net_arch": list(config.hidden_sizes)},
        seed=seed,
        device="cpu",
        verbose=0,
    )
    model.sampled_log_probs = np.zeros(config.total_steps, np.float32)
    return model


def sac_training_state(model: Any) -> dict[str, Any]:
    """Everything an SB3 SAC needs to go on training exactly: networks, optimisers, entropy
    coefficient. Tensors and plain containers only, for ``torch.load(weights_only=True)``."""
    state: dict[str, Any] = {
        "policy": model.policy.state_dict(),
        "actor_optimizer": model.actor.optimizer.state_dict(),
        "critic_optimizer": model.critic.optimizer.state_dict(),
    }
    if model.log_ent_coef is not None:
        state["log_ent_coef"] = model.log_ent_coef.detach().clone()
        state["ent_coef_optimizer"] = model.ent_coef_optimizer.state_dict()
    return state


def load_sac_training_state(model: Any, state: dict[str, Any]) -> None:
    """Restore a :func:`sac_training_state` into a SAC built with the same settings."""
    model.policy.load_state_dict(state["policy"])
    model.actor.optimizer.load_state_dict(state["actor_optimizer"])
    model.critic.optimizer.load_state_dict(state["critic_optimizer"])
    if "log_ent_coef" in state:
        with torch.no_grad():
            model.log_ent_coef.copy_(state["log_ent_coef"])
        model.ent_coef_optimizer.load_state_dict(state["ent_coef_optimizer"])


def actor_weights(model: Any) -> dict[str, np.ndarray]:
    """Return the SAC actor's weights (latent_pi.*, mu.*, log_std.*) as float32 numpy arrays."""
    return {
        k: v.detach().cpu().numpy().astype(np.float32)
        for k, v in model.actor.state_dict().items()
        if not k.startswith("features_extractor")
    }


def actor_spec(task: Task, config: BehaviorTrainConfig, step: int) -> dict[str, Any]:
    """Return the JSON spec of an actor snapshot taken at ``step`` of a run with ``config``."""
    env = make_real_env(task.env_id)
    space = env.action_space
    env.close()
    return {
        "name": f"{task.name}-sac-{step}",
        "kind": "sb3-sac-squashed-gaussian",
        "task": task.name,
        "env_id": task.env_id,
        "obs_dim": task.obs_dim,
        "act_dim": task.act_dim,
        "hidden_sizes": list(config.hidden_sizes),
        "activation": "relu",
        "log_std_min": LOG_STD_MIN,
        "log_std_max": LOG_STD_MAX,
        "action_low": space.low.astype(float).tolist(),
        "action_high": space.high.astype(float).tolist(),
        "source": {"trainer": "stable-baselines3 SAC", "step": step, "config": config.to_json()},
    }


def evaluate_actor(
    task: Task,
    act: Any,
    episodes: int,
    seed: int,
) -> dict[str, Any]:
    """Run ``act(obs) -> action`` for ``episodes`` episodes of the real env (seeds seed, seed+1, ...).

    Returns returns (list), lengths, their mean and std, and the D4RL-normalised mean and std.
    """
    env = make_real_env(task.env_id, max_episode_steps=task.max_episode_steps)
    returns, lengths = [], []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        total, length, done = 0.0, 0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(act(obs))
            total += float(reward)
            length += 1
            done = terminated or truncated
        returns.append(total)
        lengths.append(length)
    env.close()
    scores = np.asarray(normalized_score(task, np.asarray(returns)))
    return {
        "episodes": episodes,
        "returns": returns,
        "lengths": lengths,
        "return_mean": float(np.mean(returns)),
        "return_std": float(np.std(returns)),
        "normalized_mean": float(np.mean(scores)),
        "normalized_std": float(np.std(scores)),
    }


def _write_chunk(run_dir: Path, model: Any, start: int, end: int) -> str:
    buf = model.replay_buffer
    name = f"rows_{start:09d}_{end:09d}.npz"
    arrays = {
        "observations": buf.observations[start:end, 0],
        "next_observations": buf.next_observations[start:end, 0],
        "actions": buf.actions[start:end, 0],
        "rewards": buf.rewards[start:end, 0],
        "dones": buf.dones[start:end, 0],
        "timeouts": buf.timeouts[start:end, 0],
        "log_probs": model.sampled_log_probs[start:end],
    }
    with atomic_path(run_dir / "buffer" / name) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    return name


def load_buffer(run_dir: str | os.PathLike[str], upto: int | None = None) -> dict[str, np.ndarray]:
    """Return the run's replay buffer rows [0, upto) in collection order (all committed rows if None).

    Keys are :data:`BUFFER_KEYS`; ``timeouts`` is also set on the last row before every
    interruption (the episode was cut there, not terminated). Raises ValueError if fewer rows
    than ``upto`` were committed.
    """
    run_dir = Path(run_dir)
    progress = json.loads((run_dir / "progress.json").read_text())
    done = int(progress["num_timesteps"])
    upto = done if upto is None else int(upto)
    if upto > done:
        raise ValueError(f"{run_dir} has {done} committed buffer rows, fewer than the {upto} asked for")
    parts: dict[str, list[np.ndarray]] = {k: [] for k in BUFFER_KEYS}
    for chunk in progress["buffer_chunks"]:
        start, end = int(chunk["start"]), int(chunk["end"])
        if start >= upto:
            break
        with np.load(run_dir / "buffer" / chunk["file"], allow_pickle=False) as npz:
            for key in BUFFER_KEYS:
                parts[key].append(npz[key][: min(end, upto) - start])
    out = {k: np.concatenate(v) if v else np.zeros(0, np.float32) for k, v in parts.items()}
    out["timeouts"] = out["timeouts"].copy()
    for step in progress.get("interruptions", []):
        if 0 < step <= upto and not out["dones"][step - 1]:
            out["timeouts"][step - 1] = 1.0
    return out


def _commit(
    run_dir: Path,
    model: Any,
    config: BehaviorTrainConfig,
    progress: dict[str, Any],
) -> None:
    """Persist everything up to ``model.num_timesteps``; ``progress.json`` is written last."""
    step = int(model.num_timesteps)
    start = int(progress["buffer_chunks"][-1]["end"]) if progress["buffer_chunks"] else 0
    if step > start:
        chunk_file = _write_chunk(run_dir, model, start, step)
        progress["buffer_chunks"].append({"start": start, "end": step, "file": chunk_file})
    checkpoint = f"checkpoint_{step:09d}.pt"
    with atomic_path(run_dir / checkpoint) as tmp:
        torch.save(sac_training_state(model), tmp)
    previous = progress.get("checkpoint")
    progress["checkpoint"] = checkpoint
    progress["num_timesteps"] = step
    progress["n_updates"] = int(model._n_updates)
    progress["episode_num"] = int(model._episode_num)
    write_json(run_dir / "progress.json", progress)
    if previous and previous != checkpoint:
        (run_dir / previous).unlink(missing_ok=True)


def _log(run_dir: Path, message: str) -> None:
    line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}"
    with open(run_dir / "train.log", "a") as fh:
        fh.write(line + "\n")
    tqdm.write(line)


def train_behavior(
    task: str | Task,
    *,
    run_dir: str | os.PathLike[str] | None = None,
    total_steps: int | None = None,
    config: BehaviorTrainConfig | None = None,
    progress: bool = True,
    max_steps_this_call: int | None = None,
) -> dict[str, Any]:
    """Train (or resume) the behaviour SAC for ``task``; return the final progress record.

    A run folder with a ``progress.json`` is resumed with its stored config (``total_steps``
    may only raise the step target up to the buffer size); otherwise a new run starts with
    ``config`` (default :class:`BehaviorTrainConfig`). ``max_steps_this_call`` stops early
    (for tests and time-boxed sessions); the run can be resumed later.
    """
    torch.set_num_threads(1)
    task = get_task(task)
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(task)
    run_dir.mkdir(parents=True, exist_ok=True)
    progress_path = run_dir / "progress.json"
    if progress_path.exists():
        config = BehaviorTrainConfig.from_json(json.loads((run_dir / "config.json").read_text()))
        state = json.loads(progress_path.read_text())
        if total_steps is not None and total_steps > config.total_steps:
            raise ValueError(f"the run's buffer holds {config.total_steps} steps; cannot train to {total_steps}")
        target = total_steps or config.total_steps
        seed = config.seed + 1000 * (len(state["resumes"]) + 1)
        model = _make_sac(config, seed)
        load_sac_training_state(model, torch.load(run_dir / state["checkpoint"], weights_only=True))
        step = int(state["num_timesteps"])
        buffer = load_buffer(run_dir, step)
        rb = model.replay_buffer
        for key in ("observations", "next_observations", "actions", "rewards", "dones", "timeouts"):
            getattr(rb, key)[:step, 0] = buffer[key]
        rb.pos, rb.full = step, False
        model.sampled_log_probs[:step] = buffer["log_probs"]
        model.num_timesteps = step
        model._n_updates = int(state["n_updates"])
        model._episode_num = int(state["episode_num"])
        if step > 0 and not rb.dones[step - 1, 0]:
            rb.timeouts[step - 1, 0] = 1.0  # the episode was cut by the interruption, not terminated
            state["interruptions"].append(step)
        state["resumes"].append({"at_step": step, "seed": seed, "time": time.time()})
        _log(run_dir, f"resumed {task.name} at step {step} (seed {seed})")
    else:
        config = config or BehaviorTrainConfig(task=task.name)
        if config.task != task.name:
            raise ValueError(f"config is for {config.task!r}, not {task.name!r}")
        if total_steps is not None:
            config = dataclasses.replace(config, total_steps=total_steps)
        target = config.total_steps
        write_json(run_dir / "config.json", config.to_json())
        state = {
            "task": task.name,
            "num_timesteps": 0,
            "buffer_chunks": [],
            "evals": [],
            "snapshots": [],
            "resumes": [],
            "interruptions": [],
            "checkpoint": None,
            "train_seconds": 0.0,
        }
        model = _make_sac(config, config.seed)
        _log(run_dir, f"started {task.name}: {config.to_json()}")
    stop_at = target if max_steps_this_call is None else min(target, model.num_timesteps + max_steps_this_call)
    bar = tqdm(
        total=target,
        initial=int(model.num_timesteps),
        desc=f"SAC {task.name}",
        unit="step",
        disable=not _progress_enabled(progress),
        mininterval=2.0,
    )
    started = time.time()
    segment_start = time.time()
    first = True
    while model.num_timesteps < stop_at:
        next_eval = (model.num_timesteps // config.eval_every + 1) * config.eval_every
        chunk = min(config.segment_steps, next_eval - model.num_timesteps, stop_at - model.num_timesteps)
        before = model.num_timesteps
        model.learn(chunk, reset_num_timesteps=first and model.num_timesteps == 0, progress_bar=False)
        first = False
        bar.update(model.num_timesteps - before)
        at_eval = model.num_timesteps % config.eval_every == 0
        if at_eval or model.num_timesteps >= stop_at:
            elapsed = time.time() - segment_start
            state["train_seconds"] = float(state["train_seconds"]) + elapsed
            segment_start = time.time()
            if at_eval:
                _evaluate_and_snapshot(run_dir, model, task, config, state)
            _commit(run_dir, model, config, state)
    bar.close()
    rate = (model.num_timesteps - (state["resumes"][-1]["at_step"] if state["resumes"] else 0)) / max(
        time.time() - started, 1e-9
    )
    _log(run_dir, f"stopped at step {model.num_timesteps} ({rate:.1f} steps/s this call)")
    return state


def _evaluate_and_snapshot(
    run_dir: Path, model: Any, task: Task, config: BehaviorTrainConfig, state: dict[str, Any]
) -> None:
    step = int(model.num_timesteps)

    def act(obs: np.ndarray) -> np.ndarray:
        action, _ = model.predict(obs, deterministic=True)
        return action

    result = evaluate_actor(task, act, config.eval_episodes, seed=10_000_000 + step)
    result["step"] = step
    result["train_seconds"] = round(float(state["train_seconds"]), 1)
    state["evals"].append(result)
    stem = run_dir / "snapshots" / f"actor_{step:09d}"
    spec = actor_spec(task, config, step)
    spec["evaluation_during_training"] = {k: v for k, v in result.items() if k not in ("returns", "lengths")}
    save_actor(stem, actor_weights(model), spec)
    state["snapshots"].append(step)
    _log(
        run_dir,
        f"{task.name} step {step}: eval return {result['return_mean']:.1f} +- {result['return_std']:.1f} "
        f"(normalised {result['normalized_mean']:.1f}), {result['train_seconds'] / 60:.1f} train-min",
    )


def snapshot_stem(run_dir: str | os.PathLike[str], step: int) -> Path:
    """Return the stem of the actor snapshot taken at ``step`` in ``run_dir``."""
    return Path(run_dir) / "snapshots" / f"actor_{step:09d}"


def eval_history(run_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Return the run's evaluation records (step, return_mean/std, normalized_mean/std, ...)."""
    progress = json.loads((Path(run_dir) / "progress.json").read_text())
    return list(progress["evals"])


def plot_learning_curve(run_dir: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path:
    """Plot evaluation return (normalised, mean +- std) against steps; write a PNG atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    evals = eval_history(run_dir)
    steps = np.array([e["step"] for e in evals])
    mean = np.array([e["normalized_mean"] for e in evals])
    std = np.array([e["normalized_std"] for e in evals])
    task = json.loads((Path(run_dir) / "config.json").read_text())["task"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, mean, label="SAC, deterministic eval")
    ax.fill_between(steps, mean - std, mean + std, alpha=0.3)
    ax.axhline(100, color="gray", lw=0.8, ls="--", label="D4RL expert (100)")
    low, high = MEDIUM_TARGET.get(task, (float("nan"), float("nan")))
    ax.axhspan(low, high, color="orange", alpha=0.15, label="medium target")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("D4RL-normalised return")
    ax.set_title(f"{task} behaviour SAC")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return out


def medium_replay_arrays(
    task: str | Task,
    *,
    steps: int | None = None,
    run_dir: str | os.PathLike[str] | None = None,
    medium_step: int | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Return D4RL-keyed arrays of the medium-replay dataset and attributes describing them.

    The rows are the SAC run's replay buffer from step 0 to the medium point, in collection
    order (uniform warm-up first): D4RL's medium-replay recipe. The medium point is the step of
    the shipped medium actor (``medium_step`` overrides it); the run's snapshot at that step
    must have the shipped actor's checksum, so the buffer is the one that produced it.
    ``steps`` keeps only the first ``steps`` rows. ``terminals`` are true terminations,
    ``timeouts`` time-limit cuts and interruption cuts (the last row is cut too, as in
    :func:`~adept_env.data.collect.collect`); ``infos/action_log_probs`` is log pi(a|s) under
    the policy of the moment; ``infos/qpos`` and ``infos/qvel`` are rebuilt from the
    observations (x position 0, clipped velocities as observed), since SB3 keeps no state.
    """
    from adept_env.data.behavior import load_actor, shipped_actor

    task = get_task(task)
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(task)
    if not (run_dir / "progress.json").exists():
        raise FileNotFoundError(
            f"medium-replay needs the behaviour SAC run's replay buffer, and {run_dir} holds no run; "
            f"train it with `adept-env data train-behavior {task.name}` (or pass run_dir)"
        )
    extra: dict[str, Any] = {}
    if medium_step is None:
        medium = shipped_actor(task.name, "medium")
        medium_step = int(medium.spec["source"]["step"])
        run_actor = load_actor(snapshot_stem(run_dir, medium_step))
        if run_actor.checksum() != medium.checksum():
            band = MEDIUM_TARGET[task.name]
            in_band = [int(e["step"]) for e in eval_history(run_dir) if band[0] <= e["normalized_mean"] <= band[1]]
            hint = (f"its first snapshot in the medium band {band} is at step {in_band[0]}" if in_band
                    else f"none of its snapshots has scored in the medium band {band} yet; train it further")
            raise ValueError(
                f"the snapshot at step {medium_step} in {run_dir} is not the shipped medium actor of {task.name}; "
                f"this run did not produce it, so its buffer is not that actor's medium-replay. To make the "
                f"medium-replay of this run's own medium point, pass medium_step (--medium-step): {hint}"
            )
        medium_checksum = medium.checksum()
    else:
        medium_checksum = load_actor(snapshot_stem(run_dir, medium_step)).checksum()
    buf = load_buffer(run_dir, medium_step)
    n = medium_step if steps is None else min(int(steps), medium_step)
    env = make_real_env(task.env_id)
    low, high = env.action_space.low.astype(np.float64), env.action_space.high.astype(np.float64)
    env.close()
    timeouts = buf["timeouts"][:n] > 0
    terminals = (buf["dones"][:n] > 0) & ~timeouts
    timeouts[-1] = not terminals[-1]
    qpos, qvel = task.split_observation(buf["observations"][:n])
    arrays = {
        "observations": buf["observations"][:n].astype(np.float32),
        "actions": (low + (buf["actions"][:n] + 1.0) * (high - low) / 2.0).astype(np.float32),
        "rewards": buf["rewards"][:n].astype(np.float32),
        "terminals": terminals,
        "timeouts": timeouts,
        "next_observations": buf["next_observations"][:n].astype(np.float32),
        "infos/qpos": qpos.astype(np.float32),
        "infos/qvel": qvel.astype(np.float32),
        "infos/action_log_probs": buf["log_probs"][:n].astype(np.float32),
    }
    config = json.loads((run_dir / "config.json").read_text())
    extra.update(
        {
            "behavior_policy": f"sac-replay({task.name}, steps 0-{medium_step})",
            "behavior_policy_sha256": hashlib.sha256(f"replay:{medium_checksum}:{n}".encode()).hexdigest(),
            "medium_actor_sha256": medium_checksum,
            "medium_step": medium_step,
            "learning_starts": int(config["learning_starts"]),
            "infos_state_note": "infos/qpos and infos/qvel rebuilt from observations (x position set to 0)",
        }
    )
    return arrays, extra


MEDIUM_TARGET: dict[str, tuple[float, float]] = {
    "halfcheetah": (35.0, 45.0),
    "hopper": (45.0, 60.0),
    "walker2d": (60.0, 75.0),
}
"""D4RL-normalised score band of a medium actor (about 1/3 of expert return; D4RL's medium data
scores about 40 on halfcheetah, 45-60 on hopper, 60-75 on walker2d)."""


def evaluate_snapshot(
    stem: str | os.PathLike[str], episodes: int = 10, seed: int = 20_000_000
) -> dict[str, dict[str, Any]]:
    """Evaluate an actor snapshot for ``episodes`` real episodes, sampled and deterministic.

    Returns {"stochastic": ..., "deterministic": ...}, each as :func:`evaluate_actor` returns:
    returns, lengths, mean and std of the return and of the D4RL-normalised score. Sampled
    actions (``stochastic``) are how the medium/expert datasets are collected.
    """
    from adept_env.data.behavior import load_actor

    actor = load_actor(stem)
    task = get_task(actor.spec["task"])
    rng = np.random.default_rng(seed)
    stochastic = evaluate_actor(task, lambda obs: actor.act(obs, rng)[0], episodes, seed)
    deterministic = evaluate_actor(task, lambda obs: actor.mean_action(obs)[0], episodes, seed)
    return {"stochastic": stochastic, "deterministic": deterministic}


def ship_actor(
    task: str | Task,
    quality: str,
    *,
    step: int,
    run_dir: str | os.PathLike[str] | None = None,
    episodes: int = 10,
    note: str = "",
    policies_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Copy the run's snapshot at ``step`` into the package as ``<task>-<quality>``, with its scores.

    The actor is evaluated for ``episodes`` real episodes (sampled, as it collects data, and
    deterministic); the spec's ``evaluation`` holds the sampled figures, ``evaluation_deterministic``
    the others, ``note`` any caveat (e.g. how far an "expert" is from D4RL's). Returns the
    weights path written.
    """
    from adept_env.data import behavior

    task = get_task(task)
    if quality not in ("medium", "expert"):
        raise ValueError(f"quality must be 'medium' or 'expert', not {quality!r}")
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(task)
    stem = snapshot_stem(run_dir, step)
    actor = behavior.load_actor(stem)
    scores = evaluate_snapshot(stem, episodes=episodes)
    written_by_save = ("format", "format_version", "weights_sha256", "weights_file")
    spec = {k: v for k, v in actor.spec.items() if k not in written_by_save}
    spec.update(
        {
            "name": f"{task.name}-{quality}",
            "quality": quality,
            "evaluation": scores["stochastic"],
            "evaluation_deterministic": scores["deterministic"],
            "evaluation_protocol": (
                f"{episodes} episodes of {task.env_id} (max {task.max_episode_steps} steps), env seeds "
                f"20000000..; 'evaluation' samples actions as the dataset collection does"
            ),
            "medium_target_normalized": list(MEDIUM_TARGET[task.name]) if quality == "medium" else None,
            "note": note,
        }
    )
    out_dir = Path(policies_dir) if policies_dir is not None else behavior.POLICIES_DIR
    return save_actor(out_dir / f"{task.name}-{quality}", actor.weights, spec)
