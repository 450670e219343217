"""Pin a whole process to a set of CPUs (Linux), e.g. the server on one core and its clients on others.

On a small machine a gRPC round trip costs much less when the server's threads and the client's
threads do not migrate across the same cores (BENCHMARKS.md, "Service": the loopback floor fell
from 0.54 to 0.31 ms on 2 cores). ``os.sched_setaffinity(0, ...)`` moves only the calling thread,
so ``pin_process`` moves every thread the process already has; threads started later inherit it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path


def available_cpus() -> list[int]:
    """Return the CPUs this process may run on, sorted (all CPUs where affinity is unsupported)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def parse_cpus(text: str) -> tuple[int, ...]:
    """Parse a CPU list such as ``"1"``, ``"0,2"`` or ``"0-3,6"`` (the ``taskset -c`` form).

    Raises ValueError with the accepted form, and when a CPU is not one this process may use.
    """
    cpus: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        try:
            if "-" in part:
                low, high = (int(x) for x in part.split("-", 1))
                if low > high:
                    raise ValueError
                cpus.update(range(low, high + 1))
            else:
                cpus.add(int(part))
        except ValueError:
            raise ValueError(f"bad CPU list {text!r}: use CPU numbers and ranges such as 1 or 0,2 or 0-3") from None
    allowed = set(available_cpus())
    if not cpus <= allowed:
        raise ValueError(f"CPUs {sorted(cpus - allowed)} are not available to this process; "
                         f"it may use {sorted(allowed)}")
    return tuple(sorted(cpus))


def pin_process(cpus: Iterable[int]) -> list[int]:
    """Restrict every thread of this process (and threads it starts later) to ``cpus``.

    Returns the CPUs it was allowed before, so a caller can restore them. Raises OSError where the
    platform has no CPU affinity (anything but Linux).
    """
    wanted = set(cpus)
    if not hasattr(os, "sched_setaffinity"):
        raise OSError("CPU pinning needs Linux (os.sched_setaffinity)")
    if not wanted:
        raise ValueError("no CPU to pin to")
    before = sorted(os.sched_getaffinity(0))
    tasks = Path("/proc/self/task")
    tids = [int(p.name) for p in tasks.iterdir()] if tasks.is_dir() else [0]
    for tid in tids:
        with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
            os.sched_setaffinity(tid, wanted)
    os.sched_setaffinity(0, wanted)
    return before


def split_cpus(cpus: list[int]) -> tuple[list[int], list[int]] | None:
    """Split CPUs into (client half, server half); None when there is only one CPU."""
    if len(cpus) < 2:
        return None
    half = len(cpus) // 2
    return cpus[:half], cpus[half:]
