"""The reward model r(s, a, s'), on normalised inputs and outputs."""

from __future__ import annotations

import torch
from torch import nn


class RewardModel(nn.Module):
    """An MLP (two SiLU hidden layers) from [normalised s, a, state change] to a normalised reward.

    Trained on the dataset's true next states, queried with the model's predicted ones.
    """

    def __init__(self, cond_dim: int, delta_dim: int, width: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(cond_dim + delta_dim, width), nn.SiLU(),
            nn.Linear(width, width), nn.SiLU(),
            nn.Linear(width, 1),
        )

    def forward(self, cond: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """Return normalised rewards, shape (B,)."""
        return self.net(torch.cat([cond, delta], dim=-1)).squeeze(-1)
