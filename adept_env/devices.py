"""Torch devices by name: ``auto``, ``cpu``, ``cuda``, ``cuda:i`` (and ``mps``), checked against what torch sees.

Asking for a device that is not there is an error naming what torch sees, never a silent fallback
to the CPU. ``auto`` picks the first CUDA device when torch sees one, else the CPU.
"""

from __future__ import annotations

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N", "mps")


def visible_devices() -> str:
    """A sentence naming the devices torch sees (for error messages)."""
    seen = ["cpu"]
    if torch.cuda.is_available():
        seen += [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
    elif torch.version.cuda is None:
        seen.append(f"no CUDA device: torch {torch.__version__} is a CPU-only build")
    else:
        seen.append("no CUDA device (the driver or GPU is missing)")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        seen.append("mps")
    return "torch sees " + ", ".join(seen)


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """Return the torch device named by ``spec``; raise ValueError if torch does not see it."""
    if isinstance(spec, torch.device):
        spec = str(spec)
    name = (spec or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"unknown device {spec!r}: use one of {', '.join(DEVICE_CHOICES)}") from exc
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        index = 0 if device.index is None else device.index
        if not torch.cuda.is_available() or index >= torch.cuda.device_count():
            raise ValueError(f"device {spec!r} is not available: {visible_devices()}")
        return torch.device("cuda", index)
    if device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError(f"device {spec!r} is not available: {visible_devices()}")
        return device
    raise ValueError(f"unsupported device {spec!r}: use one of {', '.join(DEVICE_CHOICES)}")
