"""The ADEPT world model: next state, reward, termination and uncertainty for (s, a) batches.

Default form (``predictor="mean_residual"``): a residual-MLP mean predictor gives the expected
normalised state change, and a small conditional flow-matching model gives draws of its
residual; K draws with different noises spread around the mean. The uncertainty is that spread
(``uncertainty="draws"``) or its expectation from the predicted residual scale (``"scale"``, plus
the mean members' disagreement for ``"scale+disagreement"``). ``predictor="plain"`` models the
state change with the flow alone.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from adept_env.atomic import atomic_path
from adept_env.data.dataset import OfflineDataset
from adept_env.diffusion.config import ConfigMismatchError, WorldModelConfig
from adept_env.diffusion.denoiser import Denoiser
from adept_env.diffusion.dtype_probe import resolve_dtype
from adept_env.diffusion.flow import euler_sample, flow_matching_loss
from adept_env.diffusion.mean_predictor import MeanEnsemble
from adept_env.diffusion.normalizer import Normalizer
from adept_env.diffusion.reward import RewardModel
from adept_env.progress import show_progress
from adept_env.tasks import Task, get_task

FORMAT = "adept-env/world-model"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def weighted_sampler(weights: torch.Tensor) -> Callable[[int, torch.Generator], torch.Tensor]:
    """Return ``draw(n, generator)``: n row indices, each row with probability proportional to
    its (non-negative) weight, by inverse-CDF lookup (O(n log rows) per draw)."""
    cdf = torch.cumsum(weights.double(), 0)
    cdf = cdf / cdf[-1]
    last = len(weights) - 1

    def draw(n: int, generator: torch.Generator) -> torch.Tensor:
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        return torch.searchsorted(cdf, u, right=True).clamp_max(last)

    return draw


class WorldModelFileError(ValueError):
    """A saved world model that cannot be read: missing, corrupt, or of another format."""


@dataclass
class Prediction:
    """One batched model step. B pairs, K draws per pair."""

    next_observations: np.ndarray
    """(B, obs_dim) float32: the mean of the K drawn next observations."""
    rewards: np.ndarray
    """(B,) float32: r(s, a, mean next observation), in the task's reward units."""
    terminated: np.ndarray
    """(B,) bool: the task's termination function applied to ``next_observations``."""
    uncertainty: np.ndarray
    """(B,) float32 >= 0, in normalised state-change units (per dimension standard deviations of
    the dataset's s' - s), as ``config.uncertainty`` says: ``draws`` the root-mean-square spread of
    the draws around the mean predictors' average for ``mean_residual``, around the draws' mean for
    ``plain`` (0 there when K = 1); ``scale`` the RMS predicted residual scale; ``scale+disagreement``
    that combined with the mean members' disagreement (the draws' expected spread, noise-free)."""
    samples: np.ndarray
    """(K, B, obs_dim) float32: the K drawn next observations."""


@dataclass
class FitReport:
    """What a fit did: budget used, loss curves, early stopping and the weights' effective size."""

    steps: int
    """Gradient steps taken."""
    seconds: float
    """Wall-clock seconds of the fit."""
    train_losses: list[float] = field(default_factory=list)
    """Mean weighted training loss over each evaluation interval."""
    val_losses: list[float] = field(default_factory=list)
    """Weighted held-out loss at each evaluation (fixed noise, so comparable)."""
    best_val_loss: float = math.inf
    """Lowest held-out loss; the model keeps the weights that reached it."""
    stopped_early: bool = False
    """True if the held-out loss stopped improving before ``steps`` (or the time cap hit)."""
    kept_start: bool = False
    """True if a refit handed back its starting weights: none of its evaluations beat them."""
    stopped: bool = False
    """True if the fit was told to stop (``fit(stop=...)``) before it ended by itself."""
    effective_sample_size: float = 0.0
    """(sum w)^2 / sum w^2 over the training pairs; equals their count for uniform weights."""
    n_train: int = 0
    n_val: int = 0

    @property
    def seconds_per_1k_steps(self) -> float:
        return 1000.0 * self.seconds / max(self.steps, 1)


class _Networks(nn.Module):
    """Every tensor of the model in one module, so one state dict saves and loads it."""

    def __init__(self, task: Task, config: WorldModelConfig) -> None:
        super().__init__()
        cond_dim = task.obs_dim + task.act_dim
        self.normalizer = Normalizer(task.obs_dim, task.act_dim)
        self.denoiser = Denoiser(task.obs_dim, cond_dim, config.denoiser_width, config.denoiser_blocks,
                                 config.time_features)
        self.mean = (MeanEnsemble(config.mean_members, cond_dim, task.obs_dim, config.mean_width, config.mean_blocks,
                                  config.scale_width if config.heteroscedastic else 0)
                     if config.predictor == "mean_residual" else None)
        self.reward = RewardModel(cond_dim, task.obs_dim, config.reward_width)
        # Per-dimension scale of the mean predictor's residual; the flow models residual / scale.
        self.register_buffer("residual_scale", torch.ones(task.obs_dim))


class WorldModel:
    """A learned simulator of one task; ``sample`` is one batched environment step."""

    def __init__(self, task: Task, config: WorldModelConfig, seed: int = 0) -> None:
        self.task = task
        self.config = config
        self.version = 0
        self.fitted = False
        self.seed = seed
        self.nets = self._build(seed)
        self._generator = torch.Generator().manual_seed(seed)
        self._sample_dtype: torch.dtype | None = None

    def _build(self, seed: int) -> _Networks:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return _Networks(self.task, self.config).eval()

    @classmethod
    def create(cls, task: str | Task, config: WorldModelConfig | None = None, seed: int = 0) -> WorldModel:
        """Return an unfitted model of ``task`` with weights initialised from ``seed``."""
        return cls(get_task(task), config or WorldModelConfig.default(), seed)

    # ------------------------------------------------------------------ sampling

    @property
    def device(self) -> torch.device:
        """The device every network and buffer of the model is on (``to`` moves them)."""
        return self.nets.residual_scale.device

    def to(self, device: str | torch.device) -> WorldModel:
        """Move every network and buffer to ``device`` ('auto', 'cpu', 'cuda', 'cuda:1', ...); return self.

        Sampling and fitting then run there; noise still comes from the model's CPU generators, so a
        seed gives the same draws on any device. Raises ValueError for a device torch does not see.
        """
        from adept_env.devices import resolve_device

        target = resolve_device(device) if isinstance(device, str) else torch.device(device)
        if target != self.device:
            self.nets.to(target)
            self._sample_dtype = None  # the precision is chosen per device type
        return self

    @property
    def sample_dtype(self) -> torch.dtype:
        """The precision ``sample`` runs in: on a CPU probed once when the config says ``auto`` (bf16 only
        where it measures faster); on CUDA bf16 where the GPU supports it; float32 elsewhere."""
        if self._sample_dtype is None:
            kind = self.device.type
            if kind == "cpu" or self.config.dtype != "auto":
                self._sample_dtype = resolve_dtype(self.config.dtype, self.config.denoiser_width,
                                                   self.config.denoiser_blocks)
            elif kind == "cuda" and torch.cuda.is_bf16_supported():
                self._sample_dtype = torch.bfloat16
            else:
                self._sample_dtype = torch.float32
        return self._sample_dtype

    def _check_pairs(self, observations: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        obs = np.ascontiguousarray(observations, dtype=np.float32)
        act = np.ascontiguousarray(actions, dtype=np.float32)
        t = self.task
        if obs.ndim != 2 or act.ndim != 2 or obs.shape[1] != t.obs_dim or act.shape[1] != t.act_dim \
                or len(obs) != len(act):
            raise ValueError(f"{t.name} needs observations (B, {t.obs_dim}) and actions (B, {t.act_dim}); "
                             f"got {obs.shape} and {act.shape}")
        return obs, act

    def sample(
        self,
        observations: np.ndarray,
        actions: np.ndarray,
        n_samples: int | None = None,
        seed: int | None = None,
    ) -> Prediction:
        """Step B (observation, action) pairs: K next-state draws, their mean, reward, termination.

        ``n_samples`` is K (default ``config.n_samples``). With ``seed`` the draws are a pure
        function of the inputs and the seed; without it they come from the model's own
        generator (seeded at creation), so a sequence of calls reproduces too.
        """
        obs_np, act_np = self._check_pairs(observations, actions)
        k = self.config.n_samples if n_samples is None else int(n_samples)
        if k < 1:
            raise ValueError(f"n_samples must be >= 1, got {k}")
        generator = self._generator if seed is None else torch.Generator().manual_seed(seed)
        nets, cfg = self.nets, self.config
        batch, dim = obs_np.shape
        device = self.device
        bf16 = batch >= cfg.bf16_min_batch and self.sample_dtype == torch.bfloat16
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            obs = torch.from_numpy(obs_np).to(device)
            cond = nets.normalizer.condition(obs, torch.from_numpy(act_np).to(device))
            if cfg.antithetic and k >= 2:
                half = torch.randn((k // 2, batch, dim), generator=generator)
                parts = [half, -half]
                if k % 2:
                    parts.append(torch.randn((1, batch, dim), generator=generator))
                noise = torch.cat(parts)
            else:
                noise = torch.randn((k, batch, dim), generator=generator)
            noise = noise.to(device)  # drawn on the CPU generator: the same draws on any device
            draws = euler_sample(nets.denoiser, noise, cond, cfg.sampling_steps, cfg.guidance).float()
            if nets.mean is not None:
                members, log_std = nets.mean(cond)  # (M, B, D) each
                members = members.float()
                center = members.mean(0)
                scale = nets.residual_scale if log_std is None else log_std.float().mean(0).exp()
                # draw k rides on member k mod M: members' disagreement adds to the spread
                draws = members[torch.arange(k, device=device) % len(members)] + draws * scale
                if cfg.uncertainty == "draws":
                    uncertainty = (draws - center).square().mean(dim=(0, 2)).sqrt()
                else:  # the draws' expected spread, without their sampling noise
                    variance = scale.square().expand_as(center).mean(-1)
                    if cfg.uncertainty == "scale+disagreement":
                        variance = variance + members.var(0, correction=0).mean(-1)
                    uncertainty = variance.sqrt()
            else:
                center = draws.mean(0)
                uncertainty = (draws - center).square().mean(dim=(0, 2)).sqrt()
            mean_delta = draws.mean(0)
            rewards = nets.normalizer.unreward(nets.reward(cond, mean_delta).float())
            samples = nets.normalizer.next_obs(obs, draws)
            next_obs = samples.mean(0)
        next_np = next_obs.float().cpu().numpy()
        return Prediction(
            next_observations=next_np,
            rewards=rewards.float().cpu().numpy(),
            terminated=self.task.is_terminated(next_np),
            uncertainty=uncertainty.float().cpu().numpy(),
            samples=samples.float().cpu().numpy(),
        )

    # ------------------------------------------------------------------ fitting

    def _example_losses(self, cond: torch.Tensor, delta: torch.Tensor, reward: torch.Tensor,
                        generator: torch.Generator, cond_dropout: float,
                        report_units: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Return per-example (state loss, reward loss), each (B,).

        The residual flow trains on residual / residual_scale; with ``report_units`` its error is
        weighted back by scale^2, so held-out losses stay comparable when the scale is updated.
        """
        nets = self.nets
        if nets.mean is not None:
            members, log_std = nets.mean(cond)  # (M, B, D) each
            state = (members - delta).square().mean(-1).sum(0)
            residual = delta - members.detach().mean(0)
            if log_std is None:
                scale = nets.residual_scale
            else:  # Gaussian NLL of the residual under the predicted scale
                log_std = log_std.mean(0)
                state = state + 0.5 * (residual.square() * torch.exp(-2.0 * log_std) + 2.0 * log_std).mean(-1)
                scale = log_std.detach().exp()
            target = residual / scale
            weights = scale.square() if report_units else None
            state = state + flow_matching_loss(nets.denoiser, target, cond, generator, cond_dropout, weights)
        else:
            state = flow_matching_loss(nets.denoiser, delta, cond, generator, cond_dropout)
        reward_loss = (nets.reward(cond, delta) - reward).square()
        return state, reward_loss

    def fit(
        self,
        dataset: OfflineDataset,
        weights: np.ndarray | None = None,
        steps: int | None = None,
        warm_start: bool = True,
        progress: bool = True,
        seed: int = 0,
        keep_start: bool = True,
        stop: threading.Event | None = None,
    ) -> FitReport:
        """Fit dynamics and reward to ``dataset``, each pair counted in proportion to ``weights``.

        ``weights`` (one per transition, >= 0, not all 0) are rescaled to mean 1; with
        ``config.weighted_sampling`` minibatches are drawn in proportion to them, else their
        losses are multiplied by them. A held-out split (``config.val_fraction``) decides early
        stopping and the model keeps its best held-out weights; a refit counts its starting
        weights as a candidate, so it never ends worse on the weighted held-out loss than it began
        (``keep_start=False`` leaves them out: the refit then hands back its own best weights).
        ``warm_start`` continues from the current weights and normaliser (a refit, default
        ``config.refit_steps`` steps at ``config.refit_learning_rate``); otherwise, or on the first fit, the
        normaliser is set from the data (default ``config.steps`` steps). When ``stop`` is set the fit
        ends after the current step (``FitReport.stopped``), with its best weights so far. Returns a FitReport.
        """
        cfg = self.config
        if dataset.observations.shape[1] != self.task.obs_dim or dataset.actions.shape[1] != self.task.act_dim:
            raise ValueError(f"dataset of {dataset.task.name} does not match the model's task {self.task.name}")
        n = len(dataset)
        if n < 10:
            raise ValueError(f"need at least 10 transitions to fit, got {n}")
        w = np.ones(n) if weights is None else np.asarray(weights, np.float64).reshape(-1)
        if len(w) != n or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise ValueError(f"weights must be {n} finite non-negative numbers, not all zero")
        rng = np.random.default_rng(seed)
        order = rng.permutation(n)
        n_val = min(cfg.val_max, max(1, int(round(n * cfg.val_fraction))))
        val_idx, train_idx = order[:n_val], order[n_val:]
        w_train, w_val = w[train_idx], w[val_idx]
        ess = float(w_train.sum() ** 2 / max(np.square(w_train).sum(), 1e-300))
        w_train = w_train / w_train.mean()
        w_val = w_val / w_val.mean() if w_val.sum() > 0 else np.ones_like(w_val)

        refit = warm_start and self.fitted
        if not warm_start:
            self.nets = self._build(seed)
        if not refit:
            self.nets.normalizer.fit(dataset.observations[train_idx], dataset.actions[train_idx],
                                     dataset.next_observations[train_idx], dataset.rewards[train_idx])
            self.nets.residual_scale.fill_(1.0)
        total_steps = int(steps if steps is not None else (cfg.refit_steps if refit else cfg.steps))
        if total_steps < 1:
            raise ValueError(f"steps must be >= 1, got {total_steps}")

        train = self._tensors(dataset, train_idx, w_train)
        val = self._tensors(dataset, val_idx, w_val)
        nets = self.nets
        params = [p for p in nets.parameters() if p.requires_grad]
        base_lr = cfg.refit_learning_rate if refit else cfg.learning_rate
        optimizer = torch.optim.AdamW(params, lr=base_lr, weight_decay=cfg.weight_decay)
        generator = torch.Generator().manual_seed(seed)
        report = FitReport(steps=0, seconds=0.0, effective_sample_size=ess, n_train=len(train_idx), n_val=n_val)
        best_state = copy.deepcopy(nets.state_dict())
        if refit and keep_start:  # the starting weights compete too: a refit never hands back a worse model
            report.best_val_loss = self._val_loss(val)
            report.kept_start = True  # until an evaluation beats them
        draw = weighted_sampler(train["weight"].cpu()) if weights is not None and cfg.weighted_sampling else None
        if draw is not None:  # rows come in proportion to their weights; each then counts once
            train["weight"] = torch.ones_like(train["weight"])
        since_best, running, running_n = 0, 0.0, 0
        quiet = not show_progress(progress)
        start = time.perf_counter()
        nets.train()
        bar = tqdm(total=total_steps, desc=f"fit {self.task.name} world model", disable=quiet, mininterval=1.0)
        try:
            for step in range(1, total_steps + 1):
                elapsed = time.perf_counter() - start
                fraction = step / total_steps
                if cfg.max_fit_seconds:
                    fraction = max(fraction, elapsed / cfg.max_fit_seconds)
                for group in optimizer.param_groups:  # cosine from lr to lr / 10 over the fit
                    group["lr"] = base_lr * (0.55 + 0.45 * math.cos(math.pi * min(fraction, 1.0)))
                if draw is not None:
                    idx = draw(cfg.batch_size, generator)
                else:
                    idx = torch.randint(len(train_idx), (cfg.batch_size,), generator=generator)
                idx = idx.to(train["cond"].device)
                state, reward = self._example_losses(train["cond"][idx], train["delta"][idx], train["reward"][idx],
                                                     generator, cfg.cond_dropout)
                loss = (train["weight"][idx] * (state + cfg.reward_loss_weight * reward)).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                optimizer.step()
                running += float(loss.detach())
                running_n += 1
                report.steps = step
                bar.update(1)
                out_of_time = cfg.max_fit_seconds is not None and elapsed >= cfg.max_fit_seconds
                if stop is not None and stop.is_set():
                    report.stopped = True
                    break
                if step % cfg.eval_every == 0 or step == total_steps or out_of_time:
                    val_loss = self._val_loss(val)
                    report.train_losses.append(running / running_n)
                    report.val_losses.append(val_loss)
                    running, running_n = 0.0, 0
                    bar.set_postfix(val=f"{val_loss:.4f}")
                    if val_loss < report.best_val_loss:
                        report.best_val_loss, report.kept_start = val_loss, False
                        best_state = copy.deepcopy(nets.state_dict())
                        since_best = 0
                    else:
                        since_best += 1
                    self._update_residual_scale(val)
                    if since_best >= cfg.patience or out_of_time:
                        report.stopped_early = step < total_steps
                        break
        finally:
            bar.close()
            nets.load_state_dict(best_state)
            nets.eval()
        report.seconds = time.perf_counter() - start
        self.fitted = True
        return report

    def _tensors(self, dataset: OfflineDataset, idx: np.ndarray, weights: np.ndarray) -> dict[str, torch.Tensor]:
        norm, device = self.nets.normalizer, self.device

        def tensor(values: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.asarray(values, np.float32)).to(device)

        with torch.no_grad():
            obs, act = tensor(dataset.observations[idx]), tensor(dataset.actions[idx])
            nxt, rew = tensor(dataset.next_observations[idx]), tensor(dataset.rewards[idx])
            return {
                "cond": norm.condition(obs, act),
                "delta": norm.delta(obs, nxt),
                "reward": norm.reward(rew),
                "weight": tensor(weights),
            }

    def _val_loss(self, val: dict[str, torch.Tensor]) -> float:
        """Weighted held-out loss with a fixed noise generator, so evaluations are comparable."""
        generator = torch.Generator().manual_seed(12345)
        self.nets.eval()
        with torch.no_grad():
            state, reward = self._example_losses(val["cond"], val["delta"], val["reward"], generator, 0.0,
                                                report_units=True)
            loss = float((val["weight"] * (state + self.config.reward_loss_weight * reward)).mean())
        self.nets.train()
        return loss

    def _update_residual_scale(self, val: dict[str, torch.Tensor]) -> None:
        """Set the residual scale to the held-out RMS residual of the mean predictor, per dimension."""
        if self.nets.mean is None or self.config.heteroscedastic:
            return
        with torch.no_grad():
            residual = val["delta"] - self.nets.mean(val["cond"])[0].mean(0)
            self.nets.residual_scale.copy_(residual.square().mean(0).sqrt().clamp_min(1e-3))

    # ------------------------------------------------------------------ copies and files

    def clone(self) -> WorldModel:
        """Return an independent deep copy (weights, config, version, generator state)."""
        other = WorldModel.__new__(WorldModel)
        other.task, other.config, other.version = self.task, copy.deepcopy(self.config), self.version
        other.fitted, other.seed = self.fitted, self.seed
        other.nets = copy.deepcopy(self.nets)
        other._generator = torch.Generator()
        other._generator.set_state(self._generator.get_state())
        other._sample_dtype = self._sample_dtype
        return other

    def save(self, path: str | Path) -> Path:
        """Write ``path/model.safetensors`` then ``path/config.json``, each atomically; return ``path``.

        The JSON records the task, config, version and the weights' SHA-256, so a torn pair
        (new weights, old JSON) is detected on load.
        """
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {key: value.detach().cpu().contiguous().clone() for key, value in self.nets.state_dict().items()}
        with atomic_path(directory / WEIGHTS_FILE) as tmp:
            save_file(tensors, str(tmp), metadata={"format": FORMAT})
            digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
        meta: dict[str, Any] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "task": self.task.name,
            "obs_dim": self.task.obs_dim,
            "act_dim": self.task.act_dim,
            "version": self.version,
            "fitted": self.fitted,
            "seed": self.seed,
            "config": self.config.to_dict(),
            "weights_sha256": digest,
        }
        with atomic_path(directory / CONFIG_FILE) as tmp:
            tmp.write_text(json.dumps(meta, indent=2))
        return directory

    @classmethod
    def load(cls, path: str | Path, expected_config: WorldModelConfig | None = None,
             device: str | torch.device = "cpu") -> WorldModel:
        """Read a model written by ``save`` onto ``device`` (any device, whichever one saved it); never
        unpickles anything.

        Raises ConfigMismatchError (listing every differing field) if ``expected_config`` is
        given and differs from the saved one, and WorldModelFileError for missing or corrupt files.
        """
        directory = Path(path)
        config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
        if not config_path.exists() or not weights_path.exists():
            raise WorldModelFileError(
                f"{directory} is not a saved world model (needs {CONFIG_FILE} and {WEIGHTS_FILE})")
        try:
            meta = json.loads(config_path.read_text())
        except json.JSONDecodeError as exc:
            raise WorldModelFileError(f"{config_path} is not valid JSON: {exc}") from exc
        if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
            raise WorldModelFileError(f"{config_path} is not a {FORMAT} v{FORMAT_VERSION} file "
                                      f"(format {meta.get('format')!r} v{meta.get('format_version')!r})")
        config = WorldModelConfig.from_dict(meta["config"])
        if expected_config is not None:
            diffs = config.differences(expected_config)
            if diffs:
                raise ConfigMismatchError(f"the world model at {directory} was saved with a different config "
                                          f"(saved != expected): {'; '.join(diffs)}")
        if hashlib.sha256(weights_path.read_bytes()).hexdigest() != meta.get("weights_sha256"):
            raise WorldModelFileError(f"{weights_path} does not match the checksum in {config_path} "
                                      "(a torn or edited save)")
        model = cls(get_task(meta["task"]), config, int(meta.get("seed", 0)))
        try:
            model.nets.load_state_dict(load_file(str(weights_path)), strict=True)
        except RuntimeError as exc:
            raise WorldModelFileError(f"{weights_path} does not fit the saved config: {exc}") from exc
        model.version = int(meta.get("version", 0))
        model.fitted = bool(meta.get("fitted", True))
        return model.to(device)
