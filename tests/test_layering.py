"""The package's layers, read from its sources (ARCHITECTURE.md, "Layers and what each may import").

The sans-I/O cores stay free of I/O (checked two ways); ``aio`` depends on
neither the services nor the storage; the services reach storage only through
``storage.api``; storage knows nothing of the network, DIMSE or the command
line; no import cycle; and modules and functions stay small enough to read.

Imports are collected with :mod:`ast`, function-level ones included.  The layer
rules count every import, even under ``if TYPE_CHECKING:`` (a type-only import
is still a dependency of the design); the cycle rule leaves those out, since
they never run.
"""

from __future__ import annotations

import ast
import itertools
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest

PACKAGE = Path(__file__).parent.parent / "stellarpacs"
FORBIDDEN = {"asyncio", "socket", "time", "aiosqlite", "pydicom", "uvloop", "selectors"}
CORES = sorted([*(PACKAGE / "ul").glob("*.py"), *(PACKAGE / "dimse").glob("*.py")])

MAX_MODULE_LINES: Final = 500
MAX_FUNCTION_LINES: Final = 50
#: Tables of the standard, kept as data in one place.
LONG_MODULES_ALLOWED: Final = frozenset({"stellarpacs.uids"})


def _imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", CORES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_core_module_imports_no_io(path: Path) -> None:
    assert not (_imported(path) & FORBIDDEN)


def test_importing_the_cores_loads_no_io_module() -> None:
    """Through the package facade too: nothing pulls asyncio or pydicom in behind them.

    ``time`` is left out here: the interpreter itself imports it at start-up.
    """
    loaded_by_python = {"time"}
    code = (
        "import sys\n"
        "import stellarpacs.ul.connection, stellarpacs.ul.negotiation\n"
        "import stellarpacs.dimse.fragments, stellarpacs.dimse.status\n"
        f"print(sorted(m for m in {sorted(FORBIDDEN - loaded_by_python)!r} if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"


def test_facade_still_exports_everything() -> None:
    import stellarpacs

    for name in stellarpacs.__all__:
        assert getattr(stellarpacs, name) is not None


# --- the package's modules and what each imports --------------------------------------------


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES: Final[dict[str, Path]] = {
    _module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))
}


@dataclass(frozen=True, slots=True)
class Import:
    """One imported module, resolved to a module of the package where it is one."""

    importer: str
    target: str
    line: int
    type_checking: bool  # under ``if TYPE_CHECKING:``

    def __str__(self) -> str:
        return f"{MODULES[self.importer].relative_to(PACKAGE.parent)}:{self.line} {self.target}"


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _absolute(module: str, node: ast.ImportFrom) -> str:
    """The module ``from ... import`` names; relative ones resolved against ``module``."""
    if node.level == 0:
        return node.module or ""
    is_package = MODULES[module].name == "__init__.py"
    base = module.split(".")[: len(module.split(".")) - node.level + is_package]
    return ".".join([*base, *([node.module] if node.module else [])])


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    """``from a.b import c`` imports module ``a.b.c`` when there is one, else ``a.b``."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    base = _absolute(module, node)
    for alias in node.names:
        yield candidate if (candidate := f"{base}.{alias.name}") in MODULES else base


def _walk(module: str, nodes: Iterable[ast.AST], type_checking: bool) -> Iterator[Import]:
    for node in nodes:
        if isinstance(node, ast.Import | ast.ImportFrom):
            for target in _targets(module, node):
                yield Import(module, target, node.lineno, type_checking)
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _walk(module, node.body, True)
            yield from _walk(module, node.orelse, type_checking)
        else:
            yield from _walk(module, ast.iter_child_nodes(node), type_checking)


def imports_of(module: str) -> list[Import]:
    """Every import statement of ``module``, function-level ones included."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    return list(_walk(module, tree.body, False))


#: Each (importer, target, line) once, though ``from a import b, c`` names ``a`` twice.
IMPORTS: Final[list[Import]] = list(
    dict.fromkeys(i for module in MODULES for i in imports_of(module))
)


def _within(name: str, *packages: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def _report(violations: list[Import]) -> str:
    return "\n".join(str(v) for v in violations)


# --- the layer rules ----------------------------------------------------------------------


def test_aio_imports_neither_services_nor_storage() -> None:
    """The asyncio adapter sits below the services and the storage (item 6 of the layout)."""
    violations = [
        i
        for i in IMPORTS
        if _within(i.importer, "stellarpacs.aio")
        and _within(i.target, "stellarpacs.services", "stellarpacs.storage")
    ]
    assert not violations, "aio/ must not import services or storage:\n" + _report(violations)


def test_services_reach_storage_only_through_its_api() -> None:
    """Services use storage's Protocols and exceptions, never a backend directly.

    ``services/registry.py`` is the composition root: it picks the backend.
    """
    root = "stellarpacs.services.registry"
    violations = [
        i
        for i in IMPORTS
        if _within(i.importer, "stellarpacs.services")
        and i.importer != root
        and _within(i.target, "stellarpacs.storage")
        and not _within(i.target, "stellarpacs.storage.api")
    ]
    assert not violations, "services/ may import storage.api only:\n" + _report(violations)


def test_services_never_import_sqlite() -> None:
    """Not even the registry: opening the database is the storage backend's business."""
    violations = [
        i
        for i in IMPORTS
        if _within(i.importer, "stellarpacs.services") and _within(i.target, "sqlite3", "aiosqlite")
    ]
    assert not violations, "services/ must not import SQLite:\n" + _report(violations)


def test_storage_imports_no_network_dimse_services_or_cli() -> None:
    """Storage is usable alone: a second backend or a tool needs none of the network."""
    above = ("stellarpacs.dimse", "stellarpacs.aio", "stellarpacs.services", "stellarpacs.cli")
    violations = [
        i
        for i in IMPORTS
        if _within(i.importer, "stellarpacs.storage") and _within(i.target, *above)
    ]
    assert not violations, (
        "storage/ must not import " + ", ".join(above) + ":\n" + _report(violations)
    )


def test_only_the_entry_point_imports_the_command_line() -> None:
    """The command line is the top layer: nothing below it depends on it."""
    violations = [
        i
        for i in IMPORTS
        if _within(i.target, "stellarpacs.cli")
        and not _within(i.importer, "stellarpacs.cli", "stellarpacs.__main__")
    ]
    assert not violations, "only __main__ may import stellarpacs.cli:\n" + _report(violations)


def test_the_testing_toolkit_is_imported_only_by_the_command_line() -> None:
    """stellarpacs.testing sits beside the CLI: the server, services and storage never need it."""
    violations = [
        i
        for i in IMPORTS
        if _within(i.target, "stellarpacs.testing")
        and not _within(i.importer, "stellarpacs.testing", "stellarpacs.cli")
    ]
    assert not violations, "only cli/ may import stellarpacs.testing:\n" + _report(violations)


# --- no import cycle --------------------------------------------------------------------------


def _graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports at run time (``TYPE_CHECKING`` left out).

    Importing ``a.b.c`` also runs ``a/__init__`` and ``a/b/__init__`` first; those
    implicit edges are not counted, or every package whose ``__init__`` imports
    its own modules would be a cycle.
    """
    graph: dict[str, set[str]] = {module: set() for module in MODULES}
    for i in IMPORTS:
        if not i.type_checking and i.target in MODULES and i.target != i.importer:
            graph[i.importer].add(i.target)
    return graph


def _components(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            advanced = False
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = len(index)
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted(graph[succ]))))
                    advanced = True
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _cycle_through(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """A shortest cycle from the component's first module back to itself (breadth first)."""
    members = set(component)
    start = component[0]
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for succ in sorted(graph[node] & members):
                if succ == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [*reversed(path), start]
                if succ not in came_from:
                    came_from[succ] = node
                    following.append(succ)
        frontier = following
    raise AssertionError(f"no cycle through {start}")


def _line_of(importer: str, target: str) -> int:
    """Where ``importer`` first imports ``target`` at run time."""
    return min(
        i.line
        for i in IMPORTS
        if not i.type_checking and (i.importer, i.target) == (importer, target)
    )


def _describe_cycle(path: list[str]) -> str:
    steps = [f"{a} (line {_line_of(a, b)})" for a, b in itertools.pairwise(path)]
    return " -> ".join([*steps, path[-1]])


def test_no_import_cycle() -> None:
    """No module imports itself through others, function-level imports included."""
    graph = _graph()
    cycles = [_describe_cycle(_cycle_through(graph, c)) for c in _components(graph)]
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"}}
    assert _components(graph) == [["a", "b", "c"]]
    assert _cycle_through(graph, ["a", "b", "c"]) == ["a", "b", "c", "a"]


# --- sizes ----------------------------------------------------------------------------------


def test_modules_stay_under_the_line_limit() -> None:
    long = {
        module: n
        for module, path in MODULES.items()
        if module not in LONG_MODULES_ALLOWED
        and (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def _functions(path: Path) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def test_functions_stay_under_the_line_limit() -> None:
    """From ``def`` to the end of the body (decorators not counted)."""
    long = [
        f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}: {length} lines"
        for path in MODULES.values()
        for node in _functions(path)
        if (length := (node.end_lineno or node.lineno) - node.lineno + 1) > MAX_FUNCTION_LINES
    ]
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(long)
