"""Learning curves of several `adept-env train` run folders on one plot, and a markdown table.

Usage: python benchmarks/compare_runs.py "lambda 1=runs/a" "value penalty 2=runs/b" --out fig.png \
           [--title walker2d-random]
"""

import argparse
from pathlib import Path

from adept_env.benchmarks.compare import compare

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="LABEL=RUN_DIR (or just RUN_DIR: its name is the label)")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument("--title", default="")
    args = parser.parse_args()
    runs = {}
    for item in args.runs:
        label, _, path = item.rpartition("=")
        runs[label or Path(path).name] = Path(path)
    print(compare(runs, args.out, args.title))
    print(f"plot: {args.out}")
