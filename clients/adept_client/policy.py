"""Policy snapshots without torch on the wire: an SB3 SAC actor as safetensors bytes + JSON spec.

The format is adept-env's ``adept-env/sac-actor`` (see ``adept_env.data.behavior``): weights
``latent_pi.{2i}.weight/bias``, ``mu.*``, ``log_std.*`` as float32, and a spec with sizes,
action bounds and the weights' SHA-256, which the server verifies before loading. The
safetensors file is written here with numpy only (an 8-byte header length, a JSON header, raw
little-endian data), so this module needs neither torch nor the safetensors package.
"""

from __future__ import annotations

import hashlib
import json
import struct
from typing import Any

import numpy as np

ACTOR_FORMAT = "adept-env/sac-actor"
ACTOR_FORMAT_VERSION = 1
LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0


def weights_sha256(weights: dict[str, np.ndarray]) -> str:
    """Return the SHA-256 over names, shapes and float32 bytes in sorted name order (adept-env's checksum)."""
    digest = hashlib.sha256()
    for key in sorted(weights):
        value = np.ascontiguousarray(weights[key], dtype=np.float32)
        digest.update(key.encode())
        digest.update(str(value.shape).encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def safetensors_bytes(weights: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> bytes:
    """Return ``weights`` (float32) as a safetensors file's bytes."""
    header: dict[str, Any] = {"__metadata__": metadata} if metadata else {}
    chunks, offset = [], 0
    for key in sorted(weights):
        data = np.ascontiguousarray(weights[key], dtype="<f4").tobytes()
        header[key] = {"dtype": "F32", "shape": list(np.shape(weights[key])),
                       "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def sac_actor_weights(model: Any) -> dict[str, np.ndarray]:
    """Return an SB3 SAC model's (or policy's) actor weights as float32 numpy arrays."""
    policy = getattr(model, "policy", model)
    actor = getattr(policy, "actor", None)
    if actor is None or not hasattr(actor, "mu") or not hasattr(actor, "log_std"):
        raise TypeError(f"{type(model).__name__} is not an SB3 SAC model/policy (needs actor.mu and actor.log_std)")
    if getattr(actor, "use_sde", False):
        raise TypeError("SAC with gSDE is not supported by the snapshot format; use use_sde=False")
    return {k: v.detach().cpu().numpy().astype(np.float32) for k, v in actor.state_dict().items()
            if not k.startswith("features_extractor")}


def sac_snapshot(model: Any, name: str = "remote-sac") -> tuple[bytes, str]:
    """Return ``(safetensors bytes, spec JSON)`` of an SB3 SAC actor, ready for ``update_policy_snapshot``."""
    weights = sac_actor_weights(model)
    hidden = []
    i = 0
    while f"latent_pi.{2 * i}.weight" in weights:
        hidden.append(int(weights[f"latent_pi.{2 * i}.weight"].shape[0]))
        i += 1
    space = getattr(model, "policy", model).action_space
    spec = {
        "format": ACTOR_FORMAT,
        "format_version": ACTOR_FORMAT_VERSION,
        "name": name,
        "kind": "sb3-sac-squashed-gaussian",
        "obs_dim": int(weights["latent_pi.0.weight"].shape[1] if hidden else weights["mu.weight"].shape[1]),
        "act_dim": int(weights["mu.weight"].shape[0]),
        "hidden_sizes": hidden,
        "activation": "relu",
        "log_std_min": LOG_STD_MIN,
        "log_std_max": LOG_STD_MAX,
        "action_low": np.asarray(space.low, float).tolist(),
        "action_high": np.asarray(space.high, float).tolist(),
        "weights_sha256": weights_sha256(weights),
    }
    return safetensors_bytes(weights, {"format": ACTOR_FORMAT}), json.dumps(spec)
