"""The one opener of the SQLite index file (storage/index/database.py)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any, ClassVar

import pytest

from stellarpacs.storage.index.database import Database


class _SlowDatabase(Database):
    """Connects only after a while, so that a cancel arrives while its thread is connecting."""

    started: ClassVar[threading.Event] = threading.Event()
    opened: ClassVar[list[sqlite3.Connection]] = []

    def connect(self, **kwargs: Any) -> sqlite3.Connection:
        self.started.set()
        threading.Event().wait(0.3)
        db = super().connect(**kwargs)
        self.opened.append(db)
        return db


async def test_a_cancelled_open_closes_its_connection_before_the_cancel_completes(
    tmp_path: Path,
) -> None:
    """A worker cancelled at shutdown must not leave a connection that its thread opens later.

    Otherwise the file stays open (and its -wal/-shm files appear) after the
    owner believes everything is closed, possibly after its event loop is gone.
    """
    database = _SlowDatabase(tmp_path / "index.sqlite3", durable=False)
    task = asyncio.create_task(database.connect_async(create=True))
    async with asyncio.timeout(5):
        while not database.started.is_set():
            await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(database.opened) == 1, "the cancel came back before the opening thread finished"
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        database.opened[0].execute("SELECT 1")
    assert not (tmp_path / "index.sqlite3-wal").exists()
