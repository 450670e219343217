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
