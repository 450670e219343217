"""Stable-Baselines3 glue: ``RemoteVecEnv`` (an SB3 VecEnv over one remote session), ``PushPolicy`` and
``RemoteMixedReplayBuffer`` (real dataset transitions from the server mixed into SAC's batches).

Imports stable-baselines3 (``pip install adept-client[sb3]``); ``adept_client`` itself does not. torch is
SB3's: this module uses tensors' own methods and SB3's buffer helpers, never ``import torch``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvStepReturn

from adept_client.client import BaseClient, RefitState, RemoteSession, Transitions
from adept_client.env import _Remote, _spaces, open_session
from adept_client.errors import FailedPreconditionError


class RemoteVecEnv(_Remote, VecEnv):
    """An SB3 VecEnv of ``num_envs`` remote episodes (one Step call per step, same-step autoreset).

    SB3 semantics: a finished episode is reset in the same step; its last observation is in
    ``infos[i]["terminal_observation"]`` and a horizon cut sets ``infos[i]["TimeLimit.truncated"]``.
    With ``draws`` > 0 every Step also brings that many of the model's draws of each next state:
    ``infos[i]["next_samples"]`` (draws, obs_dim) and ``infos[i]["next_samples_terminated"]`` (draws,) bool,
    what ``RemoteMixedReplayBuffer``'s value penalty needs (the session's ``n_samples`` must be >= draws).
    """

    def __init__(self, target: str | BaseClient, env_id: str, num_envs: int = 1, *, token: str | None = None,
                 seed: int | None = None, overrides: dict[str, Any] | None = None, draws: int = 0,
                 **client_kwargs: Any) -> None:
        if draws < 0:
            raise ValueError(f"draws must be >= 0, got {draws}")
        self._client, self._owns_client, self.session = open_session(target, env_id, num_envs, token, seed,
                                                                     overrides, client_kwargs)
        self.env_id = env_id
        self.draws = int(draws)
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
        out = self.session.step(self._actions_pending, autoreset="same_step", draws=self.draws)
        self._actions_pending = None
        self._model_version = out.model_version
        dones = out.terminated | out.truncated
        infos: list[dict[str, Any]] = []
        for i in range(self.num_envs):
            info = {"raw_reward": float(out.raw_rewards[i]), "uncertainty": float(out.uncertainty[i]),
                    "halted": bool(out.halted[i]), "model_version": out.model_version}
            if self.draws:  # the draws of the next state before any reset: what the transition stores
                info["next_samples"] = out.next_state_draws[i]
                info["next_samples_terminated"] = out.draws_terminated[i]
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


def value_std(value: Callable[[Any], Any], states: Any, terminated: np.ndarray) -> Any:
    """Std over the K draws of ``(1 - done_k) * value(s'_k)``: states (B, K, D) tensor -> (B,) tensor.

    The formula of adept-env's in-process value penalty (``adept_env/training/value_penalty.py``), with
    ``done_k`` given (``terminated``, bool (B, K): the server's termination function on each draw)
    instead of computed here. ``states`` are what ``value`` scores (normalised when the agent's
    observations are). The std is torch's (Bessel-corrected), as there; no gradient flows.
    """
    n, k, dim = states.shape
    if terminated.shape != (n, k):
        raise ValueError(f"terminated has shape {terminated.shape}, the draws {(n, k)}")
    values = value(states.reshape(n * k, dim)).detach().reshape(n * k)
    alive = values.new_tensor(~np.asarray(terminated, bool).reshape(n * k))
    return (values * alive).reshape(n, k).std(dim=1)


class RemoteMixedReplayBuffer(ReplayBuffer):
    """The remote counterpart of adept-env's ``MixedReplayBuffer``: batches mix real dataset transitions
    (fetched from the server in pages once, cached here) with the agent's own.

    ``real_ratio`` of each batch comes from the dataset, the rest from what the agent collected in the
    world model, drawn exactly as the in-process buffer draws them (the same NumPy calls in the same
    order, so one seed gives the same batches). Pass it to SB3 as ``SAC(..., replay_buffer_class=
    RemoteMixedReplayBuffer, replay_buffer_kwargs={"dataset": env.session, "real_ratio": 0.5})``;
    ``dataset`` is a ``RemoteSession`` (its rows are fetched in pages of ``page_rows``, at most
    ``max_rows``), a remote env with a ``session``, or ``Transitions`` already fetched.

    ``value_penalty`` beta > 0 adds the MOBILE-style penalty of the in-process buffer to the synthetic
    transitions: a sampled batch's reward becomes ``r - beta * std_k[(1 - done_k) * min_j Q'_j(s'_k,
    pi(s'_k))]`` over the model's draws of each next state (``RemoteVecEnv(..., draws=K)`` puts them in
    ``infos``, K >= 2) with the agent's target critics and its deterministic action. Real transitions are
    not penalised. Call ``attach(model)`` with the SAC model before training.
    """

    def __init__(self, buffer_size: int, observation_space: gym.spaces.Space, action_space: gym.spaces.Space,
                 device: Any = "auto", n_envs: int = 1, optimize_memory_usage: bool = False,
                 handle_timeout_termination: bool = True, *, dataset: Transitions | RemoteSession | Any,
                 real_ratio: float = 0.5, value_penalty: float = 0.0, page_rows: int = 65_536,
                 max_rows: int | None = None, on_page: Callable[[int, int], None] | None = None) -> None:
        super().__init__(buffer_size, observation_space, action_space, device, n_envs=n_envs,
                         optimize_memory_usage=optimize_memory_usage,
                         handle_timeout_termination=handle_timeout_termination)
        if not 0.0 <= real_ratio <= 1.0:
            raise ValueError(f"real_ratio must be in [0, 1], got {real_ratio}")
        if value_penalty < 0:
            raise ValueError(f"value_penalty must be >= 0, got {value_penalty}")
        if not isinstance(dataset, Transitions):
            session = getattr(dataset, "session", dataset)
            if not isinstance(session, RemoteSession):
                raise TypeError("dataset must be a RemoteSession, a remote env (with .session) or Transitions, "
                                f"got {type(dataset).__name__}")
            dataset = session.fetch_transitions(page_rows=page_rows, max_rows=max_rows, on_page=on_page)
        if dataset.observations.shape[1:] != observation_space.shape:
            raise ValueError(f"dataset observations {dataset.observations.shape[1:]} do not match the env's "
                             f"{observation_space.shape}")
        if len(dataset.rewards) == 0:
            raise ValueError("the dataset has no rows")
        self.dataset = dataset
        self.real_ratio = real_ratio
        self.value_penalty = float(value_penalty)
        self.next_samples: np.ndarray | None = None
        """(buffer_size, n_envs, K, obs_dim): the model's draws of each stored next state."""
        self.next_terminated: np.ndarray | None = None
        """(buffer_size, n_envs, K) bool: the termination function on each draw."""
        self.penalty_mean = 0.0
        """Mean value penalty (before beta) of the last penalised batch."""
        self._policy: Any = None

    def attach(self, model: Any) -> None:
        """Give the buffer the SAC model whose actor and target critics score the draws."""
        self._policy = model.policy

    def add(self, obs: np.ndarray, next_obs: np.ndarray, action: np.ndarray, reward: np.ndarray,
            done: np.ndarray, infos: list[dict[str, Any]]) -> None:
        pos = self.pos
        super().add(obs, next_obs, action, reward, done, infos)
        if not self.value_penalty:
            return
        if any("next_samples" not in info or "next_samples_terminated" not in info for info in infos):
            raise ValueError("value_penalty needs the world model's draws in infos['next_samples'] and "
                             "infos['next_samples_terminated'] (RemoteVecEnv(..., draws=K) gives them)")
        draws = np.stack([np.asarray(info["next_samples"], np.float32) for info in infos])  # (n_envs, K, D)
        ended = np.stack([np.asarray(info["next_samples_terminated"], bool) for info in infos])  # (n_envs, K)
        if draws.ndim != 3 or draws.shape[1] < 2 or ended.shape != draws.shape[:2]:
            raise ValueError(f"value_penalty needs K >= 2 draws per next state with a flag each, got draws "
                             f"{draws.shape[1:]} and flags {ended.shape[1:]}")
        if self.next_samples is None:
            self.next_samples = np.zeros((self.buffer_size, self.n_envs, *draws.shape[1:]), np.float32)
            self.next_terminated = np.zeros((self.buffer_size, self.n_envs, draws.shape[1]), bool)
        self.next_samples[pos] = draws
        self.next_terminated[pos] = ended

    def _get_samples(self, batch_inds: np.ndarray, env: Any = None) -> ReplayBufferSamples:
        """SB3's own batch (its normalisation and memory layout), rewards minus beta * the value penalty."""
        if not self.value_penalty:
            return super()._get_samples(batch_inds, env)
        if self._policy is None:
            raise RuntimeError("value_penalty > 0: call attach(model) before training")
        env_indices = self._peek_env_indices(len(batch_inds))
        samples = super()._get_samples(batch_inds, env)
        if self.n_envs > 1 and not samples.actions.equal(self.to_torch(self.actions[batch_inds, env_indices])):
            raise RuntimeError("RemoteMixedReplayBuffer could not tell which envs SB3's ReplayBuffer._get_samples "
                               "drew (this stable-baselines3 draws them differently from 2.9)")
        penalty = self.bellman_std(self.next_samples[batch_inds, env_indices],
                                   self.next_terminated[batch_inds, env_indices], env)
        self.penalty_mean = float(penalty.mean())
        rewards = samples.rewards - self.value_penalty * penalty.reshape(-1, 1).to(samples.rewards)
        return samples._replace(rewards=rewards)

    def _peek_env_indices(self, n: int) -> np.ndarray:
        """The env indices SB3's ``ReplayBuffer._get_samples`` is about to draw for ``n`` rows, drawn from a copy
        of NumPy's global generator (as the in-process buffer does), which is left untouched."""
        generator = np.random.RandomState()
        generator.set_state(np.random.get_state())
        return generator.randint(0, high=self.n_envs, size=(n,))

    def bellman_std(self, draws: np.ndarray, terminated: np.ndarray, env: Any = None) -> Any:
        """Std over the K draws of ``(1 - done) * min_j Q'_j(s', pi(s'))``: draws (B, K, D) -> (B,) tensor.

        The actor and critics see the draws normalised by ``env`` (a VecNormalize, or None), as they see
        every observation they learn from; ``terminated`` is the server's flag of each raw draw."""
        policy = self._policy

        def value(states: Any) -> Any:
            actions = policy.actor(states, deterministic=True)  # the std is then the model's alone
            q_values = policy.critic_target(states, actions)
            lowest = q_values[0]
            for q in q_values[1:]:
                lowest = lowest.minimum(q)
            return lowest

        states = self.to_torch(np.asarray(self._normalize_obs(draws, env), np.float32))
        return value_std(value, states, terminated)

    def sample(self, batch_size: int, env: Any = None) -> ReplayBufferSamples:
        n_real = int(round(batch_size * self.real_ratio)) if self.size() > 0 else batch_size
        n_real = min(n_real, batch_size)
        ds = self.dataset
        idx = np.random.randint(0, len(ds.rewards), size=n_real)
        real = (
            self._normalize_obs(ds.observations[idx], env),
            ds.actions[idx],
            self._normalize_obs(ds.next_observations[idx], env),
            ds.terminals[idx].astype(np.float32).reshape(-1, 1),
            self._normalize_reward(ds.rewards[idx].reshape(-1, 1), env),
        )
        real_t = ReplayBufferSamples(*tuple(map(self.to_torch, real)))
        if n_real == batch_size:
            return real_t
        synthetic = super().sample(batch_size - n_real, env=env)
        joined = []
        for a, b in zip(real_t[:5], synthetic[:5], strict=True):  # torch.cat, with tensor methods only
            both = a.new_empty((len(a) + len(b), *a.shape[1:]))
            both[:len(a)] = a
            both[len(a):] = b
            joined.append(both)
        return ReplayBufferSamples(*joined)
