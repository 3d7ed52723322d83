"""One C-STORE data set on its way into the archive: buffered writes, then one commit.

The fragments are written into a temporary file as they arrive, on the event
loop (small buffered writes into the page cache); the commit, handed in by
the archive, does everything that can block: fsync, the atomic install and
the index row (PS3.4 B.2.3: Success only once all of it is durable).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from enum import Enum

from stellarpacs.errors import LocalProtocolError
from stellarpacs.fileio import TempFile
from stellarpacs.storage.outcomes import failure_outcome
from stellarpacs.storage.records import StoreOutcome

__all__ = ["IncomingFile"]

log = logging.getLogger("stellarpacs.storage.archive")


class _State(Enum):
    OPEN = "open"
    DONE = "done"


class IncomingFile:
    """One C-STORE data set on its way to disk (a :class:`~stellarpacs.storage.api.IncomingFile`).

    An I/O error while writing is remembered, not raised: the handler keeps
    feeding fragments and ``commit()`` answers ``NOT_STORED``.
    """

    check_uids = False  # set by ``Archive.begin``

    def __init__(
        self,
        commit: Callable[[IncomingFile], Awaitable[StoreOutcome]],
        *,
        sop_class_uid: str,
        sop_instance_uid: str,
        transfer_syntax_uid: str,
        calling_ae: str,
        temp: TempFile | None,
        failure: StoreOutcome | None,
    ) -> None:
        self._commit = commit  # the archive's: fsync, install, index
        self.sop_class_uid = sop_class_uid
        self.sop_instance_uid = sop_instance_uid
        self.transfer_syntax_uid = transfer_syntax_uid
        self.calling_ae = calling_ae
        self.temp = temp
        self.failure = failure
        self._state = _State.OPEN

    def write(self, data: bytes) -> None:
        """Append one data set fragment (a buffered write, no fsync, no thread hop)."""
        if self._state is not _State.OPEN:
            raise LocalProtocolError("write() after commit() or discard()")
        if self.temp is None or self.failure is not None:
            return
        try:
            self.temp.write(data)
        except OSError as exc:
            log.error("writing %s failed: %s", self.temp.path, exc)
            self.failure = failure_outcome(exc)

    async def commit(self) -> StoreOutcome:
        """Make the instance durable and indexed, then say how it went (PS3.4 B.2.3)."""
        self._close()
        return await self._commit(self)

    async def discard(self) -> None:
        """The association ended mid-transfer: drop the temporary file."""
        if self._state is _State.DONE:
            return
        self._state = _State.DONE
        if self.temp is not None:
            await asyncio.to_thread(self.temp.abandon)

    def _close(self) -> None:
        if self._state is not _State.OPEN:
            raise LocalProtocolError("commit() after commit() or discard()")
        self._state = _State.DONE
