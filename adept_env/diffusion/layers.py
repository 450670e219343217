"""Residual-MLP building blocks (SynthER-style) shared by the denoiser and the predictors."""

from __future__ import annotations

import math

import torch
from torch import nn


class ResidualBlock(nn.Module):
    """h + W2 silu(W1 LayerNorm(h)): a pre-norm residual block of two linear layers."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, width)
        self.fc2 = nn.Linear(width, width)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.fc2(nn.functional.silu(self.fc1(self.norm(h))))


class ResidualTrunk(nn.Module):
    """Residual blocks followed by LayerNorm, SiLU and a zero-initialised output layer."""

    def __init__(self, width: int, blocks: int, out_dim: int) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*[ResidualBlock(width) for _ in range(blocks)])
        self.out_norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, out_dim)
        # Zero output: every model starts by predicting the mean change (0 after normalisation).
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def features(self, h: torch.Tensor) -> torch.Tensor:
        """Return the last hidden features, (..., width), before the output layer."""
        return nn.functional.silu(self.out_norm(self.blocks(h)))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(h))


class TimeFeatures(nn.Module):
    """Sinusoidal features of a flow time t in [0, 1], frequencies pi * 2^k."""

    def __init__(self, n_features: int) -> None:
        super().__init__()
        half = max(1, n_features // 2)
        self.register_buffer("freqs", math.pi * 2.0 ** torch.arange(half, dtype=torch.float32), persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        angles = t.reshape(-1, 1) * self.freqs
        return torch.cat([angles.sin(), angles.cos()], dim=-1)
