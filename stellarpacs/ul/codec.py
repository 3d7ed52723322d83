"""Sans-I/O codec for the upper-layer PDUs (PS3.8 9.3, PS3.7 Annex D).

Theory of operation: :func:`encode_pdu` turns one PDU dataclass into its
big-endian wire bytes; :func:`decode_pdu` turns the bytes of exactly one PDU
(header included) back into a dataclass; :func:`peek_header` checks what a
6-byte PDU header alone can tell, which lets
:class:`~stellarpacs.ul.reader.PDUReader` (the stream reader, its own module)
refuse a bad PDU before its body is buffered.

The two directions are kept symmetric: whatever :func:`decode_pdu` returns
can be encoded again, and every value :func:`encode_pdu` accepts decodes to
an equal value.  A malformed PDU raises :class:`RemoteProtocolError` carrying
the A-ABORT reason to send (PS3.8 9.3.8); no other exception leaks out of
decoding.  Bad values handed to the encoder raise :class:`LocalProtocolError`.

The items inside the A-ASSOCIATE PDUs are coded by :mod:`stellarpacs.ul.items`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from stellarpacs.errors import AbortReason, LocalProtocolError
from stellarpacs.ul.items import (
    APP_CONTEXT,
    PC_AC,
    PC_RQ,
    USER_INFO,
    USER_INFO_AC,
    USER_INFO_RQ,
    Cursor,
    ascii_bytes,
    ascii_text,
    checked_context_id,
    collect,
    decode_pc_ac,
    decode_pc_rq,
    decode_user_info,
    encode_pc,
    encode_user_info,
    fail,
    item,
    one,
    read_context_id,
    read_uid,
    uid_bytes,
)
from stellarpacs.ul.pdus import (
    PDU,
    AAbort,
    AAssociateAC,
    AAssociateRJ,
    AAssociateRQ,
    AReleaseRP,
    AReleaseRQ,
    PDataTF,
    PDUType,
    PresentationDataValue,
    UserInformation,
)

__all__ = ["HEADER_SIZE", "decode_pdu", "encode_pdu", "peek_header"]

_HEADER = struct.Struct(">BxI")  # PDU-type, reserved, PDU-length (PS3.8 9.3.1)
HEADER_SIZE = _HEADER.size
"""Bytes of the PDU header that precedes every PDU body (PS3.8 9.3.1)."""
_PDV = struct.Struct(">IBB")  # item-length, context id, message control header
_ASSOC = struct.Struct(">H2x16s16s32x")  # version, reserved, called, calling, reserved
_FOUR = struct.Struct(">xBBB")  # RJ and A-ABORT bodies: reserved then three bytes

# PDUs whose PDU-length is fixed at 4 (PS3.8 9.3.4, 9.3.6 - 9.3.8).
_FIXED_LENGTH = frozenset(
    (PDUType.A_ASSOCIATE_RJ, PDUType.A_RELEASE_RQ, PDUType.A_RELEASE_RP, PDUType.A_ABORT)
)
_PDU_TYPES = frozenset(int(t) for t in PDUType)
_MAX_AE = 16


# --------------------------------------------------------------------------- encoding


def _ae(title: str, what: str) -> bytes:
    """AE title field: 16 bytes, space padded (PS3.8 9.3.2, PS3.5 6.2)."""
    raw = ascii_bytes(title, what)
    if len(raw) > _MAX_AE:
        raise LocalProtocolError(f"{what} {title!r} is longer than 16 characters")
    return raw.ljust(_MAX_AE, b" ")


def _encode_associate(pdu: AAssociateRQ | AAssociateAC) -> bytes:
    is_rq = isinstance(pdu, AAssociateRQ)
    head = _ASSOC.pack(
        pdu.protocol_version,
        _ae(pdu.called_ae_title, "called AE title"),
        _ae(pdu.calling_ae_title, "calling AE title"),
    )
    app = item(APP_CONTEXT, uid_bytes(pdu.application_context_name, "application context name"))
    contexts = [encode_pc(pc, is_rq) for pc in pdu.presentation_contexts]
    body = b"".join((head, app, *contexts, encode_user_info(pdu.user_information, is_rq)))
    pdu_type = PDUType.A_ASSOCIATE_RQ if is_rq else PDUType.A_ASSOCIATE_AC
    return _HEADER.pack(pdu_type, len(body)) + body


def _encode_pdata(pdu: PDataTF) -> bytes:
    """P-DATA-TF (PS3.8 9.3.5): no per-byte work, the PDV data is joined as it is."""
    parts: list[bytes] = [b""]
    total = 0
    for pdv in pdu.pdvs:
        control = (1 if pdv.is_command else 0) | (2 if pdv.is_last else 0)  # PS3.8 E.2
        size = len(pdv.data)
        parts.append(_PDV.pack(size + 2, checked_context_id(pdv.context_id), control))
        parts.append(pdv.data)
        total += size + 6
    parts[0] = _HEADER.pack(PDUType.P_DATA_TF, total)
    return b"".join(parts)


def _encode_fixed(pdu_type: PDUType, a: int, b: int, c: int) -> bytes:
    return _HEADER.pack(pdu_type, 4) + _FOUR.pack(a, b, c)


_ENCODERS: dict[type[Any], Callable[[Any], bytes]] = {
    AAssociateRQ: _encode_associate,
    AAssociateAC: _encode_associate,
    AAssociateRJ: lambda p: _encode_fixed(PDUType.A_ASSOCIATE_RJ, p.result, p.source, p.reason),
    PDataTF: _encode_pdata,
    AReleaseRQ: lambda p: _encode_fixed(PDUType.A_RELEASE_RQ, 0, 0, 0),
    AReleaseRP: lambda p: _encode_fixed(PDUType.A_RELEASE_RP, 0, 0, 0),
    AAbort: lambda p: _encode_fixed(PDUType.A_ABORT, 0, p.source, p.reason),
}


def encode_pdu(pdu: PDU) -> bytes:
    """Return the wire bytes of ``pdu``, header included (PS3.8 9.3).

    Raises :class:`LocalProtocolError` for a value the wire cannot carry.
    """
    encoder = _ENCODERS.get(type(pdu))
    if encoder is None:
        raise LocalProtocolError(f"not a PDU: {pdu!r}")
    try:
        return encoder(pdu)
    except (struct.error, ValueError, TypeError) as exc:
        raise LocalProtocolError(f"cannot encode {type(pdu).__name__}: {exc}") from None


# --------------------------------------------------------------------------- decoding


def _ae_title(raw: bytes, what: str) -> str:
    return ascii_text(raw, what).strip(" \x00")


def _decode_associate(data: bytes, is_rq: bool) -> AAssociateRQ | AAssociateAC:
    """A-ASSOCIATE-RQ/AC (PS3.8 9.3.2, 9.3.3): fixed fields, then the variable items."""
    name = "A-ASSOCIATE-RQ" if is_rq else "A-ASSOCIATE-AC"
    cur = Cursor(data, 6, len(data), name)
    version, called, calling = _ASSOC.unpack(cur.take(_ASSOC.size))
    pc_type, pc_decoder = (PC_RQ, decode_pc_rq) if is_rq else (PC_AC, decode_pc_ac)
    ui_decoders = USER_INFO_RQ if is_rq else USER_INFO_AC
    found = collect(
        cur,
        {
            APP_CONTEXT: lambda c: read_uid(c.rest(), "application context name"),
            pc_type: pc_decoder,
            USER_INFO: lambda c: decode_user_info(c, ui_decoders),
        },
    )
    user_info = one(found, USER_INFO, name)
    cls = AAssociateRQ if is_rq else AAssociateAC
    return cls(
        called_ae_title=_ae_title(called, "called AE title"),
        calling_ae_title=_ae_title(calling, "calling AE title"),
        presentation_contexts=tuple(found.get(pc_type, ())),
        user_information=user_info or UserInformation(maximum_length=None),
        application_context_name=one(found, APP_CONTEXT, name, required=True),
        protocol_version=version,
    )


def _decode_pdata(data: bytes) -> PDataTF:
    """P-DATA-TF (PS3.8 9.3.5.1): one or more PDV items, control header per PS3.8 E.2."""
    pos, end = 6, len(data)
    if pos == end:
        raise fail("P-DATA-TF holds no presentation data value item")
    pdvs: list[PresentationDataValue] = []
    while pos < end:
        if end - pos < _PDV.size:
            raise fail(f"P-DATA-TF: truncated PDV item of {end - pos} bytes")
        length, context_id, control = _PDV.unpack_from(data, pos)
        stop = pos + 4 + length
        if length < 2 or stop > end:
            raise fail(f"P-DATA-TF: PDV item length {length} does not fit {end - pos - 4} bytes")
        read_context_id(context_id)
        pdvs.append(
            PresentationDataValue(
                context_id, bool(control & 1), bool(control & 2), data[pos + 6 : stop]
            )
        )
        pos = stop
    return PDataTF(tuple(pdvs))


def _decode_rj(data: bytes) -> AAssociateRJ:
    return AAssociateRJ(*_FOUR.unpack_from(data, 6))


def _decode_abort(data: bytes) -> AAbort:
    _, source, reason = _FOUR.unpack_from(data, 6)
    return AAbort(source, reason)


_DECODERS: dict[int, Callable[[bytes], PDU]] = {
    PDUType.A_ASSOCIATE_RQ: lambda d: _decode_associate(d, is_rq=True),
    PDUType.A_ASSOCIATE_AC: lambda d: _decode_associate(d, is_rq=False),
    PDUType.A_ASSOCIATE_RJ: _decode_rj,
    PDUType.P_DATA_TF: _decode_pdata,
    PDUType.A_RELEASE_RQ: lambda d: AReleaseRQ(),
    PDUType.A_RELEASE_RP: lambda d: AReleaseRP(),
    PDUType.A_ABORT: _decode_abort,
}


def peek_header(data: bytes | bytearray, offset: int = 0) -> tuple[int, int]:
    """PDU-type and PDU-length of the header at ``offset``, checked (PS3.8 9.3.1).

    What a 6-byte header alone can tell: a known type, and a plausible length
    for the PDUs whose length is fixed. The caller has made sure that
    :data:`HEADER_SIZE` bytes are there.
    """
    pdu_type, length = _HEADER.unpack_from(data, offset)
    if pdu_type not in _PDU_TYPES:
        raise fail(f"unrecognized PDU type 0x{pdu_type:02X}", AbortReason.UNRECOGNIZED_PDU)
    if pdu_type in _FIXED_LENGTH and length != 4:
        raise fail(f"{PDUType(pdu_type).name} PDU-length is {length}, not 4")
    return pdu_type, length


def decode_pdu(data: bytes | bytearray | memoryview) -> PDU:
    """Decode exactly one whole PDU, header included (PS3.8 9.3).

    Raises :class:`RemoteProtocolError`, and nothing else, for malformed input.
    """
    buf = data if isinstance(data, bytes) else bytes(data)
    if len(buf) < _HEADER.size:
        raise fail(f"a PDU needs a 6-byte header, got {len(buf)} bytes")
    pdu_type, length = peek_header(buf)
    if length != len(buf) - _HEADER.size:
        raise fail(f"PDU-length {length} disagrees with the {len(buf) - 6} bytes that follow")
    return _DECODERS[pdu_type](buf)
