"""Sans-I/O stream reader: a TCP byte stream in, whole PDUs out (PS3.8 9.3.1).

The peer's bytes arrive in pieces of any size; :class:`PDUReader` keeps them
until a whole PDU is there and hands it to :func:`~stellarpacs.ul.codec.decode_pdu`.
Its one decision of its own is made from the 6-byte header alone, before the
body is buffered: a PDU longer than we are willing to hold is a protocol
error, so that a peer cannot make us buffer without bound.
"""

from __future__ import annotations

from stellarpacs.errors import RemoteProtocolError
from stellarpacs.ul.codec import HEADER_SIZE, decode_pdu, peek_header
from stellarpacs.ul.pdus import PDU, PDUType

__all__ = ["PDUReader"]


class PDUReader:
    """Cut a byte stream into PDUs, refusing oversize ones from their header (PS3.8 9.3.1, D.1).

    ``max_pdata_length`` is the Maximum Length we announced (0: no limit):
    a P-DATA-TF whose PDU-length exceeds it is a protocol error.  Other PDUs
    are bounded by ``max_other_length`` (0: no limit) so that a peer cannot
    make us buffer an unbounded A-ASSOCIATE-RQ.  Bytes are kept in one
    bytearray with a read offset that is compacted now and then, so a stream
    of P-DATA-TF costs linear time.
    """

    _COMPACT_AT = 1 << 16

    def __init__(self, max_pdata_length: int = 16384, max_other_length: int = 1 << 20) -> None:
        self._max_pdata = max_pdata_length
        self._max_other = max_other_length
        self._buf = bytearray()
        self._pos = 0

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned as a PDU."""
        return len(self._buf) - self._pos

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append received bytes."""
        if self._pos and (self._pos >= self._COMPACT_AT or self._pos * 2 >= len(self._buf)):
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    @property
    def incomplete(self) -> bool:
        """True while the next PDU has begun to arrive and has not arrived whole."""
        start = self._pos
        have = len(self._buf) - start
        if have == 0:
            return False
        if have < HEADER_SIZE:
            return True
        length = int.from_bytes(self._buf[start + 2 : start + HEADER_SIZE], "big")
        return have < HEADER_SIZE + length

    def next_type(self) -> int | None:
        """The PDU-type byte of the next PDU, unchecked, or ``None`` until it arrives."""
        return self._buf[self._pos] if len(self._buf) > self._pos else None

    def next_pdu(self) -> PDU | None:
        """Return the next complete PDU, or ``None`` until more bytes arrive."""
        start = self._pos
        if len(self._buf) - start < HEADER_SIZE:
            return None
        pdu_type, length = peek_header(self._buf, start)
        self._check_limit(pdu_type, length)
        end = start + HEADER_SIZE + length
        if len(self._buf) < end:
            return None
        with memoryview(self._buf) as view:
            raw = bytes(view[start:end])
        pdu = decode_pdu(raw)
        self._pos = end
        return pdu

    def _check_limit(self, pdu_type: int, length: int) -> None:
        if pdu_type == PDUType.P_DATA_TF:
            limit, what = self._max_pdata, "maximum length"
        else:
            limit, what = self._max_other, "limit for non-data PDUs"
        if limit and length > limit:
            name = PDUType(pdu_type).name
            raise RemoteProtocolError(f"{name} PDU-length {length} exceeds our {what} {limit}")
