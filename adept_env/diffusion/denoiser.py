"""The conditional flow network: a residual MLP over a noisy state change, given (s, a) and t."""

from __future__ import annotations

import torch
from torch import nn

from adept_env.diffusion.layers import ResidualTrunk, TimeFeatures


class Denoiser(nn.Module):
    """Predicts the flow velocity v(x_t, t | s, a) of a normalised state change (or its residual).

    The condition enters through an embedding that is computed once per batch and reused for
    every sample and sampler step (``embed_condition``); a learned null embedding replaces it
    for classifier-free guidance.
    """

    def __init__(self, x_dim: int, cond_dim: int, width: int, blocks: int, time_features: int) -> None:
        super().__init__()
        self.x_in = nn.Linear(x_dim, width)
        self.cond_in = nn.Linear(cond_dim, width)
        self.null_cond = nn.Parameter(torch.zeros(width))
        self.time = TimeFeatures(time_features)
        self.time_in = nn.Linear(2 * max(1, time_features // 2), width)
        self.trunk = ResidualTrunk(width, blocks, x_dim)

    def embed_condition(self, cond: torch.Tensor, drop: torch.Tensor | None = None) -> torch.Tensor:
        """Return the condition embedding (B, width); rows where ``drop`` is True get the null one."""
        emb = self.cond_in(cond)
        if drop is not None:
            emb = torch.where(drop.reshape(-1, 1), self.null_cond.to(emb.dtype), emb)
        return emb

    def embed_time(self, t: torch.Tensor) -> torch.Tensor:
        """Return the time embedding, (T, width) for T times in [0, 1]."""
        return self.time_in(self.time(t))

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor, cond_emb: torch.Tensor) -> torch.Tensor:
        """Return the velocity, same shape as ``x``; embeddings broadcast against x_in(x)."""
        return self.trunk(self.x_in(x) + cond_emb + time_emb)
