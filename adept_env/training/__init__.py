"""Offline training runs: ``train(dataset, TrainConfig(...), run_dir)`` and real-simulator evaluation.

Modules, each importing only those above it:

- ``evaluation``: ``evaluate`` a policy in real MuJoCo, D4RL-normalised (``EvalResult``);
- ``value_penalty``: the MOBILE-style spread of an agent's values over the model's draws;
- ``selection``: a policy's return in the world model (``model_return``), for checkpoint selection;
- ``config``: ``TrainConfig`` (the ``adept-env train`` options), ``TrainResult``, ``ALGOS``;
- ``run``: what both loops share (``RunLog``, the resume check, the world model, checkpoint scoring);
- ``iql_loop`` / ``sac_loop``: the IQL and the SB3 SAC variants;
- ``loop``: ``train``, which checks the run folder and hands over to one of the two.

The names below are also importable from this package; each loads its module on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ALGOS": "config", "TrainConfig": "config", "TrainResult": "config",
    "EvalResult": "evaluation", "evaluate": "evaluation",
    "RunMismatchError": "run",
    "train": "loop",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"adept_env.training.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'adept_env.training' has no attribute {name!r}")
