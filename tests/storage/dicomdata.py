"""Small data sets, encoded by pydicom in a given transfer syntax, PS3.10 files, a store helper."""

from __future__ import annotations

import io
import struct
from pathlib import Path

from pydicom import dcmwrite
from pydicom.dataset import Dataset

from stellarpacs.part10 import encode_file_meta
from stellarpacs.storage.archive import Archive
from stellarpacs.storage.records import StoreOutcome

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"

_ENCODING = {
    IMPLICIT_LE: (True, True),
    EXPLICIT_LE: (False, True),
    EXPLICIT_BE: (False, False),
    JPEG_BASELINE: (False, True),
}


def make_dataset(
    sop_uid: str = "1.2.3.4.5",
    *,
    study: str | None = "1.2.3.100",
    series: str | None = "1.2.3.100.1",
    patient_id: str | None = "P001",
    patient_name: str = "Doe^John",
    modality: str = "CT",
    pixel: bytes | None = None,
) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = CT_IMAGE
    ds.SOPInstanceUID = sop_uid
    ds.PatientName = patient_name
    if patient_id is not None:
        ds.PatientID = patient_id
    if study is not None:
        ds.StudyInstanceUID = study
    if series is not None:
        ds.SeriesInstanceUID = series
    ds.Modality = modality
    ds.StudyDate = "20240131"
    ds.AccessionNumber = "ACC1"
    ds.SeriesNumber = "3"
    ds.InstanceNumber = "7"
    if pixel is not None:
        ds.add_new(0x7FE00010, "OB", pixel)
    return ds


def encode(ds: Dataset, ts: str = EXPLICIT_LE) -> bytes:
    """The data set bytes alone (no preamble, no meta), as a peer would send them."""
    implicit, little = _ENCODING[ts]
    buf = io.BytesIO()
    dcmwrite(buf, ds, implicit_vr=implicit, little_endian=little, enforce_file_format=False)
    return buf.getvalue()


def implicit_element(tag: int, value: bytes) -> bytes:
    """One Implicit VR Little Endian element, built by hand (any bytes, even hostile)."""
    if len(value) % 2:
        value += b"\0"
    return struct.pack("<HHI", tag >> 16, tag & 0xFFFF, len(value)) + value


def file_meta(**overrides: str) -> bytes:
    """Preamble and group 0002 as the archive writes them; ``overrides`` change fields."""
    values = {
        "sop_class_uid": CT_IMAGE,
        "sop_instance_uid": "1.2.3.4",
        "transfer_syntax_uid": EXPLICIT_LE,
        "implementation_class_uid": "1.2.826.0.1.3680043.2.914",
        "implementation_version_name": "StellarPACS_1.3",
        "source_ae": "MODALITY1",
    }
    values.update(overrides)
    return encode_file_meta(**values)


def write_file(path: Path, header: bytes, data: bytes) -> Path:
    path.write_bytes(header + data)
    return path


_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT"})


def dataset_offset(raw: bytes) -> int:
    """Where the data set of a PS3.10 file starts: past preamble, DICM and group 0002.

    Walks the meta elements (always Explicit VR Little Endian, PS3.10 7.1) rather
    than trusting the group length, which some writers leave out.
    """
    pos = 132
    while struct.unpack_from("<H", raw, pos)[0] == 0x0002:
        vr = raw[pos + 4 : pos + 6]
        if vr in _LONG_VRS:
            pos += 12 + struct.unpack_from("<I", raw, pos + 8)[0]
        else:
            pos += 8 + struct.unpack_from("<H", raw, pos + 6)[0]
    return pos


def meta_fields(fm: Dataset) -> dict[str, object]:
    """The group 0002 attributes a stored file must carry (PS3.10 Table 7.1-1)."""
    keywords = (
        "FileMetaInformationVersion",
        "MediaStorageSOPClassUID",
        "MediaStorageSOPInstanceUID",
        "TransferSyntaxUID",
        "ImplementationClassUID",
        "ImplementationVersionName",
        "SourceApplicationEntityTitle",
    )
    return {k: fm.get(k) for k in keywords}


def expected_meta(sop_uid: str, ae: str, ts: str = EXPLICIT_LE) -> dict[str, object]:
    return {
        "FileMetaInformationVersion": b"\x00\x01",
        "MediaStorageSOPClassUID": CT_IMAGE,
        "MediaStorageSOPInstanceUID": sop_uid,
        "TransferSyntaxUID": ts,
        "ImplementationClassUID": "1.2.826.0.1.3680043.2.914",
        "ImplementationVersionName": "StellarPACS_1.3",
        "SourceApplicationEntityTitle": ae,
    }


async def store(
    archive: Archive,
    data: bytes,
    *,
    sop_uid: str,
    ts: str = EXPLICIT_LE,
    calling_ae: str = "STORESCU",
    fragment: int = 16_384,
) -> StoreOutcome:
    incoming = archive.begin(
        sop_class_uid=CT_IMAGE,
        sop_instance_uid=sop_uid,
        transfer_syntax_uid=ts,
        calling_ae=calling_ae,
    )
    for start in range(0, len(data), fragment):
        incoming.write(data[start : start + fragment])
    return await incoming.commit()
