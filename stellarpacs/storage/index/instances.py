"""The instance index of the SQLite backend: patient / study / series / instance rows.

The file store is the source of truth; this index is a rebuildable cache of it,
holding the query keys of PS3.4 C.6.1.1 as indexed columns and each instance's
header as DICOM JSON (PS3.18 F.2), so that C-FIND can answer without opening
files (:mod:`schema`). Text values are kept as pydicom decodes them (a PN as
its ``^`` string); the Specific Character Set they came in is kept beside them.
The database is in WAL mode with a busy timeout, so the storage tools can read
while the server writes.

Three kinds of connection, all to the same file. ``SQLiteIndex.db`` (aiosqlite)
serves the async readers and the rare bulk writes (rebuild, delete). ``add()``,
the hot path of C-STORE, runs each batch as ONE blocking call on a dedicated
writer thread with its own plain ``sqlite3`` connection: the upserts, the
inserts and the commit of a whole batch cost one thread hop instead of several
per row. ``get_instance_blocking()`` serves code already running in a worker
thread (the archive's duplicate check) from a small pool of plain read
connections. Those two live in :mod:`threads`. All three are opened by
:class:`~stellarpacs.storage.index.database.Database`, with the same settings.

The methods raise the driver's errors: the archive, which the services call,
turns them into :class:`~stellarpacs.storage.errors.StorageUnavailable`, and
the storage tools report them with the database's own words.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from stellarpacs.storage.errors import StorageUnavailable
from stellarpacs.storage.index.database import Database
from stellarpacs.storage.index.schema import (
    DELETE_STUDY,
    GET_INSTANCE,
    HAS_INSTANCE,
    LIST_STUDIES,
    SELECT_RECORD,
    insert_plan,
    migrate,
)
from stellarpacs.storage.index.threads import Plan, ReadPool, WriterThread, run_batch
from stellarpacs.storage.query.retrieval import RetrieveKeys
from stellarpacs.storage.records import InstanceRecord, InstanceRow, StudySummary

__all__ = ["SQLiteIndex"]


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


class SQLiteIndex:
    """Async access to one index database.

    ``transactions`` counts committed write transactions, so that group commit
    can be observed.
    """

    def __init__(self, path: Path, *, durable: bool = True, busy_timeout_ms: int = 10_000) -> None:
        self.path = path
        self.database = Database(path, durable=durable, busy_timeout_ms=busy_timeout_ms)
        self._db: aiosqlite.Connection | None = None
        self._writer: WriterThread | None = None
        self._readers: ReadPool | None = None
        self.transactions = 0

    @property
    def db(self) -> aiosqlite.Connection:
        """The async connection; StorageUnavailable while the index is not open."""
        self.check_open()
        assert self._db is not None
        return self._db

    def check_open(self) -> None:
        if self._db is None:
            raise StorageUnavailable("the index is not open")

    async def open(self, *, create: bool = True) -> None:
        """Connect (WAL, see :class:`Database`) and apply the migrations still missing.

        Errors are the driver's own: the storage tools report them as such.
        """
        if not create and not self.path.exists():
            raise FileNotFoundError(f"no index at {self.path}")
        db = await self.database.connect_async(create=create)
        try:
            await migrate(db)
        except BaseException:
            await db.close()
            raise
        self._db = db
        self._writer = WriterThread(self.database.connect)
        self._readers = ReadPool(functools.partial(self.database.connect, read_only=True))

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

    async def __aenter__(self) -> SQLiteIndex:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- reads -----------------------------------------------------------------------------

    async def has_instance(self, sop_instance_uid: str) -> bool:
        async with self.db.execute(HAS_INSTANCE, (sop_instance_uid,)) as cur:
            return await cur.fetchone() is not None

    async def get_instance(self, sop_instance_uid: str) -> InstanceRecord | None:
        async with self.db.execute(GET_INSTANCE, (sop_instance_uid,)) as cur:
            row = await cur.fetchone()
        return None if row is None else InstanceRecord(*row)

    def get_instance_blocking(self, sop_instance_uid: str) -> InstanceRecord | None:
        """Blocking ``get_instance`` for code already in a worker thread (any thread).

        Sees every transaction committed before the call: each look-up is its
        own read transaction, fetched to the end.
        """
        if self._readers is None:
            raise StorageUnavailable("the index is not open")
        with self._readers.connection() as db:
            rows = db.execute(GET_INSTANCE, (sop_instance_uid,)).fetchall()
        return InstanceRecord(*rows[0]) if rows else None

    async def get_header_json(self, sop_instance_uid: str) -> dict[str, Any] | None:
        """The stored DICOM JSON header of one instance."""
        sql = "SELECT header_json FROM instance WHERE sop_instance_uid = ?"
        async with self.db.execute(sql, (sop_instance_uid,)) as cur:
            row = await cur.fetchone()
        return None if row is None else dict(json.loads(row[0]))

    async def instances_of_study(self, study_uid: str) -> list[InstanceRecord]:
        sql = SELECT_RECORD + " WHERE st.study_uid = ? ORDER BY se.pk, i.pk"
        async with self.db.execute(sql, (study_uid,)) as cur:
            return [InstanceRecord(*row) async for row in cur]

    async def instances_for(self, keys: RetrieveKeys) -> list[InstanceRecord]:
        """The stored instances a C-MOVE or C-GET names (PS3.4 C.4.2.2.1), parents first."""
        clauses = []
        params: list[str] = []
        for column, values in keys.conditions:
            clauses.append(f"{column} IN ({', '.join('?' * len(values))})")
            params.extend(values)
        sql = f"{SELECT_RECORD} WHERE {' AND '.join(clauses)} ORDER BY st.pk, se.pk, i.pk"
        async with self.db.execute(sql, params) as cursor:
            return [InstanceRecord(*row) async for row in cursor]

    async def iter_instances(self) -> AsyncIterator[InstanceRecord]:
        async with self.db.execute(SELECT_RECORD + " ORDER BY i.pk") as cur:
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
        async with self.db.execute(LIST_STUDIES) as cur:
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
            raise StorageUnavailable("the index is not open")
        plans = [insert_plan(row) for row in rows]
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
            cur = await self.db.execute(DELETE_STUDY[0], (study_uid,))
            removed = cur.rowcount
            await self.db.execute(DELETE_STUDY[1], (study_uid,))
            await self.db.execute(DELETE_STUDY[2], (study_uid,))
            await self.db.execute(DELETE_STUDY[3])
        return max(removed, 0)

    def _transaction(self) -> _Transaction:
        return _Transaction(self)

    async def _insert(self, row: InstanceRow) -> bool:
        """Add one row on ``db`` inside a transaction the caller opened."""
        return await _run_plan_async(self.db, insert_plan(row))


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception (including cancellation)."""

    def __init__(self, index: SQLiteIndex) -> None:
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
