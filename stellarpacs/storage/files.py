"""PS3.10 files: the meta header, the temporary file, the atomic move, the header read back.

The data set is written exactly as the peer sent it; this module only puts a
PS3.10 preamble and File Meta Information (PS3.10 7.1) in front of it. Writes
to the temporary file are plain buffered writes (cheap enough for the event
loop); everything that can block for milliseconds (fsync, rename, directory
fsync, reading a header back) is a separate blocking function that the caller
runs in a worker thread, once per instance.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from pydicom import dcmread
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.filereader import read_file_meta_info
from pydicom.multival import MultiValue

from stellarpacs.errors import DIMSEError

__all__ = [
    "CANNOT_UNDERSTAND",
    "DirSync",
    "FileMeta",
    "HeaderSummary",
    "TempFile",
    "UnreadableDataSet",
    "clean_tmp",
    "encode_file_meta",
    "fsync_dir",
    "header_uids",
    "install",
    "open_dataset",
    "read_meta",
    "remove_quietly",
    "summarize",
]

log = logging.getLogger(__name__)

CANNOT_UNDERSTAND = 0xC000  # PS3.4 Table B.2-1, "Error: Cannot understand"
PREAMBLE = bytes(128)  # PS3.10 7.1: 128 zero bytes, then "DICM"
PREFIX = b"DICM"
_UNDEFINED = 0xFFFFFFFF
_DEFER_SIZE = 1024  # values above this stay on disk until asked for
_WRITE_BUFFER = 256 * 1024


class UnreadableDataSet(DIMSEError):
    """The bytes are not a data set pydicom can walk; answered with C000 (PS3.4 B.2.3)."""

    def __init__(self, message: str) -> None:
        super().__init__(CANNOT_UNDERSTAND, message)


@dataclass(frozen=True, slots=True)
class FileMeta:
    """What the group 0002 of a stored file says about it (PS3.10 Table 7.1-1)."""

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    source_ae: str


# -- File Meta Information, Explicit VR Little Endian (PS3.10 7.1, PS3.5 7.1.2) ---------------


def _element(elem: int, vr: bytes, value: bytes) -> bytes:
    """One group 0002 element; OB uses the 4-byte length form (PS3.5 Table 7.1-1)."""
    if vr == b"OB":
        return struct.pack("<HH2sHI", 0x0002, elem, vr, 0, len(value)) + value
    if len(value) > 0xFFFE:
        raise UnreadableDataSet(f"(0002,{elem:04X}) is too long for the file meta")
    return struct.pack("<HH2sH", 0x0002, elem, vr, len(value)) + value


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

    UIDs are padded with NUL, text with a space (PS3.5 6.2). Values come from the
    DIMSE command and the association, not from the data set (PS3.10 7.1).
    """
    body = b"".join(
        (
            _element(0x0001, b"OB", b"\x00\x01"),
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


# -- the temporary file ------------------------------------------------------------------------


class TempFile:
    """A file being received under ``tmp/``: buffered writes, one fsync at the end."""

    def __init__(self, path: Path, fp: BinaryIO, header_size: int) -> None:
        self.path = path
        self._fp = fp
        self.header_size = header_size
        self.size = 0

    @classmethod
    def create(cls, tmp_dir: Path, header: bytes) -> TempFile:
        """Open a fresh temporary file and write ``header`` (preamble + meta) into it.

        Created with mode 0666 minus the umask (not mkstemp's 0600): the stored
        file is meant to be readable like any other local file (1.3 statement).
        """
        path = tmp_dir / f"rx-{secrets.token_hex(12)}.part"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        try:
            fp = os.fdopen(fd, "wb", buffering=_WRITE_BUFFER)
        except BaseException:
            os.close(fd)
            remove_quietly(path)
            raise
        temp = cls(path, fp, len(header))
        try:
            temp.write(header)
        except BaseException:
            temp.abandon()
            raise
        return temp

    @property
    def data_size(self) -> int:
        """Bytes of data set written after the meta header."""
        return self.size - self.header_size

    def write(self, data: bytes) -> None:
        """Buffered write into the page cache; never an fsync."""
        self._fp.write(data)
        self.size += len(data)

    def finish(self, *, fsync: bool) -> None:
        """Blocking: flush, fsync (when asked) and close."""
        self._fp.flush()
        if fsync:
            os.fsync(self._fp.fileno())
        self._fp.close()

    def abandon(self) -> None:
        """Blocking: close without caring about unwritten bytes, then remove the file."""
        with contextlib.suppress(OSError):
            self._fp.close()
        remove_quietly(self.path)


def remove_quietly(path: Path) -> None:
    """Remove ``path``; a file that is already gone, or cannot go, is only logged."""
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("cannot remove %s: %s", path, exc)


def clean_tmp(tmp_dir: Path) -> int:
    """Blocking: remove every leftover of an interrupted transfer; return how many."""
    removed = 0
    for entry in tmp_dir.iterdir():
        if entry.is_file() or entry.is_symlink():
            remove_quietly(entry)
            removed += 1
    return removed


# -- moving into place -------------------------------------------------------------------------


def fsync_dir(path: Path) -> None:
    """Make a directory's entries durable (a rename is durable only after this)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DirSync:
    """Creates directories below a base and makes their entries durable, once each.

    A directory created by a concurrent commit may not be fsynced yet when another
    commit finds it; so a level is trusted only after *this* object fsynced its
    parent. The memory is bounded: forgetting only costs a redundant fsync.
    """

    _LIMIT = 4096

    def __init__(self, base: Path, *, fsync: bool) -> None:
        self.base = base
        self.fsync = fsync
        self._durable: set[Path] = set()

    def ensure(self, directory: Path) -> None:
        """Blocking: ``directory`` (below ``base``) exists and its entry is durable."""
        if directory in self._durable or directory == self.base:
            return
        self.ensure(directory.parent)
        with contextlib.suppress(FileExistsError):
            directory.mkdir()
        if self.fsync:
            fsync_dir(directory.parent)
        if len(self._durable) >= self._LIMIT:
            self._durable.clear()
        self._durable.add(directory)


def install(src: Path, dest: Path, dirs: DirSync) -> None:
    """Blocking: atomically move a complete file to ``dest`` and make the move durable.

    ``os.replace`` overwrites a file already there; the caller has made sure that
    such a file is an unacknowledged orphan of a crash, not an instance we know.
    """
    dirs.ensure(dest.parent)
    os.replace(src, dest)
    if dirs.fsync:
        fsync_dir(dest.parent)


# -- reading back ------------------------------------------------------------------------------


@contextlib.contextmanager
def _unreadable_as(what: str) -> Iterator[None]:
    """pydicom's parse errors become UnreadableDataSet; an OSError with an errno is real I/O."""
    try:
        yield
    except OSError as exc:
        if exc.errno is not None:
            raise
        raise UnreadableDataSet(f"{what}: {exc}") from exc
    except Exception as exc:
        raise UnreadableDataSet(f"{what}: {exc}") from exc


def open_dataset(path: Path) -> Dataset:
    """Blocking: the data set of a PS3.10 file, header only, pixel data never loaded.

    pydicom is lenient; on top of it we refuse what cannot be a data set at all:
    no element, or a top-level element whose value runs past the end of the file.
    Values above 1 KB stay on disk until read, so the file must still be there
    when the caller looks at them. An OSError with an errno is a real I/O error
    and propagates as such.
    """
    with _unreadable_as("data set cannot be parsed"):
        size = path.stat().st_size
        ds = dcmread(path, stop_before_pixels=True, defer_size=_DEFER_SIZE)
    if len(ds) == 0:
        raise UnreadableDataSet("no data element in the data set")
    for tag in ds.keys():  # noqa: SIM118 (iterating a Dataset converts every element)
        raw = ds.get_item(tag, keep_deferred=True)
        if not isinstance(raw, RawDataElement) or raw.length == _UNDEFINED:
            continue
        if raw.value_tell + raw.length > size:
            raise UnreadableDataSet(f"element {tag} runs past the end of the data set")
    return ds


def read_meta(path: Path) -> FileMeta:
    """Blocking: the file meta of a stored file (PS3.10 7.1), without reading the data set."""
    with _unreadable_as("no PS3.10 file meta"):
        meta = read_file_meta_info(path)
    return FileMeta(
        sop_class_uid=str(meta.get("MediaStorageSOPClassUID", "")),
        sop_instance_uid=str(meta.get("MediaStorageSOPInstanceUID", "")),
        transfer_syntax_uid=str(meta.get("TransferSyntaxUID", "")),
        source_ae=str(meta.get("SourceApplicationEntityTitle", "")).strip(),
    )


@dataclass(frozen=True, slots=True)
class HeaderSummary:
    """The attributes of one header that the index keeps as columns, plus the whole as JSON."""

    patient_name: str = ""
    patient_birth_date: str = ""
    patient_sex: str = ""
    study_date: str = ""
    study_time: str = ""
    accession_number: str = ""
    study_id: str = ""
    study_description: str = ""
    referring_physician_name: str = ""
    modality: str = ""
    series_number: int | None = None
    series_description: str = ""
    body_part_examined: str = ""
    instance_number: int | None = None
    specific_character_set: str = ""
    header_json: str = "{}"


# -- what the index keeps of a header -------------------------------------------------------

_BULK_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_INLINE_MAX = 1024  # bulk data above this is left out of the JSON
_VALUE_MAX = 64 * 1024  # so is any other value above this
_SQ_MAX = 1024 * 1024  # and a sequence above this
_PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})


def _value(ds: Dataset, keyword: str) -> Any:
    """The value of a top-level attribute, None when absent, unreadable or absurdly long."""
    tag = tag_for_keyword(keyword)
    if tag is None:
        return None
    try:
        raw = ds.get_item(tag, keep_deferred=True)
        if raw is None or (isinstance(raw, RawDataElement) and _is_large(raw)):
            return None
        return ds[tag].value
    except Exception:
        return None


def _text(ds: Dataset, keyword: str) -> str:
    value = _value(ds, keyword)
    if value is None:
        return ""
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(str(v) for v in value)
    return str(value)


def _int(ds: Dataset, keyword: str) -> int | None:
    try:
        return int(_value(ds, keyword))
    except (TypeError, ValueError):
        return None


def _is_large(raw: RawDataElement) -> bool:
    """Too large to index; decided from the element header, before reading the value."""
    vr = raw.VR
    if vr is None:
        try:
            vr = dictionary_VR(raw.tag)
        except KeyError:
            vr = "UN"
    if raw.length == _UNDEFINED:  # already in memory if it is a sequence
        return vr != "SQ"
    limit = _SQ_MAX if vr == "SQ" else _INLINE_MAX if vr in _BULK_VRS else _VALUE_MAX
    return bool(raw.length > limit)


def _json_of(ds: Dataset) -> dict[str, Any]:
    """DICOM JSON (PS3.18 F.2) of ``ds`` without pixel data or large values.

    Done element by element: one value pydicom cannot convert is left out, not
    the whole header.
    """
    out: dict[str, Any] = {}
    for tag in ds.keys():  # noqa: SIM118 (iterating a Dataset converts every element)
        if tag in _PIXEL_TAGS:
            continue
        try:
            raw = ds.get_item(tag, keep_deferred=True)
            if isinstance(raw, RawDataElement) and _is_large(raw):
                continue
            elem = ds[tag]
            if elem.VR == "SQ":
                out[f"{tag:08X}"] = {"vr": "SQ", "Value": [_json_of(item) for item in elem.value]}
            else:
                out[f"{tag:08X}"] = elem.to_json_dict(None, _INLINE_MAX)
        except Exception as exc:
            log.debug("left %s out of the indexed header: %s", tag, exc)
    return out


def summarize(ds: Dataset) -> HeaderSummary:
    """The index's view of a header (PS3.4 C.6.1.1 keys); nothing here is validated."""
    return HeaderSummary(
        patient_name=_text(ds, "PatientName"),
        patient_birth_date=_text(ds, "PatientBirthDate"),
        patient_sex=_text(ds, "PatientSex"),
        study_date=_text(ds, "StudyDate"),
        study_time=_text(ds, "StudyTime"),
        accession_number=_text(ds, "AccessionNumber"),
        study_id=_text(ds, "StudyID"),
        study_description=_text(ds, "StudyDescription"),
        referring_physician_name=_text(ds, "ReferringPhysicianName"),
        modality=_text(ds, "Modality"),
        series_number=_int(ds, "SeriesNumber"),
        series_description=_text(ds, "SeriesDescription"),
        body_part_examined=_text(ds, "BodyPartExamined"),
        instance_number=_int(ds, "InstanceNumber"),
        specific_character_set=_text(ds, "SpecificCharacterSet"),
        header_json=json.dumps(_json_of(ds), separators=(",", ":"), default=str),
    )


def header_uids(ds: Dataset) -> tuple[str, str, str]:
    """Patient ID, Study and Series Instance UIDs of a header; empty when missing."""
    return (
        _text(ds, "PatientID"),
        _text(ds, "StudyInstanceUID"),
        _text(ds, "SeriesInstanceUID"),
    )
