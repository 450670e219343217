"""Train RLlib SAC against a running adept-env server: several env runners step one shared world model.

    adept-env serve --env ADEPT-halfcheetah-random --profile quick          # in one shell
    python clients/examples/train_rllib_remote.py --target localhost:50051 --env-runners 2 --iterations 20

Every env runner's env is an ``adept_client.RemoteEnv`` (a session) with the same token, env id
and overrides, so on the server they all step one engine (one world model). Every
``--push-every`` iterations the learner's policy is sent as log pi(a|s) of a sample of dataset
rows and a refit starts there (skipped while the previous one runs); the runners keep stepping
the old model until the new one is swapped in. ``--ray-address`` joins an existing Ray cluster
(the server must be reachable from every node; ADEPT_API_TOKEN travels to the workers as a
runtime env variable). Needs adept-client and ``ray[rllib]`` (torch on this side only).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from functools import partial
from typing import Any


def parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--target", default="localhost:50051", help="gRPC host:port, or http://host:port")
    p.add_argument("--token", default=None, help="API token (default: $ADEPT_API_TOKEN, read by every process)")
    p.add_argument("--env-id", default="ADEPT-halfcheetah-random", help="environment id served by the server")
    p.add_argument("--override", action="append", default=[], metavar="KEY=JSON",
                   help="session override shared by every env (e.g. horizon=200); repeatable")
    p.add_argument("--env-runners", type=int, default=2, help="RLlib env runners (one server session each)")
    p.add_argument("--iterations", type=int, default=20, help="Algorithm.train() calls")
    p.add_argument("--steps-per-iteration", type=int, default=1_000, help="env steps sampled per iteration (least)")
    p.add_argument("--rollout-fragment-length", type=int, default=16, help="env steps per runner per sample call")
    p.add_argument("--learning-starts", type=int, default=1_000, help="env steps sampled before SAC updates")
    p.add_argument("--batch-size", type=int, default=256, help="SAC train batch per learner")
    p.add_argument("--hidden", type=int, nargs="+", default=[256, 256], help="hidden layer sizes")
    p.add_argument("--push-every", type=int, default=5, help="iterations between policy pushes (+ refits)")
    p.add_argument("--refit-steps", type=int, default=None, help="gradient steps per refit (server default)")
    p.add_argument("--sample-size", type=int, default=50_000, help="dataset rows whose log-probs are sent")
    p.add_argument("--no-refit", action="store_true", help="push policies without starting refits")
    p.add_argument("--ray-address", default=None, help="join this Ray cluster (default: start a local Ray)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray (default: one per env runner)")
    p.add_argument("--wait-server-s", type=float, default=900.0, help="wait this long for the server to answer")
    p.add_argument("--seed", type=int, default=0)
    return p


def overrides_of(pairs: list[str]) -> dict[str, Any]:
    """Return {key: value} of KEY=JSON pairs (a value that is not JSON stays a string)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--override wants KEY=VALUE, got {pair!r}")
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value
    return out


def sac_config(args: argparse.Namespace, **client_kwargs: Any) -> Any:
    """Return the SAC config: env runners over the remote env, a push callback on the driver
    (``client_kwargs`` go to every env's client, e.g. ``timeout_s``)."""
    from adept_client.rllib import PushPolicyCallback, env_config, register
    from ray.rllib.algorithms.sac import SACConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    config = (
        SACConfig()
        .environment(register(), env_config=env_config(args.target, args.env_id, token=args.token,
                                                        overrides=overrides_of(args.override), seed=args.seed,
                                                        **client_kwargs))
        .env_runners(num_env_runners=args.env_runners, num_envs_per_env_runner=1,
                     rollout_fragment_length=args.rollout_fragment_length)
        .training(train_batch_size_per_learner=args.batch_size,
                  num_steps_sampled_before_learning_starts=args.learning_starts)
        .rl_module(model_config=DefaultModelConfig(fcnet_hiddens=list(args.hidden)))
        .reporting(min_time_s_per_iteration=0, min_sample_timesteps_per_iteration=args.steps_per_iteration)
        .callbacks(partial(PushPolicyCallback, every=args.push_every, refit=not args.no_refit,
                           refit_steps=args.refit_steps, sample_size=args.sample_size))
        .debugging(seed=args.seed, log_level="ERROR")
    )
    return config


def build(args: argparse.Namespace) -> Any:
    """Return the SAC algorithm of ``sac_config(args)``."""
    return sac_config(args).build_algo()


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    import ray
    from adept_client import wait_for_server
    from adept_client.client import default_token
    from adept_client.rllib import push_callbacks

    wait_for_server(args.target, args.token or default_token(), timeout_s=args.wait_server_s)
    token_env = os.environ.get("ADEPT_API_TOKEN")
    runtime_env = {"env_vars": {"ADEPT_API_TOKEN": token_env}} if token_env and not args.token else None
    if args.ray_address:
        ray.init(address=args.ray_address, runtime_env=runtime_env)
    else:
        ray.init(address="local", num_cpus=args.num_cpus or max(args.env_runners, 1), include_dashboard=False,
                 runtime_env=runtime_env)
    algo = build(args)
    (push,) = push_callbacks(algo)
    print(f"SAC on {args.env_id} via {args.target}: {args.env_runners} env runners, one shared world model",
          flush=True)
    start = time.perf_counter()
    last_return = math.nan
    try:
        for _ in range(args.iterations):
            result = algo.train()
            runners, adept = result.get("env_runners", {}), result["adept"]
            episode_return = float(runners.get("episode_return_mean", math.nan))
            last_return = episode_return if math.isfinite(episode_return) else last_return
            print(f"iter {result['training_iteration']:3d}  episode return {last_return:9.2f}  "
                  f"env steps {int(runners.get('num_env_steps_sampled_lifetime', 0)):7d}  "
                  f"model version {adept['model_version']:3d}  pushes {adept['policy_pushes']:3d}  "
                  f"refits {adept['refits_done']}/{adept['refits_started']}"
                  f"{' (running)' if adept['refit_running'] else ''}  {time.perf_counter() - start:6.0f} s",
                  flush=True)
        final = push.wait(algo) if push.refit_running() else None
        if final is not None:
            print(f"last refit {final.state}: model version {push.model_version}", flush=True)
        metrics = push.metrics()
        print(f"done in {time.perf_counter() - start:.0f} s: {metrics['policy_pushes']} pushes, "
              f"{metrics['refits_done']} refits, model version {metrics['model_version']}", flush=True)
    finally:
        push.close()
        algo.stop()
        ray.shutdown()


if __name__ == "__main__":
    main()
