"""C-FIND over the index: the catalog streams the matches of one SELECT (PS3.4 C.4.1.3).

:meth:`SQLiteCatalog.find` runs the SELECT that :func:`~stellarpacs.storage.query.findplan.plan`
builds and yields each match as soon as it is read (PS3.4 C.4.1.3.1: one
Pending response per match): nothing is gathered first.  The catalog reads
through its own connection (``query_only``), so a long query never holds up
the index writer; WAL lets it see each committed store.  The SQL functions
the predicates call (``sp_*``: case folding, normalised times and date-times)
are registered on that connection only.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from types import TracebackType
from typing import Final

import aiosqlite

from stellarpacs.storage.errors import StorageUnavailable
from stellarpacs.storage.index.database import Database, SQLFunction
from stellarpacs.storage.query.findplan import plan
from stellarpacs.storage.query.identifier import Query
from stellarpacs.storage.query.matches import Match
from stellarpacs.storage.query.matching import da_key, dt_key, tm_key

__all__ = ["SQLiteCatalog"]

# -- SQL functions the predicates use -----------------------------------------------------------


def _sql_key(func: Callable[[str], str | None]) -> Callable[[object], str | None]:
    def key(value: object) -> str | None:
        return func(value) if isinstance(value, str) and value else None

    return key


def _fold(value: object) -> object:
    return value.casefold() if isinstance(value, str) else value


def _in_datetime_range(date: object, time: object, low: object, high: object) -> bool:
    """Whether a stored date and time fall in [low, high]; no time stands for the whole day."""
    day = da_key(date) if isinstance(date, str) else None
    if day is None:
        return False
    moment = tm_key(time) if isinstance(time, str) and time else None
    first = day + (moment or "000000.000000")
    last = day + (moment or "235959.999999")
    return (not isinstance(low, str) or last >= low) and (
        not isinstance(high, str) or first <= high
    )


_FUNCTIONS: Final[tuple[SQLFunction, ...]] = (
    ("sp_fold", 1, _fold),
    ("sp_tm", 1, _sql_key(tm_key)),
    ("sp_dt", 1, _sql_key(dt_key)),
    ("sp_dt_in", 4, _in_datetime_range),
)


class SQLiteCatalog:
    """Read-only access to the index for C-FIND; ``find`` streams match identifiers."""

    def __init__(self, path: Path, *, busy_timeout_ms: int = 10_000, chunk: int = 256) -> None:
        self.path = path
        self._database = Database(path, busy_timeout_ms=busy_timeout_ms)
        self._chunk = chunk
        self._db: aiosqlite.Connection | None = None
        self._opening = asyncio.Lock()  # two first C-FINDs at once open one connection

    async def open(self) -> None:
        """Connect to an existing index (never creates one) and register our SQL functions."""
        async with self._opening:
            if self._db is None:
                self._db = await self._connect()

    async def _connect(self) -> aiosqlite.Connection:
        try:
            return await self._database.connect_async(read_only=True, functions=_FUNCTIONS)
        except (sqlite3.Error, OSError) as exc:
            raise StorageUnavailable(f"index {self.path} cannot be opened: {exc}") from exc

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await db.close()

    async def __aenter__(self) -> SQLiteCatalog:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def find(
        self,
        query: Query,
        *,
        retrieve_ae_title: str = "",
        stop: Callable[[], bool] | None = None,
    ) -> AsyncGenerator[Match, None]:
        """Yield the response identifier of each match as it is read.

        ``stop`` is asked before each candidate row, so that a C-CANCEL ends
        the scan even while rows are being filtered out in Python.  Index
        failures raise :class:`~stellarpacs.storage.errors.StorageUnavailable`.
        """
        await self.open()
        assert self._db is not None
        the_plan = plan(query, retrieve_ae_title=retrieve_ae_title)
        try:
            async with self._db.execute(the_plan.sql, the_plan.params) as cursor:
                cursor.iter_chunk_size = self._chunk
                async for row in cursor:
                    if stop is not None and stop():
                        return
                    answer = the_plan.answer(row)
                    if answer is not None:
                        yield answer
        except sqlite3.Error as exc:
            raise StorageUnavailable(f"index query failed: {exc}") from exc
