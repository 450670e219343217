"""Real-simulator evaluation: the fast path for SB3 actors returns exactly what ``predict`` does."""

from __future__ import annotations

import numpy as np
from stable_baselines3 import SAC

from adept_env.sim import make_real_env
from adept_env.training.evaluation import _actor, evaluate


def test_sb3_actors_are_evaluated_with_their_deterministic_predict() -> None:
    model = SAC("MlpPolicy", make_real_env("Hopper-v5"), seed=0)
    act = _actor(model, deterministic=True)
    observations = np.random.default_rng(0).normal(size=(20, 11)).astype(np.float32)
    for obs in observations:
        np.testing.assert_array_equal(act(obs), model.predict(obs, deterministic=True)[0])
    # and the scores are those of predict's policy
    fast = evaluate(model, "hopper", episodes=2, seed=3)
    slow = evaluate(lambda obs: model.predict(obs, deterministic=True)[0], "hopper", episodes=2, seed=3)
    np.testing.assert_array_equal(fast.returns, slow.returns)
