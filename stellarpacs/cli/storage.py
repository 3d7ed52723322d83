"""``python -m stellarpacs storage ...``: the storage management tools on the command line.

The tools of the 1.3 conformance statement (3.1.3.2.2.1, "tools are provided to
manage storage"): ``stats``, ``list``, ``verify``, ``reindex`` and ``delete``;
and the listings of what the DIMSE-N services keep, ``mpps`` and ``commitments``.
Each opens the index by itself, so it can run beside a serving process (the
index is in WAL mode: readers never block the writer; ``reindex`` rebuilds in one
transaction, so a running server's commits wait for it). Every failure a user
can cause ends in one line on stderr and a non-zero exit status: 1 when the
job found problems or failed, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from collections.abc import Coroutine, Mapping
from dataclasses import asdict
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, TextIO, TypeVar

from stellarpacs.audit import Auditor, open_auditor
from stellarpacs.audit.events import Outcome, StudyDeleted
from stellarpacs.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Command, Subparsers, table
from stellarpacs.config import load_config
from stellarpacs.errors import StellarPACSError
from stellarpacs.logtext import printable
from stellarpacs.storage import tools
from stellarpacs.storage.errors import StorageUnavailable
from stellarpacs.storage.files.layout import Layout
from stellarpacs.storage.records import CommitmentRequest, MPPSSummary, StudySummary

__all__ = ["ProgressBar", "StorageToolError", "register"]

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
    except StorageUnavailable as exc:
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


# -- what the DIMSE-N services keep --------------------------------------------------------


def _first(attributes: dict[str, Any], tag: str) -> str:
    values = attributes.get(tag, {}).get("Value") or [""]
    return str(values[0])


def _mpps_json(summary: MPPSSummary) -> dict[str, object]:
    record = summary.record
    return {
        "sop_instance_uid": record.sop_instance_uid,
        "status": record.status,
        "patient_id": _first(record.attributes, "00100020"),
        "modality": _first(record.attributes, "00080060"),
        "study_uids": list(record.study_uids),
        "studies_stored": summary.studies_stored,
        "instances_stored": summary.instances_stored,
        "images_referenced": summary.images_referenced,
        "images_stored": summary.images_stored,
        "calling_ae": record.calling_ae,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    }


def _stored_text(summary: MPPSSummary) -> str:
    wanted = len(summary.record.study_uids)
    if not wanted:
        return "no study named"
    return f"{summary.studies_stored} of {wanted} stored"


def show_mpps(summaries: list[MPPSSummary], *, as_json: bool) -> int:
    """Print the MPPS instances with what of their studies is stored."""
    if as_json:
        print(json.dumps([_mpps_json(s) for s in summaries], ensure_ascii=False))
        return EXIT_OK
    if not summaries:
        print("no MPPS instances")
        return EXIT_OK
    header = ("MPPS INSTANCE UID", "STATUS", "PATIENT ID", "MODALITY", "STUDY INSTANCE UID",
              "STUDY", "INSTANCES", "IMAGES", "UPDATED")  # fmt: skip
    rows = [
        (
            s.record.sop_instance_uid,
            s.record.status,
            _first(s.record.attributes, "00100020"),
            _first(s.record.attributes, "00080060"),
            ", ".join(s.record.study_uids) or "-",
            _stored_text(s),
            str(s.instances_stored),
            f"{s.images_stored}/{s.images_referenced}",
            s.record.updated_at,
        )
        for s in summaries
    ]
    print("\n".join(table([header, *rows])))
    return EXIT_OK


def _commitment_json(request: CommitmentRequest) -> dict[str, object]:
    return {
        "transaction_uid": request.transaction_uid,
        "requester_ae": request.requester_ae,
        "references": len(request.references),
        "state": request.state.value,
        "duplicate": request.duplicate,
        "event_type_id": request.event_type_id,
        "failed": request.failed_count,
        "attempts": request.attempts,
        "received_at": request.received_at,
        "delivered_at": request.delivered_at,
        "last_error": request.last_error,
    }


def show_commitments(requests: list[CommitmentRequest], *, as_json: bool) -> int:
    """Print the storage commitment requests, pending and delivered."""
    if as_json:
        print(json.dumps([_commitment_json(r) for r in requests], ensure_ascii=False))
        return EXIT_OK
    if not requests:
        print("no storage commitment requests")
        return EXIT_OK
    header = ("TRANSACTION UID", "REQUESTER", "REFS", "STATE", "EVENT", "FAILED", "ATTEMPTS",
              "RECEIVED", "LAST ERROR")  # fmt: skip
    rows = [
        (
            r.transaction_uid,
            r.requester_ae,
            str(len(r.references)),
            r.state.value,
            "-" if r.event_type_id is None else str(r.event_type_id),
            "-" if r.failed_count is None else str(r.failed_count),
            str(r.attempts),
            r.received_at,
            r.last_error[:60],
        )
        for r in requests
    ]
    print("\n".join(table([header, *rows])))
    return EXIT_OK


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
        print("\n".join(table([_LIST_HEADER, *(_study_line(s) for s in studies)])))
    else:
        print("no studies")
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    root = _indexed_root(args)
    report = _run(tools.verify(root), root)
    for problem in report.problems:
        detail = f" ({problem.detail})" if problem.detail else ""
        print(f"{problem.kind.value}: {problem.path}{detail}")
    for c in report.conflicts:  # peer text: escaped (logtext.printable)
        print(
            f"conflict: SOP instance {printable(c.sop_instance_uid)} from "
            f"{printable(c.calling_ae)} at {c.received_at}, {c.size} bytes, other content than "
            f"stored: {c.action}"
        )
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
    config = load_config(args.config, {"storage": args.storage})
    auditor = open_auditor(config.audit, config.ae_title)
    removed = _run(_delete_audited(root, args.study_uid, auditor), root)
    if not removed:
        raise StorageToolError(f"no instance of study {args.study_uid} in the index")
    print(f"deleted study {args.study_uid}: {removed} instances")
    return EXIT_OK


async def _delete_audited(root: Path, study_uid: str, auditor: Auditor) -> int:
    """Delete, then record who deleted what (PS3.15 A.5.3.8), also when it failed."""
    removed, outcome = 0, Outcome.SERIOUS_FAILURE
    try:
        removed = await tools.delete_study(root, study_uid)
        outcome = Outcome.SUCCESS if removed else Outcome.MINOR_FAILURE
        return removed
    finally:
        event = StudyDeleted(study_uid, removed, str(root), _os_user(), outcome)
        auditor.record(event)
        await auditor.close()


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def cmd_mpps(args: argparse.Namespace) -> int:
    root = _indexed_root(args)
    return show_mpps(_run(tools.mpps_summaries(root), root), as_json=args.json)


def cmd_commitments(args: argparse.Namespace) -> int:
    root = _indexed_root(args)
    return show_commitments(_run(tools.commitment_requests(root), root), as_json=args.json)


# -- registration ------------------------------------------------------------------------------

_COMMANDS: Final[Mapping[str, tuple[Command, str]]] = MappingProxyType(
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


def register(subparsers: Subparsers) -> None:
    """Add ``storage`` and its sub-commands to the main parser's sub-commands."""
    storage = subparsers.add_parser("storage", help="storage tools: stats, list, verify, ...")
    commands = storage.add_subparsers(dest="storage_command", metavar="TOOL", required=True)
    for name, (func, help_text) in _COMMANDS.items():
        parser = commands.add_parser(name, help=help_text, description=help_text)
        _add_common(parser)
        _add_extras(name, parser)
        parser.set_defaults(func=func)
