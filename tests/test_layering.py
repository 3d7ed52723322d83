"""The sans-I/O cores stay free of I/O: ARCHITECTURE.md's import rule, checked two ways."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "stellarpacs"
FORBIDDEN = {"asyncio", "socket", "time", "aiosqlite", "pydicom", "uvloop", "selectors"}
CORES = sorted([*(PACKAGE / "ul").glob("*.py"), *(PACKAGE / "dimse").glob("*.py")])


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
