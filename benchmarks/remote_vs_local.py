"""Remote = local: adept-sac over the wire (``clients/examples/train_sac_remote.py`` against ``adept-env serve``)
beside in-process ``adept-env train --algo adept-sac`` at the same settings, one seed each, side by side.

Usage: python benchmarks/remote_vs_local.py --dataset halfcheetah-random --updates 60000 --eval-every 10000 \
           --profile small --out runs/remote_vs_local

Both runs use the same cached dataset and world model (fitted first, once). The server gets a fresh state
folder; the two trainings run at the same time (one torch thread each, the server one more). Prints both
curves and final scores and writes ``remote_vs_local.png`` (both curves) and ``remote_vs_local.json``.
The local run resumes when rerun; the remote one starts again.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from adept_env.benchmarks.compare import compare
from adept_env.benchmarks.system import cpu_model

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="halfcheetah-random")
    parser.add_argument("--updates", type=int, default=60_000)
    parser.add_argument("--eval-every", type=int, default=10_000)
    parser.add_argument("--profile", default="small")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/remote_vs_local"))
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cli = [sys.executable, "-m", "adept_env.cli"]
    print(f"cpu: {cpu_model()}", flush=True)
    subprocess.run([*cli, "model", "fit", args.dataset, "--profile", args.profile, "--threads", "2"],
                   check=True, env=env)
    grpc_port, http_port = free_port(), free_port()
    state = out / "server-state"
    shutil.rmtree(state, ignore_errors=True)  # a new session would resume the last run's refitted model
    logs = contextlib.ExitStack()
    server_log, remote_log, local_log = (logs.enter_context((out / f"{name}.log").open("w"))
                                         for name in ("server", "remote", "local"))
    server = subprocess.Popen(
        [*cli, "serve", "--env", f"ADEPT-{args.dataset}", "--profile", args.profile, "--preload", "--no-progress",
         "--torch-threads", "1", "--state-dir", str(state), "--grpc-port", str(grpc_port),
         "--http-port", str(http_port), "--host", "127.0.0.1"],
        env=env, stdout=server_log, stderr=subprocess.STDOUT)
    try:
        start = time.perf_counter()
        remote = subprocess.Popen(
            [sys.executable, str(ROOT / "clients/examples/train_sac_remote.py"), "--target",
             f"127.0.0.1:{grpc_port}", "--env-id", f"ADEPT-{args.dataset}", "--steps", str(args.updates),
             "--eval-every", str(args.eval_every), "--seed", str(args.seed), "--out", str(out / "remote")],
            env=env, stdout=remote_log, stderr=subprocess.STDOUT)
        local = subprocess.Popen(
            [*cli, "train", args.dataset, "--algo", "adept-sac", "--profile", args.profile, "--budget",
             str(args.updates), "--eval-every", str(args.eval_every), "--seed", str(args.seed), "--threads", "1",
             "--no-progress", "--out", str(out / "local")],
            env=env, stdout=local_log, stderr=subprocess.STDOUT)
        codes = {"remote": remote.wait(), "local": local.wait()}
        seconds = time.perf_counter() - start
    finally:
        server.terminate()
        server.wait(timeout=60)
        logs.close()
    if any(codes.values()):
        raise SystemExit(f"a run failed ({codes}); see {out}/remote.log and {out}/local.log")
    remote_score = json.loads((out / "remote" / "score.json").read_text())["final"]
    local_rows = json.loads((out / "local" / "progress.json").read_text())["curve"]
    table = compare({"local (adept-env train)": out / "local", "remote (train_sac_remote.py)": out / "remote"},
                    out / "remote_vs_local.png", title=f"{args.dataset}: adept-sac in-process vs over gRPC")
    print(table)
    report = {"cpu": cpu_model(), "date": time.strftime("%Y-%m-%d"), "seconds": seconds, "settings": vars(args) | {
        "out": str(out)}, "local_final": local_rows[-1]["score_mean"], "remote_final": remote_score["score_mean"]}
    (out / "remote_vs_local.json").write_text(json.dumps(report, indent=2))
    print(f"local_final={report['local_final']:.1f} remote_final={report['remote_final']:.1f} "
          f"wall_minutes={seconds / 60:.1f}")


if __name__ == "__main__":
    main()
