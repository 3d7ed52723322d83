"""The audit trail as JSON lines: one object per event, appended, one ``write`` each.

The file is opened with ``O_APPEND`` so that the server and the storage tools
(another process) can both add to it: each record is a single ``write`` of a
whole line, which the kernel appends as one piece.  There is no user-space
buffer, so each record is in the file (the page cache) when ``emit`` returns;
it is not fsynced.  A failed write is counted and logged now and then, never
raised into the service that recorded the event.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Final

from stellarpacs.audit.events import AuditEntry
from stellarpacs.audit.ratelimit import Warner

__all__ = ["JsonLinesSink"]

log = logging.getLogger("stellarpacs.audit")

#: Audit records name patients and studies: readable by the owner only when we create it.
FILE_MODE: Final = 0o600


class JsonLinesSink:
    """Appends each record to ``path`` as one line of ASCII JSON."""

    def __init__(self, path: Path) -> None:
        """Open (create) the file now, so that an unwritable one is an OSError at start-up."""
        self.path = path
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        self._fd: int | None = os.open(path, flags, FILE_MODE)
        self.failed = 0
        self._warner = Warner(log, "audit file %s: %d records not written (%s)")

    def emit(self, entry: AuditEntry) -> None:
        if self._fd is None:
            return
        line = json.dumps(entry.record(), ensure_ascii=True, separators=(",", ":")) + "\n"
        data = memoryview(line.encode("ascii"))
        try:
            while data:
                data = data[os.write(self._fd, data) :]
        except OSError as error:
            self.failed += 1
            self._warner.warn(self.path, self.failed, error.strerror or error)

    async def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
