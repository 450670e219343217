"""What the IQL and SAC loops share: the run folder's log and resume check, the world model a run
trains against, and the offline scoring and keeping of checkpoints (``model_return``)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from adept_env.atomic import atomic_path
from adept_env.data.dataset import OfflineDataset
from adept_env.training.config import TrainConfig, upgrade_saved_config
from adept_env.training.evaluation import EvalResult
from adept_env.training.selection import best_row, is_new_best, model_return


def penalty_notice(step: int, penalty: float, reward_span: float | None) -> str | None:
    """A warning when the value penalty per synthetic step outgrows the dataset's whole reward range.

    ``penalty``: the mean penalty subtracted from a synthetic reward, in the dataset's reward units
    (beta times the spread of the critic's values over the model's draws). When it exceeds every
    difference between two rewards in the data, the synthetic rewards are mostly penalty, and a
    growing penalty feeds itself (lower rewards, steeper values, a wider spread): on
    halfcheetah-random with beta = 25 the spread went from 0.24 to 14,029 between two evaluations
    (BENCHMARKS.md). None when the penalty is within the range (or no range is known).
    """
    if reward_span is None or (np.isfinite(penalty) and penalty <= reward_span):
        return None
    return (f"adept-env: at update {step:,} the value penalty averages {penalty:,.2f} per synthetic step, "
            f"more than the dataset's whole reward range ({reward_span:,.2f}): the critic is probably diverging and "
            "the synthetic rewards are mostly penalty. Lower --value-penalty (beta), or keep an earlier checkpoint "
            "(policy_selected.safetensors holds the best one by the run's own reward).")


def reward_span(dataset: OfflineDataset) -> float:
    """The dataset's reward range, max - min (0 for an empty or constant reward)."""
    return float(np.ptp(dataset.rewards)) if len(dataset.rewards) else 0.0


class RunLog:
    """TensorBoard scalars, the learning curve (JSON + PNG) and the progress file of a run."""

    def __init__(self, run_dir: Path, title: str, reward_span: float | None = None,
                 penalty_per_spread: float = 1.0) -> None:
        """``reward_span``: the dataset's reward range (max - min), the bound of ``penalty_notice``;
        ``penalty_per_spread``: what turns a row's ``value_penalty_mean`` (the spread, before beta, in
        the agent's reward units) into the penalty in the dataset's: beta / the agent's reward scale."""
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir, self.title = run_dir, title
        self.reward_span, self.penalty_per_spread = reward_span, penalty_per_spread
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
        self.scalars({tag: extra[key] for key, tag in THROUGHPUT_TAGS.items() if key in extra}, step)
        if "value_penalty_mean" in extra:
            self.scalars({"model/value_penalty_mean": extra["value_penalty_mean"]}, step)
            notice = penalty_notice(step, self.penalty_per_spread * extra["value_penalty_mean"], self.reward_span)
            if notice:
                print(notice, file=sys.stderr, flush=True)
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


THROUGHPUT_TAGS = {"sps": "time/sps", "model_sps": "time/model_sps", "halted_fraction": "model/halted_fraction"}
"""The TensorBoard tags of a curve row's throughput columns (``Throughput.columns``)."""


class Throughput:
    """Agent updates (and synthetic transitions) per second of wall time since the previous evaluation.

    The window runs from the end of one evaluation (``restart``, after its real episodes, model
    return and checkpoint) to the start of the next (``columns``): the evaluations themselves are
    excluded, the rollouts, refit starts and world-model steps between them are included.
    """

    def __init__(self, update: int) -> None:
        self.restart(update)

    def restart(self, update: int) -> None:
        """Open a new window at ``update``."""
        self.update, self.started = update, time.perf_counter()
        self.transitions = self.halted = 0

    def add(self, transitions: int, halted: int = 0) -> None:
        """Count synthetic transitions made in this window, ``halted`` of them ended by the uncertainty threshold."""
        self.transitions += int(transitions)
        self.halted += int(halted)

    def columns(self, update: int, core: Any) -> dict[str, float]:
        """``sps`` (updates per second); with a world model (``core``) also ``model_sps`` (synthetic
        transitions per second of the same wall time) and, when its rollouts have an uncertainty
        threshold, ``halted_fraction`` (the share of those transitions the threshold ended)."""
        seconds = max(time.perf_counter() - self.started, 1e-9)
        row = {"sps": (update - self.update) / seconds}
        if core is not None:
            row["model_sps"] = self.transitions / seconds
            if core.config.uncertainty_threshold is not None:
                row["halted_fraction"] = self.halted / max(self.transitions, 1)
        return row


class RunMismatchError(ValueError):
    """A run folder holds a run made with other settings than the ones asked to resume it."""


RESUMABLE_CHANGES = ("updates", "eval_every", "eval_episodes", "selection_episodes", "device")
"""Settings a resumed run may change (a longer budget, other evaluation points)."""


def check_same_run(saved: dict[str, Any], wanted: dict[str, Any], run_dir: Path) -> None:
    """Refuse to resume a run folder whose saved settings differ from ``wanted`` (except RESUMABLE_CHANGES).

    ``saved`` may come from an older version (see ``upgrade_saved_config``); settings it lacks
    are taken as unchanged.
    """
    saved = upgrade_saved_config(saved)
    differences = [f"{key}: {saved.get(key)!r} -> {value!r}" for key, value in wanted.items()
                   if key not in RESUMABLE_CHANGES and saved.get(key, value) != value]
    if differences:
        raise RunMismatchError(f"{run_dir} holds a run with other settings ({'; '.join(differences)}); "
                               "resume it with the same settings or train into another folder (--out)")


def world_model_core(dataset: OfflineDataset, config: TrainConfig, run_dir: Path, progress: bool,
                     recorded_threshold: float | None = None) -> Any:
    """The world-model environment core the run trains against: the run folder's refitted model when
    there is one, else the cached (or newly trained) model of ``config.profile``; its uncertainty
    threshold is ``rollout_threshold``'s (``recorded_threshold``: the 'auto' value a resumed run recorded)."""
    from adept_env.envs.config import EnvConfig
    from adept_env.envs.core import WorldModelCore
    from adept_env.envs.model_store import load_or_train
    from adept_env.training.threshold import rollout_threshold

    saved = run_dir / "world_model"
    model = load_or_train(dataset, config.profile, str(saved) if saved.exists() else None, progress=progress,
                          seed=config.seed).to(config.device)
    n_samples = config.value_samples if config.value_penalty else None
    env_config = EnvConfig(horizon=config.horizon, penalty=config.penalty, profile=config.profile,
                           refit_steps=config.refit_steps, n_samples=n_samples,
                           uncertainty_threshold=rollout_threshold(config, model, dataset, n_samples,
                                                                   recorded_threshold))
    return WorldModelCore(dataset, model, env_config)


def model_columns(core: Any) -> dict[str, float]:
    """The world model's columns of a curve row (zeros for the real-data-only algorithms), and the
    rollouts' ``uncertainty_threshold`` when they have one."""
    columns = {"model_version": core.model_version if core else 0,
               "refits_kept_start": core.refits_kept_start() if core else 0}
    if core is not None and core.config.uncertainty_threshold is not None:
        columns["uncertainty_threshold"] = core.config.uncertainty_threshold
    return columns


def run_state(core: Any) -> dict[str, float]:
    """What progress.json records beside the curve so a resumed run continues alike: the rollouts'
    uncertainty threshold (an 'auto' one is computed once per run)."""
    if core is None or core.config.uncertainty_threshold is None:
        return {}
    return {"uncertainty_threshold": core.config.uncertainty_threshold}


def policy_model_return(core: Any, config: TrainConfig, act: Callable[[np.ndarray], np.ndarray],
                        step_penalty: Callable[[np.ndarray], np.ndarray] | None = None) -> float | None:
    """The policy's return in the current world model with the run's own reward (None when selection is
    off): its ``penalty`` lambda, ``step_penalty`` (the run's value penalty, beta included, on the
    model's ``value_samples`` draws; None when off) and its rollouts' uncertainty threshold, over
    episodes as long as the task's real ones (``Task.max_episode_steps``)."""
    if core is None or not config.selection_episodes:
        return None
    return model_return(act, core.model, core.dataset, episodes=config.selection_episodes,
                        horizon=core.task.max_episode_steps, penalty=config.penalty, seed=config.seed,
                        uncertainty_threshold=core.config.uncertainty_threshold, n_samples=core.config.n_samples,
                        step_penalty=step_penalty)


def score_in_model(core: Any, config: TrainConfig, curve: list[dict[str, float]],
                   act: Callable[[np.ndarray], np.ndarray], keep: Callable[[], None],
                   step_penalty: Callable[[np.ndarray], np.ndarray] | None = None) -> dict[str, float]:
    """The ``model_return`` column of a curve row (empty when selection is off; see
    ``policy_model_return``); calls ``keep()`` to save the checkpoint when it beats every earlier row."""
    estimate = policy_model_return(core, config, act, step_penalty)
    if estimate is None:
        return {}
    if is_new_best(curve, estimate):
        keep()
    return {"model_return": estimate}


def selected_checkpoint(log: RunLog, config: TrainConfig, final: EvalResult,
                        evaluate_saved: Callable[[int, int], EvalResult]) -> dict[str, float] | None:
    """The best-``model_return`` checkpoint's row, scored in the real env like the final policy;
    ``evaluate_saved(episodes, seed)`` scores the kept checkpoint when it is not the last one."""
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
