"""``python -m server [OPTIONS]``: the same as ``adept-env serve [OPTIONS]``."""

import sys

from adept_env.cli import app

if __name__ == "__main__":
    app(["serve", *sys.argv[1:]], prog_name="python -m server")
