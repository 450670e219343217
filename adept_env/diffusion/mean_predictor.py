"""A deterministic residual-MLP regression of the normalised state change on (s, a)."""

from __future__ import annotations

import torch
from torch import nn

from adept_env.diffusion.layers import ResidualTrunk


class MeanPredictor(nn.Module):
    """Returns E[normalised s' - s | s, a], shape (B, obs_dim); trained with (weighted) MSE.

    With ``scale_width`` > 0 a separate small MLP (two SiLU layers of that width) also returns
    the log standard deviation of the residual. Separate, because sharing the trunk let its
    Gaussian NLL cost the mean about 50% accuracy; a head on detached features ranked errors
    less well (BENCHMARKS.md).
    """

    def __init__(self, cond_dim: int, out_dim: int, width: int, blocks: int, scale_width: int = 0) -> None:
        super().__init__()
        self.cond_in = nn.Linear(cond_dim, width)
        self.trunk = ResidualTrunk(width, blocks, out_dim)
        self.log_std = nn.Sequential(
            nn.Linear(cond_dim, scale_width), nn.SiLU(), nn.Linear(scale_width, scale_width), nn.SiLU(),
            nn.Linear(scale_width, out_dim)) if scale_width > 0 else None
        nn.init.normal_(self.trunk.out.weight, std=1e-3)  # members must not start identical

    def forward(self, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        mean = self.trunk(self.cond_in(cond))
        if self.log_std is None:
            return mean, None
        return mean, self.log_std(cond).clamp(-7.0, 2.0)


class MeanEnsemble(nn.Module):
    """M independently initialised mean predictors.

    Returns (means (M, B, obs_dim), log-stds (M, B, obs_dim) or None) in normalised units.
    """

    def __init__(self, members: int, cond_dim: int, out_dim: int, width: int, blocks: int,
                 scale_width: int = 0) -> None:
        super().__init__()
        self.heteroscedastic = scale_width > 0
        self.members = nn.ModuleList(MeanPredictor(cond_dim, out_dim, width, blocks, scale_width)
                                     for _ in range(members))

    def __len__(self) -> int:
        return len(self.members)

    def forward(self, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        outputs = [member(cond) for member in self.members]
        means = torch.stack([mean for mean, _ in outputs])
        if not self.heteroscedastic:
            return means, None
        return means, torch.stack([log_std for _, log_std in outputs])  # type: ignore[misc]
