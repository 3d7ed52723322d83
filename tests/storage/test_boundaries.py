"""Storage behind its interface: who may import what (issue 9, item 2), checked on the source.

Every import counts, function-level ones included; only ``TYPE_CHECKING``
blocks are left out, since they never run.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[2] / "stellarpacs"
STORAGE = sorted(p for p in (PACKAGE / "storage").rglob("*.py") if p.name != "cli.py")
SERVICES = sorted((PACKAGE / "services").glob("*.py"))
AIO = sorted((PACKAGE / "aio").rglob("*.py"))
DRIVERS = ("sqlite3", "aiosqlite")


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node that runs: the bodies of ``if TYPE_CHECKING:`` are skipped."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _type_checking(node):
            for child in node.orelse:
                yield child
                yield from _nodes(child)
            continue
        yield node
        yield from _nodes(node)


def imported(path: Path) -> set[str]:
    """The absolute module names ``path`` imports (``from a import b`` gives ``a`` and ``a.b``)."""
    names: set[str] = set()
    for node in _nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _under(name: str, *packages: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def _ids(path: Path) -> str:
    return str(path.relative_to(PACKAGE))


@pytest.mark.parametrize("path", STORAGE, ids=_ids)
def test_storage_imports_no_network_status_service_or_cli(path: Path) -> None:
    forbidden = (
        "stellarpacs.dimse",
        "stellarpacs.aio",
        "stellarpacs.services",
        "stellarpacs.cli",
        "stellarpacs.cli_support",
        "stellarpacs.storage.cli",
    )
    bad = {n for n in imported(path) if _under(n, *forbidden) or n.endswith("_cli")}
    assert not bad


@pytest.mark.parametrize("path", SERVICES, ids=_ids)
def test_services_reach_storage_through_its_api_only(path: Path) -> None:
    names = imported(path)
    assert not {n for n in names if _under(n, *DRIVERS)}
    storage = {n for n in names if _under(n, "stellarpacs.storage")}
    if path.name == "registry.py":  # the composition root builds the SQLite backend
        return
    assert storage <= {"stellarpacs.storage.api"} | {
        n for n in storage if n.startswith("stellarpacs.storage.api.")
    }


@pytest.mark.parametrize("path", AIO, ids=_ids)
def test_the_network_side_imports_no_storage(path: Path) -> None:
    assert not {n for n in imported(path) if _under(n, "stellarpacs.storage")}


def test_the_api_names_no_backend_and_no_driver() -> None:
    names = imported(PACKAGE / "storage" / "api.py")
    backends = ("stellarpacs.storage.index", "stellarpacs.storage.archive")
    assert not {n for n in names if _under(n, *DRIVERS, *backends)}


def _connects(path: Path) -> list[str]:
    """Calls that open an SQLite connection (``sqlite3.connect``, ``aiosqlite.connect``...)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            if (
                isinstance(owner, ast.Name)
                and owner.id in DRIVERS
                and node.func.attr in ("connect", "Connection")
            ):
                found.append(f"{owner.id}.{node.func.attr}")
    return found


def test_one_module_opens_the_database() -> None:
    """Readers, the writer thread, the catalog and the N-service tables: one opener."""
    openers = {_ids(p) for p in sorted(PACKAGE.rglob("*.py")) if _connects(p)}
    assert openers == {"storage/index/database.py"}


def test_only_the_sqlite_backend_imports_the_driver() -> None:
    """Only the SQLite backend (storage/index/) imports the driver: nothing else sees sqlite3."""
    importers = {
        _ids(p)
        for p in sorted(PACKAGE.rglob("*.py"))
        if any(_under(n, *DRIVERS) for n in imported(p))
    }
    backend = {i for i in importers if i.startswith("storage/index/")}
    assert importers - backend == set()
