"""The gRPC front-end: ``adept.v1.WorldModelService`` over the session core, plus health and reflection.

Requests arrive as raw bytes and are parsed here (``codec.parse``), so malformed protobuf is
answered INVALID_ARGUMENT with a message instead of grpcio's generic INTERNAL. Health and
reflection need no token; every WorldModelService call does when tokens are configured. Any
error is answered by ``server.errors.answer_for``: a client's mistake with its status and message,
a server bug as INTERNAL with a request id only (the traceback is logged under that id).
"""

from __future__ import annotations

from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from server.codec import METHODS, SERVICE_NAME, answer
from server.errors import answer_for
from server.sessions import SessionCore


def _method_handler(core: SessionCore, name: str) -> grpc.RpcMethodHandler:
    def call(raw: bytes, context: grpc.ServicerContext) -> bytes:
        try:
            metadata = dict(context.invocation_metadata())
            owner = core.authenticate(metadata.get("authorization"))
            return answer(core, owner, name, raw)
        except Exception as exc:  # the caller's error, or INTERNAL with a request id (the traceback is logged)
            error = answer_for(exc, name)
        context.abort(getattr(grpc.StatusCode, error.code, grpc.StatusCode.INTERNAL), error.message)

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
