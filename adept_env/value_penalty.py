"""MOBILE-style value penalty: the spread of an agent's values over the world model's next-state draws."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch


def value_std(value: Callable[[torch.Tensor], torch.Tensor], draws: np.ndarray, task: Any,
              device: torch.device | str = "cpu") -> torch.Tensor:
    """Std over the K draws of ``(1 - done_k) * value(s'_k)``: draws (B, K, D) -> (B,).

    ``value`` maps a batch of states to one value each (IQL: its V network; SAC: the minimum of
    the target critics at the actor's deterministic action); ``done_k`` is the task's termination
    function on each draw, so a draw that ends the episode has no future value.
    """
    n, k, dim = draws.shape
    flat = draws.reshape(n * k, dim)
    alive = torch.as_tensor(~task.is_terminated(flat), dtype=torch.float32, device=device)
    with torch.no_grad():
        values = value(torch.as_tensor(flat, device=device)).reshape(n * k)
    return (values * alive).reshape(n, k).std(dim=1)
