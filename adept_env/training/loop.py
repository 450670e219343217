"""The ADEPT closed loop and its ablations, for the built-in IQL and for SB3 SAC: ``train()``.

``adept-iql``: H-step rollouts of the current policy in the world model from dataset states,
IQL updates on real + synthetic batches, importance-sampled refits of the model on a schedule.
``diff-iql``: the same with a model trained once, never refitted. ``iql``: real data only.
``adept-sac`` / ``diff-sac``: SB3 SAC trained against the world-model VecEnv with real data mixed
into its batches (with / without IS refits). ``sac``: SB3 SAC's updates on the real data only.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from adept_env.atomic import atomic_path
from adept_env.data.dataset import OfflineDataset
from adept_env.training.config import TrainConfig, TrainResult
from adept_env.training.iql_loop import train_iql
from adept_env.training.run import check_same_run


def train(dataset: OfflineDataset, config: TrainConfig, run_dir: str | Path, progress: bool = True,
          resume: bool = True, on_eval: Callable[[dict[str, float]], None] | None = None) -> TrainResult:
    """Train ``config.algo`` on ``dataset``; evaluate in the real simulator; checkpoint into ``run_dir``.

    A run directory with a checkpoint resumes from it (``resume=True``); one made with other
    settings is refused (``RunMismatchError``). Returns the curve, the final evaluation (10
    episodes at least) and the agent.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    saved = run_dir / "config.json"
    if resume and saved.exists() and (run_dir / "progress.json").exists():
        check_same_run(json.loads(saved.read_text()), asdict(config), run_dir)
    with atomic_path(saved) as tmp:
        tmp.write_text(json.dumps(asdict(config), indent=2))
    if config.algo.endswith("sac"):
        from adept_env.training.sac_loop import train_sac  # SB3 is imported only for the SAC variants

        return train_sac(dataset, config, run_dir, progress=progress, resume=resume, on_eval=on_eval)
    return train_iql(dataset, config, run_dir, progress=progress, resume=resume, on_eval=on_eval)
