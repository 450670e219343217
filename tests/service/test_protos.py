"""The committed stubs match the .proto, and no locked field is renumbered or reused."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _generate_module():
    spec = importlib.util.spec_from_file_location("protos_generate", ROOT / "protos" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_stubs_match_the_proto(tmp_path: Path) -> None:
    generate = _generate_module()
    fresh = generate.generate(tmp_path)
    assert fresh, "protoc generated nothing"
    for path in fresh:
        relative = path.relative_to(tmp_path)
        committed = ROOT / "clients" / relative
        assert committed.exists(), f"{relative} is not committed; run python protos/generate.py"
        assert committed.read_bytes() == path.read_bytes(), (
            f"{committed} differs from the .proto; run python protos/generate.py and commit the stubs")


def test_field_numbers_are_never_renumbered_or_reused() -> None:
    generate = _generate_module()
    locked = json.loads(generate.LOCK.read_text())
    current = generate.field_numbers()
    for type_name, fields in locked.items():
        assert type_name in current, f"{type_name} was removed; keep it (deprecated) instead"
        now = current[type_name]
        for name, number in fields.items():
            if name in now:
                assert now[name] == number, f"{type_name}.{name} was renumbered {number} -> {now[name]}"
        reused = {n: name for name, n in now.items() if name not in fields and n in fields.values()}
        assert not reused, f"{type_name} reuses retired numbers {reused}; add them to `reserved` instead"
    unlocked = {t: sorted(set(f) - set(locked.get(t, {}))) for t, f in current.items()}
    unlocked = {t: f for t, f in unlocked.items() if f}
    assert not unlocked, f"new fields {unlocked}: run python protos/generate.py --lock and commit field_numbers.json"


def test_refit_status_carries_kept_start_both_ways() -> None:
    from adept_client.client import RefitState

    from server.codec import refit_status
    from server.sessions import RefitInfo

    info = RefitInfo(3, "done", 2, 10.0, 0.5, 0.1, 4, 1.5, "", True, kept_start=True)
    message = refit_status(info)
    assert message.kept_start
    state = RefitState.from_message(type(message).FromString(message.SerializeToString()))
    assert state.kept_start and state.model_version == 4 and state.checkpointed
