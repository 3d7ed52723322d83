from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filereader import read_file_meta_info

from stellarpacs.storage import files
from tests.storage.dicomdata import (
    CT_IMAGE,
    EXPLICIT_LE,
    IMPLICIT_LE,
    encode,
    expected_meta,
    implicit_element,
    make_dataset,
    meta_fields,
)


def meta(**overrides: str) -> bytes:
    values = {
        "sop_class_uid": CT_IMAGE,
        "sop_instance_uid": "1.2.3.4",
        "transfer_syntax_uid": EXPLICIT_LE,
        "implementation_class_uid": "1.2.826.0.1.3680043.2.914",
        "implementation_version_name": "StellarPACS_1.3",
        "source_ae": "MODALITY1",
    }
    values.update(overrides)
    return files.encode_file_meta(**values)


def write_file(path: Path, header: bytes, data: bytes) -> Path:
    path.write_bytes(header + data)
    return path


def test_meta_is_read_back_by_pydicom(tmp_path: Path) -> None:
    path = write_file(tmp_path / "f.dcm", meta(), b"")
    assert meta_fields(read_file_meta_info(path)) == expected_meta("1.2.3.4", "MODALITY1")


def test_meta_layout_preamble_prefix_group_length() -> None:
    header = meta()
    assert header[:128] == bytes(128)
    assert header[128:132] == b"DICM"
    tag, vr, length = struct.unpack("<I2sH", header[132:140])
    assert (tag, vr, length) == (0x00000002, b"UL", 4)
    (group_length,) = struct.unpack("<I", header[140:144])
    assert group_length == len(header) - 144
    assert len(header) % 2 == 0


def test_odd_values_are_padded_uid_with_nul_text_with_space() -> None:
    header = meta(sop_instance_uid="1.2.3", source_ae="ABC")
    assert b"1.2.3\x00" in header
    assert b"ABC " in header


def test_no_source_ae_element_when_the_calling_ae_is_empty(tmp_path: Path) -> None:
    path = write_file(tmp_path / "f.dcm", meta(source_ae=""), b"")
    assert "SourceApplicationEntityTitle" not in read_file_meta_info(path)


def test_a_uid_too_long_for_the_meta_cannot_be_understood() -> None:
    with pytest.raises(files.UnreadableDataSet) as info:
        meta(sop_instance_uid="1" * 70_000)
    assert info.value.status == 0xC000


@pytest.mark.parametrize("ts", [IMPLICIT_LE, EXPLICIT_LE])
def test_open_dataset_reads_the_header_but_not_the_pixels(tmp_path: Path, ts: str) -> None:
    data = encode(make_dataset(pixel=b"\x01" * 4096), ts)
    path = write_file(tmp_path / "f.dcm", meta(transfer_syntax_uid=ts), data)
    ds = files.open_dataset(path)
    assert ds.SOPInstanceUID == "1.2.3.4.5"
    assert "PixelData" not in ds


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x08\x00",
        implicit_element(0x00080018, b"1.2.3") + struct.pack("<HHI", 0x0010, 0x0010, 1000) + b"x",
        bytes(range(256)) * 3,
    ],
    ids=["empty", "shorter-than-a-tag", "value-past-the-end", "garbage"],
)
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_what_cannot_be_a_data_set_is_refused(tmp_path: Path, data: bytes) -> None:
    path = write_file(tmp_path / "f.dcm", meta(transfer_syntax_uid=IMPLICIT_LE), data)
    with pytest.raises(files.UnreadableDataSet):
        files.open_dataset(path)


def test_open_dataset_lets_a_real_io_error_through(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        files.open_dataset(tmp_path / "absent.dcm")


def summary_of(tmp_path: Path, ds: Dataset, ts: str = EXPLICIT_LE) -> files.HeaderSummary:
    path = write_file(tmp_path / "f.dcm", meta(transfer_syntax_uid=ts), encode(ds, ts))
    return files.summarize(files.open_dataset(path))


def test_summary_keeps_raw_strings_and_the_character_set(tmp_path: Path) -> None:
    ds = make_dataset(patient_name="Müller^Hans=ミュラー^ハンス")
    ds.SpecificCharacterSet = ["ISO_IR 192"]
    s = summary_of(tmp_path, ds)
    assert s.patient_name == "Müller^Hans=ミュラー^ハンス"
    assert s.specific_character_set == "ISO_IR 192"
    assert (s.modality, s.study_date, s.accession_number) == ("CT", "20240131", "ACC1")
    assert (s.series_number, s.instance_number) == (3, 7)


def test_summary_json_leaves_out_pixels_and_bulk_but_keeps_small_values(tmp_path: Path) -> None:
    ds = make_dataset(pixel=b"\x02" * 8192)
    ds.add_new(0x00091010, "OB", b"\x07" * 4000)  # private bulk data
    ds.add_new(0x00091011, "OB", b"\x07" * 16)
    s = summary_of(tmp_path, ds)
    header = json.loads(s.header_json)
    assert "7FE00010" not in header
    assert "00091010" not in header
    assert header["00091011"]["InlineBinary"]
    assert header["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "Doe^John"}]}
    assert header["00080018"]["Value"] == ["1.2.3.4.5"]


def test_summary_json_includes_sequences(tmp_path: Path) -> None:
    ds = make_dataset()
    item = Dataset()
    item.CodeValue = "T-1"
    ds.ProcedureCodeSequence = [item]
    header = json.loads(summary_of(tmp_path, ds).header_json)
    assert header["00081032"]["Value"][0]["00080100"]["Value"] == ["T-1"]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_invalid_numbers_are_not_an_error(tmp_path: Path) -> None:
    data = implicit_element(0x00080018, b"1.2.3") + implicit_element(0x00200013, b"abc")
    path = write_file(tmp_path / "f.dcm", meta(transfer_syntax_uid=IMPLICIT_LE), data)
    s = files.summarize(files.open_dataset(path))
    assert s.instance_number is None
    assert dcmread(path).SOPInstanceUID == "1.2.3"


def test_missing_keys_are_empty(tmp_path: Path) -> None:
    ds = Dataset()
    ds.SOPInstanceUID = "1.2.3"
    path = write_file(tmp_path / "f.dcm", meta(), encode(ds))
    opened = files.open_dataset(path)
    assert files.header_uids(opened) == ("", "", "")
    assert files.summarize(opened).patient_name == ""


def test_clean_tmp_removes_leftovers(tmp_path: Path) -> None:
    for name in ("rx-1.part", "rx-2.part", "stray"):
        (tmp_path / name).write_bytes(b"half")
    assert files.clean_tmp(tmp_path) == 3
    assert list(tmp_path.iterdir()) == []


def test_temp_file_counts_sizes_and_abandon_removes_it(tmp_path: Path) -> None:
    temp = files.TempFile.create(tmp_path, b"HEAD")
    temp.write(b"data")
    assert (temp.size, temp.data_size) == (8, 4)
    temp.abandon()
    assert not temp.path.exists()


def test_install_creates_durable_directories_and_replaces(tmp_path: Path) -> None:
    dirs = files.DirSync(tmp_path, fsync=True)
    src = tmp_path / "a"
    src.write_bytes(b"new")
    dest = tmp_path / "s" / "t" / "u.dcm"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"old orphan")
    files.install(src, dest, dirs)
    assert dest.read_bytes() == b"new"
    assert not src.exists()


def test_absurdly_long_values_are_not_read_into_the_index(tmp_path: Path) -> None:
    data = (
        implicit_element(0x00080018, b"1.2.3")
        + implicit_element(0x00100010, b"A" * 100_000)
        + implicit_element(0x00100020, b"P1")
    )
    path = write_file(tmp_path / "f.dcm", meta(transfer_syntax_uid=IMPLICIT_LE), data)
    ds = files.open_dataset(path)
    s = files.summarize(ds)
    assert s.patient_name == ""
    assert "00100010" not in json.loads(s.header_json)
    assert files.header_uids(ds)[0] == "P1"
