"""What the DIMSE-N services keep: commitment requests and MPPS instances (PS3.4 J, F.7).

Both are "kept in the index": the tables live in the SAME SQLite file as the
instance index (``Layout.index_path``), so one backup, one ``storage`` folder
and one WAL hold everything, and MPPS instances can be joined with the
stored studies.  They are NOT part of :data:`stellarpacs.storage.index.schema.MIGRATIONS`
(PRAGMA user_version belongs to the index): this module creates its own
tables with ``CREATE TABLE IF NOT EXISTS``, prefixed ``nservices_``, and keeps
its own schema version in ``nservices_schema``, through its own aiosqlite
connection (opened like every other, :mod:`database`), so the index may
migrate independently and a rebuild of the index (``storage reindex``) leaves
these rows alone.

A commitment request is written (and, when ``durable``, synced) before the
N-ACTION is answered, and stays ``pending`` until the requester acknowledged
its N-EVENT-REPORT with Success (PS3.4 J.3.3); it is then marked
``delivered``, never deleted, so the storage tools can show the history.

Nothing here imports pydicom or the network: MPPS attributes arrive as DICOM
JSON text (PS3.18 F.2) and references as plain UID pairs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, Final

import aiosqlite

from stellarpacs.storage.errors import SchemaTooNew, StorageUnavailable
from stellarpacs.storage.index.database import Database, unavailable
from stellarpacs.storage.records import (
    CommitmentRequest,
    CommitmentState,
    MPPSRecord,
    MPPSSummary,
    Reference,
    now_text,
)

__all__ = ["SCHEMA_VERSION", "SQLiteNServiceStore"]

_SCHEMA: Final[tuple[Sequence[str], ...]] = (
    (
        """CREATE TABLE IF NOT EXISTS nservices_commitment (
            pk INTEGER PRIMARY KEY,
            transaction_uid TEXT NOT NULL,
            requester_ae TEXT NOT NULL,
            references_json TEXT NOT NULL,
            duplicate INTEGER NOT NULL DEFAULT 0,
            state TEXT NOT NULL DEFAULT 'pending',
            received_at TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT NOT NULL DEFAULT '',
            delivered_at TEXT,
            event_type_id INTEGER,
            failed_count INTEGER)""",
        "CREATE INDEX IF NOT EXISTS nservices_commitment_state_ix ON nservices_commitment (state)",
        "CREATE INDEX IF NOT EXISTS nservices_commitment_txn_ix "
        "ON nservices_commitment (transaction_uid)",
        """CREATE TABLE IF NOT EXISTS nservices_mpps (
            sop_instance_uid TEXT PRIMARY KEY,
            status TEXT NOT NULL,
            attributes_json TEXT NOT NULL,
            calling_ae TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS nservices_mpps_ref (
            mpps_uid TEXT NOT NULL REFERENCES nservices_mpps (sop_instance_uid),
            level TEXT NOT NULL CHECK (level IN ('study', 'series', 'instance')),
            uid TEXT NOT NULL,
            PRIMARY KEY (mpps_uid, level, uid))""",
        "CREATE INDEX IF NOT EXISTS nservices_mpps_ref_uid_ix ON nservices_mpps_ref (uid)",
    ),
)
SCHEMA_VERSION: Final = len(_SCHEMA)

# How many of an MPPS's referenced studies / series / images the index holds: the link
# between a performed procedure step and the instances that arrive for it.
_MPPS_SUMMARY: Final = """
SELECT m.sop_instance_uid, m.status, m.attributes_json, m.calling_ae, m.created_at,
  m.updated_at,
  (SELECT group_concat(r.uid, '\\') FROM nservices_mpps_ref r
     WHERE r.mpps_uid = m.sop_instance_uid AND r.level = 'study'),
  (SELECT COUNT(*) FROM study st WHERE st.study_uid IN (SELECT r.uid FROM nservices_mpps_ref r
     WHERE r.mpps_uid = m.sop_instance_uid AND r.level = 'study')),
  (SELECT COUNT(*) FROM instance i JOIN series se ON se.pk = i.series_pk
     JOIN study st ON st.pk = se.study_pk
     WHERE st.study_uid IN (SELECT r.uid FROM nservices_mpps_ref r
       WHERE r.mpps_uid = m.sop_instance_uid AND r.level = 'study')
     OR se.series_uid IN (SELECT r.uid FROM nservices_mpps_ref r
       WHERE r.mpps_uid = m.sop_instance_uid AND r.level = 'series')),
  (SELECT COUNT(*) FROM nservices_mpps_ref r
     WHERE r.mpps_uid = m.sop_instance_uid AND r.level = 'instance'),
  (SELECT COUNT(*) FROM nservices_mpps_ref r JOIN instance i ON i.sop_instance_uid = r.uid
     WHERE r.mpps_uid = m.sop_instance_uid AND r.level = 'instance')
FROM nservices_mpps m ORDER BY m.created_at, m.sop_instance_uid
"""
_COMMITMENT_COLUMNS: Final = (
    "pk, transaction_uid, requester_ae, references_json, duplicate, state, received_at, "
    "attempts, last_error, delivered_at, event_type_id, failed_count"
)


def _commitment(row: Sequence[Any]) -> CommitmentRequest:
    references = tuple((str(c), str(i)) for c, i in json.loads(row[3]))
    return CommitmentRequest(
        pk=int(row[0]),
        transaction_uid=str(row[1]),
        requester_ae=str(row[2]),
        references=references,
        duplicate=bool(row[4]),
        state=CommitmentState(row[5]),
        received_at=str(row[6]),
        attempts=int(row[7]),
        last_error=str(row[8]),
        delivered_at=None if row[9] is None else str(row[9]),
        event_type_id=None if row[10] is None else int(row[10]),
        failed_count=None if row[11] is None else int(row[11]),
    )


class SQLiteNServiceStore:
    """The N-service tables inside the index database file (a storage.api ``NServiceStore``).

    One connection; every statement runs under one lock, so the
    read-check-write of an N-SET cannot interleave with another request's.
    Each method opens the store when it is not open yet and raises
    :class:`~stellarpacs.storage.errors.StorageUnavailable` when the database
    cannot be used; ``open()`` itself (what the storage tools call) lets the
    driver's error through, for them to report in their own terms.
    """

    def __init__(self, path: Path, *, durable: bool = True, busy_timeout_ms: int = 10_000) -> None:
        self.path = path
        self._database = Database(path, durable=durable, busy_timeout_ms=busy_timeout_ms)
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        #: Set by close(): a use after it must not open the database again behind the owner.
        self._closed = False

    @property
    def is_open(self) -> bool:
        return self._db is not None

    async def open(self) -> None:
        """Connect (see :class:`Database`) and create or upgrade the tables; idempotent.

        Errors are the driver's own: the storage tools report them as such.
        """
        async with self._lock:
            self._closed = False
            if self._db is not None:
                return
            db = await self._database.connect_async(create=True)
            try:
                await _migrate(db)
            except BaseException:
                await db.close()
                raise
            self._db = db

    async def close(self) -> None:
        async with self._lock:
            self._closed = True
            if self._db is not None:
                db, self._db = self._db, None
                await db.close()

    async def __aenter__(self) -> SQLiteNServiceStore:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StorageUnavailable("the N-service store is not open")
        return self._db

    @contextlib.asynccontextmanager
    async def _using(self, *, write: bool = False) -> AsyncIterator[None]:
        """Open if need be, hold the lock (and a transaction when writing) for the block.

        What the driver raises, opening included, becomes StorageUnavailable;
        whatever the block itself raises otherwise goes through untouched.
        """
        with unavailable():
            if self._closed:
                raise StorageUnavailable("the N-service store is closed")
            await self.open()
            async with self._lock:
                if not write:
                    yield
                    return
                async with _transaction(self.db):
                    yield

    # -- storage commitment ------------------------------------------------------------------

    async def add_commitment(
        self, transaction_uid: str, requester_ae: str, references: Sequence[Reference]
    ) -> CommitmentRequest:
        """Keep a new request durably; a re-sent identical pending request is not doubled.

        A Transaction UID already used by any other request marks this one a
        duplicate (its report will fail every reference with 0131).
        """
        refs = [list(r) for r in references]
        refs_json = json.dumps(refs)
        async with self._using(write=True):
            same = await self._fetch_commitments(
                "WHERE transaction_uid = ? ORDER BY pk", (transaction_uid,)
            )
            for earlier in same:
                if (
                    earlier.state is CommitmentState.PENDING
                    and earlier.requester_ae == requester_ae
                    and [list(r) for r in earlier.references] == refs
                ):
                    return earlier
            cursor = await self.db.execute(
                "INSERT INTO nservices_commitment (transaction_uid, requester_ae, "
                "references_json, duplicate, received_at) VALUES (?, ?, ?, ?, ?)",
                (transaction_uid, requester_ae, refs_json, int(bool(same)), now_text()),
            )
            pk = cursor.lastrowid
        assert pk is not None
        return CommitmentRequest(
            pk,
            transaction_uid,
            requester_ae,
            tuple((c, i) for c, i in references),
            duplicate=bool(same),
        )

    async def pending_commitments(self) -> list[CommitmentRequest]:
        async with self._using():
            return await self._fetch_commitments("WHERE state = 'pending' ORDER BY pk", ())

    async def commitments(self) -> list[CommitmentRequest]:
        """All requests, oldest first."""
        async with self._using():
            return await self._fetch_commitments("ORDER BY pk", ())

    async def record_attempt(self, pk: int, error: str) -> None:
        """One failed delivery: count it and keep why (shown by ``storage commitments``)."""
        async with self._using():
            await self.db.execute(
                "UPDATE nservices_commitment SET attempts = attempts + 1, last_error = ? "
                "WHERE pk = ?",
                (error[:500], pk),
            )

    async def mark_delivered(self, pk: int, event_type_id: int, failed_count: int) -> None:
        """The requester acknowledged the N-EVENT-REPORT: the transaction is over."""
        async with self._using():
            await self.db.execute(
                "UPDATE nservices_commitment SET state = 'delivered', delivered_at = ?, "
                "event_type_id = ?, failed_count = ?, attempts = attempts + 1, "
                "last_error = '' WHERE pk = ?",
                (now_text(), event_type_id, failed_count, pk),
            )

    async def _fetch_commitments(
        self, where: str, params: Sequence[object]
    ) -> list[CommitmentRequest]:
        sql = f"SELECT {_COMMITMENT_COLUMNS} FROM nservices_commitment {where}"
        async with self.db.execute(sql, params) as cursor:
            return [_commitment(row) async for row in cursor]

    # -- modality performed procedure step --------------------------------------------------

    async def create_mpps(self, record: MPPSRecord) -> bool:
        """Keep a new MPPS instance; False (nothing written) when the UID is known."""
        stamp = now_text()
        async with self._using(write=True):
            cursor = await self.db.execute(
                "INSERT INTO nservices_mpps (sop_instance_uid, status, attributes_json, "
                "calling_ae, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (sop_instance_uid) DO NOTHING",
                (
                    record.sop_instance_uid,
                    record.status,
                    json.dumps(record.attributes),
                    record.calling_ae,
                    stamp,
                    stamp,
                ),
            )
            if cursor.rowcount != 1:
                return False
            await self._write_refs(record)
        return True

    async def get_mpps(self, sop_instance_uid: str) -> MPPSRecord | None:
        async with self._using():
            return await self._get_mpps(sop_instance_uid)

    async def update_mpps(
        self,
        sop_instance_uid: str,
        change: Callable[[MPPSRecord], MPPSRecord],
    ) -> MPPSRecord | None:
        """Apply ``change`` to the stored instance in one transaction; None when unknown.

        Whatever ``change`` raises rolls the transaction back and propagates,
        so a refused N-SET leaves the instance as it was.
        """
        async with self._using(write=True):
            current = await self._get_mpps(sop_instance_uid)
            if current is None:
                return None
            updated = change(current)
            await self.db.execute(
                "UPDATE nservices_mpps SET status = ?, attributes_json = ?, updated_at = ? "
                "WHERE sop_instance_uid = ?",
                (updated.status, json.dumps(updated.attributes), now_text(), sop_instance_uid),
            )
            await self._write_refs(updated)
        return updated

    async def mpps_summaries(self) -> list[MPPSSummary]:
        """Every MPPS instance with how much of it the index holds (oldest first)."""
        async with self._using(), self.db.execute(_MPPS_SUMMARY) as cursor:
            rows = [row async for row in cursor]
        summaries = []
        for row in rows:
            record = MPPSRecord(
                sop_instance_uid=str(row[0]),
                status=str(row[1]),
                attributes=dict(json.loads(row[2])),
                calling_ae=str(row[3]),
                created_at=str(row[4]),
                updated_at=str(row[5]),
                study_uids=tuple(str(row[6]).split("\\")) if row[6] else (),
            )
            summaries.append(
                MPPSSummary(record, int(row[7]), int(row[8]), int(row[9]), int(row[10]))
            )
        return summaries

    async def _get_mpps(self, sop_instance_uid: str) -> MPPSRecord | None:
        sql = (
            "SELECT sop_instance_uid, status, attributes_json, calling_ae, created_at, "
            "updated_at FROM nservices_mpps WHERE sop_instance_uid = ?"
        )
        async with self.db.execute(sql, (sop_instance_uid,)) as cursor:
            row = await cursor.fetchone()
        if row is None:
            return None
        refs: dict[str, list[str]] = {"study": [], "series": [], "instance": []}
        sql = "SELECT level, uid FROM nservices_mpps_ref WHERE mpps_uid = ? ORDER BY rowid"
        async with self.db.execute(sql, (sop_instance_uid,)) as cursor:
            async for level, uid in cursor:
                refs[str(level)].append(str(uid))
        return MPPSRecord(
            sop_instance_uid=str(row[0]),
            status=str(row[1]),
            attributes=dict(json.loads(row[2])),
            calling_ae=str(row[3]),
            created_at=str(row[4]),
            updated_at=str(row[5]),
            study_uids=tuple(refs["study"]),
            series_uids=tuple(refs["series"]),
            instance_uids=tuple(refs["instance"]),
        )

    async def _write_refs(self, record: MPPSRecord) -> None:
        """Replace the study / series / image links of ``record``."""
        uid = record.sop_instance_uid
        await self.db.execute("DELETE FROM nservices_mpps_ref WHERE mpps_uid = ?", (uid,))
        rows = [
            (uid, level, ref)
            for level, refs in (
                ("study", record.study_uids),
                ("series", record.series_uids),
                ("instance", record.instance_uids),
            )
            for ref in dict.fromkeys(refs)
        ]
        if rows:
            await self.db.executemany(
                "INSERT INTO nservices_mpps_ref (mpps_uid, level, uid) VALUES (?, ?, ?)", rows
            )


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception (cancellation included)."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    async def __aenter__(self) -> None:
        await self._db.execute("BEGIN IMMEDIATE")

    async def __aexit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is None:
            await self._db.execute("COMMIT")
        elif self._db.in_transaction:
            await self._db.execute("ROLLBACK")


def _transaction(db: aiosqlite.Connection) -> _Transaction:
    return _Transaction(db)


async def _migrate(db: aiosqlite.Connection) -> None:
    """Bring the N-service tables to :data:`SCHEMA_VERSION` under the write lock."""
    await db.execute("BEGIN IMMEDIATE")  # another process may be doing the same
    try:
        await db.execute("CREATE TABLE IF NOT EXISTS nservices_schema (version INTEGER NOT NULL)")
        async with db.execute("SELECT MAX(version) FROM nservices_schema") as cursor:
            row = await cursor.fetchone()
        version = int(row[0]) if row and row[0] is not None else 0
        if version > SCHEMA_VERSION:
            raise SchemaTooNew(
                f"N-service tables v{version} are newer than this program (v{SCHEMA_VERSION})"
            )
        for step in range(version, SCHEMA_VERSION):
            for statement in _SCHEMA[step]:
                await db.execute(statement)
        if version < SCHEMA_VERSION:
            await db.execute("DELETE FROM nservices_schema")
            await db.execute("INSERT INTO nservices_schema (version) VALUES (?)", (SCHEMA_VERSION,))
        await db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            await db.execute("ROLLBACK")
        raise
