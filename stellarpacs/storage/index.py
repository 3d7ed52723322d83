"""The instance index: SQLite (WAL) through aiosqlite, patient / study / series / instance.

The file store is the source of truth; this index is a rebuildable cache of it,
holding the query keys of PS3.4 C.6.1.1 as indexed columns and each instance's
header as DICOM JSON (PS3.18 F.2), so that C-FIND can answer without opening
files. Text values are kept as pydicom decodes them (a PN as its ``^`` string);
the Specific Character Set they came in is kept beside them.

Higher levels are filled by the first instance that names them; a later
instance only fills attributes that are still empty. The database is opened in
WAL mode with a busy timeout, so the storage tools can read while the server
writes. Every statement takes its values as parameters.

Three kinds of connection, all to the same file. ``Index.db`` (aiosqlite) serves
the async readers and the rare bulk writes (rebuild, delete). ``add()``, the hot
path of C-STORE, runs each batch as ONE blocking call on a dedicated writer
thread with its own plain ``sqlite3`` connection: the upserts, the inserts and
the commit of a whole batch cost one thread hop instead of several per row.
``get_instance_blocking()`` serves code already running in a worker thread (the
archive's duplicate check) from a small pool of plain read connections. Those
two live in :mod:`index_threads`. The statements that add a row are written
once, as a generator that both the blocking and the async driver run (see
``_insert_plan``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite
from pydicom.dataset import Dataset

from stellarpacs.errors import StellarPACSError
from stellarpacs.storage.header import HeaderSummary, header_uids, summarize
from stellarpacs.storage.index_threads import Plan, ReadPool, WriterThread, run_batch
from stellarpacs.storage.paths import instance_relpath

__all__ = [
    "MIGRATIONS",
    "Index",
    "InstanceRecord",
    "InstanceRow",
    "SchemaTooNew",
    "StudySummary",
    "row_from_dataset",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    """What the index knows about one stored instance; ``path`` is POSIX, root-relative."""

    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    patient_id: str
    study_instance_uid: str
    series_instance_uid: str
    path: str
    size: int
    received_at: str
    calling_ae: str


@dataclass(frozen=True, slots=True)
class InstanceRow:
    """One instance to add: its record and the header columns."""

    record: InstanceRecord
    header: HeaderSummary


def row_from_dataset(
    ds: Dataset,
    *,
    sop_instance_uid: str,
    sop_class_uid: str,
    transfer_syntax_uid: str,
    size: int,
    received_at: str,
    calling_ae: str,
    path: str | None = None,
) -> InstanceRow:
    """The row of one instance from its header; ``path=None``: where the archive puts it.

    The SOP UIDs and transfer syntax come from the caller (the C-STORE command,
    or a file's meta), never from the data set, which is not validated.
    """
    patient_id, study_uid, series_uid = header_uids(ds)
    if path is None:
        path = instance_relpath(study_uid, series_uid, sop_instance_uid)
    record = InstanceRecord(
        sop_instance_uid=sop_instance_uid,
        sop_class_uid=sop_class_uid,
        transfer_syntax_uid=transfer_syntax_uid,
        patient_id=patient_id,
        study_instance_uid=study_uid,
        series_instance_uid=series_uid,
        path=path
        if path is not None
        else instance_relpath(study_uid, series_uid, sop_instance_uid),
        size=size,
        received_at=received_at,
        calling_ae=calling_ae,
    )
    return InstanceRow(record, summarize(ds))


@dataclass(frozen=True, slots=True)
class StudySummary:
    """One line of ``list_studies``; Modalities in Study is derived from the series."""

    study_instance_uid: str
    patient_id: str
    patient_name: str
    study_date: str
    study_time: str
    accession_number: str
    study_description: str
    modalities: tuple[str, ...]
    series_count: int
    instance_count: int
    size: int


# -- schema ------------------------------------------------------------------------------------

_SCHEMA_V1 = (
    """CREATE TABLE patient (
        pk INTEGER PRIMARY KEY,
        patient_id TEXT NOT NULL UNIQUE,
        patient_name TEXT NOT NULL DEFAULT '',
        patient_name_folded TEXT NOT NULL DEFAULT '',
        patient_birth_date TEXT NOT NULL DEFAULT '',
        patient_sex TEXT NOT NULL DEFAULT '')""",
    "CREATE INDEX patient_name_ix ON patient (patient_name)",
    "CREATE INDEX patient_name_folded_ix ON patient (patient_name_folded)",
    """CREATE TABLE study (
        pk INTEGER PRIMARY KEY,
        study_uid TEXT NOT NULL UNIQUE,
        patient_pk INTEGER NOT NULL REFERENCES patient (pk),
        study_date TEXT NOT NULL DEFAULT '',
        study_time TEXT NOT NULL DEFAULT '',
        accession_number TEXT NOT NULL DEFAULT '',
        study_id TEXT NOT NULL DEFAULT '',
        study_description TEXT NOT NULL DEFAULT '',
        referring_physician_name TEXT NOT NULL DEFAULT '')""",
    "CREATE INDEX study_patient_ix ON study (patient_pk)",
    "CREATE INDEX study_date_ix ON study (study_date)",
    "CREATE INDEX study_accession_ix ON study (accession_number)",
    """CREATE TABLE series (
        pk INTEGER PRIMARY KEY,
        series_uid TEXT NOT NULL UNIQUE,
        study_pk INTEGER NOT NULL REFERENCES study (pk),
        modality TEXT NOT NULL DEFAULT '',
        series_number INTEGER,
        series_description TEXT NOT NULL DEFAULT '',
        body_part_examined TEXT NOT NULL DEFAULT '')""",
    "CREATE INDEX series_study_ix ON series (study_pk)",
    "CREATE INDEX series_modality_ix ON series (modality)",
    """CREATE TABLE instance (
        pk INTEGER PRIMARY KEY,
        sop_instance_uid TEXT NOT NULL UNIQUE,
        series_pk INTEGER NOT NULL REFERENCES series (pk),
        sop_class_uid TEXT NOT NULL,
        instance_number INTEGER,
        transfer_syntax_uid TEXT NOT NULL,
        specific_character_set TEXT NOT NULL DEFAULT '',
        path TEXT NOT NULL,
        size INTEGER NOT NULL,
        received_at TEXT NOT NULL,
        calling_ae TEXT NOT NULL DEFAULT '',
        header_json TEXT NOT NULL DEFAULT '{}')""",
    "CREATE INDEX instance_series_ix ON instance (series_pk)",
    "CREATE INDEX instance_path_ix ON instance (path)",
)

MIGRATIONS: list[Sequence[str]] = [_SCHEMA_V1]
"""Statements that bring the schema from version ``i`` to ``i + 1`` (PRAGMA user_version)."""


def _fill_empty_upsert(table: str, key: str, columns: Sequence[str]) -> str:
    """INSERT ... ON CONFLICT that only fills columns still empty (first value wins)."""
    names = (key, *columns)
    updates = ", ".join(
        f"{c} = CASE WHEN {table}.{c} IS NULL OR {table}.{c} = '' "
        f"THEN excluded.{c} ELSE {table}.{c} END"
        for c in columns
    )
    return (
        f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))}) "
        f"ON CONFLICT ({key}) DO UPDATE SET {updates} RETURNING pk"
    )


_PATIENT_COLUMNS = ("patient_name", "patient_name_folded", "patient_birth_date", "patient_sex")
_STUDY_COLUMNS = (
    "study_date",
    "study_time",
    "accession_number",
    "study_id",
    "study_description",
    "referring_physician_name",
)
_SERIES_COLUMNS = ("modality", "series_number", "series_description", "body_part_examined")
_UPSERT_PATIENT = _fill_empty_upsert("patient", "patient_id", _PATIENT_COLUMNS)
_UPSERT_STUDY = _fill_empty_upsert("study", "study_uid", ("patient_pk", *_STUDY_COLUMNS))
_UPSERT_SERIES = _fill_empty_upsert("series", "series_uid", ("study_pk", *_SERIES_COLUMNS))
_INSERT_INSTANCE = (
    "INSERT INTO instance (sop_instance_uid, series_pk, sop_class_uid, instance_number, "
    "transfer_syntax_uid, specific_character_set, path, size, received_at, calling_ae, "
    "header_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_SELECT_RECORD = (
    "SELECT i.sop_instance_uid, i.sop_class_uid, i.transfer_syntax_uid, p.patient_id, "
    "st.study_uid, se.series_uid, i.path, i.size, i.received_at, i.calling_ae "
    "FROM instance i JOIN series se ON se.pk = i.series_pk "
    "JOIN study st ON st.pk = se.study_pk JOIN patient p ON p.pk = st.patient_pk"
)
_LIST_STUDIES = (
    "SELECT st.study_uid, p.patient_id, p.patient_name, st.study_date, st.study_time, "
    "st.accession_number, st.study_description, group_concat(DISTINCT se.modality), "
    "COUNT(DISTINCT se.pk), COUNT(i.pk), COALESCE(SUM(i.size), 0) "
    "FROM study st JOIN patient p ON p.pk = st.patient_pk "
    "LEFT JOIN series se ON se.study_pk = st.pk LEFT JOIN instance i ON i.series_pk = se.pk "
    "GROUP BY st.pk ORDER BY st.study_date, st.study_uid"
)
_DELETE_STUDY = (
    "DELETE FROM instance WHERE series_pk IN (SELECT se.pk FROM series se "
    "JOIN study st ON st.pk = se.study_pk WHERE st.study_uid = ?)",
    "DELETE FROM series WHERE study_pk IN (SELECT pk FROM study WHERE study_uid = ?)",
    "DELETE FROM study WHERE study_uid = ?",
    "DELETE FROM patient WHERE NOT EXISTS "
    "(SELECT 1 FROM study WHERE study.patient_pk = patient.pk)",
)


class SchemaTooNew(StellarPACSError):
    """The index was written by a newer StellarPACS; refuse rather than guess."""


_HAS_INSTANCE = "SELECT 1 FROM instance WHERE sop_instance_uid = ?"
_GET_INSTANCE = _SELECT_RECORD + " WHERE i.sop_instance_uid = ?"


def _insert_plan(row: InstanceRow) -> Plan:
    """The statements that add one row; each is sent back the rows its predecessor returned.

    Sans-I/O, so one description serves the writer thread and aiosqlite alike.
    Returns False, writing nothing, when the SOP instance is already indexed.
    """
    rec, hdr = row.record, row.header
    if (yield _HAS_INSTANCE, (rec.sop_instance_uid,)):
        return False
    patient = yield (
        _UPSERT_PATIENT,
        (
            rec.patient_id,
            hdr.patient_name,
            hdr.patient_name.casefold(),
            hdr.patient_birth_date,
            hdr.patient_sex,
        ),
    )
    study = yield (
        _UPSERT_STUDY,
        (
            rec.study_instance_uid,
            patient[0][0],
            hdr.study_date,
            hdr.study_time,
            hdr.accession_number,
            hdr.study_id,
            hdr.study_description,
            hdr.referring_physician_name,
        ),
    )
    series = yield (
        _UPSERT_SERIES,
        (
            rec.series_instance_uid,
            study[0][0],
            hdr.modality,
            hdr.series_number,
            hdr.series_description,
            hdr.body_part_examined,
        ),
    )
    yield (
        _INSERT_INSTANCE,
        (
            rec.sop_instance_uid,
            series[0][0],
            rec.sop_class_uid,
            hdr.instance_number,
            rec.transfer_syntax_uid,
            hdr.specific_character_set,
            rec.path,
            rec.size,
            rec.received_at,
            rec.calling_ae,
            hdr.header_json,
        ),
    )
    return True


async def _run_plan_async(db: aiosqlite.Connection, plan: Plan) -> bool:
    """aiosqlite driver of an insert plan."""
    try:
        sql, params = next(plan)
        while True:
            async with db.execute(sql, params) as cur:
                rows = [tuple(r) for r in await cur.fetchall()]
            sql, params = plan.send(rows)
    except StopIteration as done:
        return bool(done.value)


class Index:
    """Async access to one index database.

    ``transactions`` counts committed write transactions, so that group commit
    can be observed.
    """

    def __init__(self, path: Path, *, durable: bool = True, busy_timeout_ms: int = 10_000) -> None:
        self.path = path
        self._durable = durable
        self._busy_timeout_ms = busy_timeout_ms
        self._db: aiosqlite.Connection | None = None
        self._writer: WriterThread | None = None
        self._readers: ReadPool | None = None
        self.transactions = 0

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StellarPACSError("the index is not open")
        return self._db

    def _pragmas(self) -> tuple[str, ...]:
        # FULL: a commit is on disk before a C-STORE is answered (WAL + NORMAL is not).
        return (
            f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}",
            f"PRAGMA synchronous = {'FULL' if self._durable else 'NORMAL'}",
            "PRAGMA foreign_keys = ON",
        )

    async def open(self, *, create: bool = True) -> None:
        """Connect, switch to WAL and apply the migrations still missing."""
        if not create and not self.path.exists():
            raise FileNotFoundError(f"no index at {self.path}")
        db = await aiosqlite.connect(self.path, isolation_level=None)
        try:
            busy, synchronous, foreign_keys = self._pragmas()
            await db.execute(busy)
            await db.execute("PRAGMA journal_mode = WAL")
            await db.execute(synchronous)
            await db.execute(foreign_keys)
            await _migrate(db)
        except BaseException:
            await db.close()
            raise
        self._db = db
        self._writer = WriterThread(self.path, self._pragmas())
        self._readers = ReadPool(self.path, self._pragmas())

    async def close(self) -> None:
        writer, self._writer = self._writer, None
        readers, self._readers = self._readers, None
        try:
            if writer is not None:
                await writer.close()
            if readers is not None:
                await asyncio.to_thread(readers.close)
        finally:
            if self._db is not None:
                db, self._db = self._db, None
                await db.close()

    async def __aenter__(self) -> Index:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- reads -----------------------------------------------------------------------------

    async def has_instance(self, sop_instance_uid: str) -> bool:
        async with self.db.execute(_HAS_INSTANCE, (sop_instance_uid,)) as cur:
            return await cur.fetchone() is not None

    async def get_instance(self, sop_instance_uid: str) -> InstanceRecord | None:
        async with self.db.execute(_GET_INSTANCE, (sop_instance_uid,)) as cur:
            row = await cur.fetchone()
        return None if row is None else InstanceRecord(*row)

    def get_instance_blocking(self, sop_instance_uid: str) -> InstanceRecord | None:
        """Blocking ``get_instance`` for code already in a worker thread (any thread).

        Sees every transaction committed before the call: each look-up is its
        own read transaction, fetched to the end.
        """
        if self._readers is None:
            raise StellarPACSError("the index is not open")
        with self._readers.connection() as db:
            rows = db.execute(_GET_INSTANCE, (sop_instance_uid,)).fetchall()
        return InstanceRecord(*rows[0]) if rows else None

    async def get_header_json(self, sop_instance_uid: str) -> dict[str, Any] | None:
        """The stored DICOM JSON header of one instance."""
        sql = "SELECT header_json FROM instance WHERE sop_instance_uid = ?"
        async with self.db.execute(sql, (sop_instance_uid,)) as cur:
            row = await cur.fetchone()
        return None if row is None else dict(json.loads(row[0]))

    async def instances_of_study(self, study_uid: str) -> list[InstanceRecord]:
        sql = _SELECT_RECORD + " WHERE st.study_uid = ? ORDER BY se.pk, i.pk"
        async with self.db.execute(sql, (study_uid,)) as cur:
            return [InstanceRecord(*row) async for row in cur]

    async def iter_instances(self) -> AsyncIterator[InstanceRecord]:
        async with self.db.execute(_SELECT_RECORD + " ORDER BY i.pk") as cur:
            async for row in cur:
                yield InstanceRecord(*row)

    async def known_paths(self, paths: Iterable[str]) -> set[str]:
        """Those of ``paths`` that some instance row points at."""
        wanted = list(paths)
        found: set[str] = set()
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            sql = f"SELECT path FROM instance WHERE path IN ({', '.join('?' * len(chunk))})"
            async with self.db.execute(sql, chunk) as cur:
                found.update([str(row[0]) async for row in cur])
        return found

    async def stats(self) -> dict[str, int]:
        """Counts per level and the bytes of all indexed files."""
        sql = (
            "SELECT (SELECT COUNT(*) FROM patient), (SELECT COUNT(*) FROM study), "
            "(SELECT COUNT(*) FROM series), (SELECT COUNT(*) FROM instance), "
            "(SELECT COALESCE(SUM(size), 0) FROM instance)"
        )
        async with self.db.execute(sql) as cur:
            row = await cur.fetchone()
        assert row is not None
        keys = ("patients", "studies", "series", "instances", "bytes")
        return dict(zip(keys, (int(v) for v in row), strict=True))

    async def list_studies(self) -> list[StudySummary]:
        async with self.db.execute(_LIST_STUDIES) as cur:
            rows = [row async for row in cur]
        return [_study_summary(row) for row in rows]

    # -- writes ----------------------------------------------------------------------------

    async def add(self, rows: Sequence[InstanceRow]) -> list[bool]:
        """Add ``rows`` in one transaction; per row, False when the SOP instance was known.

        The first instance of a SOP Instance UID is kept, a later one is not
        written (PS3.4 B.4.1 leaves duplicates to the SCP). The whole batch is
        one call on the writer thread; it returns once the commit is durable.
        """
        if self._writer is None:
            raise StellarPACSError("the index is not open")
        plans = [_insert_plan(row) for row in rows]
        added = await self._writer.call(lambda db: run_batch(db, plans))
        self.transactions += 1
        return added

    async def rebuild(self, rows: AsyncIterator[InstanceRow]) -> tuple[int, int]:
        """Replace the whole content by ``rows`` in one transaction; (added, duplicates)."""
        added = duplicates = 0
        async with self._transaction():
            for table in ("instance", "series", "study", "patient"):
                await self.db.execute(f"DELETE FROM {table}")
            async for row in rows:
                if await self._insert(row):
                    added += 1
                else:
                    duplicates += 1
        return added, duplicates

    async def delete_study(self, study_uid: str) -> int:
        """Remove a study's rows (not its files); returns the number of instances removed."""
        async with self._transaction():
            cur = await self.db.execute(_DELETE_STUDY[0], (study_uid,))
            removed = cur.rowcount
            await self.db.execute(_DELETE_STUDY[1], (study_uid,))
            await self.db.execute(_DELETE_STUDY[2], (study_uid,))
            await self.db.execute(_DELETE_STUDY[3])
        return max(removed, 0)

    def _transaction(self) -> _Transaction:
        return _Transaction(self)

    async def _insert(self, row: InstanceRow) -> bool:
        """Add one row on ``db`` inside a transaction the caller opened."""
        return await _run_plan_async(self.db, _insert_plan(row))


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception (including cancellation)."""

    def __init__(self, index: Index) -> None:
        self._index = index

    async def __aenter__(self) -> None:
        await self._index.db.execute("BEGIN IMMEDIATE")

    async def __aexit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        db = self._index.db
        if exc_type is None:
            await db.execute("COMMIT")
            self._index.transactions += 1
        elif db.in_transaction:
            await db.execute("ROLLBACK")


def _study_summary(row: Sequence[Any]) -> StudySummary:
    modalities = tuple(sorted(m for m in (row[7] or "").split(",") if m))
    texts = tuple(str(v) if v is not None else "" for v in row[:7])
    return StudySummary(
        texts[0],
        texts[1],
        texts[2],
        texts[3],
        texts[4],
        texts[5],
        texts[6],
        modalities,
        int(row[8]),
        int(row[9]),
        int(row[10]),
    )


async def _user_version(db: aiosqlite.Connection) -> int:
    async with db.execute("PRAGMA user_version") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def _migrate(db: aiosqlite.Connection) -> None:
    """Bring the schema to ``len(MIGRATIONS)``, all steps in one transaction."""
    target = len(MIGRATIONS)
    if await _user_version(db) == target:
        return
    await db.execute("BEGIN IMMEDIATE")  # re-read under the lock: another process may migrate
    try:
        version = await _user_version(db)
        if version > target:
            raise SchemaTooNew(f"index schema v{version} is newer than this program (v{target})")
        for step in range(version, target):
            for statement in MIGRATIONS[step]:
                await db.execute(statement)
            log.info("index schema migrated to v%d", step + 1)
        await db.execute(f"PRAGMA user_version = {int(target)}")
        await db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            await db.execute("ROLLBACK")
        raise
