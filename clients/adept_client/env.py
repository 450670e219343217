"""``RemoteEnv`` and ``RemoteVectorEnv``: Gymnasium environments stepped by a remote world-model server."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from adept_client.client import BaseClient, RemoteSession, connect
from adept_client.errors import SessionNotFoundError


def _spaces(session: RemoteSession) -> tuple[gym.spaces.Box, gym.spaces.Box]:
    observation = gym.spaces.Box(session.observation_low, session.observation_high, session.observation_shape,
                                 np.float32)
    action = gym.spaces.Box(session.action_low, session.action_high, session.action_shape, np.float32)
    return observation, action


def open_session(target: str | BaseClient, env_id: str, num_envs: int, token: str | None, seed: int | None,
                 overrides: dict[str, Any] | None, client_kwargs: dict[str, Any]) -> tuple[BaseClient, bool,
                                                                                             RemoteSession]:
    """Return (client, whether we own it, a new session)."""
    owns = not isinstance(target, BaseClient)
    client = connect(target, token=token, **client_kwargs) if owns else target
    return client, owns, client.create_session(env_id, num_envs, seed=seed, overrides=overrides)


class _Remote:
    """What the remote envs share: the session, its policy calls, and closing."""

    session: RemoteSession
    _client: BaseClient
    _owns_client: bool

    @property
    def model_version(self) -> int:
        return self._model_version

    def update_policy(self, policy: Any) -> int:
        """Send the agent's policy (SB3 SAC model, or (safetensors, spec_json)); return the update count."""
        return int(self.session.update_policy(policy).policy_updates)

    def refit(self, steps: int | None = None, weighted: bool = True, blocking: bool = False,
              timeout_s: float = 600.0) -> Any:
        """Start a server-side refit; with ``blocking`` wait for it. Return its RefitState."""
        state = self.session.refit(steps=steps, weighted=weighted)
        return self.session.wait_refit(state.job_id, timeout_s) if blocking else state

    def close(self, **kwargs: Any) -> None:
        session = getattr(self, "session", None)
        if session is not None:
            session.close()
        if getattr(self, "_owns_client", False):
            self._client.close()


class RemoteEnv(_Remote, gym.Env):
    """A Gymnasium env whose dynamics run on a world-model server (``target``: host:port or http://...).

    Same observations, rewards and ``info`` (raw_reward, uncertainty, halted, model_version) as
    ``gym.make(env_id)`` locally; the server clips actions to the action space as the local envs do.
    """

    metadata = {"render_modes": []}

    def __init__(self, target: str | BaseClient, env_id: str, *, token: str | None = None, seed: int | None = None,
                 overrides: dict[str, Any] | None = None, **client_kwargs: Any) -> None:
        self._client, self._owns_client, self.session = open_session(target, env_id, 1, token, seed, overrides,
                                                                     client_kwargs)
        self.env_id = env_id
        self.observation_space, self.action_space = _spaces(self.session)
        self._model_version = self.session.model_version
        self._needs_reset = True

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        observations, self._model_version = self.session.reset(seed=seed)
        self._needs_reset = False
        return observations[0], {"model_version": self._model_version}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._needs_reset:
            raise gym.error.ResetNeeded("call reset() before step() (and after an episode ends)")
        out = self.session.step(np.asarray(action)[None])
        self._model_version = out.model_version
        terminated, truncated = bool(out.terminated[0]), bool(out.truncated[0])
        self._needs_reset = terminated or truncated
        info = {"raw_reward": float(out.raw_rewards[0]), "uncertainty": float(out.uncertainty[0]),
                "halted": bool(out.halted[0]), "model_version": out.model_version}
        return out.observations[0], float(out.rewards[0]), terminated, truncated, info


class RemoteVectorEnv(_Remote, VectorEnv):
    """A Gymnasium vector env of ``num_envs`` remote episodes stepped in one call (next-step autoreset).

    As ``gym.make_vec(env_id, num_envs)`` locally: the step after an episode ends resets that
    sub-env (new start observation, reward 0, both flags False); ``info`` holds arrays
    ``raw_reward``, ``uncertainty``, ``halted``, ``model_version`` with their ``_``-masks.
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(self, target: str | BaseClient, env_id: str, num_envs: int = 1, *, token: str | None = None,
                 seed: int | None = None, overrides: dict[str, Any] | None = None, **client_kwargs: Any) -> None:
        self._client, self._owns_client, self.session = open_session(target, env_id, num_envs, token, seed,
                                                                     overrides, client_kwargs)
        self.env_id = env_id
        self.num_envs = num_envs
        self.single_observation_space, self.single_action_space = _spaces(self.session)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._model_version = self.session.model_version
        self._started = False

    def reset(self, *, seed: int | list[int] | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        seed = seed[0] if isinstance(seed, list) else seed  # the server seeds the episodes
        observations, self._model_version = self.session.reset(seed=seed)
        self._started = True
        return observations, {}

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if not self._started:
            raise gym.error.ResetNeeded("call reset() before step()")
        out = self.session.step(np.asarray(actions), autoreset="next_step")
        self._model_version = out.model_version
        active = ~out.reset_mask
        info = {
            "raw_reward": out.raw_rewards, "_raw_reward": active,
            "uncertainty": out.uncertainty, "_uncertainty": active.copy(),
            "halted": out.halted, "_halted": active.copy(),
            "model_version": np.full(self.num_envs, out.model_version, np.int64),
            "_model_version": np.ones(self.num_envs, bool),
        }
        return out.observations, out.rewards, out.terminated, out.truncated, info


__all__ = ["RemoteEnv", "RemoteVectorEnv", "SessionNotFoundError"]
