"""``adept-env bench soak`` at tiny scale: clients keep stepping through a SIGKILL mid-refit."""

from __future__ import annotations

from pathlib import Path


def test_soak_survives_a_kill_mid_refit(small_datasets: dict[str, Path], quick_model_path: Path,
                                        tmp_path: Path) -> None:
    from server.soak import run

    figures = run(seconds=12.0, clients=4, kills=1, refit_every=1.0, refit_steps=20_000, num_envs=2,
                  workdir=tmp_path, data=(small_datasets["halfcheetah"], quick_model_path))
    assert figures["kills"] == 1 and figures["refits"] >= 1
    assert figures["requests"] > 100 and figures["errors"] == 0
    assert figures["server_crashes"] == 0 and figures["versions_lost"] == 0
    assert 0 < figures["peak_rss_mb"] < 4096
