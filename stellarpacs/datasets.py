"""Data sets on the wire without file meta, with pydicom (PS3.5 7, 10; PS3.7 6.3.1).

The one place where the services and the clients encode and parse
identifiers, event information and transcoded data sets.

A DIMSE data set has no file meta: its encoding is the transfer syntax of
the presentation context it travels on.  Only uncompressed syntaxes carry
identifiers, so reading and writing them needs no codec plugins.
"""

from __future__ import annotations

from io import BytesIO

from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.uid import UID

from stellarpacs.errors import DIMSEError

__all__ = ["decode_dataset", "encode_dataset"]


def decode_dataset(data: bytes, transfer_syntax: str) -> Dataset:
    """Parse ``data`` in ``transfer_syntax``; DIMSEError 0xC000 when it cannot be read."""
    syntax = UID(transfer_syntax)
    try:
        return read_dataset(BytesIO(data), syntax.is_implicit_VR, syntax.is_little_endian)
    except Exception as error:  # pydicom raises many kinds on malformed input
        raise DIMSEError(0xC000, f"identifier cannot be parsed: {error}") from error


def encode_dataset(ds: Dataset, transfer_syntax: str) -> bytes:
    """Encode ``ds`` in an uncompressed ``transfer_syntax`` without file meta."""
    syntax = UID(transfer_syntax)
    buffer = DicomBytesIO()
    buffer.is_implicit_VR = syntax.is_implicit_VR
    buffer.is_little_endian = syntax.is_little_endian
    write_dataset(buffer, ds)
    return buffer.getvalue()
