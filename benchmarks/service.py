"""Thin script: ``python benchmarks/service.py [--quick] [--json PATH] [--no-pin]``, as ``adept-env bench service``."""

from __future__ import annotations

import argparse
from pathlib import Path

from server.bench import run

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="quick world model and a 20k-step dataset")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    parser.add_argument("--no-pin", action="store_true", help="let server and clients share every CPU")
    args = parser.parse_args()
    run(quick=args.quick, json_path=args.json, pin=not args.no_pin)
