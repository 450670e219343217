"""The SAC variants of the loop: stable-baselines3 SAC against the world model, or offline on real data."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from stable_baselines3 import SAC
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import configure
from tqdm.auto import tqdm

from adept_env.atomic import atomic_path
from adept_env.data.dataset import OfflineDataset
from adept_env.devices import resolve_device
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


def _save_tensors(state: dict[str, torch.Tensor], path: Path) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))


def _save_policy(model: SAC, path: Path) -> None:
    _save_tensors(model.policy.state_dict(), path)


def _dataset_buffer(dataset: OfflineDataset, model: SAC) -> ReplayBuffer:
    """An SB3 replay buffer holding exactly the dataset's transitions."""
    buffer = ReplayBuffer(len(dataset), model.observation_space, model.action_space, device=model.device,
                          handle_timeout_termination=False)
    n = len(dataset)
    buffer.observations[:n, 0] = dataset.observations
    buffer.next_observations[:n, 0] = dataset.next_observations
    buffer.actions[:n, 0] = dataset.actions
    buffer.rewards[:n, 0] = dataset.rewards
    buffer.dones[:n, 0] = dataset.terminals
    buffer.pos, buffer.full = 0, True
    return buffer


class ActorAverage(BaseCallback):
    """An exponential moving average of an SB3 SAC actor's weights, one update per gradient step.

    ``act`` is the averaged actor's deterministic action (env units), for ``evaluate``.
    """

    def __init__(self, model: SAC, rate: float, state: dict[str, torch.Tensor] | None = None) -> None:
        super().__init__()
        self.rate = rate
        self.average = copy.deepcopy(model.actor).eval()
        if state is not None:
            self.average.load_state_dict(state)
        self._source = list(model.actor.parameters())
        self._target = list(self.average.parameters())
        self._low, self._high = model.action_space.low, model.action_space.high

    def update(self, steps: int = 1) -> None:
        """Move the average towards the actor as ``steps`` single-step updates would (approximately)."""
        rate = 1.0 - (1.0 - self.rate) ** steps
        with torch.no_grad():
            for target, source in zip(self._target, self._source, strict=True):
                target.lerp_(source, rate)

    def _on_step(self) -> bool:
        self.update()
        return True

    def act(self, observation: np.ndarray) -> np.ndarray:
        """The averaged actor's deterministic action for one observation or a batch of them."""
        batch = np.asarray(observation, np.float32)
        with torch.no_grad():
            states = torch.as_tensor(np.atleast_2d(batch), device=self.average.device)
            squashed = self.average(states, deterministic=True).cpu().numpy()
        actions = self._low + 0.5 * (squashed + 1.0) * (self._high - self._low)
        return actions if batch.ndim > 1 else actions[0]

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().contiguous() for k, v in self.average.state_dict().items()}


class _Progress(BaseCallback):
    """Per world-model step (one update): advance the progress bar and count the synthetic transitions
    the VecEnv made, and those its uncertainty threshold halted."""

    def __init__(self, bar: tqdm, throughput: Throughput) -> None:
        super().__init__()
        self.bar, self.throughput = bar, throughput

    def _on_step(self) -> bool:
        infos = self.locals.get("infos", ())
        self.throughput.add(len(infos), sum(bool(info.get("halted", False)) for info in infos))
        self.bar.update(1)
        return True


class _Evaluate(BaseCallback):
    """Evaluate, log and checkpoint every ``every`` gradient updates (SB3 SAC: one per env step)."""

    def __init__(self, run: Callable[[int], None], every: int, n_envs: int) -> None:
        super().__init__()
        self.run, self.every, self.n_envs = run, every, n_envs

    def _on_step(self) -> bool:
        updates = self.num_timesteps // self.n_envs
        if updates % self.every == 0:
            self.run(updates)
        return True


def train_sac(dataset: OfflineDataset, config: TrainConfig, run_dir: Path, progress: bool = True,
              resume: bool = True, on_eval: Callable[[dict[str, float]], None] | None = None) -> TrainResult:
    """Train ``sac`` (offline, real data), ``diff-sac`` or ``adept-sac``; the contract of
    ``adept_env.training.loop.train`` (which also checks and saves the run's settings).

    Resuming restores the networks, the optimisers, the entropy coefficient and the update
    count (``training_state.pt``, tensors only); SAC's own replay buffer of synthetic transitions
    is not kept across an interruption (it is refilled by rollouts).
    """
    from adept_env.data.train_behavior import load_sac_training_state, sac_training_state
    from adept_env.sb3 import MixedReplayBuffer, PolicySync, WorldModelVecEnv
    from adept_env.sim import make_real_env

    log = RunLog(run_dir, f"{config.algo} on {dataset.name or dataset.task.name}", reward_span(dataset),
                 config.value_penalty)
    checkpoint = run_dir / "policy.safetensors"
    training_file = run_dir / "training_state.pt"
    start = 0
    state: dict = {}
    if resume and checkpoint.exists() and (run_dir / "progress.json").exists():
        state = json.loads((run_dir / "progress.json").read_text())
        start, log.curve = int(state["update"]), list(state["curve"])
    started = time.perf_counter()
    core = None
    if config.uses_model:
        core = world_model_core(dataset, config, run_dir, progress, state.get("uncertainty_threshold"))
        env = WorldModelVecEnv(num_envs=config.sac_envs, core=core, seed=config.seed)
        model = SAC("MlpPolicy", env, batch_size=config.batch_size, learning_starts=min(5_000, config.updates // 10),
                    policy_kwargs={"n_critics": config.sac_critics},
                    replay_buffer_class=MixedReplayBuffer,
                    replay_buffer_kwargs={"dataset": dataset, "real_ratio": config.real_ratio,
                                          "value_penalty": config.value_penalty},
                    seed=config.seed, device=resolve_device(config.device))
        model.replay_buffer.attach(model)
    else:
        env = make_real_env(dataset.task.env_id)  # only its spaces are used: never stepped
        model = SAC("MlpPolicy", env, batch_size=config.batch_size, seed=config.seed,
                    device=resolve_device(config.device), policy_kwargs={"n_critics": config.sac_critics})
        model.replay_buffer = _dataset_buffer(dataset, model)
    # SAC's own scalars (train/critic_loss, actor_loss, ent_coef; rollout/ep_rew_mean in the model)
    model.set_logger(configure(str(run_dir / "tensorboard" / "sac"), ["tensorboard"]))
    if start and training_file.exists():
        load_sac_training_state(model, torch.load(training_file, weights_only=True, map_location=model.device))
    elif start:  # a run from before training_state.pt: weights only, fresh optimisers
        model.policy.load_state_dict(load_file(str(checkpoint)))
    average_file = run_dir / "policy_average.safetensors"
    selected_file = run_dir / "policy_selected.safetensors"
    average = None
    if config.policy_average:
        saved = load_file(str(average_file)) if start and average_file.exists() else None
        average = ActorAverage(model, config.policy_average, saved)

    throughput = Throughput(start)
    bar = tqdm(total=config.updates, initial=start, desc=config.algo, unit="upd",
               disable=not show_progress(progress), mininterval=2.0)

    def value_penalty(draws: np.ndarray) -> np.ndarray:
        """The run's value penalty of synthetic transitions (the buffer's: its critics and actor)."""
        return config.value_penalty * model.replay_buffer.bellman_std(draws).cpu().numpy()

    def checkpoint_and_eval(updates: int) -> None:
        total = start + updates
        final = total >= config.updates
        episodes = max(config.eval_episodes, 10) if final else config.eval_episodes
        seed = config.seed * 1000 + total
        extra = {**model_columns(core), **throughput.columns(total, core)}
        if config.value_penalty:
            extra["value_penalty_mean"] = model.replay_buffer.penalty_mean
        if average is not None:  # the average is what counts; the raw actor's score is kept beside it
            raw = evaluate(model, dataset.task, episodes=episodes, seed=seed)
            extra.update(raw_score_mean=raw.score_mean, raw_score_std=raw.score_std)
            result = evaluate(average.act, dataset.task, episodes=episodes, seed=seed)
            log.scalars({"eval/raw_normalized_score": raw.score_mean}, total)
        else:
            result = evaluate(model, dataset.task, episodes=episodes, seed=seed)
        # keep what is evaluated: the average when there is one
        extra.update(score_in_model(
            core, config, log.curve,
            (lambda o: model.predict(o, deterministic=True)[0]) if average is None else average.act,
            lambda: _save_tensors(model.policy.state_dict() if average is None else average.state_dict(),
                                  selected_file),
            value_penalty if config.value_penalty else None))
        extra["seconds"] = time.perf_counter() - started
        log.evaluation(total, result, extra)
        bar.set_postfix(score=f"{result.score_mean:.1f}")
        if on_eval:
            on_eval(log.curve[-1])
        _save_policy(model, checkpoint)
        with atomic_path(training_file) as tmp:
            torch.save(sac_training_state(model), tmp)
        if average is not None:
            with atomic_path(average_file) as tmp:
                save_file(average.state_dict(), str(tmp))
        if core is not None and core.model_version > 0:
            core.model.save(run_dir / "world_model")
        log.save_progress({"update": total, "algo": config.algo, **run_state(core)})
        checkpoint_and_eval.last = result  # type: ignore[attr-defined]
        throughput.restart(total)

    remaining = config.updates - start
    if remaining > 0 and core is not None:
        callbacks = [] if average is None else [average]  # before _Evaluate: it sees the latest update
        callbacks.append(_Progress(bar, throughput))
        callbacks.append(_Evaluate(checkpoint_and_eval, config.eval_every, config.sac_envs))
        if config.refits:
            callbacks.append(PolicySync(every=config.refit_every * config.sac_envs, refit=True))
        # SB3 writes its scalars every log_interval episodes; about every 500 updates here
        episodes_per_500 = max(1, 500 * config.sac_envs // config.horizon)
        model.learn(remaining * config.sac_envs, callback=callbacks, progress_bar=False, log_interval=episodes_per_500)
        if remaining % config.eval_every:
            checkpoint_and_eval(remaining)
        core.wait_for_refits()
    elif remaining > 0:
        done = 0
        while done < remaining:
            chunk = min(config.eval_every - (start + done) % config.eval_every, remaining - done)
            if average is not None:  # average every 100 updates (train() has a per-call cost)
                chunk = min(chunk, 100)
            model.train(gradient_steps=chunk, batch_size=config.batch_size)
            model.logger.dump(start + done + chunk)
            if average is not None:
                average.update(chunk)
            done += chunk
            bar.update(chunk)
            if (start + done) % config.eval_every == 0 or done == remaining:
                checkpoint_and_eval(done)
    bar.close()
    # a finished run asked again: evaluated with the seeds of its last curve row, so the figure is the same
    final = getattr(checkpoint_and_eval, "last", None) or evaluate(
        model if average is None else average.act, dataset.task, max(config.eval_episodes, 10),
        seed=config.seed * 1000 + config.updates)

    def evaluate_saved(episodes: int, seed: int) -> EvalResult:
        saved = load_file(str(selected_file))
        if average is not None:
            return evaluate(ActorAverage(model, config.policy_average, saved).act, dataset.task, episodes, seed=seed)
        kept = copy.deepcopy(model.policy)
        kept.load_state_dict(saved)
        return evaluate(kept, dataset.task, episodes, seed=seed)

    selected = selected_checkpoint(log, config, final, evaluate_saved)
    if selected is not None:
        log.save_progress({"update": config.updates, "algo": config.algo, **run_state(core), "selected": selected})
    log.writer.close()
    return TrainResult(log.curve, final, run_dir, model, selected)


