"""The SQLite database file of the index backend, and how its failures reach the services.

Whatever ``sqlite3`` (and so aiosqlite) raises, and the OSError of a file it
cannot open, means the index cannot be used now: :func:`unavailable` turns
them into :class:`~stellarpacs.storage.errors.StorageUnavailable` at the
methods the services call, so that no service depends on the driver.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator

from stellarpacs.storage.errors import StorageUnavailable

__all__ = ["unavailable"]


@contextlib.contextmanager
def unavailable(prefix: str = "") -> Iterator[None]:
    """Driver and file errors inside the block become StorageUnavailable (message kept)."""
    try:
        yield
    except (sqlite3.Error, OSError) as exc:
        raise StorageUnavailable(f"{prefix}{exc}" or type(exc).__name__) from exc
