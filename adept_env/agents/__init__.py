"""Agents: the built-in IQL."""

from adept_env.agents.iql import IQL, IQLConfig

__all__ = ["IQL", "IQLConfig"]
