"""IQL's hyper-parameters (no torch: ``adept-env train`` builds its options from them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class IQLConfig:
    """Hyper-parameters of IQL (CORL's D4RL locomotion defaults)."""

    hidden: int = 256
    """Width of the two hidden layers of every network."""
    discount: float = 0.99
    """Discount factor gamma."""
    tau: float = 0.005
    """Soft-update rate of the target Q networks."""
    expectile: float = 0.7
    """Expectile of the value loss (0.5 = mean; higher = more optimistic within the data)."""
    beta: float = 3.0
    """Inverse temperature of the advantage weights."""
    max_weight: float = 100.0
    """Clip of exp(beta * advantage)."""
    actor_lr: float = 3e-4
    """Learning rate of the actor (cosine-decayed over ``max_steps``)."""
    critic_lr: float = 3e-4
    """Learning rate of the Q and V networks."""
    max_steps: int = 1_000_000
    """Updates the actor's learning-rate schedule spans."""
    seed: int = 0
    """Seed of the network initialisation and the actor's sampling."""
    normalize_states: bool = True
    """Standardise observations by the dataset's mean and std (+ 1e-3) inside every network, as
    CORL's IQL does; the agent's inputs and outputs stay in environment units."""

    def __post_init__(self) -> None:
        if not 0.0 < self.expectile < 1.0:
            raise ValueError(f"IQL expectile must be in (0, 1), got {self.expectile}")
        if self.beta <= 0.0:
            raise ValueError(f"IQL beta must be > 0, got {self.beta}")
        for name in ("hidden", "max_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"IQL {name} must be >= 1, got {getattr(self, name)}")
