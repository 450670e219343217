"""Train SB3 SAC against a running adept-env server, pushing policy snapshots on a schedule.

    adept-env serve --env ADEPT-halfcheetah-random --profile quick     # in one shell
    python clients/examples/train_sac_remote.py --target localhost:50051 --steps 20000

Every ``--push-every`` steps the SAC actor is sent to the server as a safetensors snapshot and
an importance-sampled refit starts there (skipped while the previous one runs); the env keeps
stepping the old model until the new one is swapped in. Needs adept-client and
stable-baselines3 (torch on this side only); ADEPT_API_TOKEN is sent when set.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--target", default="localhost:50051", help="gRPC host:port, or http://host:port")
    p.add_argument("--env-id", default="ADEPT-halfcheetah-random", help="environment id served by the server")
    p.add_argument("--num-envs", type=int, default=8, help="episodes stepped per call")
    p.add_argument("--steps", type=int, default=20_000, help="SAC environment steps")
    p.add_argument("--push-every", type=int, default=5_000, help="steps between policy pushes (+ refits)")
    p.add_argument("--refit-steps", type=int, default=None, help="gradient steps per refit (server default)")
    p.add_argument("--no-refit", action="store_true", help="push policies without starting refits")
    p.add_argument("--wait-server-s", type=float, default=900.0, help="wait this long for the server to answer")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save", type=Path, default=None, help="save the SAC model here at the end (.zip)")
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    from adept_client import wait_for_server
    from adept_client.sb3 import PushPolicy, RemoteVecEnv
    from stable_baselines3 import SAC
    from stable_baselines3.common.vec_env import VecMonitor

    wait_for_server(args.target, timeout_s=args.wait_server_s)
    env = RemoteVecEnv(args.target, args.env_id, num_envs=args.num_envs, seed=args.seed)
    print(f"session {env.session.session_id[:6]}… on {args.target}: {args.env_id} x{args.num_envs}, "
          f"model version {env.model_version}", flush=True)
    model = SAC("MlpPolicy", VecMonitor(env), seed=args.seed, verbose=0, device="cpu",
                learning_starts=min(1_000, args.steps // 2))
    push = PushPolicy(every=args.push_every, refit=not args.no_refit, refit_steps=args.refit_steps, verbose=1)
    start = time.perf_counter()
    model.learn(args.steps, callback=push)
    seconds = time.perf_counter() - start
    print(f"trained {args.steps} steps in {seconds:.0f} s ({args.steps / seconds:.0f} steps/s); "
          f"{push.pushes} pushes, {len(push.refits)} refits, model version {env.model_version}", flush=True)
    if args.save:
        model.save(args.save)
    env.close()


if __name__ == "__main__":
    main()
