"""The adept-env world-model service: one session core, a gRPC and an HTTP front-end over it.

``adept-env serve`` (or ``python -m server``) runs both in one process; ``WorldModelServer``
starts them in-process (tests, benchmarks). The wire contract is ``protos/adept/v1``; its
generated stubs live in the torch-free client package (``adept_client.proto``).
"""

from server.config import CLIENT_OVERRIDES, ServerConfig
from server.errors import ServiceError
from server.service import WorldModelServer, serve
from server.sessions import SessionCore

__all__ = ["CLIENT_OVERRIDES", "ServerConfig", "ServiceError", "SessionCore", "WorldModelServer", "serve"]
