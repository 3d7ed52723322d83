"""``python -m stellarpacs store HOST PORT PATH...``: send files and folders (Storage SCU).

Files are sent as stored (the data set bytes after their file meta); a
folder is searched recursively and what is not a PS3.10 file is listed as
skipped.  A progress bar goes to stderr, a summary of failures to stdout;
the exit status is 0 only when every file was stored with a success or
warning status.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from stellarpacs.aio.client import ClientAssociation
from stellarpacs.aio.scu.contexts import ProposedContext
from stellarpacs.aio.scu.store import StoreResult, scan_paths, store_paths
from stellarpacs.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    Subparsers,
    add_peer_flags,
    connect_peer,
    run,
)
from stellarpacs.dimse.status import StatusCategory, category, describe

__all__ = ["register"]


class _Progress:
    """A one-line text progress bar on stderr (only when stderr is a terminal or forced)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total = total
        self.done = 0
        self.failed = 0
        self.enabled = enabled

    def update(self, result: StoreResult) -> None:
        self.done += 1
        if not _succeeded(result):
            self.failed += 1
        if self.enabled:
            width = 30
            filled = width * self.done // max(self.total, 1)
            bar = "#" * filled + "-" * (width - filled)
            print(
                f"\r[{bar}] {self.done}/{self.total} sent, {self.failed} failed",
                end="" if self.done < self.total else "\n",
                file=sys.stderr,
                flush=True,
            )


def _succeeded(result: StoreResult) -> bool:
    if result.status is None:
        return False
    return category(result.status) in (StatusCategory.SUCCESS, StatusCategory.WARNING)


async def _store(args: argparse.Namespace) -> int:
    items, skipped = await asyncio.to_thread(scan_paths, [Path(p) for p in args.paths])
    for path, why in skipped:
        print(f"skipped {path}: {why}", file=sys.stderr)
    if not items:
        print("nothing to send: no DICOM PS3.10 files found", file=sys.stderr)
        return EXIT_FAILED
    progress = _Progress(len(items), enabled=args.progress or sys.stderr.isatty())

    async def open_association(contexts: list[ProposedContext]) -> ClientAssociation:
        return await connect_peer(args, contexts)

    results = await store_paths(items, open_association, on_result=progress.update)
    failures = [r for r in results if not _succeeded(r)]
    print(f"{len(results) - len(failures)} of {len(results)} files stored at {args.aec}")
    for result in failures:
        why = result.error or describe(result.status or 0)
        print(f"FAILED {result.item.path}: {why}")
    return EXIT_OK if not failures and not skipped else EXIT_FAILED


def cmd_store(args: argparse.Namespace) -> int:
    return run(_store(args))


def register(commands: Subparsers) -> None:
    """Add ``store`` to the command line."""
    parser = commands.add_parser("store", help="send DICOM files or folders (C-STORE)")
    add_peer_flags(parser, timeout=60.0)
    parser.add_argument("paths", nargs="+", help="files or folders (searched recursively)")
    parser.add_argument("--progress", action="store_true", help="show the progress bar always")
    parser.set_defaults(func=cmd_store)
