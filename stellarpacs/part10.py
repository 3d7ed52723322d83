"""PS3.10 files without I/O: the preamble, ``DICM`` and the File Meta Information.

A PS3.10 file is a 128-byte preamble, the four bytes ``DICM``, the group 0002
elements in Explicit VR Little Endian whatever the data set's encoding (PS3.10
7.1), then the data set in the transfer syntax the meta names. This module
writes and reads that header and nothing else: no pydicom, no file access. The
archive writes its files with it, the storage SCU reads the files it sends with
it, and the storage tools check stored files with it.

Reading is a generator (:func:`file_meta_reader`) that yields how many more
bytes it needs and is sent them (``b""`` at the end of the input), so the same
parser serves bytes in memory (:func:`parse_file_meta`) and a file read in
chunks. Whatever the input, it returns or raises :class:`Part10Error`.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import Final

from stellarpacs.errors import StellarPACSError

__all__ = [
    "PREAMBLE",
    "PREFIX",
    "FileMeta",
    "FileMetaReader",
    "Part10Error",
    "encode_file_meta",
    "file_meta_reader",
    "parse_file_meta",
]

PREAMBLE: Final = bytes(128)  # PS3.10 7.1: we write zeros; a reader accepts any bytes
PREFIX: Final = b"DICM"
_HEAD: Final = len(PREAMBLE) + len(PREFIX)
_VERSION: Final = b"\x00\x01"  # File Meta Information Version (0002,0001)
#: VRs with a reserved field and a 4-byte length in Explicit VR (PS3.5 Table 7.1-1).
_LONG_VRS: Final = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_VR_SHAPE: Final = re.compile(rb"[A-Z]{2}")
_SHORT_MAX: Final = 0xFFFE  # largest even value of a 2-byte length
_META_MAX: Final = 1 << 24  # a group 0002 larger than this is not a file meta
_GROUP: Final = struct.Struct("<H")
_ELEMENT: Final = struct.Struct("<HH2sH")
_LONG_LENGTH: Final = struct.Struct("<I")


class Part10Error(StellarPACSError, ValueError):
    """The bytes are not a PS3.10 header we can read, or a value cannot be written in one."""


@dataclass(frozen=True, slots=True)
class FileMeta:
    """The group 0002 attributes StellarPACS writes and reads (PS3.10 Table 7.1-1).

    Values are text without their padding; an absent element reads as ``""``.
    """

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    implementation_class_uid: str = ""
    implementation_version_name: str = ""
    source_ae: str = ""


# -- writing ----------------------------------------------------------------------------------


def _element(elem: int, vr: bytes, value: bytes) -> bytes:
    """One group 0002 element; OB uses the 4-byte length form (PS3.5 Table 7.1-1)."""
    if vr in _LONG_VRS:
        return struct.pack("<HH2sHI", 0x0002, elem, vr, 0, len(value)) + value
    if len(value) > _SHORT_MAX:
        raise Part10Error(f"(0002,{elem:04X}) is too long for the file meta")
    return _ELEMENT.pack(0x0002, elem, vr, len(value)) + value


def _padded(value: str, pad: bytes) -> bytes:
    raw = value.encode("ascii", "replace")
    return raw + pad if len(raw) % 2 else raw


def encode_file_meta(
    *,
    sop_class_uid: str,
    sop_instance_uid: str,
    transfer_syntax_uid: str,
    implementation_class_uid: str,
    implementation_version_name: str,
    source_ae: str,
) -> bytes:
    """Preamble, ``DICM`` and group 0002 with its group length, ready to precede the data set.

    UIDs are padded with NUL, text with a space (PS3.5 6.2); Source AE Title is
    left out when empty. The values come from the DIMSE command and the
    association, not from the data set (PS3.10 7.1). A value longer than its
    element can hold raises :class:`Part10Error`.
    """
    body = b"".join(
        (
            _element(0x0001, b"OB", _VERSION),
            _element(0x0002, b"UI", _padded(sop_class_uid, b"\0")),
            _element(0x0003, b"UI", _padded(sop_instance_uid, b"\0")),
            _element(0x0010, b"UI", _padded(transfer_syntax_uid, b"\0")),
            _element(0x0012, b"UI", _padded(implementation_class_uid, b"\0")),
            _element(0x0013, b"SH", _padded(implementation_version_name, b" ")),
            _element(0x0016, b"AE", _padded(source_ae, b" ")) if source_ae else b"",
        )
    )
    group_length = _element(0x0000, b"UL", struct.pack("<I", len(body)))
    return PREAMBLE + PREFIX + group_length + body


# -- reading ----------------------------------------------------------------------------------

FileMetaReader = Generator[int, bytes, tuple[FileMeta, int]]
"""Yields how many more bytes it needs, is sent them; returns the meta and the data set offset."""


class _Input:
    """The bytes received so far and the read position in them."""

    __slots__ = ("data", "ended", "pos")

    def __init__(self) -> None:
        self.data = b""
        self.pos = 0
        self.ended = False

    def available(self) -> int:
        return len(self.data) - self.pos


def _need(source: _Input, count: int) -> Generator[int, bytes, bool]:
    """Ask for bytes until ``count`` are available past the position; False at the end."""
    while source.available() < count and not source.ended:
        more = yield count - source.available()
        if more:
            source.data += more
        else:
            source.ended = True
    return source.available() >= count


def _text(raw: bytes | None) -> str:
    """A UI or SH value as text: latin-1 (every byte is kept), trailing NUL and spaces cut."""
    return (raw or b"").decode("latin-1").rstrip("\0 ")


def _ae(raw: bytes | None) -> str:
    """An AE value: leading and trailing spaces are not significant (PS3.5 Table 6.2-1)."""
    values = (raw or b"").decode("latin-1").split("\\")
    return "\\".join(v.strip(" \0") for v in values)


def _meta(values: Mapping[int, bytes]) -> FileMeta:
    return FileMeta(
        sop_class_uid=_text(values.get(0x0002)),
        sop_instance_uid=_text(values.get(0x0003)),
        transfer_syntax_uid=_text(values.get(0x0010)),
        implementation_class_uid=_text(values.get(0x0012)),
        implementation_version_name=_text(values.get(0x0013)),
        source_ae=_ae(values.get(0x0016)),
    )


def _one_element(source: _Input) -> Generator[int, bytes, tuple[int, bytes]]:
    """The element at the position (its group is 0002): its number and value; moves past it."""
    if not (yield from _need(source, 8)):
        raise Part10Error("truncated file meta")
    _, elem, vr, length = _ELEMENT.unpack_from(source.data, source.pos)
    if not _VR_SHAPE.fullmatch(vr):
        raise Part10Error(f"(0002,{elem:04X}) is not in Explicit VR Little Endian")
    start = 8
    if vr in _LONG_VRS:
        if not (yield from _need(source, 12)):
            raise Part10Error("truncated file meta")
        (length,) = _LONG_LENGTH.unpack_from(source.data, source.pos + 8)
        start = 12
    if source.pos + start + length > _META_MAX:
        raise Part10Error(f"(0002,{elem:04X}) makes the file meta larger than {_META_MAX} bytes")
    if not (yield from _need(source, start + length)):
        raise Part10Error(f"truncated file meta: (0002,{elem:04X}) runs past the end")
    value = source.data[source.pos + start : source.pos + start + length]
    source.pos += start + length
    return elem, value


def file_meta_reader(*, preamble: bool = True) -> FileMetaReader:
    """The parser of a PS3.10 header, fed by its caller (see the module docstring).

    ``preamble=False`` also accepts group 0002 at the very start of the input
    (a file written without preamble); the input is then read from its first
    byte when ``DICM`` is not at 128. An input without group 0002 gives a meta
    of empty values: what is required of it is for the caller to decide.
    """
    source = _Input()
    if (yield from _need(source, _HEAD)) and source.data[len(PREAMBLE) : _HEAD] == PREFIX:
        source.pos = _HEAD
    elif preamble:
        raise Part10Error("not a PS3.10 file: no DICM after the 128-byte preamble")
    values: dict[int, bytes] = {}
    while (yield from _need(source, 2)):
        (group,) = _GROUP.unpack_from(source.data, source.pos)
        if group != 0x0002:
            break
        elem, value = yield from _one_element(source)
        values[elem] = value  # a repeated element: the last one counts, as in pydicom
    return _meta(values), source.pos


def parse_file_meta(data: bytes, *, preamble: bool = True) -> tuple[FileMeta, int]:
    """The file meta at the start of ``data`` and the offset of the data set after it.

    ``data`` must hold the whole header (a file's first bytes, or all of them).
    """
    reader = file_meta_reader(preamble=preamble)
    try:
        next(reader)
        reader.send(data)
        while True:
            reader.send(b"")
    except StopIteration as done:
        result: tuple[FileMeta, int] = done.value
        return result
