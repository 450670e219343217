"""A deterministic residual-MLP regression of the normalised state change on (s, a)."""

from __future__ import annotations

import torch
from torch import nn

from adept_env.diffusion.layers import ResidualTrunk


class MeanPredictor(nn.Module):
    """Returns E[normalised s' - s | s, a], shape (B, obs_dim); trained with (weighted) MSE."""

    def __init__(self, cond_dim: int, out_dim: int, width: int, blocks: int) -> None:
        super().__init__()
        self.cond_in = nn.Linear(cond_dim, width)
        self.trunk = ResidualTrunk(width, blocks, out_dim)

    def forward(self, cond: torch.Tensor) -> torch.Tensor:
        return self.trunk(self.cond_in(cond))


class MeanEnsemble(nn.Module):
    """M independently initialised mean predictors, optionally with a log-std head each.

    Returns (means (M, B, obs_dim), log-stds (M, B, obs_dim) or None) in normalised units.
    """

    def __init__(self, members: int, cond_dim: int, out_dim: int, width: int, blocks: int,
                 heteroscedastic: bool = False) -> None:
        super().__init__()
        self.out_dim = out_dim
        self.heteroscedastic = heteroscedastic
        outputs = 2 * out_dim if heteroscedastic else out_dim
        self.members = nn.ModuleList(MeanPredictor(cond_dim, outputs, width, blocks) for _ in range(members))
        for member in self.members:  # a zero output layer would make every member start identical
            nn.init.normal_(member.trunk.out.weight, std=1e-3)

    def __len__(self) -> int:
        return len(self.members)

    def forward(self, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        out = torch.stack([member(cond) for member in self.members])
        if not self.heteroscedastic:
            return out, None
        mean, log_std = out.split(self.out_dim, dim=-1)
        return mean, log_std.clamp(-7.0, 2.0)
