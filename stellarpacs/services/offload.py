"""Parsing a received data set off the event loop when it is large enough to matter.

pydicom parses a few-KB identifier in well under a millisecond, less than a
hand-off to a worker thread costs; a data set of hundreds of KB (an N-ACTION
with thousands of references) takes tens to hundreds of milliseconds, during
which no other association would be served. So a data set over
:data:`INLINE_PARSE_LIMIT` is parsed with :func:`asyncio.to_thread`, a smaller
one where it is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final, TypeVar

__all__ = ["INLINE_PARSE_LIMIT", "parse_off_loop"]

_T = TypeVar("_T")

INLINE_PARSE_LIMIT: Final = 64 * 1024
"""Data sets up to this many bytes are parsed on the event loop."""


async def parse_off_loop(data: bytes | None, parse: Callable[[], _T]) -> _T:
    """``parse()``, in a worker thread when ``data`` is over :data:`INLINE_PARSE_LIMIT`."""
    if data is not None and len(data) > INLINE_PARSE_LIMIT:
        return await asyncio.to_thread(parse)
    return parse()
