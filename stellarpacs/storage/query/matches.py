"""One C-FIND match: the elements of its response identifier, and their encoding.

A match is a list of ``(tag, VR, value)``: most values are plain strings or
numbers read from index columns, which are written here directly as data
elements (PS3.5 7.1.2 Explicit VR, 7.1.3 Implicit VR, little endian) in a few
microseconds, where building and writing a pydicom Dataset costs about ten
times more per match.  Values taken from a stored header (any VR, sequences)
arrive as pydicom DataElements and are written by pydicom, one element at a
time; so is everything when the character set uses ISO 2022 code extensions.
:meth:`Match.dataset` gives the same content as a pydicom Dataset.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final, TypeAlias

from pydicom import config as pydicom_config
from pydicom.charset import python_encoding
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

from stellarpacs.uids import IMPLICIT_VR_LITTLE_ENDIAN

__all__ = ["Match", "Value", "text_values"]

Value: TypeAlias = str | int | list[str] | DataElement | None

#: VRs whose text follows Specific Character Set (PS3.5 6.1.2.3); the others are ASCII.
_CHARSET_VRS: Final = frozenset({"LO", "LT", "PN", "SH", "ST", "UC", "UT"})
#: VRs with a 4-byte length in Explicit VR (PS3.5 Table 7.1-1).
_LONG_VRS: Final = frozenset(
    {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
)
_TEXT_VRS: Final = _CHARSET_VRS | {"AE", "CS", "UR"}
_IMPLICIT: Final = struct.Struct("<HHI")
_EXPLICIT_SHORT: Final = struct.Struct("<HH2sH")
_EXPLICIT_LONG: Final = struct.Struct("<HH2s2xI")
_IGNORE: Final = pydicom_config.IGNORE


def text_values(elem: DataElement) -> Iterator[str]:
    """The character-set-encoded text of a pydicom element, sequence items included."""
    if elem.VR == "SQ":
        for item in elem.value or ():
            for child in item:
                yield from text_values(child)
    elif elem.VR in _TEXT_VRS and elem.value is not None:
        values = elem.value if elem.VM > 1 else [elem.value]
        yield from (str(v) for v in values)


def _text(value: str | int | list[str]) -> str:
    if isinstance(value, list):
        return "\\".join(value)
    return str(value)


@dataclass(slots=True)
class Match:
    """The response identifier of one match, as ``(tag, VR, value)`` elements."""

    elements: list[tuple[int, str, Value]] = field(default_factory=list)

    def add(self, tag: int, vr: str, value: Value) -> None:
        self.elements.append((tag, vr, value))

    def texts(self) -> Iterator[str]:
        """Every value that Specific Character Set applies to, to choose one."""
        for _, vr, value in self.elements:
            if isinstance(value, DataElement):
                yield from text_values(value)
            elif vr in _TEXT_VRS and value is not None:
                yield _text(value)

    def dataset(self) -> Dataset:
        """The match as a pydicom Dataset."""
        ds = Dataset()
        for tag, vr, value in self.elements:
            ds[tag] = _pydicom_element(tag, vr, value)
        return ds

    def encode(self, transfer_syntax: str, charset: str | None = None) -> bytes:
        """The identifier's bytes in an uncompressed little endian ``transfer_syntax``.

        ``charset`` (the Specific Character Set value, backslash-separated) is
        written as (0008,0005) and used for the text of the values.
        """
        implicit = transfer_syntax == IMPLICIT_VR_LITTLE_ENDIAN
        elements = sorted(self.elements, key=lambda e: e[0])
        if charset:
            elements.insert(0, (0x00080005, "CS", charset))
        terms = charset.split("\\") if charset else ["ISO_IR 6"]
        codec = python_encoding.get(terms[0]) if len(terms) == 1 else None
        parts = []
        for tag, vr, value in elements:
            fast = None if codec is None else _encode(tag, vr, value, implicit, codec)
            parts.append(fast if fast is not None else _slow(tag, vr, value, implicit, terms))
        return b"".join(parts)


def _encode(tag: int, vr: str, value: Value, implicit: bool, codec: str) -> bytes | None:
    """One element written directly, or None when pydicom must write it."""
    if isinstance(value, DataElement):
        return None
    try:
        raw = (
            b"" if value is None else _text(value).encode(codec if vr in _CHARSET_VRS else "ascii")
        )
    except UnicodeError:
        return None
    if len(raw) % 2:
        raw += b"\0" if vr == "UI" else b" "
    group, elem = tag >> 16, tag & 0xFFFF
    if implicit:
        return _IMPLICIT.pack(group, elem, len(raw)) + raw
    if vr in _LONG_VRS:
        return _EXPLICIT_LONG.pack(group, elem, vr.encode("ascii"), len(raw)) + raw
    if len(raw) > 0xFFFF:
        return None
    return _EXPLICIT_SHORT.pack(group, elem, vr.encode("ascii"), len(raw)) + raw


def _pydicom_element(tag: int, vr: str, value: Value) -> DataElement:
    if isinstance(value, DataElement):
        return value
    if value is None:
        return DataElement(tag, vr, [] if vr == "SQ" else None, validation_mode=_IGNORE)
    return DataElement(tag, vr, value, validation_mode=_IGNORE)


def _slow(tag: int, vr: str, value: Value, implicit: bool, terms: list[str]) -> bytes:
    """One element written by pydicom, with the identifier's character set."""
    ds = Dataset()
    ds[tag] = _pydicom_element(tag, vr, value)
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, implicit
    write_dataset(fp, ds, parent_encoding=terms)
    return fp.getvalue()
