"""Atomic file writes: write beside the target, then rename over it."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once: the process's umask, restored at once
_MODE = 0o666 & ~_UMASK
"""What ``open(path, "w")`` would give a new file (mkstemp's own 0600 would hide it from other users)."""


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success rename it onto ``target``.

    If the body raises (or the process dies), the target is untouched and the temporary file
    is removed, so readers never see a partial file. The file gets the mode a plain ``open``
    would give it (0666 less the umask), so a cache shared with other users stays readable.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, _MODE)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
