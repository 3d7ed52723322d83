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
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from pydicom import dcmread
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileDataset
from pydicom.filereader import read_dataset, read_file_meta_info
from pydicom.multival import MultiValue
from pydicom.tag import Tag
from pydicom.uid import PrivateTransferSyntaxes

from stellarpacs.errors import DIMSEError

__all__ = [
    "CANNOT_UNDERSTAND",
    "DirSync",
    "FileMeta",
    "HeaderSummary",
    "Spares",
    "TempFile",
    "UnreadableDataSet",
    "clean_tmp",
    "encode_file_meta",
    "fsync_dir",
    "header_uids",
    "install",
    "open_dataset",
    "open_received",
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
        path, fd = _new_file(tmp_dir)
        return cls._opened(path, fd, header)

    @classmethod
    def adopt(cls, spare: tuple[Path, int], tmp_dir: Path, header: bytes) -> TempFile:
        """Like ``create``, from a spare made by :class:`Spares`: one rename, no new inode."""
        spare_path, fd = spare
        path = tmp_dir / spare_path.name
        try:
            os.rename(spare_path, path)
        except BaseException:
            os.close(fd)
            remove_quietly(spare_path)
            raise
        return cls._opened(path, fd, header)

    @classmethod
    def _opened(cls, path: Path, fd: int, header: bytes) -> TempFile:
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


def _new_file(directory: Path) -> tuple[Path, int]:
    """Blocking: a new empty file with a random name, opened for writing."""
    path = directory / f"rx-{secrets.token_hex(12)}.part"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    return path, os.open(path, flags, 0o666)


class Spares:
    """Empty files made ahead of need, so that a C-STORE's temporary file costs no inode.

    Creating a file allocates an inode, which on our ext4 VM takes 0.05 to 0.4
    ms of kernel time; ``begin()`` runs on the event loop in the path of every
    C-STORE. ``fill()`` creates the files in a worker thread, ``take()`` hands
    one out (``TempFile.adopt`` renames it into ``tmp/``). They live in their
    own folder because ``tmp/`` holds only transfers; any left by a crash are
    removed by :func:`clean_tmp` at start-up. Thread-safe: a deque's append and
    popleft are atomic.
    """

    def __init__(self, directory: Path, *, keep: int) -> None:
        self.directory = directory
        self.keep = keep
        self._ready: deque[tuple[Path, int]] = deque()

    @property
    def low(self) -> bool:
        """Half or fewer are ready: time to ``fill()`` (in batches, to hand off less often)."""
        return len(self._ready) <= self.keep // 2

    def take(self) -> tuple[Path, int] | None:
        """A spare (path, open descriptor), or None when none is ready."""
        try:
            return self._ready.popleft()
        except IndexError:
            return None

    def fill(self) -> None:
        """Blocking: create spares until ``keep`` are ready."""
        while len(self._ready) < self.keep:
            self._ready.append(_new_file(self.directory))

    def drain(self) -> None:
        """Blocking: close and remove the spares not taken."""
        while (spare := self.take()) is not None:
            os.close(spare[1])
            remove_quietly(spare[0])


def remove_quietly(path: Path) -> None:
    """Remove ``path``; a file that is already gone, or cannot go, is only logged."""
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("cannot remove %s: %s", path, exc)


def clean_tmp(tmp_dir: Path) -> int:
    """Blocking: remove every leftover of an interrupted transfer (or spare); return how many."""
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


class _Flush:
    """Group commit state of one directory: renames counted, renames known durable."""

    __slots__ = ("done", "lock", "requested")

    def __init__(self) -> None:
        self.lock = threading.Lock()  # one fsync of the directory at a time
        self.requested = 0
        self.done = 0


class DirSync:
    """Creates directories below a base and makes their entries durable.

    A directory created by a concurrent commit may not be fsynced yet when another
    commit finds it; so a level is trusted only after *this* object fsynced its
    parent. ``sync_entries`` is a group commit: concurrent stores renaming into one
    series folder share its fsyncs. The memory is bounded: forgetting only costs a
    redundant fsync.
    """

    _LIMIT = 4096

    def __init__(self, base: Path, *, fsync: bool) -> None:
        self.base = base
        self.fsync = fsync
        self._durable: set[Path] = set()
        self._flushes: dict[Path, _Flush] = {}
        self._mutex = threading.Lock()

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

    def sync_entries(self, directory: Path) -> None:
        """Blocking: every entry renamed into ``directory`` before this call is durable.

        Each caller takes a ticket after its rename; an fsync that began after
        the ticket was taken covers that rename, so a caller that finds one
        done (it waited for the fsync in progress) returns without its own.
        """
        if not self.fsync:
            return
        with self._mutex:
            flush = self._flushes.get(directory)
            if flush is None:
                if len(self._flushes) >= self._LIMIT:
                    self._flushes.clear()
                flush = self._flushes[directory] = _Flush()
            flush.requested += 1
            ticket = flush.requested
        with flush.lock:
            if flush.done >= ticket:
                return
            with self._mutex:
                covered = flush.requested
            fsync_dir(directory)
            flush.done = covered


def install(src: Path, dest: Path, dirs: DirSync) -> None:
    """Blocking: atomically move a complete file to ``dest`` and make the move durable.

    ``os.replace`` overwrites a file already there; the caller has made sure that
    such a file is an unacknowledged orphan of a crash, not an instance we know.
    If the move cannot be made durable, the moved file is removed again (no index
    row points at it), so that a failure leaves nothing in the tree.
    """
    dirs.ensure(dest.parent)
    os.replace(src, dest)
    try:
        dirs.sync_entries(dest.parent)
    except BaseException:
        remove_quietly(dest)
        raise


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
    return _checked(ds, size)


# Data set encodings (implicit VR, little endian) other than Explicit VR Little Endian,
# which every other syntax uses (PS3.5 A.1-A.4); as pydicom's dcmread chooses them
_ENCODINGS = {"1.2.840.10008.1.2": (True, True), "1.2.840.10008.1.2.2": (False, False)}
_DEFLATED = "1.2.840.10008.1.2.1.99"  # PS3.5 A.5: the data set itself is deflated


def open_received(path: Path, *, offset: int, transfer_syntax_uid: str) -> Dataset:
    """Blocking: :func:`open_dataset` of a file whose meta we wrote ourselves.

    The data set starts at ``offset`` in ``transfer_syntax_uid``, so the
    preamble and meta are not parsed again; the result is the one
    ``open_dataset`` gives, for about a third less CPU. A deflated data set,
    or a syntax pydicom registers as private, goes through ``open_dataset``.
    """
    if transfer_syntax_uid == _DEFLATED or transfer_syntax_uid in PrivateTransferSyntaxes:
        return open_dataset(path)
    implicit, little = _ENCODINGS.get(transfer_syntax_uid, (False, True))
    with _unreadable_as("data set cannot be parsed"):
        size = path.stat().st_size
        with path.open("rb") as fp:
            fp.seek(offset)
            dataset = read_dataset(
                fp, implicit, little, stop_when=_at_pixels, defer_size=_DEFER_SIZE
            )
        ds = FileDataset(str(path), dataset, None, None, implicit, little)
        ds.set_original_encoding(implicit, little, dataset.original_character_set)
    return _checked(ds, size)


def _at_pixels(tag: int, vr: str | None, length: int) -> bool:
    return tag in _PIXEL_TAGS


def _checked(ds: Dataset, size: int) -> Dataset:
    """``ds`` unless it holds no element or one that runs past the end of the file."""
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
    # _text joins multiple values: a hostile UID with a backslash is one value to us
    return FileMeta(
        sop_class_uid=_text(meta, "MediaStorageSOPClassUID"),
        sop_instance_uid=_text(meta, "MediaStorageSOPInstanceUID"),
        transfer_syntax_uid=_text(meta, "TransferSyntaxUID"),
        source_ae=_text(meta, "SourceApplicationEntityTitle").strip(),
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
_CHARSET_TAG = 0x00080005


@dataclass(frozen=True, slots=True)
class _Converted:
    """One top-level element as the index sees it: its DICOM JSON entry and its value.

    ``json`` is None when the element is left out of the header JSON, ``value``
    when it is absent, unreadable or too large to index.
    """

    json: dict[str, Any] | None
    value: Any


_NOTHING = _Converted(None, None)


class _Memo:
    """Conversions of element values already seen, so that repeats cost a dict look-up.

    Most of a header repeats from one instance of a series to the next (class,
    study and series attributes, image geometry), and pydicom's conversion and
    JSON rendering of an element are the bulk of the CPU a store costs. An
    element's conversion depends only on its tag, its VR, its bytes, their
    byte order and the Specific Character Set in force, which together form
    the key; so a hit returns exactly what pydicom would. Only small values of
    a VR known without looking elsewhere are kept (no sequence, no UN, no
    ambiguous or private VR looked up from the dictionary). Bounded: when full
    it is emptied, which only costs conversions. The values are shared between
    data sets and must never be mutated.
    """

    _LIMIT = 4096
    _VALUE_LIMIT = 256

    def __init__(self) -> None:
        self._entries: dict[tuple[object, ...], _Converted] = {}

    def key(self, raw: RawDataElement, charset: object) -> tuple[object, ...] | None:
        value = raw.value
        if value is None or len(value) > self._VALUE_LIMIT:
            return None
        vr = raw.VR if raw.VR is not None else _dictionary_vr(raw.tag)
        if vr is None or vr in ("SQ", "UN"):
            return None
        return (int(raw.tag), vr, raw.is_little_endian, charset, bytes(value))

    def get(self, key: tuple[object, ...]) -> _Converted | None:
        return self._entries.get(key)

    def put(self, key: tuple[object, ...], converted: _Converted) -> None:
        if len(self._entries) >= self._LIMIT:
            self._entries.clear()
        self._entries[key] = converted


def _dictionary_vr(tag: int) -> str | None:
    """The VR of an implicit-VR public element when the dictionary alone decides it."""
    if tag >> 16 & 1 or tag & 0xFFFF == 0:  # private, or a group length
        return None
    try:
        vr = str(dictionary_VR(tag))
    except KeyError:
        return None
    return None if " or " in vr else vr


_MEMO = _Memo()  # one per process: CPython's GIL makes each dict operation atomic


def _charset_of(ds: Dataset) -> object:
    """What identifies the top level's Specific Character Set: its bytes as received."""
    raw = ds.get_item(_CHARSET_TAG, keep_deferred=True)
    if raw is None:
        return None
    if isinstance(raw, RawDataElement):
        return None if raw.value is None else bytes(raw.value)
    return repr(raw.value)


def _top_element(ds: Dataset, tag: int, charset: object) -> _Converted:
    """A top-level element converted once per distinct value (see :class:`_Memo`)."""
    try:
        raw = ds.get_item(tag, keep_deferred=True)
    except Exception:
        return _NOTHING
    if raw is None:
        return _NOTHING
    key = None
    if isinstance(raw, RawDataElement):
        if _is_large(raw):
            return _NOTHING
        key = _MEMO.key(raw, charset)
        if key is not None and (hit := _MEMO.get(key)) is not None:
            return hit
    converted = _convert(ds, tag)
    if key is not None and converted.value is not None:
        _MEMO.put(key, converted)
    return converted


def _convert(ds: Dataset, tag: int) -> _Converted:
    try:
        elem = ds[tag]
        value = elem.value
    except Exception as exc:
        log.debug("left %08X out of the index: %s", tag, exc)
        return _NOTHING
    try:
        return _Converted(_json_entry(elem), value)
    except Exception as exc:
        log.debug("left %08X out of the indexed header: %s", tag, exc)
        return _Converted(None, value)


def _json_entry(elem: Any) -> dict[str, Any]:
    if elem.VR == "SQ":
        return {"vr": "SQ", "Value": [_json_of(item) for item in elem.value]}
    return dict(elem.to_json_dict(None, _INLINE_MAX))


def _value(ds: Dataset, keyword: str) -> Any:
    """The value of a top-level attribute, None when absent, unreadable or absurdly long."""
    tag = _KEYWORD_TAGS.get(keyword) or tag_for_keyword(keyword)
    return None if tag is None else _top_element(ds, tag, _charset_of(ds)).value


def _text(ds: Dataset, keyword: str) -> str:
    return _as_text(_value(ds, keyword))


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(str(v) for v in value)
    return str(value)


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
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
    """DICOM JSON (PS3.18 F.2) of a sequence item, without large values.

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
            out[f"{tag:08X}"] = _json_entry(ds[tag])
        except Exception as exc:
            log.debug("left %s out of the indexed header: %s", tag, exc)
    return out


# HeaderSummary field -> the attribute it holds (PS3.4 C.6.1.1 keys); two are numbers (IS)
_SUMMARY_KEYWORDS = {
    "patient_name": "PatientName",
    "patient_birth_date": "PatientBirthDate",
    "patient_sex": "PatientSex",
    "study_date": "StudyDate",
    "study_time": "StudyTime",
    "accession_number": "AccessionNumber",
    "study_id": "StudyID",
    "study_description": "StudyDescription",
    "referring_physician_name": "ReferringPhysicianName",
    "modality": "Modality",
    "series_number": "SeriesNumber",
    "series_description": "SeriesDescription",
    "body_part_examined": "BodyPartExamined",
    "instance_number": "InstanceNumber",
    "specific_character_set": "SpecificCharacterSet",
}
_SUMMARY_INT = frozenset({"series_number", "instance_number"})
_KEYWORD_TAGS: dict[str, int] = {
    keyword: int(Tag(keyword))
    for keyword in (
        *_SUMMARY_KEYWORDS.values(),
        "PatientID",
        "StudyInstanceUID",
        "SeriesInstanceUID",
    )
}


def summarize(ds: Dataset) -> HeaderSummary:
    """The index's view of a header (PS3.4 C.6.1.1 keys); nothing here is validated.

    One pass over the top-level elements gives both the key columns and the
    JSON; each element is converted at most once, and not at all when the
    same value was converted before (see :class:`_Memo`).
    """
    charset = _charset_of(ds)
    values: dict[int, Any] = {}
    header: dict[str, Any] = {}
    for tag in ds.keys():  # noqa: SIM118 (iterating a Dataset converts every element)
        if tag in _PIXEL_TAGS:
            continue
        converted = _top_element(ds, tag, charset)
        values[int(tag)] = converted.value
        if converted.json is not None:
            header[f"{tag:08X}"] = converted.json
    fields: dict[str, Any] = {}
    for field, keyword in _SUMMARY_KEYWORDS.items():
        value = values.get(_KEYWORD_TAGS[keyword])
        fields[field] = _as_int(value) if field in _SUMMARY_INT else _as_text(value)
    return HeaderSummary(
        **fields, header_json=json.dumps(header, separators=(",", ":"), default=str)
    )


def header_uids(ds: Dataset) -> tuple[str, str, str]:
    """Patient ID, Study and Series Instance UIDs of a header; empty when missing."""
    return (
        _text(ds, "PatientID"),
        _text(ds, "StudyInstanceUID"),
        _text(ds, "SeriesInstanceUID"),
    )
