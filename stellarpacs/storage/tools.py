"""Storage management tools ("tools are provided to manage storage", 1.3 statement 3.1.3.2.2.1).

The CLI calls these; each opens the index by itself, so they work in another
process while the server runs (WAL readers never block the writer, writes wait
on the busy timeout). Nothing here runs unless asked: the archive itself never
deletes a file it received.

``verify`` may report an instance that is arriving at that very moment (its file
is in the tree a few milliseconds before its row is committed); run it again to
tell such a transient from a real orphan.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path

from stellarpacs.fileio import INSTANCE_SUFFIX
from stellarpacs.storage.errors import UnreadableDataSet
from stellarpacs.storage.files import durable, header
from stellarpacs.storage.files.header import row_from_dataset
from stellarpacs.storage.files.layout import Layout
from stellarpacs.storage.index.conflicts import list_conflicts_blocking
from stellarpacs.storage.index.database import driver_errors
from stellarpacs.storage.index.instances import SQLiteIndex
from stellarpacs.storage.index.nservices import SQLiteNServiceStore
from stellarpacs.storage.records import (
    CommitmentRequest,
    ConflictRecord,
    InstanceRecord,
    InstanceRow,
    MPPSSummary,
    StudySummary,
)

__all__ = [
    "Problem",
    "ProblemKind",
    "ReindexReport",
    "VerifyReport",
    "delete_study",
    "list_studies",
    "reindex",
    "stats",
    "verify",
]

log = logging.getLogger(__name__)

_BATCH = 128  # files handled per worker-thread hop


class ProblemKind(Enum):
    MISSING = "missing file"
    SIZE_MISMATCH = "size differs from the index"
    UID_MISMATCH = "file meta SOP Instance UID differs from the index"
    UNREADABLE = "not a readable PS3.10 file"
    UNINDEXED = "file not in the index"


@dataclass(frozen=True, slots=True)
class Problem:
    kind: ProblemKind
    path: str  # relative to the storage root, POSIX
    detail: str = ""


@dataclass(frozen=True, slots=True)
class VerifyReport:
    rows_checked: int
    files_scanned: int
    problems: tuple[Problem, ...]
    #: Known SOP Instance UIDs that arrived again with other content (``duplicate_policy``).
    conflicts: tuple[ConflictRecord, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True, slots=True)
class ReindexReport:
    indexed: int
    duplicates: int
    skipped: tuple[Problem, ...]


@contextlib.asynccontextmanager
async def _index(root: Path, *, create: bool = False) -> AsyncIterator[SQLiteIndex]:
    """The index of ``root``, open; driver errors surface as StorageUnavailable."""
    index = SQLiteIndex(Layout(Path(root)).index_path)
    with driver_errors():
        await index.open(create=create)
        try:
            yield index
        finally:
            await index.close()


async def mpps_summaries(root: Path) -> list[MPPSSummary]:
    """The MPPS instances kept under ``root``, with what of their studies is stored."""
    with driver_errors():
        async with SQLiteNServiceStore(Layout(root).index_path) as store:
            return await store.mpps_summaries()


async def commitment_requests(root: Path) -> list[CommitmentRequest]:
    """The storage commitment requests kept under ``root``, pending and delivered."""
    with driver_errors():
        async with SQLiteNServiceStore(Layout(root).index_path) as store:
            return await store.commitments()


async def stats(root: Path) -> dict[str, int]:
    """Patients, studies, series, instances and bytes in the index."""
    async with _index(root) as index:
        return await index.stats()


async def list_studies(root: Path) -> list[StudySummary]:
    async with _index(root) as index:
        return await index.list_studies()


# -- verify ------------------------------------------------------------------------------------


def _check_record(layout: Layout, record: InstanceRecord) -> Problem | None:
    """Blocking: the file of one row exists, has the row's size and the row's SOP UID."""
    try:
        path = layout.absolute(record.path)
        size = path.stat().st_size
        if size != record.size:
            return Problem(ProblemKind.SIZE_MISMATCH, record.path, f"{size} != {record.size}")
        meta = header.read_meta(path)
    except FileNotFoundError:
        return Problem(ProblemKind.MISSING, record.path, record.sop_instance_uid)
    except (OSError, ValueError, UnreadableDataSet) as exc:
        return Problem(ProblemKind.UNREADABLE, record.path, str(exc))
    if meta.sop_instance_uid != record.sop_instance_uid:
        detail = f"{meta.sop_instance_uid!r} != {record.sop_instance_uid!r}"
        return Problem(ProblemKind.UID_MISMATCH, record.path, detail)
    return None


def _check_records(layout: Layout, records: list[InstanceRecord]) -> list[Problem]:
    return [p for p in (_check_record(layout, r) for r in records) if p is not None]


def _relative(layout: Layout, paths: Iterable[Path]) -> list[str]:
    return sorted(p.relative_to(layout.root).as_posix() for p in paths)


def _files_below(layout: Layout, directory: Path) -> list[str]:
    """Blocking: root-relative POSIX paths of every instance file below ``directory``."""
    return _relative(
        layout,
        (
            Path(dirpath, name)
            for dirpath, _, names in os.walk(directory)
            for name in names
            if name.endswith(INSTANCE_SUFFIX)
        ),
    )


def _top_level(layout: Layout) -> tuple[list[str], list[Path]]:
    """Blocking: instance files lying directly in ``studies/``, and the study directories."""
    entries = list(layout.studies_dir.iterdir()) if layout.studies_dir.is_dir() else []
    stray = (p for p in entries if p.is_file() and p.name.endswith(INSTANCE_SUFFIX))
    return _relative(layout, stray), sorted(p for p in entries if p.is_dir())


async def _tree(layout: Layout) -> AsyncIterator[list[str]]:
    """Every instance file of the tree, one study directory per step (memory stays flat)."""
    stray, study_dirs = await asyncio.to_thread(_top_level, layout)
    if stray:
        yield stray
    for study_dir in study_dirs:
        yield await asyncio.to_thread(_files_below, layout, study_dir)


async def verify(root: Path) -> VerifyReport:
    """Every row has its file (size, SOP UID), every file under the tree has its row.

    The conflicting arrivals kept by the archive come along, to be listed.
    """
    layout = Layout(Path(root))
    problems: list[Problem] = []
    rows = scanned = 0
    async with _index(root) as index:
        batch: list[InstanceRecord] = []
        async for record in index.iter_instances():
            batch.append(record)
            if len(batch) >= _BATCH:
                problems += await asyncio.to_thread(_check_records, layout, batch)
                rows, batch = rows + len(batch), []
        problems += await asyncio.to_thread(_check_records, layout, batch)
        rows += len(batch)
        async for paths in _tree(layout):
            scanned += len(paths)
            known = await index.known_paths(paths)
            problems += [Problem(ProblemKind.UNINDEXED, p) for p in paths if p not in known]
        conflicts = await asyncio.to_thread(list_conflicts_blocking, index.database)
    return VerifyReport(rows, scanned, tuple(problems), tuple(conflicts))


# -- reindex -----------------------------------------------------------------------------------


def _row_from_file(layout: Layout, relpath: str) -> InstanceRow:
    """Blocking: an index row from a stored file alone (the file store is the truth)."""
    path = layout.absolute(relpath)
    meta = header.read_meta(path)
    stat = path.stat()
    return row_from_dataset(
        header.open_dataset(path),
        sop_instance_uid=meta.sop_instance_uid,
        sop_class_uid=meta.sop_class_uid,
        transfer_syntax_uid=meta.transfer_syntax_uid,
        size=stat.st_size,
        received_at=datetime.fromtimestamp(stat.st_mtime, UTC).isoformat(timespec="milliseconds"),
        calling_ae=meta.source_ae,
        path=relpath,
    )


def _rows_from_files(
    layout: Layout, relpaths: list[str]
) -> list[tuple[str, InstanceRow | Problem]]:
    out: list[tuple[str, InstanceRow | Problem]] = []
    for relpath in relpaths:
        try:
            out.append((relpath, _row_from_file(layout, relpath)))
        except (OSError, UnreadableDataSet) as exc:
            out.append((relpath, Problem(ProblemKind.UNREADABLE, relpath, str(exc))))
    return out


def _chunks(items: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(items), _BATCH):
        yield items[start : start + _BATCH]


async def reindex(root: Path, progress: Callable[[int, int], None] | None = None) -> ReindexReport:
    """Rebuild the whole index from the files, in one transaction.

    Readers see the old index until the new one is committed. Safe while nothing
    else writes (the rebuild holds the write lock; a running server's commits
    wait on it). ``progress(done, total)`` is called after each batch of files.
    """
    layout = Layout(Path(root))
    total = sum([len(paths) async for paths in _tree(layout)])
    skipped: list[Problem] = []
    done = 0

    async def rows() -> AsyncIterator[InstanceRow]:
        nonlocal done
        async for paths in _tree(layout):
            for chunk in _chunks(paths):
                for _, item in await asyncio.to_thread(_rows_from_files, layout, chunk):
                    if isinstance(item, Problem):
                        skipped.append(item)
                    else:
                        yield item
                done += len(chunk)
                if progress is not None:
                    progress(done, total)

    async with _index(root, create=True) as index:
        added, duplicates = await index.rebuild(rows())
    return ReindexReport(added, duplicates, tuple(skipped))


# -- delete ------------------------------------------------------------------------------------


def _remove_files(layout: Layout, relpaths: list[str]) -> None:
    """Blocking: remove the files, then their directories once empty, durably."""
    directories: set[Path] = set()
    for relpath in relpaths:
        try:
            path = layout.absolute(relpath)
        except ValueError as exc:
            log.warning("not removing %s", exc)
            continue
        path.unlink(missing_ok=True)
        directories.add(path.parent)
    for directory in sorted(directories, key=lambda d: len(d.parts), reverse=True):
        _prune(directory, layout.studies_dir)


def _prune(directory: Path, stop: Path) -> None:
    """Remove ``directory`` and its parents below ``stop`` while empty; fsync what remains."""
    while directory != stop and stop in directory.parents:
        try:
            directory.rmdir()
        except OSError:  # not empty, or gone already
            break
        directory = directory.parent
    with contextlib.suppress(OSError):
        durable.fsync_dir(directory)


async def delete_study(root: Path, study_uid: str) -> int:
    """Remove a study's files and rows; returns the number of instances removed.

    Files go first, rows last: if this is interrupted, the rows that remain
    still name the study, and running it again finishes the job.
    """
    layout = Layout(Path(root))
    async with _index(root) as index:
        records = await index.instances_of_study(study_uid)
        await asyncio.to_thread(_remove_files, layout, [r.path for r in records])
        return await index.delete_study(study_uid)
