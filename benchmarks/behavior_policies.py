"""Shipped behaviour actors and generated datasets beside D4RL. Same as `adept-env bench behavior`.

Usage: python benchmarks/behavior_policies.py [--episodes 10] [--make-steps 1000000] [--json out.json]
       [--figures DIR] [--bc-steps N]
"""

import argparse
from pathlib import Path

from adept_env.benchmarks.behavior_policies import run

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--episodes", type=int, default=10, help="real episodes per actor (at least 10)")
    parser.add_argument("--make-steps", type=int, default=None, help="make missing datasets with this many steps")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    parser.add_argument("--figures", type=Path, default=None, help="plot the runs' learning curves here")
    parser.add_argument("--bc-steps", type=int, default=None, help="also fit BC densities and compare with exact")
    args = parser.parse_args()
    run(episodes=args.episodes, make_steps=args.make_steps, json_path=args.json, figures_dir=args.figures,
        bc_steps=args.bc_steps)
