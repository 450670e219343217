"""stable-baselines3 glue: a native VecEnv, a policy-sync callback and a mixed replay buffer."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvStepReturn

from adept_env.data.dataset import OfflineDataset, load_dataset
from adept_env.envs.core import FollowsAgent, WorldModelCore
from adept_env.envs.episodes import AutoresetMode, EpisodeBatch, build_core
from adept_env.envs.world_model_env import action_space, observation_space
from adept_env.training.value_penalty import value_std


class WorldModelVecEnv(FollowsAgent, VecEnv):
    """An SB3 VecEnv stepping ``num_envs`` synthetic episodes in one world-model call.

    SB3 semantics: a finished episode is reset in the same step; its last observation is in
    ``infos[i]["terminal_observation"]`` and a horizon cut sets ``infos[i]["TimeLimit.truncated"]``.
    ``infos[i]["next_samples"]`` holds the model's K draws of that next state (K, obs_dim).
    """

    def __init__(self, dataset: str | OfflineDataset = "halfcheetah-random", num_envs: int = 1, *,
                 core: WorldModelCore | None = None, seed: int | None = None, progress: bool = True,
                 **overrides: Any) -> None:
        self.core = core if core is not None else build_core(dataset, progress=progress, **overrides)
        task = self.core.task
        self.render_mode = None
        super().__init__(num_envs, observation_space(task.obs_dim), action_space(task.act_dim))
        self._episodes = EpisodeBatch(self.core, num_envs)
        self._rng = np.random.default_rng(seed)
        self._actions: np.ndarray | None = None

    def reset(self) -> np.ndarray:
        if self._seeds[0] is not None:
            self._rng = np.random.default_rng(self._seeds[0])
        self._reset_seeds()
        self._reset_options()
        return self._episodes.reset(self._rng)

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise RuntimeError("step_async() must come before step_wait()")
        out = self._episodes.step(self._actions, self._rng, autoreset=AutoresetMode.SAME_STEP)
        self._actions = None
        dones = out.terminated | out.truncated
        infos = [out.info(i) for i in range(self.num_envs)]
        for i in np.flatnonzero(dones):
            infos[i]["terminal_observation"] = out.final_observations[i]
            infos[i]["TimeLimit.truncated"] = bool(out.truncated[i] and not out.terminated[i])
        return out.observations, out.rewards, dones, infos

    def close(self) -> None:
        pass

    # The N envs are one object over one core: an attribute is read or set once and a method runs
    # once (N calls of update_policy would count N policy updates), the answer repeated per index.
    def _count(self, indices: VecEnvIndices) -> int:
        return self.num_envs if indices is None else len([indices] if isinstance(indices, int) else list(indices))

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [getattr(self, attr_name)] * self._count(indices)

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None,
                   **method_kwargs: Any) -> list[Any]:
        return [getattr(self, method_name)(*method_args, **method_kwargs)] * self._count(indices)

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [False] * self._count(indices)


def find_cores(env: Any) -> list[WorldModelCore]:
    """Return the distinct world-model cores behind an env (SB3 VecEnvs, wrappers, ours)."""
    found: list[WorldModelCore] = []
    stack = [env]
    while stack:
        item = stack.pop()
        core = getattr(item, "core", None)
        if isinstance(core, WorldModelCore):
            if all(core is not c for c in found):
                found.append(core)
            continue
        if hasattr(item, "venv"):  # SB3 VecEnv wrappers (VecMonitor, VecNormalize, ...)
            stack.append(item.venv)
        elif hasattr(item, "envs"):  # DummyVecEnv
            stack.extend(item.envs)
        elif hasattr(item, "unwrapped") and item.unwrapped is not item:
            stack.append(item.unwrapped)
    return found


class PolicySync(BaseCallback):
    """Push the agent's policy to the world-model env every ``every`` steps.

    With ``refit=True`` each push also starts a background importance-sampled refit (the env
    keeps stepping the old model until the new one is swapped in); a push while the previous
    refit still runs starts none (one refit at a time per world model). ``env`` defaults to the
    model's training env.
    """

    def __init__(self, every: int = 5_000, refit: bool = False, env: Any = None, verbose: int = 0) -> None:
        super().__init__(verbose)
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.every = every
        self.refit = refit
        self._env = env
        self.cores: list[WorldModelCore] = []
        self.pushes = 0

    def _on_training_start(self) -> None:
        self.cores = find_cores(self._env if self._env is not None else self.training_env)
        if not self.cores:
            raise ValueError("PolicySync found no ADEPT world-model env; pass env=... explicitly")

    def _on_step(self) -> bool:
        if self.num_timesteps % self.every < self.training_env.num_envs:
            for core in self.cores:
                core.update_policy(self.model)
                if self.refit:
                    core.refit_if_idle()  # while one runs this push's refit is skipped (core.skipped_refits)
            self.pushes += 1
            self.logger.record("adept/model_version", self.cores[0].model_version)
        return True


class MixedReplayBuffer(ReplayBuffer):
    """A replay buffer whose batches mix real dataset transitions with the agent's own.

    ``real_ratio`` of each batch comes from ``dataset`` (an OfflineDataset or a dataset name),
    the rest from what the agent collected in the world model. Pass it to SB3 as
    ``SAC(..., replay_buffer_class=MixedReplayBuffer, replay_buffer_kwargs={"dataset": ds, "real_ratio": 0.5})``.

    ``value_penalty`` beta > 0 adds a MOBILE-style Bellman-inconsistency penalty (Sun et al., 2023)
    to the synthetic transitions: the buffer keeps the world model's K draws of each next state
    (``infos[i]["next_samples"]``, K >= 2) and a sampled batch's reward becomes
    ``r - beta * std_k[(1 - done_k) * min_j Q'_j(s'_k, a'_k)]`` with the agent's target critics and
    a'_k its deterministic action at s'_k: the disagreement of the Bellman targets the model's
    draws imply. (MOBILE samples a'_k and averages over several draws per ensemble member; with
    one action per draw, sampling would add the policy's own noise to the std.) Real transitions
    are not penalised. Call ``attach(model)`` with the SAC model before training.

    Synthetic transitions are always SB3's own ``ReplayBuffer._get_samples`` (so ``VecNormalize``
    and ``optimize_memory_usage`` work as in SB3), with the penalty subtracted from its rewards;
    the critics score the draws normalised like every other observation, the termination
    function reads them raw.
    """

    def __init__(self, buffer_size: int, observation_space: gym.spaces.Space, action_space: gym.spaces.Space,
                 device: torch.device | str = "auto", n_envs: int = 1, optimize_memory_usage: bool = False,
                 handle_timeout_termination: bool = True, *, dataset: OfflineDataset | str,
                 real_ratio: float = 0.5, value_penalty: float = 0.0) -> None:
        super().__init__(buffer_size, observation_space, action_space, device, n_envs=n_envs,
                         optimize_memory_usage=optimize_memory_usage,
                         handle_timeout_termination=handle_timeout_termination)
        if not 0.0 <= real_ratio <= 1.0:
            raise ValueError(f"real_ratio must be in [0, 1], got {real_ratio}")
        self.dataset = dataset if isinstance(dataset, OfflineDataset) else load_dataset(dataset)
        if self.dataset.observations.shape[1:] != observation_space.shape:
            raise ValueError(
                f"dataset observations {self.dataset.observations.shape[1:]} do not match "
                f"the env's {observation_space.shape}"
            )
        self.real_ratio = real_ratio
        if value_penalty < 0:
            raise ValueError(f"value_penalty must be >= 0, got {value_penalty}")
        self.value_penalty = float(value_penalty)
        self.next_samples: np.ndarray | None = None
        """(buffer_size, n_envs, K, obs_dim): the model's draws of each stored next state."""
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
        if any("next_samples" not in info for info in infos):
            raise ValueError("value_penalty needs the world model's draws in infos['next_samples'] "
                             "(WorldModelVecEnv gives them)")
        draws = np.stack([np.asarray(info["next_samples"], np.float32) for info in infos])  # (n_envs, K, D)
        if draws.ndim != 3 or draws.shape[1] < 2:
            raise ValueError(f"value_penalty needs K >= 2 draws per next state, got shape {draws.shape[1:]}")
        if self.next_samples is None:
            self.next_samples = np.zeros((self.buffer_size, self.n_envs, *draws.shape[1:]), np.float32)
        self.next_samples[pos] = draws

    def _get_samples(self, batch_inds: np.ndarray, env: Any = None) -> ReplayBufferSamples:
        """SB3's own batch (its normalisation and memory layout), rewards minus beta * the value penalty.

        The rewards the penalty is taken from are SB3's, normalised when ``env`` is a VecNormalize:
        the penalty is in the critics' units, and the critics learn from those rewards.
        """
        if not self.value_penalty:
            return super()._get_samples(batch_inds, env)
        if self._policy is None:
            raise RuntimeError("value_penalty > 0: call attach(model) before training")
        env_indices = self._peek_env_indices(len(batch_inds))
        samples = super()._get_samples(batch_inds, env)
        if self.n_envs > 1 and not torch.equal(samples.actions,
                                               self.to_torch(self.actions[batch_inds, env_indices])):
            raise RuntimeError("MixedReplayBuffer could not tell which envs SB3's ReplayBuffer._get_samples "
                               "drew (this stable-baselines3 draws them differently from 2.9)")
        penalty = self.bellman_std(self.next_samples[batch_inds, env_indices], env)
        self.penalty_mean = float(penalty.mean())
        rewards = samples.rewards - self.value_penalty * penalty.reshape(-1, 1).to(samples.rewards)
        return samples._replace(rewards=rewards)

    def _peek_env_indices(self, n: int) -> np.ndarray:
        """The env indices SB3's ``ReplayBuffer._get_samples`` is about to draw for ``n`` rows.

        SB3 draws them first, as ``np.random.randint(0, high=n_envs, size=(n,))`` from NumPy's
        global generator. The same call on a copy of that generator gives the same indices and
        leaves the global one untouched, so SB3's draw and every later one are as without us.
        """
        generator = np.random.RandomState()
        generator.set_state(np.random.get_state())
        return generator.randint(0, high=self.n_envs, size=(n,))

    def bellman_std(self, draws: np.ndarray, env: Any = None) -> torch.Tensor:
        """Std over the K draws of ``(1 - done) * min_j Q'_j(s', pi(s'))``; raw draws (B, K, D) -> (B,).

        The task's termination function reads the raw draws; the actor and critics see them
        normalised by ``env`` (a VecNormalize, or None), as they see every observation they learn from.
        """
        policy = self._policy

        def value(states: torch.Tensor) -> torch.Tensor:
            actions = policy.actor(states, deterministic=True)  # the std is then the model's alone
            return torch.cat(policy.critic_target(states, actions), dim=1).min(dim=1).values

        return value_std(value, draws, self.dataset.task, device=self.device,
                         value_inputs=self._normalize_obs(draws, env))

    def sample(self, batch_size: int, env: Any = None) -> ReplayBufferSamples:
        n_real = int(round(batch_size * self.real_ratio)) if self.size() > 0 else batch_size
        n_real = min(n_real, batch_size)
        idx = np.random.randint(0, len(self.dataset), size=n_real)
        ds = self.dataset
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
        return ReplayBufferSamples(
            *(torch.cat([a, b.to(a.dtype)]) for a, b in zip(real_t[:5], synthetic[:5], strict=True))
        )
