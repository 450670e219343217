"""Agents: the built-in IQL (``IQL`` loads torch on first use; ``IQLConfig`` does not)."""

from __future__ import annotations

from typing import Any

from adept_env.agents.iql_config import IQLConfig

__all__ = ["IQL", "IQLConfig"]


def __getattr__(name: str) -> Any:
    if name == "IQL":
        from adept_env.agents.iql import IQL

        return IQL
    raise AttributeError(f"module 'adept_env.agents' has no attribute {name!r}")
