"""PS3.10 header codec: round trips, agreement with pydicom, and a parser that never crashes."""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import asdict
from pathlib import Path

import pydicom.data
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom import dcmread
from pydicom.errors import InvalidDicomError

from stellarpacs.fileio import read_file_meta
from stellarpacs.part10 import (
    PREAMBLE,
    PREFIX,
    FileMeta,
    Part10Error,
    encode_file_meta,
    file_meta_reader,
    parse_file_meta,
)

CORPUS = sorted(
    p for p in (Path(pydicom.data.__file__).parent / "test_files").rglob("*") if p.is_file()
)
SYNTAXES = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.50")

uids = st.from_regex(r"[1-9][0-9]{0,8}(\.(0|[1-9][0-9]{0,8})){1,6}", fullmatch=True)
# AE and SH: printable ASCII without backslash; padding spaces are not significant
ae_titles = st.from_regex(r"([!-\[\]-~]([ !-\[\]-~]{0,14}[!-\[\]-~])?)?", fullmatch=True)
version_names = st.from_regex(r"([ -\[\]-~]{0,15}[!-\[\]-~])?", fullmatch=True)
metas = st.builds(
    FileMeta,
    sop_class_uid=uids,
    sop_instance_uid=uids,
    transfer_syntax_uid=st.sampled_from(SYNTAXES),
    implementation_class_uid=uids,
    implementation_version_name=version_names,
    source_ae=ae_titles,
)


def _pydicom_meta(data: bytes) -> FileMeta:
    """What pydicom reads from the same bytes, in our terms."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        meta = dcmread(io.BytesIO(data), stop_before_pixels=True).file_meta

    def text(keyword: str) -> str:
        value = meta.get(keyword, "")
        return "\\".join(map(str, value)) if isinstance(value, list) else str(value)

    return FileMeta(
        sop_class_uid=text("MediaStorageSOPClassUID"),
        sop_instance_uid=text("MediaStorageSOPInstanceUID"),
        transfer_syntax_uid=text("TransferSyntaxUID"),
        implementation_class_uid=text("ImplementationClassUID"),
        implementation_version_name=text("ImplementationVersionName"),
        source_ae=text("SourceApplicationEntityTitle"),
    )


def _byte_by_byte(data: bytes, *, preamble: bool = True) -> tuple[FileMeta, int]:
    """Drive the reader one byte per request, however many it asks for."""
    reader = file_meta_reader(preamble=preamble)
    try:
        next(reader)
        for index in range(len(data)):
            reader.send(data[index : index + 1])
        while True:
            reader.send(b"")
    except StopIteration as done:
        result: tuple[FileMeta, int] = done.value
        return result


def _data_set() -> bytes:
    """A small Explicit VR Little Endian data set to follow the meta (Patient ID)."""
    return struct.pack("<HH2sH", 0x0010, 0x0020, b"LO", 2) + b"P1"


# -- writing -----------------------------------------------------------------------------------


@settings(max_examples=300)
@given(metas)
def test_encode_then_parse_gives_the_meta_back(meta: FileMeta) -> None:
    header = encode_file_meta(**asdict(meta))
    assert parse_file_meta(header) == (meta, len(header))
    assert parse_file_meta(header + _data_set()) == (meta, len(header))


def test_header_layout_preamble_prefix_group_length() -> None:
    header = encode_file_meta(
        sop_class_uid="1.2.3",
        sop_instance_uid="1.2.3.4",
        transfer_syntax_uid=SYNTAXES[1],
        implementation_class_uid="1.2.826.0.1.3680043.2.914",
        implementation_version_name="StellarPACS_1.3",
        source_ae="",
    )
    assert header[:132] == PREAMBLE + PREFIX
    (group_length,) = struct.unpack("<I", header[140:144])
    assert group_length == len(header) - 144
    assert b"\x02\x00\x16\x00" not in header  # no Source AE Title when it is empty


def test_a_value_too_long_for_its_element_is_refused() -> None:
    with pytest.raises(Part10Error, match="too long"):
        encode_file_meta(
            sop_class_uid="1.2",
            sop_instance_uid="1" * 70_000,
            transfer_syntax_uid=SYNTAXES[0],
            implementation_class_uid="1.2",
            implementation_version_name="",
            source_ae="",
        )


# -- agreement with pydicom ------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(metas)
def test_parse_equals_pydicom_on_generated_files(meta: FileMeta) -> None:
    data = encode_file_meta(**asdict(meta)) + _data_set()
    assert parse_file_meta(data)[0] == _pydicom_meta(data) == meta


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_parse_equals_pydicom_on_the_corpus(path: Path) -> None:
    data = path.read_bytes()
    try:
        theirs: FileMeta | None = _pydicom_meta(data)
    except InvalidDicomError:
        theirs = None
    if theirs is None:
        with pytest.raises(Part10Error):
            parse_file_meta(data)
        return
    meta, offset = parse_file_meta(data)
    assert meta == theirs
    assert read_file_meta(path) == (meta, offset)
    # the data set starts where group 0002 ends
    assert offset == len(data) or struct.unpack_from("<H", data, offset)[0] != 0x0002


# -- hostile input ---------------------------------------------------------------------------


@settings(max_examples=500)
@given(st.binary(max_size=400), st.booleans())
def test_any_bytes_parse_or_raise_part10_error(data: bytes, preamble: bool) -> None:
    try:
        whole = parse_file_meta(data, preamble=preamble)
    except Part10Error:
        with pytest.raises(Part10Error):
            _byte_by_byte(data, preamble=preamble)
        return
    assert _byte_by_byte(data, preamble=preamble) == whole
    assert 0 <= whole[1] <= len(data)


@settings(max_examples=300)
@given(metas, st.data())
def test_a_cut_header_parses_what_is_whole_or_says_truncated(
    meta: FileMeta, data: st.DataObject
) -> None:
    header = encode_file_meta(**asdict(meta))
    cut = data.draw(st.integers(min_value=0, max_value=len(header) - 1))
    try:
        _, offset = parse_file_meta(header[:cut])
    except Part10Error as error:
        assert cut < 132 or "truncated" in str(error)
        return
    # only when the cut falls between two elements (one stray byte cannot start one)
    assert 0 <= cut - offset <= 1


@settings(max_examples=300)
@given(st.binary(min_size=2, max_size=2), st.binary(max_size=64))
def test_group_0002_in_another_vr_form_is_refused(vr: bytes, tail: bytes) -> None:
    data = PREAMBLE + PREFIX + struct.pack("<HH", 0x0002, 0x0002) + vr + b"\x04\x00" + tail
    try:
        parse_file_meta(data)
    except Part10Error:
        return
    assert vr.isalpha() and vr.isupper()


def test_an_absurd_length_is_refused_without_reading_it() -> None:
    data = PREAMBLE + PREFIX + struct.pack("<HH2sHI", 0x0002, 0x0001, b"OB", 0, 0xFFFFFFF0)
    with pytest.raises(Part10Error, match="larger than"):
        parse_file_meta(data)


def test_no_preamble_accepted_only_when_asked(tmp_path: Path) -> None:
    header = encode_file_meta(
        sop_class_uid="1.2",
        sop_instance_uid="1.2.3",
        transfer_syntax_uid=SYNTAXES[0],
        implementation_class_uid="1.2.4",
        implementation_version_name="X",
        source_ae="AE1",
    )[132:]
    with pytest.raises(Part10Error, match="DICM"):
        parse_file_meta(header)
    meta, offset = parse_file_meta(header + _data_set(), preamble=False)
    assert (meta.sop_instance_uid, meta.source_ae, offset) == ("1.2.3", "AE1", len(header))
    path = tmp_path / "bare.dcm"
    path.write_bytes(header)
    assert read_file_meta(path, preamble=False) == (meta, len(header))


def test_a_long_header_is_read_in_several_chunks(tmp_path: Path) -> None:
    """A private meta element larger than one read: the file reader asks for the rest."""
    big = struct.pack("<HH2sHI", 0x0002, 0x0102, b"OB", 0, 200_000) + bytes(200_000)
    header = encode_file_meta(
        sop_class_uid="1.2",
        sop_instance_uid="1.2.3",
        transfer_syntax_uid=SYNTAXES[0],
        implementation_class_uid="1.2.4",
        implementation_version_name="",
        source_ae="",
    )
    path = tmp_path / "big.dcm"
    path.write_bytes(header + big + _data_set())
    meta, offset = read_file_meta(path)
    assert meta.sop_instance_uid == "1.2.3" and offset == len(header) + len(big)
    assert parse_file_meta(path.read_bytes())[1] == offset
