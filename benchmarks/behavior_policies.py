"""Shipped behaviour actors and generated datasets beside D4RL. Same as `adept-env bench behavior`.

Usage: python benchmarks/behavior_policies.py [--episodes 10] [--make-steps 1000000] [--json out.json]
"""

import argparse
from pathlib import Path

from adept_env.benchmarks.behavior_policies import run

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--episodes", type=int, default=10, help="real episodes per actor (at least 10)")
    parser.add_argument("--make-steps", type=int, default=None, help="make missing datasets with this many steps")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    args = parser.parse_args()
    run(episodes=args.episodes, make_steps=args.make_steps, json_path=args.json)
