"""Thin script: ``python benchmarks/world_model.py [--quick] [--json PATH]``, as ``adept-env bench world-model``."""

from __future__ import annotations

import argparse
from pathlib import Path

from adept_env.benchmarks.world_model import run

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small dataset and budget (about two minutes)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    parser.add_argument("--train-seconds", type=float, default=None, help="training budget per model")
    parser.add_argument("--dataset", type=Path, default=None, help="an .hdf5 dataset instead of generating one")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    run(quick=args.quick, json_path=args.json, train_seconds=args.train_seconds, dataset_path=args.dataset,
        threads=args.threads)
