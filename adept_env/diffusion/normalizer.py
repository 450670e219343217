"""Per-dimension standardisation of states, actions, state changes and rewards."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

STD_FLOOR = 1e-4


class Normalizer(nn.Module):
    """Means and standard deviations as buffers, so they travel with the weights.

    State changes are modelled as ``(s' - s - delta_mean) / delta_std``; conditions are
    ``(s - obs_mean) / obs_std`` and ``(a - act_mean) / act_std``.
    """

    def __init__(self, obs_dim: int, act_dim: int) -> None:
        super().__init__()
        for name, dim in (("obs", obs_dim), ("act", act_dim), ("delta", obs_dim), ("reward", 1)):
            self.register_buffer(f"{name}_mean", torch.zeros(dim))
            self.register_buffer(f"{name}_std", torch.ones(dim))

    def fit(self, observations: np.ndarray, actions: np.ndarray, next_observations: np.ndarray,
            rewards: np.ndarray) -> None:
        """Set every mean and standard deviation from a dataset (float64 accumulation)."""
        arrays = {
            "obs": observations,
            "act": actions,
            "delta": next_observations - observations,
            "reward": np.asarray(rewards).reshape(-1, 1),
        }
        for name, values in arrays.items():
            values = np.asarray(values, np.float64)
            getattr(self, f"{name}_mean").copy_(torch.from_numpy(values.mean(0)))
            getattr(self, f"{name}_std").copy_(torch.from_numpy(np.maximum(values.std(0), STD_FLOOR)))

    def condition(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """Return the normalised condition [s, a], shape (B, obs_dim + act_dim)."""
        return torch.cat([(obs - self.obs_mean) / self.obs_std, (act - self.act_mean) / self.act_std], dim=-1)

    def delta(self, obs: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """Return the normalised state change."""
        return (next_obs - obs - self.delta_mean) / self.delta_std

    def next_obs(self, obs: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """Invert ``delta``: next observations from observations and normalised changes."""
        return obs + self.delta_mean + delta * self.delta_std

    def reward(self, rewards: torch.Tensor) -> torch.Tensor:
        """Return normalised rewards, shape (B,)."""
        return (rewards - self.reward_mean) / self.reward_std

    def unreward(self, rewards: torch.Tensor) -> torch.Tensor:
        """Invert ``reward``: rewards in the task's units."""
        return rewards * self.reward_std + self.reward_mean
