"""MOBILE-style value penalty: the spread of an agent's values over the world model's next-state draws."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch


def value_std(value: Callable[[torch.Tensor], torch.Tensor], draws: np.ndarray, task: Any,
              device: torch.device | str = "cpu", *, value_inputs: np.ndarray | None = None) -> torch.Tensor:
    """Std over the K draws of ``(1 - done_k) * value(s'_k)``: draws (B, K, D) -> (B,).

    ``value`` maps a batch of states to one value each (IQL: its V network; SAC: the minimum of
    the target critics at the actor's deterministic action); ``done_k`` is the task's termination
    function on each draw, so a draw that ends the episode has no future value.

    ``draws`` are raw states, which the termination function reads. When the agent sees states
    transformed (e.g. normalised by SB3's ``VecNormalize``), pass the transformed draws, same shape,
    as ``value_inputs``: ``value`` then scores those instead of the raw draws.
    """
    n, k, dim = draws.shape
    inputs = draws if value_inputs is None else value_inputs
    if inputs.shape != draws.shape:
        raise ValueError(f"value_inputs has shape {inputs.shape}, the draws {draws.shape}")
    alive = torch.as_tensor(~task.is_terminated(draws.reshape(n * k, dim)), dtype=torch.float32, device=device)
    with torch.no_grad():
        states = torch.as_tensor(np.asarray(inputs, np.float32).reshape(n * k, dim), device=device)
        values = value(states).reshape(n * k)
    return (values * alive).reshape(n, k).std(dim=1)
