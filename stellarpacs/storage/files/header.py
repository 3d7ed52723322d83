"""Reading a stored header back, and what the index keeps of it.

:func:`open_dataset` parses a PS3.10 file up to its pixel data;
:func:`open_received` does the same for a file we wrote ourselves, starting at
the data set (its meta is known). :func:`read_meta` reads group 0002 alone
(PS3.10 7.1, with :mod:`stellarpacs.part10`). :func:`summarize` turns a header
into the index's key columns (PS3.4 C.6.1.1) and its DICOM JSON (PS3.18 F.2),
converting each repeated element value only once (see :class:`_Memo`).
Everything here is blocking and runs in a worker thread, once per instance;
writing files is :mod:`durable`.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileDataset
from pydicom.filereader import read_dataset
from pydicom.multival import MultiValue
from pydicom.tag import Tag
from pydicom.uid import PrivateTransferSyntaxes

from stellarpacs.fileio import read_file_meta
from stellarpacs.logtext import printable
from stellarpacs.part10 import FileMeta, Part10Error
from stellarpacs.storage.errors import MismatchedDataSet, UnreadableDataSet
from stellarpacs.storage.files.inflate import DEFAULT_MAX_INFLATED, InflatingReader
from stellarpacs.storage.files.layout import instance_relpath
from stellarpacs.storage.records import HeaderSummary, InstanceRecord, InstanceRow

__all__ = [
    "header_uids",
    "open_dataset",
    "open_received",
    "read_meta",
    "row_from_dataset",
    "summarize",
]

log = logging.getLogger(__name__)

_UNDEFINED = 0xFFFFFFFF
_DEFER_SIZE = 1024  # values above this stay on disk until asked for


# -- reading back ------------------------------------------------------------------------------


@contextlib.contextmanager
def _unreadable_as(what: str) -> Iterator[None]:
    """pydicom's parse errors become UnreadableDataSet; an OSError with an errno is real I/O."""
    try:
        yield
    except UnreadableDataSet:
        raise
    except OSError as exc:
        if exc.errno is not None:
            raise
        raise UnreadableDataSet(f"{what}: {exc}") from exc
    except Exception as exc:
        raise UnreadableDataSet(f"{what}: {exc}") from exc


def open_dataset(path: Path, *, max_inflated: int = DEFAULT_MAX_INFLATED) -> Dataset:
    """Blocking: the data set of a PS3.10 file, header only, pixel data never loaded.

    pydicom is lenient; on top of it we refuse what cannot be a data set at all:
    no element, or a top-level element whose value runs past the end of the file.
    Values above 1 KB stay on disk until read, so the file must still be there
    when the caller looks at them. An OSError with an errno is a real I/O error
    and propagates as such. A deflated data set is inflated only up to its
    Pixel Data and at most ``max_inflated`` bytes (see :mod:`.inflate`).
    """
    with contextlib.suppress(Part10Error):
        meta, offset = read_file_meta(path)
        if meta.transfer_syntax_uid == _DEFLATED:
            return _open_deflated(path, offset, max_inflated)
    with _unreadable_as("data set cannot be parsed"):
        size = path.stat().st_size
        ds = dcmread(path, stop_before_pixels=True, defer_size=_DEFER_SIZE)
    return _checked(ds, size)


# Data set encodings (implicit VR, little endian) other than Explicit VR Little Endian,
# which every other syntax uses (PS3.5 A.1-A.4); as pydicom's dcmread chooses them
_ENCODINGS = {"1.2.840.10008.1.2": (True, True), "1.2.840.10008.1.2.2": (False, False)}
_DEFLATED = "1.2.840.10008.1.2.1.99"  # PS3.5 A.5: the data set itself is deflated
_NO_FILE = ""  # the name of an inflated header's "file": its deferred values cannot be read


def open_received(
    path: Path,
    *,
    offset: int,
    transfer_syntax_uid: str,
    max_inflated: int = DEFAULT_MAX_INFLATED,
) -> Dataset:
    """Blocking: :func:`open_dataset` of a file whose meta we wrote ourselves.

    The data set starts at ``offset`` in ``transfer_syntax_uid``, so the
    preamble and meta are not parsed again; the result is the one
    ``open_dataset`` gives, for about a third less CPU. A deflated data set is
    inflated as read, up to ``max_inflated`` bytes (:class:`InflationLimit`
    beyond); a syntax pydicom registers as private goes through ``open_dataset``.
    """
    if transfer_syntax_uid == _DEFLATED:
        return _open_deflated(path, offset, max_inflated)
    if transfer_syntax_uid in PrivateTransferSyntaxes:
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


def _open_deflated(path: Path, offset: int, max_inflated: int) -> Dataset:
    """The header of a deflated data set (PS3.5 A.5), inflated only as far as it goes.

    Values over :data:`_SQ_MAX` (more than the index ever keeps, see
    :func:`_is_large`) are inflated and dropped, not held: pydicom defers them,
    and with no file to read them back from they stay out of the index.
    """
    with _unreadable_as("deflated data set cannot be parsed"), path.open("rb") as fp:
        fp.seek(offset)
        reader = InflatingReader(fp, max_inflated)
        dataset = read_dataset(
            reader,  # type: ignore[arg-type]  # read, seek and tell are what pydicom uses
            False,
            True,
            stop_when=_at_pixels,
            defer_size=_SQ_MAX,
        )
        size = reader.size
    ds = FileDataset(_NO_FILE, dataset, None, None, False, True)
    ds.set_original_encoding(False, True, dataset.original_character_set)
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
    """Blocking: the file meta of a stored file (PS3.10 7.1), without reading the data set.

    Raises :class:`UnreadableDataSet` when the file has no PS3.10 header; an
    OSError when it cannot be read.
    """
    try:
        meta, _ = read_file_meta(path)
    except Part10Error as exc:
        raise UnreadableDataSet(f"no PS3.10 file meta: {exc}") from exc
    return meta


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
        log.debug("left %08X out of the index: %s", tag, printable(exc))
        return _NOTHING
    try:
        return _Converted(_json_entry(elem), value)
    except Exception as exc:
        log.debug("left %08X out of the indexed header: %s", tag, printable(exc))
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
            log.debug("left %s out of the indexed header: %s", tag, printable(exc))
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


_SOP_UIDS = (
    ("class", "SOPClassUID", "SOP Class UID (0008,0016)"),
    ("instance", "SOPInstanceUID", "SOP Instance UID (0008,0018)"),
)


def check_sop_uids(ds: Dataset, sop_class_uid: str, sop_instance_uid: str) -> None:
    """Refuse a data set naming other SOP UIDs than its C-STORE command (PS3.4 B.2.3).

    Raises :class:`MismatchedDataSet`.  An absent or empty value is no mismatch:
    nothing else of the data set is validated either.
    """
    expected = {"class": sop_class_uid, "instance": sop_instance_uid}
    for which, keyword, name in _SOP_UIDS:
        found = _text(ds, keyword).rstrip("\0 ")
        if found and found != expected[which]:
            raise MismatchedDataSet(which, f"{name} differs from the command's")


def row_from_dataset(
    ds: Dataset,
    *,
    sop_instance_uid: str,
    sop_class_uid: str,
    transfer_syntax_uid: str,
    size: int,
    received_at: str,
    calling_ae: str,
    path: str | None = None,
) -> InstanceRow:
    """The row of one instance from its header; ``path=None``: where the archive puts it.

    The SOP UIDs and transfer syntax come from the caller (the C-STORE command,
    or a file's meta), never from the data set, which is not validated.
    """
    patient_id, study_uid, series_uid = header_uids(ds)
    if path is None:
        path = instance_relpath(study_uid, series_uid, sop_instance_uid)
    record = InstanceRecord(
        sop_instance_uid=sop_instance_uid,
        sop_class_uid=sop_class_uid,
        transfer_syntax_uid=transfer_syntax_uid,
        patient_id=patient_id,
        study_instance_uid=study_uid,
        series_instance_uid=series_uid,
        path=path,
        size=size,
        received_at=received_at,
        calling_ae=calling_ae,
    )
    return InstanceRow(record, summarize(ds))
