"""adept-env: offline RL against an adaptive diffusion world model, as Gymnasium environments."""

__version__ = "0.1.0"

from adept_env.tasks import TASKS, get_task, normalized_score  # noqa: E402

__all__ = ["TASKS", "__version__", "get_task", "normalized_score"]
