"""Train SB3 SAC against a running adept-env server with the measured adept-sac recipe, scored in real MuJoCo.

    adept-env serve --env ADEPT-halfcheetah-random --preload --progress     # in one shell
    python clients/examples/train_sac_remote.py --target localhost:50051 --steps 60000 --out runs/remote-sac

The recipe of ``adept-env train DATASET --algo adept-sac`` (adept_env/training/sac_loop.py), remotely:

* SAC steps ``--num-envs`` world-model episodes of ``--horizon`` steps through one server session;
  ``--steps`` counts agent gradient updates as ``adept-env train --budget`` does (SB3 SAC makes one per
  vector step, so the run is ``steps * num_envs`` environment steps, ``--learning-starts`` of them first);
* each batch mixes ``--real-ratio`` real dataset transitions, fetched from the server in pages once and
  cached here, with the agent's own (``adept_client.sb3.RemoteMixedReplayBuffer``), optionally with the
  value penalty (``--value-penalty``: the server returns the model's ``--value-samples`` draws per step);
* every ``--refit-every`` updates the actor is pushed to the server and an importance-sampled refit starts
  there (skipped while the previous one runs); stepping continues on the old model until the new one is in;
* every ``--eval-every`` updates the policy plays ``--eval-episodes`` real MuJoCo episodes (the final
  evaluation at least 10, as adept-env train), D4RL-normalised (``adept_client.evaluation``).

``--out DIR`` gets ``curve.json`` (one row per evaluation), ``learning_curve.png``, ``score.json`` (the
final score and the settings) and ``policy.safetensors`` + ``policy.json`` (the actor, adept-env's
sac-actor snapshot format). Needs ``pip install "adept-client[recipe]"`` (SB3, MuJoCo, matplotlib); torch
runs on this side only. ADEPT_API_TOKEN is sent when set.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any


def parser() -> argparse.ArgumentParser:
    """Return the command-line parser (defaults: adept-env train's for adept-sac)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--target", default="localhost:50051", help="gRPC host:port, or http://host:port")
    p.add_argument("--env-id", default="ADEPT-halfcheetah-random", help="environment id served by the server")
    p.add_argument("--steps", type=int, default=60_000,
                   help="agent gradient updates, as adept-env train --budget (env steps: steps x num-envs)")
    p.add_argument("--num-envs", type=int, default=8, help="world-model episodes stepped per call (sac_envs)")
    p.add_argument("--batch-size", type=int, default=256, help="agent minibatch size")
    p.add_argument("--real-ratio", type=float, default=0.5, help="share of real transitions in each batch")
    p.add_argument("--learning-starts", type=int, default=None,
                   help="env steps before the first update (default: min(5000, steps // 10), as adept-env train)")
    p.add_argument("--critics", type=int, default=2, help="SAC Q-networks (the target takes their minimum)")
    p.add_argument("--horizon", type=int, default=5, help="steps per synthetic episode")
    p.add_argument("--penalty", type=float, default=1.0, help="uncertainty penalty lambda of r - lambda * u")
    p.add_argument("--value-penalty", type=float, default=0.0,
                   help="beta of the value penalty r - beta * std of the critics over the model's draws (0: off)")
    p.add_argument("--value-samples", type=int, default=8, help="next-state draws per step for --value-penalty")
    p.add_argument("--refit-every", type=int, default=20_000, help="updates between policy pushes with a refit")
    p.add_argument("--refit-steps", type=int, default=None, help="gradient steps per refit (server default)")
    p.add_argument("--no-refit", action="store_true", help="push policies without starting refits")
    p.add_argument("--eval-every", type=int, default=10_000, help="updates between real-simulator evaluations")
    p.add_argument("--eval-episodes", type=int, default=5, help="real episodes per evaluation")
    p.add_argument("--final-episodes", type=int, default=None,
                   help="real episodes of the final evaluation (default: max(eval-episodes, 10), as adept-env train)")
    p.add_argument("--out", type=Path, default=Path("runs/remote-sac"), help="folder of the curve, score and policy")
    p.add_argument("--device", default="auto", help="torch device of the agent: auto, cpu, cuda or cuda:N")
    p.add_argument("--page-rows", type=int, default=65_536, help="dataset rows fetched per call")
    p.add_argument("--wait-server-s", type=float, default=900.0, help="wait this long for the server to answer")
    p.add_argument("--seed", type=int, default=0, help="seed of the agent, the session and the evaluations")
    return p


def check(args: argparse.Namespace) -> None:
    """Refuse settings out of range before anything starts (exit 2, naming the valid range)."""
    positive = ("steps", "num_envs", "batch_size", "critics", "horizon", "refit_every", "eval_every",
                "eval_episodes", "page_rows")
    problems = [f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}"
                for name in positive if getattr(args, name) < 1]
    if not 0.0 <= args.real_ratio <= 1.0:
        problems.append(f"--real-ratio must be in [0, 1], got {args.real_ratio}")
    for name in ("penalty", "value_penalty"):
        if getattr(args, name) < 0:
            problems.append(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    if args.value_samples < 2:
        problems.append(f"--value-samples must be >= 2, got {args.value_samples}")
    if args.final_episodes is not None and args.final_episodes < 1:
        problems.append(f"--final-episodes must be >= 1, got {args.final_episodes}")
    if args.learning_starts is not None and args.learning_starts < 0:
        problems.append(f"--learning-starts must be >= 0, got {args.learning_starts}")
    if problems:
        parser().error("; ".join(problems))


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` beside ``path``, then rename it over ``path`` (readers never see a partial file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(name, 0o644)
        os.replace(name, path)
    finally:
        if os.path.exists(name):
            os.unlink(name)


def plot_curve(curve: list[dict[str, Any]], title: str, path: Path) -> None:
    """Write the learning curve (normalised score ± std over updates) as a PNG."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    x = np.array([row["update"] for row in curve])
    y = np.array([row["score_mean"] for row in curve])
    s = np.array([row["score_std"] for row in curve])
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(x, y, marker="o")
    ax.fill_between(x, y - s, y + s, alpha=0.2)
    ax.set_xlabel("agent updates")
    ax.set_ylabel("D4RL-normalised score (real MuJoCo)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    write_atomic(path, buffer.getvalue())


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the recipe; return what ``score.json`` holds."""
    args = parser().parse_args(argv)
    check(args)
    from adept_client import wait_for_server
    from adept_client.evaluation import evaluate, mujoco_available, task_of
    from adept_client.policy import sac_snapshot
    from adept_client.sb3 import PushPolicy, RemoteMixedReplayBuffer, RemoteVecEnv
    from stable_baselines3 import SAC
    from stable_baselines3.common.callbacks import BaseCallback

    task = task_of(args.env_id)
    if not mujoco_available():
        parser().error("the real-simulator evaluation needs MuJoCo: pip install 'adept-client[mujoco]'")
    learning_starts = min(5_000, args.steps // 10) if args.learning_starts is None else args.learning_starts
    final_episodes = max(args.eval_episodes, 10) if args.final_episodes is None else args.final_episodes
    draws = args.value_samples if args.value_penalty else 0
    overrides: dict[str, Any] = {"horizon": args.horizon, "penalty": args.penalty}
    if draws:
        overrides["n_samples"] = draws
    wait_for_server(args.target, timeout_s=args.wait_server_s)
    started = time.perf_counter()
    env = RemoteVecEnv(args.target, args.env_id, num_envs=args.num_envs, seed=args.seed, overrides=overrides,
                       draws=draws)
    print(f"session {env.session.session_id[:6]}… on {args.target}: {args.env_id} x{args.num_envs}, "
          f"model version {env.model_version}, {env.session.info.dataset_rows} dataset rows", flush=True)
    fetch_started = time.perf_counter()
    model = SAC("MlpPolicy", env, batch_size=args.batch_size, learning_starts=learning_starts,
                policy_kwargs={"n_critics": args.critics}, replay_buffer_class=RemoteMixedReplayBuffer,
                replay_buffer_kwargs={"dataset": env.session, "real_ratio": args.real_ratio,
                                      "value_penalty": args.value_penalty, "page_rows": args.page_rows},
                seed=args.seed, device=args.device, verbose=0)
    buffer = model.replay_buffer
    buffer.attach(model)
    print(f"fetched {len(buffer.dataset.rewards)} real transitions in {time.perf_counter() - fetch_started:.1f} s",
          flush=True)
    out: Path = args.out
    curve: list[dict[str, Any]] = []
    push = PushPolicy(every=args.refit_every * args.num_envs, refit=not args.no_refit, refit_steps=args.refit_steps)
    window = {"update": 0, "time": time.perf_counter()}

    def evaluate_now(updates: int) -> Any:
        final = updates >= args.steps
        since = time.perf_counter() - window["time"]
        result = evaluate(model, task, episodes=final_episodes if final else args.eval_episodes,
                          seed=args.seed * 1000 + updates)
        row = {"update": updates, "score_mean": result.score_mean, "score_std": result.score_std,
               "return_mean": result.return_mean, "model_version": env.model_version, "pushes": push.pushes,
               "refits": len(push.refits), "sps": (updates - window["update"]) / max(since, 1e-9),
               "seconds": time.perf_counter() - started}
        if args.value_penalty:
            row["value_penalty_mean"] = buffer.penalty_mean
        curve.append(row)
        write_atomic(out / "curve.json", json.dumps(curve, indent=2).encode())
        plot_curve(curve, f"remote adept-sac on {args.env_id}", out / "learning_curve.png")
        print(f"update {updates}: score {result.score_mean:.1f} ± {result.score_std:.1f} over "
              f"{len(result.returns)} real episodes; model version {env.model_version}; "
              f"{row['sps']:.0f} updates/s", flush=True)
        window.update(update=updates, time=time.perf_counter())
        return result

    class EvaluateEvery(BaseCallback):
        """Evaluate every ``args.eval_every`` gradient updates (SB3 SAC: one per vector step), as adept-env train."""

        def __init__(self) -> None:
            super().__init__()
            self.last: Any = None

        def _on_step(self) -> bool:
            updates = self.num_timesteps // args.num_envs
            if updates % args.eval_every == 0:
                self.last = evaluate_now(updates)
            return True

    evaluation = EvaluateEvery()
    model.learn(args.steps * args.num_envs, callback=[evaluation, push], progress_bar=False)
    final = evaluation.last if args.steps % args.eval_every == 0 else evaluate_now(args.steps)
    safetensors, spec = sac_snapshot(model, name=f"remote-adept-sac-{task}")
    write_atomic(out / "policy.safetensors", safetensors)
    write_atomic(out / "policy.json", spec.encode())
    seconds = time.perf_counter() - started
    settings = {key: (str(value) if isinstance(value, Path) else value) for key, value in vars(args).items()}
    settings.update(learning_starts=learning_starts, final_episodes=final_episodes)
    report = {"env_id": args.env_id, "updates": args.steps, "final": final.as_dict(), "curve": curve,
              "model_version": env.model_version, "pushes": push.pushes, "refits": len(push.refits),
              "seconds": seconds, "settings": settings}
    write_atomic(out / "score.json", json.dumps(report, indent=2).encode())
    print(f"final D4RL-normalised score {final.score_mean:.1f} ± {final.score_std:.1f} over "
          f"{len(final.returns)} real episodes after {args.steps} updates ({seconds:.0f} s; {push.pushes} pushes, "
          f"{len(push.refits)} refits, model version {env.model_version}); wrote {out}", flush=True)
    env.close()
    return report


if __name__ == "__main__":
    main()
