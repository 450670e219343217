"""adept-client: Gymnasium environments backed by a remote adept-env world-model server, without torch.

```python
from adept_client import RemoteEnv, RemoteVectorEnv
env = RemoteEnv("localhost:50051", "ADEPT-halfcheetah-random")     # gRPC; "http://host:8000" for HTTP
venv = RemoteVectorEnv("localhost:50051", "ADEPT-halfcheetah-random", num_envs=64)
from adept_client.sb3 import RemoteVecEnv, PushPolicy              # needs stable-baselines3
from adept_client.sb3 import RemoteMixedReplayBuffer               # real dataset rows mixed into SAC's batches
from adept_client.evaluation import evaluate                       # real-MuJoCo scores (adept-client[mujoco])
```
"""

from __future__ import annotations

from typing import Any

from adept_client.client import GrpcClient, HttpClient, RemoteSession, RetryPolicy, connect, wait_for_server
from adept_client.env import RemoteEnv, RemoteVectorEnv
from adept_client.errors import (
    AdeptError,
    DeadlineExceededError,
    FailedPreconditionError,
    InvalidArgumentError,
    ResourceExhaustedError,
    ServerUnavailableError,
    SessionNotFoundError,
    UnauthenticatedError,
)

__all__ = [
    "AdeptError", "DeadlineExceededError", "FailedPreconditionError", "GrpcClient", "HttpClient",
    "InvalidArgumentError", "PushPolicy", "RemoteEnv", "RemoteMixedReplayBuffer", "RemoteSession", "RemoteVecEnv",
    "RemoteVectorEnv",
    "ResourceExhaustedError", "RetryPolicy", "ServerUnavailableError", "SessionNotFoundError",
    "UnauthenticatedError", "connect", "wait_for_server",
]


def __getattr__(name: str) -> Any:
    if name in ("RemoteVecEnv", "PushPolicy", "RemoteMixedReplayBuffer"):  # SB3 is optional: imported on first use
        from adept_client import sb3

        return getattr(sb3, name)
    raise AttributeError(f"module 'adept_client' has no attribute {name!r}")
