"""Regenerate the Python stubs of ``protos/adept/v1/*.proto`` into the client package.

``python protos/generate.py`` writes ``clients/adept_client/proto/adept/v1/*_pb2.py``,
``*_pb2_grpc.py`` and ``*_pb2.pyi`` with grpcio-tools. The include path is mapped
(``-Iadept_client/proto=protos``), so the generated modules import each other as
``adept_client.proto.adept.v1`` without any post-editing; ``tests/service`` regenerates into a
temporary folder and fails when the committed stubs differ. ``python protos/generate.py --lock``
records the field numbers in ``adept/v1/field_numbers.json``; the tests fail if a locked field
is renumbered or its number reused.
"""

from __future__ import annotations

import sys
from pathlib import Path

PROTOS = Path(__file__).resolve().parent
ROOT = PROTOS.parent
CLIENTS = ROOT / "clients"
PACKAGE = "adept_client/proto"


def proto_files() -> list[Path]:
    """Return every .proto file of the contract, sorted."""
    return sorted((PROTOS / "adept").rglob("*.proto"))


def generate(out_dir: Path = CLIENTS) -> list[Path]:
    """Run grpcio-tools' protoc into ``out_dir``; return the generated files (raises on failure)."""
    from grpc_tools import protoc

    out_dir.mkdir(parents=True, exist_ok=True)
    args = ["grpc_tools.protoc", f"-I{PACKAGE}={PROTOS}", f"--python_out={out_dir}",
            f"--grpc_python_out={out_dir}", f"--pyi_out={out_dir}", *map(str, proto_files())]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed: {' '.join(args)}")
    return sorted(p for p in (out_dir / PACKAGE).rglob("*") if p.name.endswith((".py", ".pyi"))
                  and "_pb2" in p.name)


LOCK = PROTOS / "adept" / "v1" / "field_numbers.json"


def field_numbers() -> dict[str, dict[str, int]]:
    """Return {message or enum full name: {field or value name: number}} of the compiled contract."""
    from adept_client.proto.adept.v1 import world_model_pb2 as pb

    out: dict[str, dict[str, int]] = {}
    for message in pb.DESCRIPTOR.message_types_by_name.values():
        out[message.full_name] = {f.name: f.number for f in message.fields}
    for enum in pb.DESCRIPTOR.enum_types_by_name.values():
        out[enum.full_name] = {v.name: v.number for v in enum.values}
    return out


def write_lock() -> Path:
    """Record the current field numbers in ``field_numbers.json`` (after adding fields, never after renumbering)."""
    import json

    LOCK.write_text(json.dumps(field_numbers(), indent=1, sort_keys=True) + "\n")
    return LOCK


if __name__ == "__main__":
    if sys.argv[1:] == ["--lock"]:
        print(write_lock())
    else:
        for path in generate(Path(sys.argv[1]) if len(sys.argv) > 1 else CLIENTS):
            print(path)
