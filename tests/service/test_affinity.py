"""CPU pinning of the server process (``adept-env serve --cpus``, ``ServerConfig.cpus``)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from server.affinity import available_cpus, parse_cpus, pin_process, split_cpus

linux_only = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU affinity is Linux-only")


def test_parse_cpus_accepts_taskset_lists() -> None:
    first = available_cpus()[0]
    assert parse_cpus(str(first)) == (first,)
    everything = available_cpus()
    text = ",".join(map(str, everything))
    assert parse_cpus(text) == tuple(everything)
    if everything == list(range(everything[0], everything[-1] + 1)):
        assert parse_cpus(f"{everything[0]}-{everything[-1]}") == tuple(everything)


@pytest.mark.parametrize("text", ["", "one", "3-1", "1,,2", "-2"])
def test_parse_cpus_rejects_malformed_lists(text: str) -> None:
    with pytest.raises(ValueError, match="bad CPU list"):
        parse_cpus(text)


def test_parse_cpus_rejects_cpus_the_process_cannot_use() -> None:
    missing = max(available_cpus()) + 1000
    with pytest.raises(ValueError, match=f"CPUs \\[{missing}\\] are not available"):
        parse_cpus(str(missing))


def test_split_cpus_gives_both_sides_at_least_one() -> None:
    assert split_cpus([0]) is None
    assert split_cpus([0, 1]) == ([0], [1])
    assert split_cpus([0, 1, 2, 3, 4]) == ([0, 1], [2, 3, 4])


@linux_only
def test_pin_process_moves_every_thread_and_can_be_undone() -> None:
    cpus = available_cpus()
    started, release = threading.Event(), threading.Event()
    seen: dict[str, set[int]] = {}

    def worker() -> None:  # a thread that exists before the pinning
        started.set()
        release.wait(10)
        seen["worker"] = os.sched_getaffinity(0)

    thread = threading.Thread(target=worker)
    thread.start()
    started.wait(10)
    before = pin_process([cpus[-1]])
    try:
        assert os.sched_getaffinity(0) == {cpus[-1]}
        release.set()
        thread.join(10)
        assert seen["worker"] == {cpus[-1]}
    finally:
        pin_process(before)
    assert os.sched_getaffinity(0) == set(cpus)


def test_serve_refuses_a_bad_cpu_list(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from adept_env.cli import app

    result = CliRunner().invoke(app, ["serve", "--cpus", "0-x", "--state-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "bad CPU list" in result.output
