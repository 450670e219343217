"""A live server on loopback (ephemeral ports, both transports) over a tiny dataset and quick model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

ENV_ID = "ADEPT-halfcheetah-random"
TOKENS = ("alice-token", "bob-token")


@pytest.fixture(scope="session")
def live_server(small_datasets: dict[str, Path], quick_model_path: Path,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A WorldModelServer with two API tokens, serving only ADEPT-halfcheetah-random (5k rows, quick model)."""
    from server import ServerConfig, WorldModelServer

    config = ServerConfig(
        host="127.0.0.1", grpc_port=0, http_port=0, state_dir=tmp_path_factory.mktemp("server_state"),
        api_tokens=TOKENS, env_ids=(ENV_ID,),
        env_settings={ENV_ID: {"model_path": str(quick_model_path),
                               "dataset_path": str(small_datasets["halfcheetah"])}},
        max_message_bytes=4 * 1024 * 1024, max_num_envs=512, max_sessions=64, idle_timeout_s=900.0,
        grpc_workers=16, grace_s=1.0,
    )
    server = WorldModelServer(config).start()
    server.core.engines.base(ENV_ID)  # load once, up front
    yield server
    server.stop(grace=1.0)


@pytest.fixture(params=["grpc", "http"])
def transport(request: pytest.FixtureRequest) -> str:
    """Each compliance case runs once per transport."""
    return request.param


@pytest.fixture
def target(live_server, transport: str) -> str:
    """The server's address for ``transport``: host:port (gRPC) or http://host:port."""
    if transport == "grpc":
        return f"127.0.0.1:{live_server.grpc_port}"
    return f"http://127.0.0.1:{live_server.http_port}"


@pytest.fixture
def client(target: str) -> Iterator[object]:
    """A client of the live server for this transport, with Alice's token and short retries."""
    from adept_client import RetryPolicy, connect

    with connect(target, token=TOKENS[0], timeout_s=60.0, retry=RetryPolicy(attempts=2, initial_s=0.05)) as c:
        yield c
