"""The module graph: no import cycles, and layers that point one way.

The library (``adept_env``) knows nothing of the server or the client; the server depends on the
library; the torch-free client (``adept_client``) depends on neither. Every ``import`` statement
counts, at the top of a module or inside a function (a lazy import still ties two modules).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"adept_env": ROOT / "adept_env", "server": ROOT / "server",
            "adept_client": ROOT / "clients" / "adept_client"}
GENERATED = ("_pb2.py", "_pb2_grpc.py")


def _modules() -> dict[str, Path]:
    """Every module of the three packages: dotted name -> file (packages by their ``__init__.py``)."""
    found: dict[str, Path] = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            if path.name.endswith(GENERATED):
                continue
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imported(module: str, path: Path) -> dict[str, set[str]]:
    """Names this module imports: {"runtime": ..., "all": ...} (``all`` adds ``if TYPE_CHECKING`` blocks).

    Every import counts, third-party ones too (as written); ``from a.b import c`` names ``a.b.c``
    when that is a project module, else ``a.b``.
    """
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    found: dict[str, set[str]] = {"runtime": set(), "all": set()}

    def visit(node: ast.AST, typing_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = module.split(".") if is_package else module.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (child.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in child.names:
                    full = f"{base}.{alias.name}"
                    names.append(full if full in MODULES else base)
            for name in names:
                found["all"].add(name)
                if not typing_only:
                    found["runtime"].add(name)
            visit(child, typing_only or (isinstance(child, ast.If) and _is_type_checking(child)))

    visit(tree, False)
    return found


IMPORTS = {module: _imported(module, path) for module, path in MODULES.items()}


def _project_target(name: str) -> str | None:
    """The project module an imported name loads (its longest known prefix), or None if not ours."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in MODULES:
            return candidate
    return None


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, names in IMPORTS.items():
        targets = {_project_target(name) for name in names["runtime"]}
        graph[module] = {t for t in targets if t is not None and t != module}
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (a list of modules, the first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def _roots(module: str, kind: str = "all") -> set[str]:
    return {name.split(".")[0] for name in IMPORTS[module][kind]}


def test_the_walk_finds_the_packages() -> None:
    assert {"adept_env", "adept_env.cli", "server", "server.cli", "adept_client"} <= MODULES.keys()
    assert any(IMPORTS[m]["all"] for m in MODULES)


def test_the_module_graph_has_no_cycles() -> None:
    cycle = _find_cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_cycles() -> None:
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_library_imports_neither_the_server_nor_the_client() -> None:
    offenders = {m: sorted(_roots(m) & {"server", "adept_client"}) for m in MODULES if m.split(".")[0] == "adept_env"}
    assert not {m: r for m, r in offenders.items() if r}


def test_the_client_imports_neither_the_library_the_server_nor_torch() -> None:
    offenders = {m: sorted(_roots(m) & {"adept_env", "server", "torch"})
                 for m in MODULES if m.split(".")[0] == "adept_client"}
    assert not {m: r for m, r in offenders.items() if r}


def test_python_m_server_does_not_load_the_library_cli() -> None:
    assert not {name for name in IMPORTS["server.__main__"]["all"] if name.startswith("adept_env.cli")}


def _import_in_a_fresh_interpreter(names: list[str], check: str = "") -> subprocess.CompletedProcess:
    """Import every module of ``names`` in one new interpreter (each import error is reported), then run ``check``."""
    script = ("import importlib, sys, traceback\n"
              "failed = []\n"
              f"for name in {names!r}:\n"
              "    try:\n"
              "        importlib.import_module(name)\n"
              "    except Exception:\n"
              "        failed.append(name + ': ' + traceback.format_exc().strip().splitlines()[-1])\n"
              "assert not failed, '\\n'.join(failed)\n" + check)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_every_module_of_the_library_and_the_server_imports() -> None:
    names = sorted(m for m in MODULES if m.split(".")[0] in ("adept_env", "server"))
    done = _import_in_a_fresh_interpreter(names)
    assert done.returncode == 0, done.stderr


def test_the_client_runs_without_the_library_the_server_or_torch() -> None:
    """Every client module but ``adept_client.sb3`` (the optional SB3 glue: SB3 itself needs torch)."""
    names = sorted(m for m in MODULES if m.split(".")[0] == "adept_client" and m != "adept_client.sb3")
    check = ("loaded = sorted({m.split('.')[0] for m in sys.modules} & {'adept_env', 'server', 'torch'})\n"
             "assert not loaded, loaded\n")
    done = _import_in_a_fresh_interpreter(names, check)
    assert done.returncode == 0, done.stderr
