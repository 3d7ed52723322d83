"""A WARNING now and then: the first time, then at most once per interval."""

from __future__ import annotations

import logging
import time
from typing import Final

__all__ = ["Warner"]

#: Seconds between two warnings about the same sink.
WARN_INTERVAL: Final = 60.0


class Warner:
    """Logs ``message`` with its arguments at most once per ``interval`` seconds."""

    def __init__(self, log: logging.Logger, message: str, interval: float = WARN_INTERVAL) -> None:
        self._log = log
        self._message = message
        self._interval = interval
        self._next = 0.0

    def warn(self, *args: object) -> None:
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self._interval
            self._log.warning(self._message, *args)
