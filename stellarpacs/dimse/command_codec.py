"""The group 0000 command set codec (PS3.7 6.3.1, Annex E).

Theory of operation.  A command set is always Implicit VR Little Endian:
elements of group 0000, each ``tag (u16 group, u16 element), u32 length,
value``, headed by Command Group Length (0000,0000).  The VR of every element
is fixed by the registry (PS3.7 Annex E, Table E.1-1), so a tiny table-driven
codec suffices and pydicom is not needed.  ``_FIELDS`` maps a message field
name to its tag and VR; encoding and decoding walk the fields of the
message dataclasses of :mod:`stellarpacs.dimse.commands`.

Decoding is liberal where it costs nothing (element order, unknown group 0000
elements, a missing Command Data Set Type means "no data set") and strict
where the message would be ambiguous (duplicate elements, wrong value
lengths, a missing mandatory field).  Every malformation raises
:class:`RemoteProtocolError`; nothing else escapes :func:`decode_command`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, fields
from typing import Any, Final

from stellarpacs.dimse.commands import COMMAND_CLASSES, COMMAND_NAMES, NAMED_CLASSES, Message
from stellarpacs.errors import AbortReason, LocalProtocolError, RemoteProtocolError

__all__ = ["DATASET_PRESENT", "NO_DATASET", "decode_command", "encode_command"]

NO_DATASET: Final = 0x0101
"""Command Data Set Type meaning "no data set follows" (PS3.7 E.1)."""
DATASET_PRESENT: Final = 0x0001
"""What we send when a data set follows; any value but 0x0101 means that."""


_HEADER = struct.Struct("<HHI")
_US = struct.Struct("<H")
_UL = struct.Struct("<I")
_COMMAND_FIELD: Final = 0x0100
_DATASET_TYPE: Final = 0x0800
_GROUP_LENGTH: Final = 0x0000


def _bad(message: str) -> RemoteProtocolError:
    return RemoteProtocolError(message, AbortReason.INVALID_PDU_PARAMETER_VALUE)


def _enc_us(value: int) -> bytes:
    return _US.pack(value)


def _dec_us(raw: bytes) -> int:
    if len(raw) != 2:
        raise ValueError(f"US value of {len(raw)} bytes, expected 2")
    return int(_US.unpack(raw)[0])


def _text_encoder(pad: bytes) -> Callable[[str], bytes]:
    def encode(value: str) -> bytes:
        raw = value.encode("ascii")
        return raw + pad if len(raw) % 2 else raw

    return encode


def _dec_uid(raw: bytes) -> str:
    return raw.decode("ascii", "replace").rstrip("\x00 ")


def _dec_text(raw: bytes) -> str:
    return raw.decode("ascii", "replace").strip("\x00 ")


def _enc_at(value: tuple[int, ...]) -> bytes:
    return b"".join(struct.pack("<HH", tag >> 16, tag & 0xFFFF) for tag in value)


def _dec_at(raw: bytes) -> tuple[int, ...]:
    if len(raw) % 4:
        raise ValueError(f"AT value of {len(raw)} bytes, not a multiple of 4")
    return tuple(group << 16 | elem for group, elem in struct.iter_unpack("<HH", raw))


_Codec = tuple[Callable[[Any], bytes], Callable[[bytes], Any]]
_CODECS: Final[Mapping[str, _Codec]] = {
    "US": (_enc_us, _dec_us),
    "UI": (_text_encoder(b"\x00"), _dec_uid),
    "AE": (_text_encoder(b" "), _dec_text),
    "LO": (_text_encoder(b" "), _dec_text),
    "AT": (_enc_at, _dec_at),
}

# Field name -> (element number in group 0000, VR), PS3.7 Table E.1-1.
_FIELDS: Final[Mapping[str, tuple[int, str]]] = {
    "affected_sop_class_uid": (0x0002, "UI"),
    "requested_sop_class_uid": (0x0003, "UI"),
    "message_id": (0x0110, "US"),
    "message_id_being_responded_to": (0x0120, "US"),
    "move_destination": (0x0600, "AE"),
    "priority": (0x0700, "US"),
    "status": (0x0900, "US"),
    "offending_element": (0x0901, "AT"),
    "error_comment": (0x0902, "LO"),
    "error_id": (0x0903, "US"),
    "affected_sop_instance_uid": (0x1000, "UI"),
    "requested_sop_instance_uid": (0x1001, "UI"),
    "event_type_id": (0x1002, "US"),
    "attribute_identifier_list": (0x1005, "AT"),
    "action_type_id": (0x1008, "US"),
    "number_of_remaining_suboperations": (0x1020, "US"),
    "number_of_completed_suboperations": (0x1021, "US"),
    "number_of_failed_suboperations": (0x1022, "US"),
    "number_of_warning_suboperations": (0x1023, "US"),
    "move_originator_ae_title": (0x1030, "AE"),
    "move_originator_message_id": (0x1031, "US"),
}


@dataclass(frozen=True, slots=True)
class _Layout:
    """Per class: its (name, element, codec) rows and the names that must be present."""

    rows: tuple[tuple[str, int, _Codec], ...]
    required: frozenset[str]


def _layout(cls: type[Message]) -> _Layout:
    rows = []
    required = set()
    for f in fields(cls):
        if f.name == "has_dataset":
            continue
        elem, vr = _FIELDS[f.name]
        rows.append((f.name, elem, _CODECS[vr]))
        if f.default is MISSING:
            required.add(f.name)
    return _Layout(tuple(sorted(rows, key=lambda row: row[1])), frozenset(required))


_LAYOUTS: Final[Mapping[type[Message], _Layout]] = {cls: _layout(cls) for cls, _ in NAMED_CLASSES}


def encode_command(msg: Message) -> bytes:
    """Encode ``msg`` as an Implicit VR Little Endian command set (PS3.7 6.3.1, E.1).

    Fields that are None are omitted.  Raises LocalProtocolError for values
    that cannot be put on the wire (a US out of range, non-ASCII text).
    """
    dataset_type = DATASET_PRESENT if msg.has_dataset else NO_DATASET
    elements = [
        (_COMMAND_FIELD, _US.pack(msg.command_field)),
        (_DATASET_TYPE, _US.pack(dataset_type)),
    ]
    for name, elem, (encode, _) in _LAYOUTS[type(msg)].rows:
        value = getattr(msg, name)
        if value is None:
            continue
        try:
            elements.append((elem, encode(value)))
        except (struct.error, UnicodeError, TypeError, AttributeError) as exc:
            raise LocalProtocolError(f"cannot encode {name}={value!r}: {exc}") from exc
    elements.sort()
    body = b"".join(_HEADER.pack(0, elem, len(raw)) + raw for elem, raw in elements)
    return _HEADER.pack(0, _GROUP_LENGTH, 4) + _UL.pack(len(body)) + body


def _split_elements(data: bytes) -> dict[int, bytes]:
    """Cut a command set into element number -> raw value, checking its framing."""
    elements: dict[int, bytes] = {}
    offset, end = 0, len(data)
    while offset < end:
        if end - offset < _HEADER.size:
            raise _bad(f"command set truncated in an element header at offset {offset}")
        group, elem, length = _HEADER.unpack_from(data, offset)
        offset += _HEADER.size
        if group != 0:
            raise _bad(f"command set holds element ({group:04X},{elem:04X}) outside group 0000")
        if length > end - offset:
            raise _bad(f"value of (0000,{elem:04X}) runs past the end of the command set")
        if elem in elements:
            raise _bad(f"command set repeats element (0000,{elem:04X})")
        elements[elem] = data[offset : offset + length]
        offset += length
        if elem == _GROUP_LENGTH:
            _check_group_length(elements[elem], end - offset)
    return elements


def _check_group_length(raw: bytes, remaining: int) -> None:
    if len(raw) != 4 or _UL.unpack(raw)[0] != remaining:
        raise _bad(f"Command Group Length does not match the {remaining} bytes that follow it")


def _message_class(elements: Mapping[int, bytes]) -> type[Message]:
    raw = elements.get(_COMMAND_FIELD)
    if raw is None or len(raw) != 2:
        raise _bad("command set has no valid Command Field (0000,0100)")
    field = _dec_us(raw)
    cls = COMMAND_CLASSES.get(field)
    if cls is None:
        raise _bad(f"unknown Command Field 0x{field:04X}")
    return cls


def decode_command(data: bytes) -> Message:
    """Decode a whole command set into its typed message (PS3.7 6.3.1, E.1).

    Raises RemoteProtocolError (INVALID_PDU_PARAMETER_VALUE) for anything
    malformed; group 0000 elements the message does not use are ignored.
    """
    elements = _split_elements(data)
    cls = _message_class(elements)
    name = COMMAND_NAMES[cls.command_field]
    layout = _LAYOUTS[cls]
    kwargs: dict[str, Any] = {}
    for field_name, elem, (_, decode) in layout.rows:
        raw = elements.get(elem)
        if not raw:
            continue
        try:
            kwargs[field_name] = decode(raw)
        except ValueError as exc:
            raise _bad(f"{name}: bad (0000,{elem:04X}): {exc}") from exc
    missing = layout.required - kwargs.keys()
    if missing:
        raise _bad(f"{name} lacks {', '.join(sorted(missing))}")
    dataset_type = elements.get(_DATASET_TYPE)
    try:
        has_dataset = bool(dataset_type) and _dec_us(dataset_type or b"") != NO_DATASET
    except ValueError as exc:
        raise _bad(f"{name}: bad Command Data Set Type: {exc}") from exc
    return cls(**kwargs, has_dataset=has_dataset)
