"""The adept-env world-model service: one session core, a gRPC and an HTTP front-end over it.

``adept-env serve`` (or ``python -m server``) runs both in one process; ``WorldModelServer``
starts them in-process (tests, benchmarks). The wire contract is ``protos/adept/v1``; its
generated stubs live in the torch-free client package (``adept_client.proto``).
"""


from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CLIENT_OVERRIDES": "server.config", "ServerConfig": "server.config", "ServiceError": "server.errors",
    "WorldModelServer": "server.service", "serve": "server.service", "SessionCore": "server.sessions",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    # Loaded on first use, so ``adept-env --help`` (which lists ``serve``) does not import torch.
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'server' has no attribute {name!r}")
