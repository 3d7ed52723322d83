"""Deflated data sets made on the fly (PS3.5 A.5), bombs included, never held whole.

A raw deflate stream (RFC 1951) of zeros inflates about 1000 to 1, so 1 GiB of
zeros deflates to about 1 MB; :func:`deflated` compresses chunk by chunk, so
neither the test nor the sender ever holds the inflated bytes.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Iterator

from pydicom.dataset import Dataset

from stellarpacs.datasets import encode_dataset
from stellarpacs.uids import EXPLICIT_VR_LITTLE_ENDIAN

__all__ = [
    "GIB",
    "MIB",
    "bomb",
    "deflated",
    "header_bytes",
    "pixel_data",
    "private_ob",
    "zeros",
]

MIB = 1024 * 1024
GIB = 1024 * MIB
CT = "1.2.840.10008.5.1.4.1.1.2"


def deflated(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """``chunks`` deflated (raw, no zlib header, PS3.5 A.5), as they come."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    for chunk in chunks:
        if out := compressor.compress(chunk):
            yield out
    yield compressor.flush()


def header_bytes(uid: str, patient_id: str = "BOMB001") -> bytes:
    """A small Explicit VR LE header with the keys the index keeps."""
    ds = Dataset()
    ds.SOPClassUID = CT
    ds.SOPInstanceUID = uid
    ds.PatientID = patient_id
    ds.PatientName = "Deflate^Bomb"
    ds.StudyInstanceUID = uid + ".1"
    ds.SeriesInstanceUID = uid + ".1.1"
    ds.Modality = "CT"
    ds.Rows, ds.Columns = 1, 1
    return encode_dataset(ds, EXPLICIT_VR_LITTLE_ENDIAN)


def zeros(total: int, chunk: int = MIB) -> Iterator[bytes]:
    block = bytes(chunk)
    for start in range(0, total, chunk):
        yield block if start + chunk <= total else block[: total - start]


def pixel_data(length: int) -> bytes:
    """The header of Pixel Data (7FE0,0010) OB of ``length`` bytes (PS3.5 7.1.2)."""
    return struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, length)


def private_ob(length: int) -> bytes:
    """A private creator, then the header of a private OB (0029,1001) of ``length``.

    ``length`` 0xFFFFFFFF makes it undefined: a reader has to look for a
    delimiter that never comes.
    """
    creator = struct.pack("<HH2sH", 0x0029, 0x0010, b"LO", 4) + b"BOMB"
    return creator + struct.pack("<HH2sHI", 0x0029, 0x1001, b"OB", 0, length)


def _piece(data: bytes, *, final: bool = False) -> bytes:
    """``data`` deflated on its own, ending byte-aligned with no reference to what follows.

    After a full flush the compressor's window is empty (RFC 1951 3.2.3, zlib's
    Z_FULL_FLUSH), so such pieces concatenate into one valid stream and the
    piece of 1 MiB of zeros can be sent again and again: compressing 1 GiB
    once per test would take longer than the test.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush(
        zlib.Z_FINISH if final else zlib.Z_FULL_FLUSH
    )


def bomb(uid: str, size: int, *, before_pixels: bool) -> Iterator[bytes]:
    """Deflated chunks of a data set holding ``size`` (a multiple of 1 MiB) zero bytes.

    In its Pixel Data (a valid, very compressible image) or, with
    ``before_pixels``, in a private element ahead of a short Pixel Data.
    """
    assert size % MIB == 0
    head = header_bytes(uid) + (private_ob(size) if before_pixels else pixel_data(size))
    yield _piece(head)
    block = _piece(bytes(MIB))
    for _ in range(size // MIB):
        yield block
    yield _piece(pixel_data(2) + b"\0\0" if before_pixels else b"", final=True)
