"""The shared engine of the ADEPT environments: one world model, one dataset, many episodes.

``WorldModelCore`` steps batches of (observation, action) through the current world model,
penalises rewards by uncertainty, takes policy updates and runs importance-sampled refits in
a background thread, swapping the refitted model in atomically (``model_version`` + 1).
The single env, the vector env, the SB3 VecEnv and the service all step through it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from adept_env.data.dataset import OfflineDataset
from adept_env.envs.config import EnvConfig
from adept_env.importance import importance_weights
from adept_env.target_policy import TargetPolicy, as_target_policy


@dataclass
class BatchStep:
    """One model call's results for a batch of pairs (float32 arrays; bool flags)."""

    next_observations: np.ndarray
    rewards: np.ndarray
    """Penalised reward r - lambda * u."""
    raw_rewards: np.ndarray
    uncertainty: np.ndarray
    terminated: np.ndarray
    """The task's termination function, or the uncertainty halt."""
    halted: np.ndarray
    """True where the episode ended because the uncertainty passed the threshold."""
    model_version: int
    samples: np.ndarray | None = None
    """(K, B, obs_dim) float32: the K next-observation draws behind ``next_observations``."""


class RefitRunningError(RuntimeError):
    """A refit was asked for while another runs on the same core: one at a time, in order."""


@dataclass
class RefitJob:
    """A refit running (or finished) in the background; ``wait()`` blocks until it ends."""

    job_id: int
    policy_updates: int
    effective_sample_size: float
    ess_fraction: float
    clipped_fraction: float
    status: str = "running"
    """'running', 'done' or 'failed' (also when cancelled: ``error`` then says so)."""
    model_version: int | None = None
    """The version the refitted model was installed as (when done)."""
    seconds: float | None = None
    error: str | None = None
    fit_report: Any = None
    """The world model's FitReport (when done)."""
    _done: threading.Event = field(default_factory=threading.Event, repr=False)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job ends (or ``timeout`` seconds); return True if it ended."""
        return self._done.wait(timeout)

    @property
    def kept_start(self) -> bool:
        """True if the refit ended on its starting weights: no step beat them on the weighted held-out
        loss, so the installed version predicts as the previous one did."""
        return bool(getattr(self.fit_report, "kept_start", False))

    def summary(self) -> dict[str, Any]:
        """Return the job's state as plain values."""
        return {
            "job_id": self.job_id,
            "status": self.status,
            "policy_updates": self.policy_updates,
            "effective_sample_size": self.effective_sample_size,
            "ess_fraction": self.ess_fraction,
            "clipped_fraction": self.clipped_fraction,
            "model_version": self.model_version,
            "seconds": self.seconds,
            "error": self.error,
            "kept_start": self.kept_start,
        }


class WorldModelCore:
    """Owns the world model, the dataset, the agent's latest policy and the refit jobs."""

    def __init__(self, dataset: OfflineDataset, model: Any, config: EnvConfig | None = None,
                 behavior: Any | None = None) -> None:
        self.dataset = dataset
        self.task = dataset.task
        self.config = config or EnvConfig()
        self._model = model
        self._version = int(getattr(model, "version", 0))
        self._behavior = behavior
        self._behavior_log_prob: np.ndarray | None = None
        self._lock = threading.Lock()
        self.policy: TargetPolicy | None = None
        self.policy_updates = 0
        self.jobs: list[RefitJob] = []
        self.skipped_refits = 0
        """Scheduled refits (``refit_every``) not started because one was still running."""
        self._refit_lock = threading.Lock()  # one refit at a time: checked and started under it
        self._refit_thread: threading.Thread | None = None
        self._cancel = threading.Event()
        self._initial_index = dataset.episode_starts()

    # -- stepping ---------------------------------------------------------------------------
    @property
    def model(self) -> Any:
        return self._model

    @property
    def model_version(self) -> int:
        return self._version

    def start_states(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Return ``n`` start observations drawn from the dataset (float32, (n, obs_dim))."""
        pool = self._initial_index if self.config.start_states == "initial" else None
        index = rng.choice(pool, size=n) if pool is not None else rng.integers(0, len(self.dataset), size=n)
        return self.dataset.observations[index].astype(np.float32, copy=True)

    def step(self, observations: np.ndarray, actions: np.ndarray, seed: int) -> BatchStep:
        """Advance a batch one step with the current model (one batched model call)."""
        with self._lock:  # read model and version together, so a swap never splits them
            model, version = self._model, self._version
        pred = model.sample(observations, actions, n_samples=self.config.n_samples, seed=seed)
        uncertainty = np.asarray(pred.uncertainty, np.float32)
        raw = np.asarray(pred.rewards, np.float32)
        halted = np.zeros(len(raw), bool)
        if self.config.uncertainty_threshold is not None:
            halted = uncertainty > self.config.uncertainty_threshold
        terminated = np.asarray(pred.terminated, bool) | halted
        return BatchStep(
            next_observations=np.asarray(pred.next_observations, np.float32),
            rewards=raw - np.float32(self.config.penalty) * uncertainty,
            raw_rewards=raw,
            uncertainty=uncertainty,
            terminated=terminated,
            halted=halted,
            model_version=version,
            samples=None if getattr(pred, "samples", None) is None else np.asarray(pred.samples, np.float32),
        )

    # -- following the policy ---------------------------------------------------------------
    def update_policy(self, policy: Any) -> int:
        """Install the agent's current policy; return the number of updates so far.

        Accepts an SB3 model or policy, an object with ``log_prob``, a log-prob callable, or a
        snapshot path. Starts a background refit every ``config.refit_every`` updates.
        """
        probe = self.dataset.observations[:4]
        self.policy = as_target_policy(policy, self.task.obs_dim, self.task.act_dim, probe=probe)
        self.policy_updates += 1
        every = self.config.refit_every
        if every is not None and self.policy_updates % every == 0:
            self.refit_if_idle()
        return self.policy_updates

    def running_job(self) -> RefitJob | None:
        """Return the refit still running on this core, if any (there is at most one)."""
        return next((job for job in self.jobs if job.status == "running"), None)

    def refit_if_idle(self, **kwargs: Any) -> RefitJob | None:
        """Start a background refit unless one is running (then count it in ``skipped_refits``: the next
        scheduled one refits towards a newer policy anyway); return the job, or None when skipped."""
        try:
            return self.refit(blocking=False, **kwargs)
        except RefitRunningError:
            self.skipped_refits += 1
            return None

    def behavior_log_prob(self) -> np.ndarray:
        """Return log beta(a|s) for every dataset pair (logged, exact, or a fitted BC density)."""
        if self._behavior_log_prob is None:
            from adept_env.data.behavior import dataset_behavior_log_probs

            if self._behavior is not None:  # an explicit behaviour policy wins over logged values
                log_prob = self._behavior.log_prob(self.dataset.observations, self.dataset.actions)
                self._behavior_log_prob = np.asarray(log_prob, np.float64)
            else:
                self._behavior_log_prob = dataset_behavior_log_probs(self.dataset)
        return self._behavior_log_prob

    def refit(self, blocking: bool = False, steps: int | None = None, weighted: bool = True) -> RefitJob:
        """Refit a copy of the model with importance weights pi/beta and swap it in when done.

        The environment keeps stepping the old model meanwhile. ``weighted=False`` refits with
        uniform weights (the ablation). Raises RuntimeError when no policy was given yet.
        """
        if weighted and self.policy is None:
            raise RuntimeError("no policy yet: call update_policy(policy) before refit()")
        with self._refit_lock:
            running = self.running_job()
            if running is not None:
                raise RefitRunningError(f"refit {running.job_id} is still running; wait for it before starting "
                                        "another (one refit at a time per world model)")
            if self._cancel.is_set():
                raise RuntimeError("this world model is shutting down: no new refits")
            if weighted:
                target = self.policy.log_prob(self.dataset.observations, self.dataset.actions)
                iw = importance_weights(target, self.behavior_log_prob(), clip=self.config.weight_clip)
                weights, ess, clipped = iw.weights, iw.effective_sample_size, iw.clipped_fraction
            else:
                weights, ess, clipped = None, float(len(self.dataset)), 0.0
            job = RefitJob(
                job_id=len(self.jobs) + 1,
                policy_updates=self.policy_updates,
                effective_sample_size=ess,
                ess_fraction=ess / len(self.dataset),
                clipped_fraction=clipped,
            )
            self.jobs.append(job)
            steps = steps if steps is not None else self.config.refit_steps
            self._refit_thread = threading.Thread(target=self._run_refit, args=(job, weights, steps), daemon=True,
                                                  name=f"adept-refit-{job.job_id}")
            self._refit_thread.start()
        if blocking:
            job.wait()
            if job.status == "failed":
                raise RuntimeError(f"refit {job.job_id} failed: {job.error}")
        return job

    def _run_refit(self, job: RefitJob, weights: np.ndarray | None, steps: int | None) -> None:
        start = time.perf_counter()
        try:
            candidate = self._model.clone()
            job.fit_report = candidate.fit(self.dataset, weights=weights, steps=steps, warm_start=True, progress=False,
                                           stop=self._cancel)
            if job.fit_report.stopped:
                raise RuntimeError("cancelled: the world model is shutting down; the previous version stays")
            with self._lock:
                self._version += 1
                candidate.version = self._version
                self._model = candidate
                job.model_version = self._version
            job.status = "done"
        except Exception as exc:  # reported on the job; the old model keeps serving
            job.status, job.error = "failed", f"{type(exc).__name__}: {exc}"
        finally:
            job.seconds = time.perf_counter() - start
            job._done.set()

    def cancel_refits(self, timeout: float | None = None) -> bool:
        """Stop the running refit (it ends after its current gradient step, is not installed, and fails
        with 'cancelled') and refuse new ones; wait up to ``timeout`` s; return True if none runs."""
        self._cancel.set()
        thread = self._refit_thread
        if thread is not None:
            thread.join(timeout)
        return self.running_job() is None

    def refits_kept_start(self) -> int:
        """How many finished refits handed back their starting weights (RefitJob.kept_start)."""
        return sum(job.status == "done" and job.kept_start for job in list(self.jobs))

    def wait_for_refits(self, timeout: float | None = None) -> None:
        """Block until every started refit has ended."""
        for job in list(self.jobs):
            job.wait(timeout)


class FollowsAgent:
    """What every env over a core offers the agent: the model version, policy updates and refits.

    Mixed into the single env, the vector env and the SB3 VecEnv; each sets ``self.core``.
    """

    core: WorldModelCore

    @property
    def model_version(self) -> int:
        """The version of the world model stepping now (each installed refit adds one)."""
        return self.core.model_version

    def update_policy(self, policy: Any) -> int:
        """Give the env the agent's current policy (see WorldModelCore.update_policy)."""
        return self.core.update_policy(policy)

    def refit(self, blocking: bool = False, steps: int | None = None, weighted: bool = True) -> RefitJob:
        """Importance-sampled refit towards the latest policy (see WorldModelCore.refit)."""
        return self.core.refit(blocking=blocking, steps=steps, weighted=weighted)
