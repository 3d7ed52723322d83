"""The index's plain ``sqlite3`` connections, used from threads rather than the event loop.

Two of them serve :class:`~stellarpacs.storage.index.instances.SQLiteIndex`
beside its aiosqlite connection; both open theirs with a :data:`Connector`
(:meth:`~stellarpacs.storage.index.database.Database.connect`).
:class:`WriterThread` owns the connection that adds
rows: a whole batch (BEGIN IMMEDIATE, every statement, COMMIT; see
:func:`run_batch`) is one hand-off from the event loop instead of several per
row. :class:`ReadPool` lends read-only connections to code already running in
a worker thread, so its look-ups need no hop back to the loop. WAL lets both
run beside each other and beside other processes' readers.

A row is added by a :data:`Plan`: a generator that yields each statement and
is sent back the rows it returned. It holds no I/O, so the index writes it once
and this module's :func:`run_plan` and the index's aiosqlite driver both run it.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

from stellarpacs.storage.errors import StorageUnavailable

__all__ = [
    "Connector",
    "Plan",
    "ReadPool",
    "Step",
    "WriterThread",
    "run_batch",
    "run_plan",
]

Step = tuple[str, Sequence[object]]
"""One statement of a plan and its parameters."""
Plan = Generator[Step, list[tuple[Any, ...]], bool]
"""Statements that add one row; returns whether the row was added."""
Connector = Callable[[], sqlite3.Connection]
"""Blocking: a new connection to the index, set up (autocommit, pragmas)."""
_T = TypeVar("_T")


def run_plan(db: sqlite3.Connection, plan: Plan) -> bool:
    """Blocking driver of a plan: each statement's rows are sent back to it."""
    try:
        sql, params = next(plan)
        while True:
            sql, params = plan.send(db.execute(sql, params).fetchall())
    except StopIteration as done:
        return bool(done.value)


def run_batch(db: sqlite3.Connection, plans: Iterable[Plan]) -> list[bool]:
    """Blocking: BEGIN IMMEDIATE, every plan, COMMIT; ROLLBACK on any exception."""
    db.execute("BEGIN IMMEDIATE")
    try:
        added = [run_plan(db, plan) for plan in plans]
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return added


class WriterThread:
    """One dedicated thread that owns the write connection; every call runs on it.

    A plain ``sqlite3`` connection used from one thread only, opened lazily by
    the first call, so that a batch costs one thread hop and the connection
    never changes threads.
    """

    def __init__(self, connect: Connector) -> None:
        self._connect = connect
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="stellarpacs-index-writer")
        self._db: sqlite3.Connection | None = None

    async def call(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``work`` on the writer thread with its connection; await its result."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._run, work)

    def _run(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        if self._db is None:
            self._db = self._connect()
        return work(self._db)

    async def close(self) -> None:
        """Close the connection on its own thread, then let the thread end."""
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._close_now)
        finally:
            self._executor.shutdown(wait=False)

    def _close_now(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            db.close()


class ReadPool:
    """Plain read-only connections for look-ups made from worker threads.

    A connection serves one thread at a time and goes back to the pool after
    each look-up, so the pool holds as many as threads looked up at once. WAL
    lets these read while the writer thread writes.
    """

    def __init__(self, connect: Connector) -> None:
        self._connect = connect  # gives read-only connections
        self._idle: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        """Blocking: lend an idle connection (or a new one) for the ``with`` block."""
        with self._lock:
            if self._closed:
                raise StorageUnavailable("the index is not open")
            db = self._idle.pop() if self._idle else None
        if db is None:
            db = self._connect()
        try:
            yield db
        finally:
            with self._lock:
                keep = not self._closed
                if keep:
                    self._idle.append(db)
            if not keep:
                db.close()

    def close(self) -> None:
        """Blocking: close the idle connections; those in use close when given back."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for db in idle:
            db.close()
