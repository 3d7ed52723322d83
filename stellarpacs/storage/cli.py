"""``python -m stellarpacs storage ...``: the storage management tools on the command line.

The tools of the 1.3 conformance statement (3.1.3.2.2.1, "tools are provided to
manage storage"): ``stats``, ``list``, ``verify``, ``reindex`` and ``delete``.
Each opens the index by itself, so it can run beside a serving process (the
index is in WAL mode: readers never block the writer; ``reindex`` rebuilds in one
transaction, so a running server's commits wait for it). Every failure a user
can cause ends in one line on stderr and a non-zero exit status: 1 when the
job found problems or failed, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, TextIO, TypeVar

from stellarpacs.config import load_config
from stellarpacs.errors import StellarPACSError
from stellarpacs.storage import tools
from stellarpacs.storage.files.layout import Layout
from stellarpacs.storage.records import StudySummary

__all__ = ["ProgressBar", "StorageToolError", "register"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
_BAR_WIDTH: Final = 30
_T = TypeVar("_T")
_UNITS: Final = ("B", "KiB", "MiB", "GiB", "TiB")


class StorageToolError(StellarPACSError):
    """A storage tool cannot do its job; the message is the one line the user sees."""


# -- where the storage is ----------------------------------------------------------------------


def _storage_root(args: argparse.Namespace) -> Path:
    """``--storage`` wins over the configuration's ``storage`` key, then the default."""
    config = load_config(args.config, {"storage": args.storage})
    return config.storage


def _existing_root(args: argparse.Namespace) -> Path:
    root = _storage_root(args)
    if not root.is_dir():
        raise StorageToolError(f"storage directory not found: {root}")
    return root


def _indexed_root(args: argparse.Namespace) -> Path:
    root = _existing_root(args)
    index = Layout(root).index_path
    if not index.is_file():
        raise StorageToolError(f"no index at {index} (run 'storage reindex' to build one)")
    return root


def _run(job: Coroutine[Any, Any, _T], root: Path) -> _T:
    """Run one async tool; database and file errors become one line naming the storage."""
    try:
        return asyncio.run(job)
    except sqlite3.Error as exc:
        raise StorageToolError(f"index under {root}: {exc}") from None
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        raise StorageToolError(f"{where}{exc.strerror or exc}") from None


# -- output helpers ----------------------------------------------------------------------------


def _human_size(size: int) -> str:
    """``1536`` -> ``1.5 KiB``; bytes stay exact below 1 KiB."""
    value = float(size)
    for unit in _UNITS:
        if value < 1024 or unit == _UNITS[-1]:
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


class ProgressBar:
    """An in-place text bar (carriage return, no dependency), redrawn when it moves."""

    def __init__(self, stream: TextIO, label: str) -> None:
        self._stream = stream
        self._label = label
        self._shown: tuple[int, int] | None = None

    def __call__(self, done: int, total: int) -> None:
        filled = _BAR_WIDTH * done // total if total else _BAR_WIDTH
        if self._shown == (filled, done) and done != total:
            return
        self._shown = (filled, done)
        bar = "#" * filled + "." * (_BAR_WIDTH - filled)
        self._stream.write(f"\r{self._label} [{bar}] {done}/{total}")
        self._stream.flush()

    def finish(self) -> None:
        if self._shown is not None:
            self._stream.write("\n")
            self._stream.flush()


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = (
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )
    return list(lines)


_LIST_HEADER: Final = (
    "PATIENT ID",
    "PATIENT NAME",
    "DATE",
    "DESCRIPTION",
    "STUDY INSTANCE UID",
    "SERIES",
    "INSTANCES",
)


def _study_line(study: StudySummary) -> tuple[str, ...]:
    return (
        study.patient_id,
        study.patient_name,
        study.study_date,
        study.study_description,
        study.study_instance_uid,
        str(study.series_count),
        str(study.instance_count),
    )


def _study_json(study: StudySummary) -> dict[str, object]:
    return asdict(study) | {"modalities": list(study.modalities)}


# -- the commands ------------------------------------------------------------------------------


def cmd_stats(args: argparse.Namespace) -> int:
    root = _indexed_root(args)
    counts = _run(tools.stats(root), root)
    if args.json:
        print(json.dumps(counts))
        return EXIT_OK
    for key in ("patients", "studies", "series", "instances"):
        print(f"{key:<10} {counts[key]}")
    print(f"{'bytes':<10} {counts['bytes']} ({_human_size(counts['bytes'])})")
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    root = _indexed_root(args)
    studies = _run(tools.list_studies(root), root)
    if args.json:
        print(json.dumps([_study_json(s) for s in studies], ensure_ascii=False))
    elif studies:
        print("\n".join(_table([_LIST_HEADER, *(_study_line(s) for s in studies)])))
    else:
        print("no studies")
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    root = _indexed_root(args)
    report = _run(tools.verify(root), root)
    for problem in report.problems:
        detail = f" ({problem.detail})" if problem.detail else ""
        print(f"{problem.kind.value}: {problem.path}{detail}")
    print(
        f"checked {report.rows_checked} index rows and {report.files_scanned} files: "
        f"{len(report.problems)} problem{'s' if len(report.problems) != 1 else ''}"
    )
    return EXIT_OK if report.ok else EXIT_FAILED


def cmd_reindex(args: argparse.Namespace) -> int:
    root = _existing_root(args)
    bar = ProgressBar(sys.stderr, "reindexing")
    try:
        report = _run(tools.reindex(root, progress=bar), root)
    finally:
        bar.finish()
    for problem in report.skipped:
        print(f"skipped {problem.path}: {problem.detail or problem.kind.value}")
    print(
        f"indexed {report.indexed} instances ({report.duplicates} duplicates, "
        f"{len(report.skipped)} files skipped)"
    )
    return EXIT_OK if not report.skipped else EXIT_FAILED


def cmd_delete(args: argparse.Namespace) -> int:
    if not args.yes:
        print(
            f"stellarpacs storage delete: refusing to delete study {args.study_uid} without --yes",
            file=sys.stderr,
        )
        return EXIT_USAGE
    root = _indexed_root(args)
    removed = _run(tools.delete_study(root, args.study_uid), root)
    if not removed:
        raise StorageToolError(f"no instance of study {args.study_uid} in the index")
    print(f"deleted study {args.study_uid}: {removed} instances")
    return EXIT_OK


def cmd_mpps(args: argparse.Namespace) -> int:
    from stellarpacs import nservices_cli  # the N-services own their listings

    root = _indexed_root(args)
    return nservices_cli.show_mpps(_run(nservices_cli.load_mpps(root), root), as_json=args.json)


def cmd_commitments(args: argparse.Namespace) -> int:
    from stellarpacs import nservices_cli

    root = _indexed_root(args)
    requests = _run(nservices_cli.load_commitments(root), root)
    return nservices_cli.show_commitments(requests, as_json=args.json)


# -- registration ------------------------------------------------------------------------------

_Command = Callable[[argparse.Namespace], int]

_COMMANDS: Final[Mapping[str, tuple[_Command, str]]] = MappingProxyType(
    {
        "stats": (cmd_stats, "patients, studies, series, instances and bytes in the index"),
        "list": (cmd_list, "the studies, one line each"),
        "verify": (cmd_verify, "check that index and files agree (exit 1 on problems)"),
        "reindex": (
            cmd_reindex,
            "rebuild the index from the stored files (a running server's stores wait for it)",
        ),
        "delete": (cmd_delete, "delete one study's files and index rows"),
        "mpps": (cmd_mpps, "MPPS instances: status, and whether their study is stored"),
        "commitments": (cmd_commitments, "storage commitment requests, pending and delivered"),
    }
)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--storage", type=Path, help="storage folder (default ./stellarpacs-data)")
    parser.add_argument("--config", type=Path, help="TOML configuration file (its 'storage' key)")


def _add_extras(name: str, parser: argparse.ArgumentParser) -> None:
    if name in ("stats", "list", "mpps", "commitments"):
        parser.add_argument("--json", action="store_true", help="print JSON")
    elif name == "delete":
        parser.add_argument("study_uid", metavar="STUDY_UID", help="Study Instance UID")
        parser.add_argument("--yes", action="store_true", help="really delete")


def register(subparsers: Any) -> None:
    """Add ``storage`` and its sub-commands to the main parser's sub-commands."""
    storage = subparsers.add_parser("storage", help="storage tools: stats, list, verify, ...")
    commands = storage.add_subparsers(dest="storage_command", metavar="TOOL", required=True)
    for name, (func, help_text) in _COMMANDS.items():
        parser = commands.add_parser(name, help=help_text, description=help_text)
        _add_common(parser)
        _add_extras(name, parser)
        parser.set_defaults(func=func)
