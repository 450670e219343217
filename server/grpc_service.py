"""The gRPC front-end: ``adept.v1.WorldModelService`` over the session core, plus health and reflection.

Requests arrive as raw bytes and are parsed here (``codec.parse``), so malformed protobuf is
answered INVALID_ARGUMENT with a message instead of grpcio's generic INTERNAL. Health and
reflection need no token; every WorldModelService call does when tokens are configured.
"""

from __future__ import annotations

import logging
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from server.codec import METHODS, SERVICE_NAME, parse
from server.errors import ServiceError
from server.sessions import SessionCore

log = logging.getLogger("adept.server")


def _method_handler(core: SessionCore, name: str) -> grpc.RpcMethodHandler:
    request_class, handle = METHODS[name]

    def call(raw: bytes, context: grpc.ServicerContext) -> bytes:
        try:
            metadata = dict(context.invocation_metadata())
            owner = core.authenticate(metadata.get("authorization"))
            return handle(core, owner, parse(request_class, raw)).SerializeToString()
        except ServiceError as exc:
            context.abort(getattr(grpc.StatusCode, exc.code), exc.message)
        except Exception as exc:  # a bug, not the caller's fault: say so and keep serving
            log.exception("%s failed", name)
            context.abort(grpc.StatusCode.INTERNAL, f"internal error in {name}: {type(exc).__name__}: {exc}")

    # No (de)serializers: the handler gets and returns bytes.
    return grpc.unary_unary_rpc_method_handler(call)


def address(host: str, port: int) -> str:
    """Return ``host:port`` with IPv6 hosts bracketed."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def build_grpc_server(core: SessionCore, host: str, port: int) -> tuple[grpc.Server, int, health.HealthServicer]:
    """Return (started-not-yet server, bound port, health servicer) on ``host:port`` (0: a free port)."""
    limit = core.config.max_message_bytes
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=core.config.grpc_workers, thread_name_prefix="adept-grpc"),
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            ("grpc.so_reuseport", 0),
        ],
    )
    handlers = {name: _method_handler(core, name) for name in METHODS}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for service in ("", SERVICE_NAME):
        health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    bound = server.add_insecure_port(address(host, port))
    if bound == 0:
        raise OSError(f"cannot bind gRPC to {address(host, port)}")
    return server, bound, health_servicer
