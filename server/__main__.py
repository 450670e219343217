"""``python -m server [OPTIONS]``: the same as ``adept-env serve [OPTIONS]``."""

from server.cli import main

if __name__ == "__main__":
    main()
