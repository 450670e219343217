"""Implicit Q-Learning (Kostrikov et al., 2021), readable top to bottom, after CORL's iql.py.

Expectile regression fits V(s) to the upper expectile of Q(s, a) over dataset actions; twin Q
functions regress onto r + gamma * (1 - done) * V(s'); the actor is trained by advantage-weighted
regression, exp(beta * (Q - V)) * log pi(a|s). It never queries actions outside the data, which
is what makes it safe offline; ``update`` takes any batch source (real, synthetic, or mixed).
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from adept_env.agents.iql_config import IQLConfig
from adept_env.atomic import atomic_path

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


class Standardize(nn.Module):
    """(x - mean) / std with fixed buffers (identity until set): inputs stay in dataset units outside."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def mlp(inp: int, out: int, hidden: int, final: nn.Module | None = None) -> nn.Sequential:
    """Return a two-hidden-layer ReLU MLP whose first layer standardises its input (identity until set)."""
    layers: list[nn.Module] = [Standardize(inp), nn.Linear(inp, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                               nn.ReLU(), nn.Linear(hidden, out)]
    if final is not None:
        layers.append(final)
    return nn.Sequential(*layers)


class GaussianActor(nn.Module):
    """pi(a|s) = Normal(tanh(f(s)), exp(log_std)), log_std a learned vector (CORL's choice)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int) -> None:
        super().__init__()
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.net = mlp(obs_dim, act_dim, hidden, nn.Tanh())
        self.log_std = nn.Parameter(torch.zeros(act_dim))

    @property
    def device(self) -> torch.device:
        return self.log_std.device

    def distribution(self, obs: torch.Tensor) -> torch.distributions.Normal:
        std = self.log_std.clamp(LOG_STD_MIN, LOG_STD_MAX).exp()
        return torch.distributions.Normal(self.net(obs), std)

    def log_prob(self, observations: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Return log pi(a|s) per row (float64, nats) for numpy batches."""
        with torch.no_grad():
            obs = torch.as_tensor(np.asarray(observations, np.float32), device=self.device)
            act = torch.as_tensor(np.asarray(actions, np.float32), device=self.device)
            return self.distribution(obs).log_prob(act).sum(-1).double().cpu().numpy()

    def act(self, observations: np.ndarray, deterministic: bool = True,
            generator: torch.Generator | None = None) -> np.ndarray:
        """Return actions in [-1, 1] (float32): the mean, or a clipped sample."""
        with torch.no_grad():
            obs = torch.as_tensor(np.asarray(observations, np.float32), device=self.device)
            dist = self.distribution(obs)
            if deterministic:
                action = dist.mean
            else:  # the noise is drawn on the CPU (the generator's), the same on any device
                action = dist.mean + dist.stddev * torch.randn(dist.mean.shape, generator=generator).to(self.device)
            return action.clamp(-1.0, 1.0).cpu().numpy()


class IQL:
    """The IQL learner: networks, optimisers and one ``update`` per batch."""

    def __init__(self, obs_dim: int, act_dim: int, config: IQLConfig | None = None,
                 device: str | torch.device = "cpu") -> None:
        from adept_env.devices import resolve_device

        self.config = config or IQLConfig()
        c = self.config
        self.device = resolve_device(device) if isinstance(device, str) else torch.device(device)
        torch.manual_seed(c.seed)
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.actor = GaussianActor(obs_dim, act_dim, c.hidden).to(self.device)
        self.q1 = mlp(obs_dim + act_dim, 1, c.hidden).to(self.device)
        self.q2 = mlp(obs_dim + act_dim, 1, c.hidden).to(self.device)
        self.q1_target, self.q2_target = copy.deepcopy(self.q1), copy.deepcopy(self.q2)
        self.value = mlp(obs_dim, 1, c.hidden).to(self.device)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=c.actor_lr)
        self.q_opt = torch.optim.Adam([*self.q1.parameters(), *self.q2.parameters()], lr=c.critic_lr)
        self.v_opt = torch.optim.Adam(self.value.parameters(), lr=c.critic_lr)
        self.actor_sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.actor_opt, c.max_steps)
        self.steps = 0

    def set_state_normalizer(self, mean: np.ndarray, std: np.ndarray, eps: float = 1e-3) -> None:
        """Standardise observations by ``mean`` and ``std + eps`` in every network (CORL's IQL)."""
        mean_t = torch.as_tensor(np.asarray(mean, np.float32))
        std_t = torch.as_tensor(np.asarray(std, np.float32)) + eps
        if mean_t.shape != (self.obs_dim,) or std_t.shape != (self.obs_dim,):
            raise ValueError(f"state mean and std must have shape ({self.obs_dim},), got {mean_t.shape} and "
                             f"{std_t.shape}")
        if not torch.all(torch.isfinite(mean_t)) or not torch.all(torch.isfinite(std_t)):
            raise ValueError("state mean and std must be finite")
        zeros, ones = torch.zeros(self.act_dim), torch.ones(self.act_dim)  # copy_ moves them to the device
        with torch.no_grad():
            for net in (self.actor.net, self.value):
                net[0].mean.copy_(mean_t)
                net[0].std.copy_(std_t)
            for net in (self.q1, self.q2, self.q1_target, self.q2_target):  # inputs are (s, a): a is left as is
                net[0].mean.copy_(torch.cat([mean_t, zeros]))
                net[0].std.copy_(torch.cat([std_t, ones]))

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One gradient step on each network from a batch with keys observations, actions,
        rewards, next_observations, dones (float tensors; rewards and dones of shape (B,)).

        Returns the losses and the mean advantage.
        """
        c = self.config
        batch = {key: value.to(self.device) for key, value in batch.items()}
        obs, act = batch["observations"], batch["actions"]
        rew, nxt, done = batch["rewards"], batch["next_observations"], batch["dones"]
        sa = torch.cat([obs, act], -1)
        with torch.no_grad():
            q_target = torch.min(self.q1_target(sa), self.q2_target(sa)).squeeze(-1)
            next_v = self.value(nxt).squeeze(-1)
        # Value: expectile regression towards the target Q of dataset actions.
        v = self.value(obs).squeeze(-1)
        adv = q_target - v
        weight = torch.abs(c.expectile - (adv < 0).float())
        v_loss = (weight * adv.square()).mean()
        self.v_opt.zero_grad(set_to_none=True)
        v_loss.backward()
        self.v_opt.step()
        # Q: one-step TD onto V(s'), never onto a maximising action.
        target = rew + c.discount * (1.0 - done) * next_v
        q_loss = F.mse_loss(self.q1(sa).squeeze(-1), target) + F.mse_loss(self.q2(sa).squeeze(-1), target)
        self.q_opt.zero_grad(set_to_none=True)
        q_loss.backward()
        self.q_opt.step()
        # Actor: advantage-weighted regression onto dataset actions.
        exp_adv = torch.exp(c.beta * adv.detach()).clamp(max=c.max_weight)
        log_prob = self.actor.distribution(obs).log_prob(act).sum(-1)
        actor_loss = -(exp_adv * log_prob).mean()
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_opt.step()
        self.actor_sched.step()
        with torch.no_grad():
            for net, tgt in ((self.q1, self.q1_target), (self.q2, self.q2_target)):
                for p, tp in zip(net.parameters(), tgt.parameters(), strict=True):
                    tp.mul_(1 - c.tau).add_(p, alpha=c.tau)
        self.steps += 1
        return {"value_loss": v_loss.item(), "q_loss": q_loss.item(), "actor_loss": actor_loss.item(),
                "advantage": adv.mean().item()}

    # The env's update_policy and evaluate() accept the agent itself.
    def log_prob(self, observations: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Return the actor's log pi(a|s) per row (float64, nats)."""
        return self.actor.log_prob(observations, actions)

    def act(self, observations: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """Return the actor's actions in [-1, 1] for a batch (float32)."""
        return self.actor.act(observations, deterministic)

    # -- checkpoints: safetensors for tensors, JSON for the rest ----------------------------
    def _modules(self) -> dict[str, Any]:
        return {"actor": self.actor, "q1": self.q1, "q2": self.q2, "q1_target": self.q1_target,
                "q2_target": self.q2_target, "value": self.value, "actor_opt": self.actor_opt,
                "q_opt": self.q_opt, "v_opt": self.v_opt}

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Return every network and optimiser tensor, flattened to ``module.key`` names."""
        out: dict[str, torch.Tensor] = {}
        for name, module in self._modules().items():
            for key, value in _flatten(module.state_dict()).items():
                if isinstance(value, torch.Tensor):
                    out[f"{name}.{key}"] = value.detach().cpu().clone().contiguous()
        return out

    def save(self, path: str | Path) -> Path:
        """Write the agent (weights + optimiser state) as one safetensors file, atomically."""
        path = Path(path)
        meta = {"config": str(asdict(self.config)), "steps": str(self.steps),
                "dims": f"{self.obs_dim},{self.act_dim}"}
        with atomic_path(path) as tmp:
            save_file(self.state_tensors(), str(tmp), metadata=meta)
        return path

    def load(self, path: str | Path) -> None:
        """Restore a file written by ``save`` (same sizes) into this agent, optimisers included."""
        from safetensors import safe_open

        with safe_open(str(path), "pt") as fh:
            meta = fh.metadata() or {}
        if meta.get("dims") != f"{self.obs_dim},{self.act_dim}":
            raise ValueError(f"{path} is not an IQL checkpoint of this shape: it holds observation/action sizes "
                             f"{meta.get('dims')}, this agent has {self.obs_dim},{self.act_dim}")
        tensors = load_file(str(path))
        for name, module in self._modules().items():
            state = module.state_dict()
            if isinstance(module, torch.optim.Optimizer):
                restored: dict[int, dict[str, torch.Tensor]] = {}
                for key, value in tensors.items():
                    if key.startswith(f"{name}.state/"):
                        index, field = key.removeprefix(f"{name}.state/").split("/", 1)
                        restored.setdefault(int(index), {})[field] = value
                state["state"] = restored
                module.load_state_dict(state)
                continue
            missing = [k for k in state if f"{name}.{k}" not in tensors]
            if missing:
                raise ValueError(f"{path} lacks {name}.{missing[0]}: not an IQL checkpoint of this shape")
            module.load_state_dict({k: tensors[f"{name}.{k}"] for k in state})
        self.steps = int(meta.get("steps", 0))
        # Put the actor's cosine schedule where it was.
        progress = min(self.steps, self.config.max_steps) / self.config.max_steps
        self.actor_sched.last_epoch = self.steps
        for group in self.actor_opt.param_groups:
            group["lr"] = self.config.actor_lr * 0.5 * (1 + math.cos(math.pi * progress))


def _flatten(state: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(state, dict):
        for key, value in state.items():
            out.update(_flatten(value, f"{prefix}{key}/"))
    elif isinstance(state, (list, tuple)):
        for i, value in enumerate(state):
            out.update(_flatten(value, f"{prefix}{i}/"))
    else:
        out[prefix.rstrip("/")] = state
    return out
