"""A deflated data set read as a file, inflated as it is read, never past a limit.

Deflated Explicit VR Little Endian (PS3.5 A.5) deflates the whole data set,
Pixel Data included, with raw deflate (RFC 1951). A stream of 1 MB can
inflate to 1 GiB, and pydicom's ``dcmread`` inflates all of it in memory
before it parses a byte. The index needs only the header (what comes before
Pixel Data), so :class:`InflatingReader` gives pydicom a file object whose
bytes are inflated on demand (``zlib.decompressobj`` with ``max_length``):
pydicom stops at Pixel Data, so the rest is never inflated. Only a window of
the inflated bytes is kept (pydicom rewinds a few bytes at most), values it
skips are inflated and dropped, and inflating more than ``limit`` bytes in
all raises :class:`InflationLimit`, so neither memory nor CPU follow the
peer's choice of ratio.
"""

from __future__ import annotations

import io
import sys
import zlib
from typing import BinaryIO, Final

from stellarpacs.storage.errors import UnreadableDataSet

__all__ = ["DEFAULT_MAX_INFLATED", "InflatingReader", "InflationLimit"]

DEFAULT_MAX_INFLATED: Final = 64 * 1024 * 1024
"""Bytes of a deflated data set inflated at most to read its header (``max_inflated_header``)."""

_INPUT: Final = 64 * 1024  # compressed bytes read at once
_STEP: Final = 1024 * 1024  # inflated bytes produced at once, at most
_KEEP: Final = 64 * 1024  # inflated bytes kept behind the position, for pydicom's rewinds


class InflationLimit(UnreadableDataSet):
    """The header of a deflated data set would need more than the limit inflated."""


class InflatingReader:
    """Read-only, forward file over a raw deflate stream (see the module docstring)."""

    def __init__(self, fp: BinaryIO, limit: int) -> None:
        self._fp = fp
        self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        self._limit = limit
        self._buf = bytearray()  # inflated bytes, the first at stream offset _base
        self._base = 0
        self._pos = 0
        self._eof = False

    @property
    def inflated(self) -> int:
        """Bytes inflated so far."""
        return self._base + len(self._buf)

    @property
    def size(self) -> int:
        """The inflated size when the stream ended, else the largest int."""
        return self.inflated if self._eof else sys.maxsize

    def tell(self) -> int:
        return self._pos

    def read(self, size: int = -1) -> bytes:
        upto = self._pos + size if size >= 0 else sys.maxsize
        self._fill(upto, self._pos)
        start = self._pos - self._base
        data = bytes(self._buf[start : upto - self._base])
        self._pos += len(data)
        return data

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        target = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos}.get(whence)
        if target is None:
            raise io.UnsupportedOperation("a deflated stream cannot seek from its end")
        target += offset
        if target < self._base:
            raise io.UnsupportedOperation(f"cannot seek back to {target} in a deflated stream")
        self._fill(target, target)
        self._pos = min(target, self.inflated)
        return self._pos

    def _fill(self, upto: int, needed_from: int) -> None:
        """Inflate until ``upto`` bytes are, dropping what lies before ``needed_from``."""
        while self.inflated < upto and not self._eof:
            room = self._limit - self.inflated
            if room <= 0:
                raise InflationLimit(f"deflated header not within {self._limit} inflated bytes")
            self._buf += self._more(min(room, _STEP))
            self._trim(needed_from)

    def _trim(self, needed_from: int) -> None:
        drop = min(needed_from - _KEEP, self.inflated) - self._base
        if drop > _KEEP:  # amortised: never once per small read
            del self._buf[:drop]
            self._base += drop

    def _more(self, want: int) -> bytes:
        inflater = self._inflater
        data = inflater.unconsumed_tail
        if not data:
            data = self._fp.read(_INPUT)
            if not data:
                self._eof = True
                return inflater.flush()
        try:
            out = inflater.decompress(data, want)
        except zlib.error as exc:
            raise UnreadableDataSet(f"deflated data set cannot be inflated: {exc}") from exc
        if inflater.eof:
            self._eof = True
        return out
