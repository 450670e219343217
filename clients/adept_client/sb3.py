"""Stable-Baselines3 glue: ``RemoteVecEnv`` (an SB3 VecEnv over one remote session) and ``PushPolicy``.

Imports stable-baselines3 (``pip install adept-client[sb3]``); ``adept_client`` itself does not.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvStepReturn

from adept_client.client import BaseClient, RefitState
from adept_client.env import _Remote, _spaces, open_session
from adept_client.errors import FailedPreconditionError


class RemoteVecEnv(_Remote, VecEnv):
    """An SB3 VecEnv of ``num_envs`` remote episodes (one Step call per step, same-step autoreset).

    SB3 semantics: a finished episode is reset in the same step; its last observation is in
    ``infos[i]["terminal_observation"]`` and a horizon cut sets ``infos[i]["TimeLimit.truncated"]``.
    """

    def __init__(self, target: str | BaseClient, env_id: str, num_envs: int = 1, *, token: str | None = None,
                 seed: int | None = None, overrides: dict[str, Any] | None = None, **client_kwargs: Any) -> None:
        self._client, self._owns_client, self.session = open_session(target, env_id, num_envs, token, seed,
                                                                     overrides, client_kwargs)
        self.env_id = env_id
        self.render_mode = None
        observation_space, action_space = _spaces(self.session)
        super().__init__(num_envs, observation_space, action_space)
        self._model_version = self.session.model_version
        self._actions_pending: np.ndarray | None = None

    def reset(self) -> np.ndarray:
        seed = self._seeds[0]
        self._reset_seeds()
        self._reset_options()
        observations, self._model_version = self.session.reset(seed=seed)
        return observations

    def step_async(self, actions: np.ndarray) -> None:
        self._actions_pending = np.asarray(actions)

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions_pending is None:
            raise RuntimeError("step_async() must come before step_wait()")
        out = self.session.step(self._actions_pending, autoreset="same_step")
        self._actions_pending = None
        self._model_version = out.model_version
        dones = out.terminated | out.truncated
        infos: list[dict[str, Any]] = []
        for i in range(self.num_envs):
            info = {"raw_reward": float(out.raw_rewards[i]), "uncertainty": float(out.uncertainty[i]),
                    "halted": bool(out.halted[i]), "model_version": out.model_version}
            if dones[i]:
                info["terminal_observation"] = out.final_observations[i]
                info["TimeLimit.truncated"] = bool(out.truncated[i] and not out.terminated[i])
            infos.append(info)
        return out.observations, out.rewards, dones, infos

    # The N envs are one remote session: a method runs once (N pushes of update_policy would count
    # N policy updates on the server) and each answer is repeated per index.
    def _per_index(self, value: Any, indices: VecEnvIndices) -> list[Any]:
        count = self.num_envs if indices is None else len([indices] if isinstance(indices, int) else list(indices))
        return [value] * count

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return self._per_index(getattr(self, attr_name), indices)

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None,
                   **method_kwargs: Any) -> list[Any]:
        return self._per_index(getattr(self, method_name)(*method_args, **method_kwargs), indices)

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        return self._per_index(False, indices)


class PushPolicy(BaseCallback):
    """Send the SAC actor to the server every ``every`` steps; with ``refit=True`` also start a refit.

    A refit is skipped (not queued) while the previous one still runs. ``env`` (a RemoteVecEnv,
    RemoteEnv or RemoteVectorEnv) defaults to the model's training env, unwrapped.
    """

    def __init__(self, every: int = 5_000, refit: bool = True, refit_steps: int | None = None, env: Any = None,
                 verbose: int = 0) -> None:
        super().__init__(verbose)
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.every, self.do_refit, self.refit_steps, self._env = every, refit, refit_steps, env
        self.pushes = 0
        self.refits: list[RefitState] = []

    def _remote(self) -> _Remote:
        env = self._env if self._env is not None else self.training_env
        while not isinstance(env, _Remote):
            inner = getattr(env, "venv", None) or getattr(env, "env", None)
            if inner is None:
                raise ValueError("PushPolicy found no remote adept env; pass env=...")
            env = inner
        return env

    def _on_step(self) -> bool:
        if self.num_timesteps % self.every < self.training_env.num_envs:
            remote = self._remote()
            remote.update_policy(self.model)
            self.pushes += 1
            if self.do_refit:
                # while the previous refit still runs, skip: the next push tries again
                with contextlib.suppress(FailedPreconditionError):
                    self.refits.append(remote.session.refit(steps=self.refit_steps))
            if self.verbose:
                print(f"pushed policy #{self.pushes} at step {self.num_timesteps}; model version "
                      f"{remote.model_version}")
        return True
