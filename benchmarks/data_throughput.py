"""Generation and oracle throughput per task. Same as `adept-env bench data`.

Usage: python benchmarks/data_throughput.py [--steps 20000] [--json out.json]
"""

import argparse
from pathlib import Path

from adept_env.benchmarks.data_throughput import run

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    run(steps=args.steps, json_path=args.json)
