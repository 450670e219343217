"""The baseline: a probabilistic MLP ensemble (MBPO/MOPO/MOBILE style), for side-by-side benchmarks.

Seven Gaussian members predict the normalised state change and reward jointly; the five with
the lowest held-out error are the elites. Trained on the same data, under the same wall-clock
budget as the diffusion model.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from adept_env.data.dataset import OfflineDataset
from adept_env.diffusion.normalizer import Normalizer
from adept_env.progress import show_progress
from adept_env.tasks import Task, get_task


@dataclass
class EnsembleConfig:
    """Size and training of the probabilistic ensemble (MOPO's defaults where it has them)."""

    members: int = 7
    """Gaussian members trained in parallel."""
    elites: int = 5
    """Members with the lowest held-out MSE used for prediction."""
    width: int = 200
    """Hidden width of each member."""
    layers: int = 4
    """Hidden layers of each member (SiLU)."""
    batch_size: int = 256
    """Minibatch per member (each member draws its own)."""
    learning_rate: float = 1e-3
    """Adam learning rate."""
    weight_decay: float = 5e-5
    """L2 penalty on the weights."""
    steps: int = 100_000
    """Maximum gradient steps."""
    max_fit_seconds: float | None = None
    """Wall-clock cap of the fit, seconds."""
    val_fraction: float = 0.05
    """Held-out share for elite selection and snapshotting."""
    val_max: int = 5_000
    """At most this many held-out pairs."""
    eval_every: int = 500
    """Steps between held-out evaluations."""


class EnsembleLinear(nn.Module):
    """E independent linear layers applied to (E, B, in) in one batched matmul."""

    def __init__(self, members: int, fan_in: int, fan_out: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(fan_in)
        self.weight = nn.Parameter(torch.empty(members, fan_in, fan_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(members, 1, fan_out).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class GaussianEnsembleNet(nn.Module):
    """Returns (mean, log-variance) of [normalised state change, normalised reward] per member."""

    def __init__(self, members: int, in_dim: int, out_dim: int, width: int, layers: int) -> None:
        super().__init__()
        dims = [in_dim] + [width] * layers
        self.hidden = nn.ModuleList(EnsembleLinear(members, a, b) for a, b in zip(dims[:-1], dims[1:], strict=True))
        self.head = EnsembleLinear(members, width, 2 * out_dim)
        self.max_logvar = nn.Parameter(torch.full((out_dim,), 0.5))
        self.min_logvar = nn.Parameter(torch.full((out_dim,), -10.0))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for layer in self.hidden:
            x = nn.functional.silu(layer(x))
        mean, logvar = self.head(x).chunk(2, dim=-1)
        logvar = self.max_logvar - nn.functional.softplus(self.max_logvar - logvar)
        logvar = self.min_logvar + nn.functional.softplus(logvar - self.min_logvar)
        return mean, logvar


@dataclass
class EnsemblePrediction:
    """Point predictions and two uncertainty measures for B pairs."""

    next_observations: np.ndarray
    """(B, obs_dim) float32: mean over the elites of their mean next observations."""
    rewards: np.ndarray
    """(B,) float32: mean over the elites of their mean rewards."""
    aleatoric: np.ndarray
    """(B,) float32: MOPO's penalty, the largest elite's norm of predicted std (normalised units)."""
    disagreement: np.ndarray
    """(B,) float32: RMS over dimensions of the std of the elites' means (normalised units)."""


class ProbabilisticEnsemble:
    """A trained ensemble of Gaussian MLPs over normalised (s, a) -> (s' - s, r)."""

    def __init__(self, task: str | Task, config: EnsembleConfig | None = None, seed: int = 0) -> None:
        self.task = get_task(task)
        self.config = config or EnsembleConfig()
        self.normalizer = Normalizer(self.task.obs_dim, self.task.act_dim)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = GaussianEnsembleNet(self.config.members, self.task.obs_dim + self.task.act_dim,
                                           self.task.obs_dim + 1, self.config.width, self.config.layers)
        self.elite_index = torch.arange(self.config.elites)
        self.seed = seed

    def fit(self, dataset: OfflineDataset, progress: bool = True) -> dict[str, float]:
        """Train with the Gaussian NLL; return steps, seconds and the elites' held-out MSE."""
        cfg, norm = self.config, self.normalizer
        rng = np.random.default_rng(self.seed)
        n = len(dataset)
        order = rng.permutation(n)
        n_val = min(cfg.val_max, max(1, int(round(n * cfg.val_fraction))))
        val_idx, train_idx = order[:n_val], order[n_val:]
        norm.fit(dataset.observations[train_idx], dataset.actions[train_idx],
                 dataset.next_observations[train_idx], dataset.rewards[train_idx])

        def tensors(idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
            obs = torch.from_numpy(dataset.observations[idx])
            act = torch.from_numpy(dataset.actions[idx])
            nxt = torch.from_numpy(dataset.next_observations[idx])
            rew = torch.from_numpy(dataset.rewards[idx])
            target = torch.cat([norm.delta(obs, nxt), norm.reward(rew).unsqueeze(-1)], dim=-1)
            return norm.condition(obs, act), target

        x_train, y_train = tensors(train_idx)
        x_val, y_val = tensors(val_idx)
        net = self.net
        decay = [layer.weight for layer in [*net.hidden, net.head]]
        others = [p for p in net.parameters() if all(p is not d for d in decay)]
        optimizer = torch.optim.Adam([{"params": decay, "weight_decay": cfg.weight_decay},
                                      {"params": others, "weight_decay": 0.0}], lr=cfg.learning_rate)
        generator = torch.Generator().manual_seed(self.seed)
        best = torch.full((cfg.members,), math.inf)
        best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        quiet = not show_progress(progress)
        start, step = time.perf_counter(), 0
        bar = tqdm(total=cfg.steps, desc=f"fit {self.task.name} ensemble", disable=quiet, mininterval=1.0)
        for step in range(1, cfg.steps + 1):
            idx = torch.randint(len(train_idx), (cfg.members, cfg.batch_size), generator=generator)
            mean, logvar = net(x_train[idx])
            nll = ((mean - y_train[idx]).square() * torch.exp(-logvar) + logvar).mean()
            loss = nll + 0.01 * (net.max_logvar.sum() - net.min_logvar.sum())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            bar.update(1)
            out_of_time = cfg.max_fit_seconds is not None and time.perf_counter() - start >= cfg.max_fit_seconds
            if step % cfg.eval_every == 0 or out_of_time or step == cfg.steps:
                mse = self._val_mse(x_val, y_val)
                improved = mse < best
                best = torch.where(improved, mse, best)
                state = net.state_dict()
                for key, value in state.items():  # per-member snapshots (MBPO)
                    if key.startswith(("hidden", "head")):
                        best_state[key][improved] = value.detach()[improved]
                    elif improved.any():
                        best_state[key] = value.detach().clone()
                bar.set_postfix(val_mse=f"{float(best.min()):.4f}")
                if out_of_time:
                    break
        bar.close()
        net.load_state_dict(best_state)
        self.elite_index = torch.argsort(best)[: cfg.elites]
        return {"steps": step, "seconds": time.perf_counter() - start,
                "elite_val_mse": float(best[self.elite_index].mean())}

    def _val_mse(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            mean, _ = self.net(x.unsqueeze(0).expand(self.config.members, *x.shape))
            return (mean - y).square().mean(dim=(1, 2))

    def predict(self, observations: np.ndarray, actions: np.ndarray) -> EnsemblePrediction:
        """Return the elites' mean prediction and their uncertainty for B pairs."""
        norm, dim = self.normalizer, self.task.obs_dim
        with torch.inference_mode():
            obs = torch.from_numpy(np.ascontiguousarray(observations, np.float32))
            cond = norm.condition(obs, torch.from_numpy(np.ascontiguousarray(actions, np.float32)))
            elites = len(self.elite_index)
            mean, logvar = self.net(cond.unsqueeze(0).expand(self.config.members, *cond.shape))
            mean, logvar = mean[self.elite_index], logvar[self.elite_index]
            avg = mean.mean(0)
            next_obs = norm.next_obs(obs, avg[:, :dim])
            rewards = norm.unreward(avg[:, dim])
            aleatoric = torch.exp(0.5 * logvar[..., :dim]).norm(dim=-1).max(0).values
            disagreement = mean[..., :dim].std(0, correction=0).square().mean(-1).sqrt() if elites > 1 \
                else torch.zeros(len(obs))
        return EnsemblePrediction(next_obs.numpy(), rewards.numpy(), aleatoric.numpy(), disagreement.numpy())
