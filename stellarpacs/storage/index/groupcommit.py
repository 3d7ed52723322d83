"""Group commit: the rows of all concurrent stores go into one index transaction.

Ten associations storing at once should not pay ten SQLite commits (each a
WAL sync): rows queue up while a transaction runs, and the next transaction
takes them all. Each caller still awaits the commit that carries its own row,
so a Success is never sent for a row that is not durable (PS3.4 B.2.3).
"""

from __future__ import annotations

import asyncio
import logging

from stellarpacs.errors import LocalProtocolError
from stellarpacs.storage.index.instances import SQLiteIndex
from stellarpacs.storage.records import InstanceRow

__all__ = ["GroupWriter"]

log = logging.getLogger(__name__)


class GroupWriter:
    """One task that commits the rows of all waiting commits in one transaction.

    Rows queue up while a transaction runs; the next transaction takes them
    all, so N concurrent senders pay far fewer than N commits, and each caller
    still awaits the transaction that carries its own row.
    """

    def __init__(self, index: SQLiteIndex, *, max_batch: int = 512) -> None:
        self._index = index
        self._max_batch = max_batch
        self._queue: asyncio.Queue[tuple[InstanceRow, asyncio.Future[bool]] | None] = (
            asyncio.Queue()
        )
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="stellarpacs-index-writer")

    async def submit(self, row: InstanceRow) -> bool:
        """Queue ``row``; True once committed, False if the instance was already indexed."""
        if self._task is None or self._task.done():
            raise LocalProtocolError("the index writer is not running")
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((row, future))
        return await future

    async def stop(self) -> None:
        """Commit what is queued, then end the task."""
        if self._task is not None:
            self._queue.put_nowait(None)
            await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            batch, stop = self._take(await self._queue.get())
            if batch:
                await self._commit(batch)
            if stop:
                return

    def _take(
        self, first: tuple[InstanceRow, asyncio.Future[bool]] | None
    ) -> tuple[list[tuple[InstanceRow, asyncio.Future[bool]]], bool]:
        if first is None:
            return [], True
        batch = [first]
        while len(batch) < self._max_batch and not self._queue.empty():
            item = self._queue.get_nowait()
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    async def _commit(self, batch: list[tuple[InstanceRow, asyncio.Future[bool]]]) -> None:
        try:
            added = await self._index.add([row for row, _ in batch])
        except Exception as exc:
            log.error("index transaction of %d rows failed: %s", len(batch), exc)
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), ok in zip(batch, added, strict=True):
            if not future.done():
                future.set_result(ok)
