"""What the distributions declare covers what their code imports (read statically: fast, no network).

* ``pip install adept-env[server]`` installs everything ``adept-env serve`` imports: every third-party
  module imported anywhere under ``server/`` (and by the ``adept_client`` modules the server loads) is
  a base dependency or in the ``server`` extra of ``pyproject.toml``, and ``adept_client`` is shipped by
  the distribution (``[tool.setuptools.packages.find]``).
* ``pip install ./clients`` (the standalone, torch-free adept-client) declares what ``adept_client``
  imports: every module but the optional ones (``OPTIONAL``) needs only the client's base dependencies;
  an optional one only those plus its own extra.

Every import counts, at the top of a module or inside a function. Import names map to distributions
with ``importlib.metadata.packages_distributions()``; a module that is not installed must be named as
its distribution is.
"""

from __future__ import annotations

import ast
import functools
import re
import sys
from importlib import metadata
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
CLIENT = ROOT / "clients" / "adept_client"
FIRST_PARTY = {"adept_env", "server", "adept_client"}
GENERATED = ("_pb2.py", "_pb2_grpc.py")  # protoc's output: imports grpc/protobuf, like the modules that load it
OPTIONAL = {"sb3.py": "sb3", "rllib.py": "rllib"}
"""adept_client modules that need an extra of clients/pyproject.toml (imported only on demand)."""


def canonical(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def names(requirements: list[str]) -> set[str]:
    """The distribution names of requirement strings such as 'gymnasium[mujoco]==1.4.0; sys_platform != "x"'."""
    return {canonical(re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", r).group(1)) for r in requirements}


def project(path: Path) -> dict:
    return tomllib.loads(path.read_text())


MAIN, CLIENT_PROJECT = project(ROOT / "pyproject.toml"), project(ROOT / "clients" / "pyproject.toml")


def imports(path: Path) -> set[str]:
    """Third-party modules ``path`` imports (dotted, as written), anywhere in the module."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return {m for m in found if m.split(".")[0] not in FIRST_PARTY | set(sys.stdlib_module_names) | {"__future__"}}


@functools.cache
def installed() -> dict[str, list[str]]:
    """Top-level import name -> installed distributions (read once: it scans every installed distribution)."""
    return metadata.packages_distributions()


@functools.cache
def providers(module: str) -> frozenset[str]:
    """The installed distributions that provide ``module`` (canonical names)."""
    top = module.split(".")[0]
    candidates = installed().get(top)
    if not candidates:
        return frozenset({canonical(top)})
    if len(candidates) > 1:  # a namespace package (google.*): the distribution holding this module's folder
        prefix = "/".join(module.split(".")[:2])
        holding = [c for c in candidates
                   if any(str(f).replace("\\", "/").startswith(prefix) for f in metadata.distribution(c).files or ())]
        candidates = holding or candidates
    return frozenset(canonical(c) for c in candidates)


def undeclared(paths: list[Path], declared: set[str]) -> dict[str, list[str]]:
    """module -> files importing it, for every imported module no declared distribution provides."""
    missing: dict[str, list[str]] = {}
    for path in paths:
        for module in imports(path):
            if not providers(module) & declared:
                missing.setdefault(module, []).append(str(path.relative_to(ROOT)))
    return missing


def client_modules(optional: bool) -> list[Path]:
    return [p for p in sorted(CLIENT.rglob("*.py")) if not p.name.endswith(GENERATED)
            and (p.name in OPTIONAL) == optional]


def test_the_server_extra_installs_what_the_server_imports() -> None:
    declared = names(MAIN["project"]["dependencies"]) | names(MAIN["project"]["optional-dependencies"]["server"])
    server = sorted((ROOT / "server").rglob("*.py"))
    assert server
    missing = undeclared(server + client_modules(optional=False), declared)
    assert not missing, f"imported but neither a dependency nor in the server extra of pyproject.toml: {missing}"


def test_the_main_distribution_ships_adept_client() -> None:
    """``[tool.setuptools.packages.find]`` finds adept_client and all its subpackages, and ships its type data."""
    from setuptools import find_packages

    find = MAIN["tool"]["setuptools"]["packages"]["find"]
    wheres = find.get("where", ["."])
    wheres = [wheres] if isinstance(wheres, str) else wheres
    found = {p for where in wheres for p in find_packages(str(ROOT / where), include=find.get("include", ["*"]),
                                                          exclude=find.get("exclude", ()))}
    expected = {".".join(init.parent.relative_to(CLIENT.parent).parts) for init in CLIENT.rglob("__init__.py")}
    assert {"adept_client", "adept_client.proto.adept.v1"} <= expected
    assert expected <= found, f"the adept-env distribution does not ship {sorted(expected - found)}"
    assert {"adept_env", "server"} <= found
    assert not any(p.startswith(("tests", "benchmarks", "examples")) for p in found), found
    data = MAIN["tool"]["setuptools"].get("package-data", {}).get("adept_client", [])
    assert "py.typed" in data and any(d.endswith(".pyi") for d in data), data


def test_the_client_declares_what_it_imports() -> None:
    base = names(CLIENT_PROJECT["project"]["dependencies"])
    missing = undeclared(client_modules(optional=False), base)
    assert not missing, f"imported but not a dependency in clients/pyproject.toml: {missing}"
    assert not names(CLIENT_PROJECT["project"]["dependencies"]) & {"torch", "adept-env"}  # torch-free
    extras = CLIENT_PROJECT["project"].get("optional-dependencies", {})
    for path in client_modules(optional=True):
        extra = OPTIONAL[path.name]
        assert extra in extras, f"{path.name} needs the extra {extra!r} in clients/pyproject.toml"
        missing = undeclared([path], base | names(extras[extra]))
        assert not missing, f"imported by {path.name} but not in clients/pyproject.toml's {extra!r} extra: {missing}"


def test_optional_client_modules_are_imported_on_demand_only() -> None:
    """Importing adept_client must not need an extra: no base module imports an optional one at the top."""
    optional = {f"adept_client.{name.removesuffix('.py')}" for name in OPTIONAL}
    for path in client_modules(optional=False):
        for node in ast.parse(path.read_text()).body:  # top-level statements: imports in functions are on demand
            modules = []
            if isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            assert not optional & set(modules), f"{path.name} imports {optional & set(modules)} at import time"


def test_the_client_extra_of_adept_env_matches_the_client() -> None:
    """``pip install adept-env[client]`` brings what the standalone client needs."""
    client_extra = names(MAIN["project"]["optional-dependencies"]["client"]) | names(MAIN["project"]["dependencies"])
    assert names(CLIENT_PROJECT["project"]["dependencies"]) <= client_extra


# adept_client.evaluation imports with the base dependencies only; it loads MuJoCo when it runs.
OPTIONAL["evaluation.py"] = "mujoco"
EXAMPLES = ROOT / "clients" / "examples"


def test_the_remote_recipe_example_declares_what_it_imports() -> None:
    """``pip install "adept-client[recipe]"`` brings what clients/examples/train_sac_remote.py and the client
    modules it uses (sb3, evaluation) import."""
    extras = CLIENT_PROJECT["project"].get("optional-dependencies", {})
    assert "recipe" in extras and "mujoco" in extras
    declared = names(CLIENT_PROJECT["project"]["dependencies"]) | names(extras["recipe"])
    used = [EXAMPLES / "train_sac_remote.py", CLIENT / "sb3.py", CLIENT / "evaluation.py"]
    missing = undeclared(used, declared)
    assert not missing, f"imported but neither a client dependency nor in its 'recipe' extra: {missing}"
    assert names(extras["sb3"]) | names(extras["mujoco"]) <= names(extras["recipe"])
    assert any(re.match(r"\s*gymnasium\[mujoco\]", r) for r in extras["mujoco"])  # Gymnasium's MuJoCo envs too
