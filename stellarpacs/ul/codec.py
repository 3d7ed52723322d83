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

Item rules (PS3.8 9.3.1, PS3.8 D.2): an item type this codec does not know is
skipped; a known item type in a place the standard does not allow it (a
presentation context AC item inside an A-ASSOCIATE-RQ, say) is an unexpected
PDU parameter.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from stellarpacs.errors import AbortReason, LocalProtocolError, RemoteProtocolError
from stellarpacs.ul.pdus import (
    PDU,
    AAbort,
    AAssociateAC,
    AAssociateRJ,
    AAssociateRQ,
    AReleaseRP,
    AReleaseRQ,
    AsynchronousOperationsWindow,
    ContextResult,
    PDataTF,
    PDUType,
    PresentationContextAC,
    PresentationContextRQ,
    PresentationDataValue,
    RoleSelection,
    SOPClassCommonExtendedNegotiation,
    SOPClassExtendedNegotiation,
    UserIdentityAC,
    UserIdentityRQ,
    UserIdentityType,
    UserInformation,
)

__all__ = ["HEADER_SIZE", "decode_pdu", "encode_pdu", "peek_header"]

_INVALID = AbortReason.INVALID_PDU_PARAMETER_VALUE
_UNEXPECTED = AbortReason.UNEXPECTED_PDU_PARAMETER

_HEADER = struct.Struct(">BxI")  # PDU-type, reserved, PDU-length (PS3.8 9.3.1)
HEADER_SIZE = _HEADER.size
"""Bytes of the PDU header that precedes every PDU body (PS3.8 9.3.1)."""
_ITEM = struct.Struct(">BxH")  # item-type, reserved, item-length
_PDV = struct.Struct(">IBB")  # item-length, context id, message control header
_ASSOC = struct.Struct(">H2x16s16s32x")  # version, reserved, called, calling, reserved
_FOUR = struct.Struct(">xBBB")  # RJ and A-ABORT bodies: reserved then three bytes
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_TWO_U16 = struct.Struct(">HH")

# Item types, PS3.8 9.3.2 / 9.3.3 and PS3.7 D.3.3.
_APP_CONTEXT, _PC_RQ, _PC_AC, _ABSTRACT, _TRANSFER, _USER_INFO = 0x10, 0x20, 0x21, 0x30, 0x40, 0x50
_MAX_LEN, _IMPL_UID, _ASYNC, _ROLE, _IMPL_VERSION = 0x51, 0x52, 0x53, 0x54, 0x55
_EXT_NEG, _COMMON_EXT_NEG, _IDENTITY_RQ, _IDENTITY_AC = 0x56, 0x57, 0x58, 0x59
_KNOWN_ITEMS = frozenset({_APP_CONTEXT, _PC_RQ, _PC_AC, _ABSTRACT, _TRANSFER, _USER_INFO})
_KNOWN_ITEMS |= frozenset(range(_MAX_LEN, _IDENTITY_AC + 1))

# PDUs whose PDU-length is fixed at 4 (PS3.8 9.3.4, 9.3.6 - 9.3.8).
_FIXED_LENGTH = frozenset(
    (PDUType.A_ASSOCIATE_RJ, PDUType.A_RELEASE_RQ, PDUType.A_RELEASE_RP, PDUType.A_ABORT)
)
_PDU_TYPES = frozenset(int(t) for t in PDUType)
_IDENTITY_TYPES = frozenset(int(t) for t in UserIdentityType)
_CONTEXT_RESULTS = frozenset(int(r) for r in ContextResult)

_MAX_UID = 64
_MAX_AE = 16
_MAX_VERSION_NAME = 16


# --------------------------------------------------------------------------- encoding


def _ascii(text: str, what: str) -> bytes:
    try:
        return text.encode("ascii")
    except (UnicodeEncodeError, AttributeError):
        raise LocalProtocolError(f"{what} must be an ASCII string, not {text!r}") from None


def _ae(title: str, what: str) -> bytes:
    """AE title field: 16 bytes, space padded (PS3.8 9.3.2, PS3.5 6.2)."""
    raw = _ascii(title, what)
    if len(raw) > _MAX_AE:
        raise LocalProtocolError(f"{what} {title!r} is longer than 16 characters")
    return raw.ljust(_MAX_AE, b" ")


def _uid(uid: str, what: str, allow_empty: bool = False) -> bytes:
    """UID field: ASCII, no padding (PS3.8 9.3.2.2.1, PS3.5 9.1)."""
    raw = _ascii(uid, what)
    if len(raw) > _MAX_UID or (not raw and not allow_empty):
        raise LocalProtocolError(f"{what} {uid!r} must be 1 to 64 characters")
    return raw


def _context_id(context_id: int) -> int:
    if not (isinstance(context_id, int) and 1 <= context_id <= 255 and context_id % 2):
        raise LocalProtocolError(f"presentation context ID must be odd 1..255, not {context_id!r}")
    return context_id


def _item(item_type: int, body: bytes) -> bytes:
    if len(body) > 0xFFFF:
        raise LocalProtocolError(f"item 0x{item_type:02X} is {len(body)} bytes, over 65535")
    return _ITEM.pack(item_type, len(body)) + body


def _len_prefixed(raw: bytes) -> bytes:
    return _U16.pack(len(raw)) + raw


def _encode_pc_rq(pc: PresentationContextRQ) -> bytes:
    subs = [_item(_ABSTRACT, _uid(pc.abstract_syntax, "abstract syntax"))]
    subs += [_item(_TRANSFER, _uid(ts, "transfer syntax")) for ts in pc.transfer_syntaxes]
    return _item(_PC_RQ, bytes((_context_id(pc.context_id), 0, 0, 0)) + b"".join(subs))


def _encode_pc_ac(pc: PresentationContextAC) -> bytes:
    # A refused context's transfer syntax "shall not be tested" (PS3.8 9.3.3.2): may be empty.
    refused = pc.result != ContextResult.ACCEPTANCE
    ts = _item(_TRANSFER, _uid(pc.transfer_syntax, "transfer syntax", allow_empty=refused))
    head = bytes((_context_id(pc.context_id), 0, ContextResult(pc.result), 0))
    return _item(_PC_AC, head + ts)


def _encode_pc(pc: PresentationContextRQ | PresentationContextAC, is_rq: bool) -> bytes:
    if isinstance(pc, PresentationContextRQ) and is_rq:
        return _encode_pc_rq(pc)
    if isinstance(pc, PresentationContextAC) and not is_rq:
        return _encode_pc_ac(pc)
    raise LocalProtocolError(f"{type(pc).__name__} does not fit this PDU")


def _encode_role(role: RoleSelection) -> bytes:
    body = _len_prefixed(_uid(role.sop_class_uid, "role selection SOP class"))
    return _item(_ROLE, body + bytes((bool(role.scu_role), bool(role.scp_role))))


def _encode_ext_neg(neg: SOPClassExtendedNegotiation) -> bytes:
    body = _len_prefixed(_uid(neg.sop_class_uid, "extended negotiation SOP class"))
    return _item(_EXT_NEG, body + bytes(neg.info))


def _encode_common_ext_neg(neg: SOPClassCommonExtendedNegotiation) -> bytes:
    related = b"".join(
        _len_prefixed(_uid(uid, "related general SOP class"))
        for uid in neg.related_general_sop_classes
    )
    body = b"".join(
        (
            _len_prefixed(_uid(neg.sop_class_uid, "common extended negotiation SOP class")),
            _len_prefixed(_uid(neg.service_class_uid, "service class")),
            _len_prefixed(related),
        )
    )
    return _item(_COMMON_EXT_NEG, body)  # byte 2 is the sub-item version, 0 (PS3.7 D.3.3.6)


def _encode_identity(identity: UserIdentityRQ | UserIdentityAC) -> bytes:
    if isinstance(identity, UserIdentityAC):
        return _item(_IDENTITY_AC, _len_prefixed(bytes(identity.server_response)))
    head = bytes((int(identity.identity_type), bool(identity.positive_response_requested)))
    fields = _len_prefixed(bytes(identity.primary_field))
    fields += _len_prefixed(bytes(identity.secondary_field))
    return _item(_IDENTITY_RQ, head + fields)


def _encode_version_name(name: str) -> bytes:
    raw = _ascii(name, "implementation version name")
    if not 1 <= len(raw) <= _MAX_VERSION_NAME:
        raise LocalProtocolError(f"implementation version name {name!r} must be 1 to 16 chars")
    return _item(_IMPL_VERSION, raw)


def _encode_user_info(ui: UserInformation, is_rq: bool) -> bytes:
    """User information item with its sub-items in item-type order (PS3.8 9.3.1)."""
    if isinstance(ui.user_identity, UserIdentityAC if is_rq else UserIdentityRQ):
        raise LocalProtocolError(f"{type(ui.user_identity).__name__} does not fit this PDU")
    if ui.common_extended_negotiations and not is_rq:
        raise LocalProtocolError("common extended negotiation is sent in an RQ only")
    subs: list[bytes] = []
    if ui.maximum_length is not None:
        subs.append(_item(_MAX_LEN, _U32.pack(ui.maximum_length)))
    if ui.implementation_class_uid is not None:
        subs.append(_item(_IMPL_UID, _uid(ui.implementation_class_uid, "implementation class")))
    window = ui.asynchronous_operations_window
    if window is not None:
        subs.append(_item(_ASYNC, _TWO_U16.pack(window.invoked, window.performed)))
    subs += [_encode_role(role) for role in ui.role_selections]
    if ui.implementation_version_name is not None:
        subs.append(_encode_version_name(ui.implementation_version_name))
    subs += [_encode_ext_neg(neg) for neg in ui.extended_negotiations]
    subs += [_encode_common_ext_neg(neg) for neg in ui.common_extended_negotiations]
    if ui.user_identity is not None:
        subs.append(_encode_identity(ui.user_identity))
    return _item(_USER_INFO, b"".join(subs))


def _encode_associate(pdu: AAssociateRQ | AAssociateAC) -> bytes:
    is_rq = isinstance(pdu, AAssociateRQ)
    head = _ASSOC.pack(
        pdu.protocol_version,
        _ae(pdu.called_ae_title, "called AE title"),
        _ae(pdu.calling_ae_title, "calling AE title"),
    )
    app = _item(_APP_CONTEXT, _uid(pdu.application_context_name, "application context name"))
    contexts = [_encode_pc(pc, is_rq) for pc in pdu.presentation_contexts]
    body = b"".join((head, app, *contexts, _encode_user_info(pdu.user_information, is_rq)))
    pdu_type = PDUType.A_ASSOCIATE_RQ if is_rq else PDUType.A_ASSOCIATE_AC
    return _HEADER.pack(pdu_type, len(body)) + body


def _encode_pdata(pdu: PDataTF) -> bytes:
    """P-DATA-TF (PS3.8 9.3.5): no per-byte work, the PDV data is joined as it is."""
    parts: list[bytes] = [b""]
    total = 0
    for pdv in pdu.pdvs:
        control = (1 if pdv.is_command else 0) | (2 if pdv.is_last else 0)  # PS3.8 E.2
        size = len(pdv.data)
        parts.append(_PDV.pack(size + 2, _context_id(pdv.context_id), control))
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


def _fail(message: str, reason: AbortReason = _INVALID) -> RemoteProtocolError:
    return RemoteProtocolError(message, reason=reason)


class _Cursor:
    """A bounds-checked read position inside ``data[pos:end]``, named for error messages."""

    __slots__ = ("data", "end", "pos", "what")

    def __init__(self, data: bytes, pos: int, end: int, what: str) -> None:
        self.data, self.pos, self.end, self.what = data, pos, end, what

    def take(self, n: int) -> bytes:
        if n > self.end - self.pos:
            raise _fail(f"{self.what}: needs {n} more bytes, has {self.end - self.pos}")
        start = self.pos
        self.pos += n
        return self.data[start : self.pos]

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        value: int = _U16.unpack(self.take(2))[0]
        return value

    def rest(self) -> bytes:
        return self.take(self.end - self.pos)

    def sub(self, n: int, what: str) -> _Cursor:
        self.take(n)
        return _Cursor(self.data, self.pos - n, self.pos, what)

    def finish(self) -> None:
        if self.pos != self.end:
            raise _fail(f"{self.what}: {self.end - self.pos} unexpected trailing bytes")

    def items(self) -> Iterator[tuple[int, _Cursor]]:
        """Walk a run of items (type, reserved, 2-byte length, value) to the end."""
        while self.pos < self.end:
            item_type, length = _ITEM.unpack(self.take(4))
            yield item_type, self.sub(length, f"item 0x{item_type:02X} in {self.what}")


def _text(raw: bytes, what: str) -> str:
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        raise _fail(f"{what} is not ASCII: {raw!r}") from None


def _read_uid(raw: bytes, what: str, allow_empty: bool = False) -> str:
    """UID value; a trailing NUL or space pad is tolerated and removed (PS3.5 9.1)."""
    uid = _text(raw, what).rstrip("\x00 ")
    if len(uid) > _MAX_UID or (not uid and not allow_empty):
        raise _fail(f"{what} must be 1 to 64 characters, got {uid!r}")
    return uid


def _read_context_id(value: int) -> int:
    if not value % 2:
        raise _fail(f"presentation context ID {value} is not odd")
    return value


def _read_flag(value: int, what: str) -> bool:
    if value > 1:
        raise _fail(f"{what} must be 0 or 1, not {value}")
    return value == 1


_Decoder = Callable[[_Cursor], Any]


def _collect(cur: _Cursor, decoders: Mapping[int, _Decoder]) -> dict[int, list[Any]]:
    """Decode the items of ``cur`` by type: unknown types skipped, misplaced ones refused."""
    found: dict[int, list[Any]] = {}
    for item_type, sub in cur.items():
        decoder = decoders.get(item_type)
        if decoder is None:
            if item_type in _KNOWN_ITEMS:
                raise _fail(f"item 0x{item_type:02X} is not allowed in {cur.what}", _UNEXPECTED)
            continue  # PS3.8 9.3.1: items of unrecognized types are ignored and skipped
        found.setdefault(item_type, []).append(decoder(sub))
        sub.finish()
    return found


def _one(found: dict[int, list[Any]], item_type: int, what: str, required: bool = False) -> Any:
    values = found.get(item_type, [])
    if len(values) > 1:
        raise _fail(f"{what}: item 0x{item_type:02X} appears {len(values)} times", _UNEXPECTED)
    if not values and required:
        raise _fail(f"{what}: item 0x{item_type:02X} is missing")
    return values[0] if values else None


def _decode_role(cur: _Cursor) -> RoleSelection:
    uid = _read_uid(cur.take(cur.u16()), "role selection SOP class")
    scu = _read_flag(cur.u8(), "SCU role")
    return RoleSelection(uid, scu, _read_flag(cur.u8(), "SCP role"))


def _decode_ext_neg(cur: _Cursor) -> SOPClassExtendedNegotiation:
    uid = _read_uid(cur.take(cur.u16()), "extended negotiation SOP class")
    return SOPClassExtendedNegotiation(uid, cur.rest())


def _decode_common_ext_neg(cur: _Cursor) -> SOPClassCommonExtendedNegotiation:
    sop = _read_uid(cur.take(cur.u16()), "common extended negotiation SOP class")
    service = _read_uid(cur.take(cur.u16()), "service class")
    related_cur = cur.sub(cur.u16(), "related general SOP class identification")
    related: list[str] = []
    while related_cur.pos < related_cur.end:
        related.append(_read_uid(related_cur.take(related_cur.u16()), "related SOP class"))
    return SOPClassCommonExtendedNegotiation(sop, service, tuple(related))


def _decode_identity_rq(cur: _Cursor) -> UserIdentityRQ:
    raw_type = cur.u8()
    identity_type: UserIdentityType | int = raw_type  # an unknown type is kept as its int
    if raw_type in _IDENTITY_TYPES:
        identity_type = UserIdentityType(raw_type)
    positive = _read_flag(cur.u8(), "positive response requested")
    primary = cur.take(cur.u16())
    return UserIdentityRQ(identity_type, positive, primary, cur.take(cur.u16()))


def _decode_version_name(cur: _Cursor) -> str | None:
    name = _text(cur.rest(), "implementation version name").rstrip("\x00 ")
    if len(name) > _MAX_VERSION_NAME:
        raise _fail(f"implementation version name {name!r} is longer than 16 characters")
    return name or None


def _decode_async(cur: _Cursor) -> AsynchronousOperationsWindow:
    return AsynchronousOperationsWindow(cur.u16(), cur.u16())


_USER_INFO_COMMON: dict[int, _Decoder] = {
    _MAX_LEN: lambda c: _U32.unpack(c.take(4))[0],
    _IMPL_UID: lambda c: _read_uid(c.rest(), "implementation class UID"),
    _ASYNC: _decode_async,
    _ROLE: _decode_role,
    _IMPL_VERSION: _decode_version_name,
    _EXT_NEG: _decode_ext_neg,
}
_USER_INFO_RQ = {
    **_USER_INFO_COMMON,
    _COMMON_EXT_NEG: _decode_common_ext_neg,
    _IDENTITY_RQ: _decode_identity_rq,
}
_USER_INFO_AC = {**_USER_INFO_COMMON, _IDENTITY_AC: lambda c: UserIdentityAC(c.take(c.u16()))}


def _decode_user_info(cur: _Cursor, decoders: Mapping[int, _Decoder]) -> UserInformation:
    """User information item (PS3.8 9.3.2.3); PS3.7 D.3.3 sub-items, unknown ones skipped."""
    found = _collect(cur, decoders)
    what = cur.what
    return UserInformation(
        maximum_length=_one(found, _MAX_LEN, what),
        implementation_class_uid=_one(found, _IMPL_UID, what),
        implementation_version_name=_one(found, _IMPL_VERSION, what),
        asynchronous_operations_window=_one(found, _ASYNC, what),
        role_selections=tuple(found.get(_ROLE, ())),
        extended_negotiations=tuple(found.get(_EXT_NEG, ())),
        common_extended_negotiations=tuple(found.get(_COMMON_EXT_NEG, ())),
        user_identity=_one(found, _IDENTITY_RQ, what) or _one(found, _IDENTITY_AC, what),
    )


def _decode_pc_rq(cur: _Cursor) -> PresentationContextRQ:
    """Presentation context item of the RQ (PS3.8 9.3.2.2)."""
    context_id = _read_context_id(cur.u8())
    cur.take(3)
    found = _collect(
        cur,
        {
            _ABSTRACT: lambda c: _read_uid(c.rest(), "abstract syntax"),
            _TRANSFER: lambda c: _read_uid(c.rest(), "transfer syntax"),
        },
    )
    abstract = _one(found, _ABSTRACT, cur.what, required=True)
    return PresentationContextRQ(context_id, abstract, tuple(found.get(_TRANSFER, ())))


def _decode_pc_ac(cur: _Cursor) -> PresentationContextAC:
    """Presentation context item of the AC (PS3.8 9.3.3.2)."""
    context_id = _read_context_id(cur.u8())
    cur.take(1)
    raw_result = cur.u8()
    cur.take(1)
    if raw_result not in _CONTEXT_RESULTS:
        raise _fail(f"presentation context result {raw_result} is not defined")
    result = ContextResult(raw_result)
    refused = result != ContextResult.ACCEPTANCE
    found = _collect(
        cur, {_TRANSFER: lambda c: _read_uid(c.rest(), "transfer syntax", allow_empty=refused)}
    )
    transfer = _one(found, _TRANSFER, cur.what, required=not refused)
    return PresentationContextAC(context_id, result, transfer or "")


def _ae_title(raw: bytes, what: str) -> str:
    return _text(raw, what).strip(" \x00")


def _decode_associate(data: bytes, is_rq: bool) -> AAssociateRQ | AAssociateAC:
    """A-ASSOCIATE-RQ/AC (PS3.8 9.3.2, 9.3.3): fixed fields, then the variable items."""
    name = "A-ASSOCIATE-RQ" if is_rq else "A-ASSOCIATE-AC"
    cur = _Cursor(data, 6, len(data), name)
    version, called, calling = _ASSOC.unpack(cur.take(_ASSOC.size))
    pc_type, pc_decoder = (_PC_RQ, _decode_pc_rq) if is_rq else (_PC_AC, _decode_pc_ac)
    ui_decoders = _USER_INFO_RQ if is_rq else _USER_INFO_AC
    found = _collect(
        cur,
        {
            _APP_CONTEXT: lambda c: _read_uid(c.rest(), "application context name"),
            pc_type: pc_decoder,
            _USER_INFO: lambda c: _decode_user_info(c, ui_decoders),
        },
    )
    user_info = _one(found, _USER_INFO, name)
    cls = AAssociateRQ if is_rq else AAssociateAC
    return cls(
        called_ae_title=_ae_title(called, "called AE title"),
        calling_ae_title=_ae_title(calling, "calling AE title"),
        presentation_contexts=tuple(found.get(pc_type, ())),
        user_information=user_info or UserInformation(maximum_length=None),
        application_context_name=_one(found, _APP_CONTEXT, name, required=True),
        protocol_version=version,
    )


def _decode_pdata(data: bytes) -> PDataTF:
    """P-DATA-TF (PS3.8 9.3.5.1): one or more PDV items, control header per PS3.8 E.2."""
    pos, end = 6, len(data)
    if pos == end:
        raise _fail("P-DATA-TF holds no presentation data value item")
    pdvs: list[PresentationDataValue] = []
    while pos < end:
        if end - pos < _PDV.size:
            raise _fail(f"P-DATA-TF: truncated PDV item of {end - pos} bytes")
        length, context_id, control = _PDV.unpack_from(data, pos)
        stop = pos + 4 + length
        if length < 2 or stop > end:
            raise _fail(f"P-DATA-TF: PDV item length {length} does not fit {end - pos - 4} bytes")
        _read_context_id(context_id)
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
        raise _fail(f"unrecognized PDU type 0x{pdu_type:02X}", AbortReason.UNRECOGNIZED_PDU)
    if pdu_type in _FIXED_LENGTH and length != 4:
        raise _fail(f"{PDUType(pdu_type).name} PDU-length is {length}, not 4")
    return pdu_type, length


def decode_pdu(data: bytes | bytearray | memoryview) -> PDU:
    """Decode exactly one whole PDU, header included (PS3.8 9.3).

    Raises :class:`RemoteProtocolError`, and nothing else, for malformed input.
    """
    buf = data if isinstance(data, bytes) else bytes(data)
    if len(buf) < _HEADER.size:
        raise _fail(f"a PDU needs a 6-byte header, got {len(buf)} bytes")
    pdu_type, length = peek_header(buf)
    if length != len(buf) - _HEADER.size:
        raise _fail(f"PDU-length {length} disagrees with the {len(buf) - 6} bytes that follow")
    return _DECODERS[pdu_type](buf)
