"""The SQLite database file of the index backend: every connection to it, and its failures.

One file holds the instance index and the N-service tables, and several
connections use it at once: the index's aiosqlite connection (async reads,
rebuild, delete, migrations), its writer thread (the rows of C-STORE), its
pool of blocking readers (the archive's duplicate check), the C-FIND
catalog's own reader, the N-service store's connection, and the storage tools
of another process. :class:`Database` opens all of them, with the same
settings: autocommit (we issue BEGIN / COMMIT ourselves), a busy timeout so
that a writer waits for another rather than failing, foreign keys on; writers
also put the file in WAL mode (readers never block the writer and see each
committed transaction) and choose how a commit reaches the disk; readers are
``query_only``. A connection that does not exist yet is never created by a
reader or by a tool that only looks.

Whatever ``sqlite3`` (and so aiosqlite) raises, and the OSError of a file it
cannot open, means the index cannot be used now: :func:`unavailable` turns
them into :class:`~stellarpacs.storage.errors.StorageUnavailable` at the
methods the services call, so that no service depends on the driver.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import aiosqlite

from stellarpacs.storage.errors import StorageUnavailable

__all__ = ["Database", "SQLFunction", "unavailable"]

SQLFunction = tuple[str, int, Callable[..., Any]]
"""A deterministic SQL function to register on a connection: name, arity, callable."""
_ITER_CHUNK: Final = 64  # rows aiosqlite fetches per hop unless a cursor asks otherwise


@dataclass(frozen=True, slots=True)
class Database:
    """One SQLite database file and how each connection to it is set up.

    ``durable`` chooses ``synchronous = FULL``: a commit is on disk before a
    C-STORE is answered (WAL with NORMAL is not, PS3.4 B.2.3 asks for it).
    """

    path: Path
    durable: bool = True
    busy_timeout_ms: int = 10_000

    def pragmas(self, *, read_only: bool = False) -> tuple[str, ...]:
        """The settings a connection gets, in the order they are applied."""
        common = (f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}", "PRAGMA foreign_keys = ON")
        if read_only:
            return (*common, "PRAGMA query_only = ON")
        synchronous = "FULL" if self.durable else "NORMAL"
        return (*common, "PRAGMA journal_mode = WAL", f"PRAGMA synchronous = {synchronous}")

    def connect(
        self,
        *,
        read_only: bool = False,
        create: bool = False,
        functions: Sequence[SQLFunction] = (),
    ) -> sqlite3.Connection:
        """Blocking: a plain connection, usable from any one thread at a time.

        ``create=False`` opens an existing file only (SQLite's ``mode=rw``).
        """
        mode = "rwc" if create and not read_only else "rw"
        uri = f"{self.path.resolve().as_uri()}?mode={mode}"
        db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        try:
            for pragma in self.pragmas(read_only=read_only):
                db.execute(pragma).close()
            for name, arity, func in functions:
                db.create_function(name, arity, func, deterministic=True)
        except BaseException:
            db.close()
            raise
        return db

    async def connect_async(
        self,
        *,
        read_only: bool = False,
        create: bool = False,
        functions: Sequence[SQLFunction] = (),
    ) -> aiosqlite.Connection:
        """The same connection driven by aiosqlite (its own thread, awaited from the loop)."""
        # Open in a worker thread first: aiosqlite stops the thread of a connection
        # that failed to open without waiting for it, and that thread then trips
        # over an event loop that may be closed by then.  An opened connection is
        # handed over as it is (check_same_thread is off).
        opening = asyncio.ensure_future(
            asyncio.to_thread(self.connect, read_only=read_only, create=create, functions=functions)
        )
        try:
            db = await asyncio.shield(opening)
        except asyncio.CancelledError:
            await _close_when_opened(opening)
            raise
        try:
            return await aiosqlite.Connection(lambda: db, _ITER_CHUNK)
        except BaseException:
            db.close()
            raise


async def _close_when_opened(opening: asyncio.Future[sqlite3.Connection]) -> None:
    """A cancelled open still finishes in its thread: close what it opens before going on.

    Waiting here, rather than closing from a callback later, means nothing is
    left open once the caller's cancellation has gone through, not even when
    the event loop is closed right after.
    """
    await asyncio.wait([opening])
    if not opening.cancelled() and opening.exception() is None:
        opening.result().close()


@contextlib.contextmanager
def driver_errors() -> Iterator[None]:
    """Errors of the SQLite driver inside the block become StorageUnavailable (message kept).

    For callers that report file errors themselves, such as the storage tools.
    """
    try:
        yield
    except sqlite3.Error as exc:
        raise StorageUnavailable(str(exc) or type(exc).__name__) from exc


@contextlib.contextmanager
def unavailable() -> Iterator[None]:
    """Driver and file errors inside the block become StorageUnavailable (message kept)."""
    try:
        yield
    except (sqlite3.Error, OSError) as exc:
        raise StorageUnavailable(str(exc) or type(exc).__name__) from exc
