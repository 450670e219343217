"""A run-time probe: is bf16 autocast faster than fp32 for our network on this CPU?

bf16 autocast was ~4.5x faster than fp32 on an AMX-class Intel CPU and 6-8x slower on an AMD
EPYC, so the choice cannot be made from the CPU name alone.
"""

from __future__ import annotations

import functools
import time

import torch

from adept_env.diffusion.layers import ResidualTrunk


def _rate(net: torch.nn.Module, x: torch.Tensor, bf16: bool, seconds: float) -> float:
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        net(x)
        calls, start = 0, time.perf_counter()
        while True:
            net(x)
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                return calls / elapsed


@functools.lru_cache(maxsize=16)
def bf16_is_faster(width: int, blocks: int, batch: int = 1024, seconds: float = 0.15, margin: float = 1.2) -> bool:
    """Return True if a (width, blocks) residual MLP runs at least ``margin`` x faster in bf16.

    Timed on a (batch, width) input for ``seconds`` per precision; the answer is memoised per
    process (the CPU does not change under us). Returns False where bf16 is unsupported.
    """
    torch.manual_seed(0)
    net = ResidualTrunk(width, blocks, width).eval()
    x = torch.randn(batch, width)
    try:
        fp32 = _rate(net, x, False, seconds)
        bf16 = _rate(net, x, True, seconds)
    except RuntimeError:
        return False
    return bf16 >= margin * fp32


def resolve_dtype(choice: str, width: int, blocks: int) -> torch.dtype:
    """Map a config's ``dtype`` ("auto", "float32", "bfloat16") to the sampling dtype."""
    if choice == "float32":
        return torch.float32
    if choice == "bfloat16":
        return torch.bfloat16
    return torch.bfloat16 if bf16_is_faster(width, blocks) else torch.float32
