"""The items inside the A-ASSOCIATE PDUs, both ways (PS3.8 9.3.2-9.3.3, PS3.7 D.3.3).

Presentation context items and the user information item with its
sub-items (maximum length, implementation identification, asynchronous
operations window, role selection, extended and common extended
negotiation, user identity).  :mod:`stellarpacs.ul.codec` frames them into
whole PDUs.  Encoding raises :class:`LocalProtocolError` for a value the wire
cannot carry; decoding raises :class:`RemoteProtocolError`, carrying the
A-ABORT reason, and nothing else.

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
    AsynchronousOperationsWindow,
    ContextResult,
    PresentationContextAC,
    PresentationContextRQ,
    RoleSelection,
    SOPClassCommonExtendedNegotiation,
    SOPClassExtendedNegotiation,
    UserIdentityAC,
    UserIdentityRQ,
    UserIdentityType,
    UserInformation,
)

INVALID = AbortReason.INVALID_PDU_PARAMETER_VALUE
UNEXPECTED = AbortReason.UNEXPECTED_PDU_PARAMETER

_ITEM = struct.Struct(">BxH")  # item-type, reserved, item-length
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_TWO_U16 = struct.Struct(">HH")

# Item types, PS3.8 9.3.2 / 9.3.3 and PS3.7 D.3.3.
APP_CONTEXT, PC_RQ, PC_AC, _ABSTRACT, _TRANSFER, USER_INFO = 0x10, 0x20, 0x21, 0x30, 0x40, 0x50
_MAX_LEN, _IMPL_UID, _ASYNC, _ROLE, _IMPL_VERSION = 0x51, 0x52, 0x53, 0x54, 0x55
_EXT_NEG, _COMMON_EXT_NEG, _IDENTITY_RQ, _IDENTITY_AC = 0x56, 0x57, 0x58, 0x59
_KNOWN_ITEMS = frozenset({APP_CONTEXT, PC_RQ, PC_AC, _ABSTRACT, _TRANSFER, USER_INFO})
_KNOWN_ITEMS |= frozenset(range(_MAX_LEN, _IDENTITY_AC + 1))

_IDENTITY_TYPES = frozenset(int(t) for t in UserIdentityType)
_CONTEXT_RESULTS = frozenset(int(r) for r in ContextResult)

_MAX_UID = 64
_MAX_VERSION_NAME = 16


# --------------------------------------------------------------------------- encoding


def ascii_bytes(text: str, what: str) -> bytes:
    try:
        return text.encode("ascii")
    except (UnicodeEncodeError, AttributeError):
        raise LocalProtocolError(f"{what} must be an ASCII string, not {text!r}") from None


def uid_bytes(uid: str, what: str, allow_empty: bool = False) -> bytes:
    """UID field: ASCII, no padding (PS3.8 9.3.2.2.1, PS3.5 9.1)."""
    raw = ascii_bytes(uid, what)
    if len(raw) > _MAX_UID or (not raw and not allow_empty):
        raise LocalProtocolError(f"{what} {uid!r} must be 1 to 64 characters")
    return raw


def checked_context_id(context_id: int) -> int:
    if not (isinstance(context_id, int) and 1 <= context_id <= 255 and context_id % 2):
        raise LocalProtocolError(f"presentation context ID must be odd 1..255, not {context_id!r}")
    return context_id


def item(item_type: int, body: bytes) -> bytes:
    if len(body) > 0xFFFF:
        raise LocalProtocolError(f"item 0x{item_type:02X} is {len(body)} bytes, over 65535")
    return _ITEM.pack(item_type, len(body)) + body


def _len_prefixed(raw: bytes) -> bytes:
    return _U16.pack(len(raw)) + raw


def _encode_pc_rq(pc: PresentationContextRQ) -> bytes:
    subs = [item(_ABSTRACT, uid_bytes(pc.abstract_syntax, "abstract syntax"))]
    subs += [item(_TRANSFER, uid_bytes(ts, "transfer syntax")) for ts in pc.transfer_syntaxes]
    return item(PC_RQ, bytes((checked_context_id(pc.context_id), 0, 0, 0)) + b"".join(subs))


def _encode_pc_ac(pc: PresentationContextAC) -> bytes:
    # A refused context's transfer syntax "shall not be tested" (PS3.8 9.3.3.2): may be empty.
    refused = pc.result != ContextResult.ACCEPTANCE
    ts = item(_TRANSFER, uid_bytes(pc.transfer_syntax, "transfer syntax", allow_empty=refused))
    head = bytes((checked_context_id(pc.context_id), 0, ContextResult(pc.result), 0))
    return item(PC_AC, head + ts)


def encode_pc(pc: PresentationContextRQ | PresentationContextAC, is_rq: bool) -> bytes:
    if isinstance(pc, PresentationContextRQ) and is_rq:
        return _encode_pc_rq(pc)
    if isinstance(pc, PresentationContextAC) and not is_rq:
        return _encode_pc_ac(pc)
    raise LocalProtocolError(f"{type(pc).__name__} does not fit this PDU")


def _encode_role(role: RoleSelection) -> bytes:
    body = _len_prefixed(uid_bytes(role.sop_class_uid, "role selection SOP class"))
    return item(_ROLE, body + bytes((bool(role.scu_role), bool(role.scp_role))))


def _encode_ext_neg(neg: SOPClassExtendedNegotiation) -> bytes:
    body = _len_prefixed(uid_bytes(neg.sop_class_uid, "extended negotiation SOP class"))
    return item(_EXT_NEG, body + bytes(neg.info))


def _encode_common_ext_neg(neg: SOPClassCommonExtendedNegotiation) -> bytes:
    related = b"".join(
        _len_prefixed(uid_bytes(uid, "related general SOP class"))
        for uid in neg.related_general_sop_classes
    )
    body = b"".join(
        (
            _len_prefixed(uid_bytes(neg.sop_class_uid, "common extended negotiation SOP class")),
            _len_prefixed(uid_bytes(neg.service_class_uid, "service class")),
            _len_prefixed(related),
        )
    )
    return item(_COMMON_EXT_NEG, body)  # byte 2 is the sub-item version, 0 (PS3.7 D.3.3.6)


def _encode_identity(identity: UserIdentityRQ | UserIdentityAC) -> bytes:
    if isinstance(identity, UserIdentityAC):
        return item(_IDENTITY_AC, _len_prefixed(bytes(identity.server_response)))
    head = bytes((int(identity.identity_type), bool(identity.positive_response_requested)))
    fields = _len_prefixed(bytes(identity.primary_field))
    fields += _len_prefixed(bytes(identity.secondary_field))
    return item(_IDENTITY_RQ, head + fields)


def _encode_version_name(name: str) -> bytes:
    raw = ascii_bytes(name, "implementation version name")
    if not 1 <= len(raw) <= _MAX_VERSION_NAME:
        raise LocalProtocolError(f"implementation version name {name!r} must be 1 to 16 chars")
    return item(_IMPL_VERSION, raw)


def encode_user_info(ui: UserInformation, is_rq: bool) -> bytes:
    """User information item with its sub-items in item-type order (PS3.8 9.3.1)."""
    if isinstance(ui.user_identity, UserIdentityAC if is_rq else UserIdentityRQ):
        raise LocalProtocolError(f"{type(ui.user_identity).__name__} does not fit this PDU")
    if ui.common_extended_negotiations and not is_rq:
        raise LocalProtocolError("common extended negotiation is sent in an RQ only")
    subs: list[bytes] = []
    if ui.maximum_length is not None:
        subs.append(item(_MAX_LEN, _U32.pack(ui.maximum_length)))
    if ui.implementation_class_uid is not None:
        subs.append(item(_IMPL_UID, uid_bytes(ui.implementation_class_uid, "implementation class")))
    window = ui.asynchronous_operations_window
    if window is not None:
        subs.append(item(_ASYNC, _TWO_U16.pack(window.invoked, window.performed)))
    subs += [_encode_role(role) for role in ui.role_selections]
    if ui.implementation_version_name is not None:
        subs.append(_encode_version_name(ui.implementation_version_name))
    subs += [_encode_ext_neg(neg) for neg in ui.extended_negotiations]
    subs += [_encode_common_ext_neg(neg) for neg in ui.common_extended_negotiations]
    if ui.user_identity is not None:
        subs.append(_encode_identity(ui.user_identity))
    return item(USER_INFO, b"".join(subs))


# --------------------------------------------------------------------------- decoding


def fail(message: str, reason: AbortReason = INVALID) -> RemoteProtocolError:
    return RemoteProtocolError(message, reason=reason)


class Cursor:
    """A bounds-checked read position inside ``data[pos:end]``, named for error messages."""

    __slots__ = ("data", "end", "pos", "what")

    def __init__(self, data: bytes, pos: int, end: int, what: str) -> None:
        self.data, self.pos, self.end, self.what = data, pos, end, what

    def take(self, n: int) -> bytes:
        if n > self.end - self.pos:
            raise fail(f"{self.what}: needs {n} more bytes, has {self.end - self.pos}")
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

    def sub(self, n: int, what: str) -> Cursor:
        self.take(n)
        return Cursor(self.data, self.pos - n, self.pos, what)

    def finish(self) -> None:
        if self.pos != self.end:
            raise fail(f"{self.what}: {self.end - self.pos} unexpected trailing bytes")

    def items(self) -> Iterator[tuple[int, Cursor]]:
        """Walk a run of items (type, reserved, 2-byte length, value) to the end."""
        while self.pos < self.end:
            item_type, length = _ITEM.unpack(self.take(4))
            yield item_type, self.sub(length, f"item 0x{item_type:02X} in {self.what}")


def ascii_text(raw: bytes, what: str) -> str:
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        raise fail(f"{what} is not ASCII: {raw!r}") from None


def read_uid(raw: bytes, what: str, allow_empty: bool = False) -> str:
    """UID value; a trailing NUL or space pad is tolerated and removed (PS3.5 9.1)."""
    uid = ascii_text(raw, what).rstrip("\x00 ")
    if len(uid) > _MAX_UID or (not uid and not allow_empty):
        raise fail(f"{what} must be 1 to 64 characters, got {uid!r}")
    return uid


def read_context_id(value: int) -> int:
    if not value % 2:
        raise fail(f"presentation context ID {value} is not odd")
    return value


def _read_flag(value: int, what: str) -> bool:
    if value > 1:
        raise fail(f"{what} must be 0 or 1, not {value}")
    return value == 1


_Decoder = Callable[[Cursor], Any]


def collect(cur: Cursor, decoders: Mapping[int, _Decoder]) -> dict[int, list[Any]]:
    """Decode the items of ``cur`` by type: unknown types skipped, misplaced ones refused."""
    found: dict[int, list[Any]] = {}
    for item_type, sub in cur.items():
        decoder = decoders.get(item_type)
        if decoder is None:
            if item_type in _KNOWN_ITEMS:
                raise fail(f"item 0x{item_type:02X} is not allowed in {cur.what}", UNEXPECTED)
            continue  # PS3.8 9.3.1: items of unrecognized types are ignored and skipped
        found.setdefault(item_type, []).append(decoder(sub))
        sub.finish()
    return found


def one(found: dict[int, list[Any]], item_type: int, what: str, required: bool = False) -> Any:
    values = found.get(item_type, [])
    if len(values) > 1:
        raise fail(f"{what}: item 0x{item_type:02X} appears {len(values)} times", UNEXPECTED)
    if not values and required:
        raise fail(f"{what}: item 0x{item_type:02X} is missing")
    return values[0] if values else None


def _decode_role(cur: Cursor) -> RoleSelection:
    uid = read_uid(cur.take(cur.u16()), "role selection SOP class")
    scu = _read_flag(cur.u8(), "SCU role")
    return RoleSelection(uid, scu, _read_flag(cur.u8(), "SCP role"))


def _decode_ext_neg(cur: Cursor) -> SOPClassExtendedNegotiation:
    uid = read_uid(cur.take(cur.u16()), "extended negotiation SOP class")
    return SOPClassExtendedNegotiation(uid, cur.rest())


def _decode_common_ext_neg(cur: Cursor) -> SOPClassCommonExtendedNegotiation:
    sop = read_uid(cur.take(cur.u16()), "common extended negotiation SOP class")
    service = read_uid(cur.take(cur.u16()), "service class")
    related_cur = cur.sub(cur.u16(), "related general SOP class identification")
    related: list[str] = []
    while related_cur.pos < related_cur.end:
        related.append(read_uid(related_cur.take(related_cur.u16()), "related SOP class"))
    return SOPClassCommonExtendedNegotiation(sop, service, tuple(related))


def _decode_identity_rq(cur: Cursor) -> UserIdentityRQ:
    raw_type = cur.u8()
    identity_type: UserIdentityType | int = raw_type  # an unknown type is kept as its int
    if raw_type in _IDENTITY_TYPES:
        identity_type = UserIdentityType(raw_type)
    positive = _read_flag(cur.u8(), "positive response requested")
    primary = cur.take(cur.u16())
    return UserIdentityRQ(identity_type, positive, primary, cur.take(cur.u16()))


def _decode_version_name(cur: Cursor) -> str | None:
    name = ascii_text(cur.rest(), "implementation version name").rstrip("\x00 ")
    if len(name) > _MAX_VERSION_NAME:
        raise fail(f"implementation version name {name!r} is longer than 16 characters")
    return name or None


def _decode_async(cur: Cursor) -> AsynchronousOperationsWindow:
    return AsynchronousOperationsWindow(cur.u16(), cur.u16())


_USER_INFO_COMMON: dict[int, _Decoder] = {
    _MAX_LEN: lambda c: _U32.unpack(c.take(4))[0],
    _IMPL_UID: lambda c: read_uid(c.rest(), "implementation class UID"),
    _ASYNC: _decode_async,
    _ROLE: _decode_role,
    _IMPL_VERSION: _decode_version_name,
    _EXT_NEG: _decode_ext_neg,
}
USER_INFO_RQ = {
    **_USER_INFO_COMMON,
    _COMMON_EXT_NEG: _decode_common_ext_neg,
    _IDENTITY_RQ: _decode_identity_rq,
}
USER_INFO_AC = {**_USER_INFO_COMMON, _IDENTITY_AC: lambda c: UserIdentityAC(c.take(c.u16()))}


def decode_user_info(cur: Cursor, decoders: Mapping[int, _Decoder]) -> UserInformation:
    """User information item (PS3.8 9.3.2.3); PS3.7 D.3.3 sub-items, unknown ones skipped."""
    found = collect(cur, decoders)
    what = cur.what
    return UserInformation(
        maximum_length=one(found, _MAX_LEN, what),
        implementation_class_uid=one(found, _IMPL_UID, what),
        implementation_version_name=one(found, _IMPL_VERSION, what),
        asynchronous_operations_window=one(found, _ASYNC, what),
        role_selections=tuple(found.get(_ROLE, ())),
        extended_negotiations=tuple(found.get(_EXT_NEG, ())),
        common_extended_negotiations=tuple(found.get(_COMMON_EXT_NEG, ())),
        user_identity=one(found, _IDENTITY_RQ, what) or one(found, _IDENTITY_AC, what),
    )


def decode_pc_rq(cur: Cursor) -> PresentationContextRQ:
    """Presentation context item of the RQ (PS3.8 9.3.2.2)."""
    context_id = read_context_id(cur.u8())
    cur.take(3)
    found = collect(
        cur,
        {
            _ABSTRACT: lambda c: read_uid(c.rest(), "abstract syntax"),
            _TRANSFER: lambda c: read_uid(c.rest(), "transfer syntax"),
        },
    )
    abstract = one(found, _ABSTRACT, cur.what, required=True)
    return PresentationContextRQ(context_id, abstract, tuple(found.get(_TRANSFER, ())))


def decode_pc_ac(cur: Cursor) -> PresentationContextAC:
    """Presentation context item of the AC (PS3.8 9.3.3.2)."""
    context_id = read_context_id(cur.u8())
    cur.take(1)
    raw_result = cur.u8()
    cur.take(1)
    if raw_result not in _CONTEXT_RESULTS:
        raise fail(f"presentation context result {raw_result} is not defined")
    result = ContextResult(raw_result)
    refused = result != ContextResult.ACCEPTANCE
    found = collect(
        cur, {_TRANSFER: lambda c: read_uid(c.rest(), "transfer syntax", allow_empty=refused)}
    )
    transfer = one(found, _TRANSFER, cur.what, required=not refused)
    return PresentationContextAC(context_id, result, transfer or "")
