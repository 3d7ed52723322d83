"""Cutting a byte stream into PDUs that may not decode, and describing PDUs as JSON.

The stream reader of the upper layer (:class:`~stellarpacs.ul.reader.PDUReader`)
stops at the first malformed PDU, as a conformant acceptor must (PS3.8 9.3.1).
A test tool has to go on and show what came: :class:`Framer` cuts by the
6-byte header alone and hands every PDU over as a :class:`Frame`, decoded by
the sans-I/O codec when it decodes, as raw bytes with the codec's reason when
it does not.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, fields, is_dataclass
from enum import IntEnum
from typing import Any, Final

from stellarpacs.dimse.command_codec import decode_command
from stellarpacs.dimse.fragments import MAX_COMMAND_SET_LENGTH
from stellarpacs.errors import StellarPACSError
from stellarpacs.ul.codec import HEADER_SIZE, decode_pdu
from stellarpacs.ul.pdus import (
    PDU,
    PDataTF,
    PDUType,
    UserIdentityAC,
    UserIdentityRQ,
)

__all__ = ["CommandJoiner", "Frame", "Framer", "describe_pdu", "pdu_name"]

_HEADER: Final = struct.Struct(">BxI")
#: Largest PDU a framer holds unless told otherwise: far above any sane Maximum Length.
DEFAULT_LIMIT: Final = 1 << 24


def pdu_name(pdu_type: int) -> str:
    """``A-ASSOCIATE-RQ`` for 1 ..., ``0xNN`` for a type PS3.8 9.3.1 does not define."""
    try:
        return PDUType(pdu_type).name.replace("_", "-")
    except ValueError:
        return f"0x{pdu_type:02X}"


@dataclass(frozen=True, slots=True)
class Frame:
    """One PDU as it came: ``pdu`` when it decodes, else ``error`` says why."""

    raw: bytes
    pdu: PDU | None
    error: str | None = None

    @property
    def pdu_type(self) -> int:
        """The PDU-type byte (PS3.8 9.3.1)."""
        return self.raw[0]

    @property
    def name(self) -> str:
        return pdu_name(self.pdu_type)


class Framer:
    """Cut a byte stream at PDU boundaries from each 6-byte header (PS3.8 9.3.1).

    A header announcing more than ``limit`` bytes is not buffered: ``feed``
    raises ``ValueError`` so that a peer cannot make a test tool hold
    gigabytes.
    """

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self._limit = limit
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete PDU held."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        """The PDUs that ``data`` completed, in order."""
        self._buf += data
        frames: list[Frame] = []
        while len(self._buf) >= HEADER_SIZE:
            _, length = _HEADER.unpack_from(self._buf)
            if length > self._limit:
                raise ValueError(f"PDU-length {length} exceeds the limit of {self._limit} bytes")
            end = HEADER_SIZE + length
            if len(self._buf) < end:
                break
            raw = bytes(self._buf[:end])
            del self._buf[:end]
            frames.append(decode_frame(raw))
        return frames


def decode_frame(raw: bytes) -> Frame:
    """``raw`` (one whole PDU) decoded by the codec, or kept with the codec's reason."""
    try:
        return Frame(raw, decode_pdu(raw))
    except StellarPACSError as error:
        return Frame(raw, None, str(error))


class CommandJoiner:
    """Joins command PDV fragments of one direction and decodes each command set (PS3.7 6.3.1)."""

    def __init__(self) -> None:
        self._parts: dict[int, bytearray] = {}

    def feed(self, pdata: PDataTF) -> list[dict[str, Any]]:
        """The command sets that ``pdata`` completed, described."""
        done: list[dict[str, Any]] = []
        for pdv in pdata.pdvs:
            if not pdv.is_command:
                continue
            part = self._parts.setdefault(pdv.context_id, bytearray())
            part += pdv.data
            if len(part) > MAX_COMMAND_SET_LENGTH:  # as the association would refuse it
                del self._parts[pdv.context_id]
                done.append({"undecodable": "command set over 1 MiB", "length": len(part)})
            elif pdv.is_last:
                del self._parts[pdv.context_id]
                done.append(_describe_command(bytes(part)))
        return done


def _describe_command(data: bytes) -> dict[str, Any]:
    try:
        message = decode_command(data)
    except StellarPACSError as error:
        return {"undecodable": str(error), "length": len(data)}
    return {"message": type(message).__name__, **_plain(message)}


def _plain(value: Any) -> Any:
    """JSON-ready: dataclasses as dicts, enums as ints, bytes as lengths only."""
    if isinstance(value, UserIdentityRQ):
        # Secrets stay out of traces: a passcode is a secret (PS3.7 D.3.3.7).
        return {
            "identity_type": int(value.identity_type),
            "positive_response_requested": value.positive_response_requested,
            "primary_field_length": len(value.primary_field),
            "secondary_field_length": len(value.secondary_field),
        }
    if isinstance(value, UserIdentityAC):
        return {"server_response_length": len(value.server_response)}
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, IntEnum):
        return int(value)
    if isinstance(value, bytes):
        return {"length": len(value), "hex": value[:64].hex()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def describe_pdu(pdu: PDU) -> dict[str, Any]:
    """The decoded fields of ``pdu``; for a P-DATA-TF the PDV headers, not their values."""
    if isinstance(pdu, PDataTF):
        pdvs = [
            {
                "context_id": pdv.context_id,
                "is_command": pdv.is_command,
                "is_last": pdv.is_last,
                "length": len(pdv.data),
            }
            for pdv in pdu.pdvs
        ]
        return {"pdvs": pdvs}
    described: dict[str, Any] = _plain(pdu)
    return described
