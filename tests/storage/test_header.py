"""Reading headers back (PS3.10) and the index's view of them, with its value cache."""

from __future__ import annotations

import json
import struct
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from stellarpacs.part10 import FileMeta
from stellarpacs.storage.archive import Archive
from stellarpacs.storage.errors import UnreadableDataSet
from stellarpacs.storage.files import header
from stellarpacs.storage.records import HeaderSummary, StoreResult
from tests.storage.dicomdata import (
    EXPLICIT_BE,
    EXPLICIT_LE,
    IMPLICIT_LE,
    dataset_offset,
    encode,
    file_meta,
    implicit_element,
    make_dataset,
    store,
    write_file,
)

DEFLATED = "1.2.840.10008.1.2.1.99"


# -- open_dataset --------------------------------------------------------------------------------


@pytest.mark.parametrize("ts", [IMPLICIT_LE, EXPLICIT_LE])
def test_open_dataset_reads_the_header_but_not_the_pixels(tmp_path: Path, ts: str) -> None:
    data = encode(make_dataset(pixel=b"\x01" * 4096), ts)
    path = write_file(tmp_path / "f.dcm", file_meta(transfer_syntax_uid=ts), data)
    ds = header.open_dataset(path)
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
    path = write_file(tmp_path / "f.dcm", file_meta(transfer_syntax_uid=IMPLICIT_LE), data)
    with pytest.raises(UnreadableDataSet):
        header.open_dataset(path)
    with pytest.raises(UnreadableDataSet):
        header.open_received(path, offset=len(file_meta()), transfer_syntax_uid=IMPLICIT_LE)


def test_open_dataset_lets_a_real_io_error_through(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        header.open_dataset(tmp_path / "absent.dcm")


def test_read_meta_reads_group_0002_only(tmp_path: Path) -> None:
    meta = file_meta(sop_instance_uid="1.2.3", source_ae="CT01", transfer_syntax_uid=EXPLICIT_BE)
    path = write_file(tmp_path / "f.dcm", meta, b"not even a data set")
    assert header.read_meta(path) == FileMeta(
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        sop_instance_uid="1.2.3",
        transfer_syntax_uid=EXPLICIT_BE,
        implementation_class_uid="1.2.826.0.1.3680043.2.914",
        implementation_version_name="StellarPACS_1.3",
        source_ae="CT01",
    )


# -- open_received gives what open_dataset gives --------------------------------------------------

# pydicom's own test files: each syntax, sequences, and character sets other than the default
SAMPLES = [
    "CT_small.dcm",  # Explicit VR LE, ISO_IR 100, sequences
    "MR_small_implicit.dcm",  # Implicit VR LE
    "MR_small_bigendian.dcm",  # Explicit VR BE
    "liver_expb_1frame.dcm",  # Explicit VR BE with sequences
    "rtplan.dcm",  # Implicit VR LE, nested sequences
    "reportsi.dcm",  # a structured report: sequences all the way down
    "SC_rgb_small_odd_big_endian.dcm",  # Explicit VR BE, ISO_IR 192
    "J2K_pixelrep_mismatch.dcm",  # ISO 2022 IR 13 \\ ISO 2022 IR 87, encapsulated pixels
    "waveform_ecg.dcm",  # large waveform values, left on disk until read
    "image_dfl.dcm",  # Deflated Explicit VR LE
]


def sample(name: str) -> tuple[bytes, str, str]:
    """The data set bytes of one pydicom test file, its transfer syntax and SOP Instance UID."""
    path = get_testdata_file(name)
    assert path is not None, name
    raw = Path(path).read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = dcmread(path, stop_before_pixels=True)
    return raw[dataset_offset(raw) :], str(ds.file_meta.TransferSyntaxUID), ds.SOPInstanceUID


def synthetic(ts: str) -> bytes:
    """A header with a sequence and a Latin-1 name, in ``ts``."""
    ds = make_dataset(patient_name="Müller^Zoë")
    ds.SpecificCharacterSet = "ISO_IR 100"
    item = Dataset()
    item.CodeValue = "T-1"
    item.CodeMeaning = "Gewebe für Prüfung"
    ds.ProcedureCodeSequence = [item]
    return encode(ds, ts)


def flat(ds: Dataset) -> list[tuple[int, str, Any]]:
    """Every element converted (deferred values read from the file), sequences recursively."""
    out: list[tuple[int, str, Any]] = []
    for elem in ds:
        value = [flat(item) for item in elem.value] if elem.VR == "SQ" else elem.value
        out.append((int(elem.tag), str(elem.VR), value))
    return out


def assert_same_header(received: Dataset, opened: Dataset) -> None:
    assert flat(received) == flat(opened)
    assert received.original_encoding == opened.original_encoding
    assert received.original_character_set == opened.original_character_set
    assert header.summarize(received) == header.summarize(opened)


@pytest.fixture
def quiet() -> Iterator[None]:
    with warnings.catch_warnings():  # pydicom on oddities of its own test files
        warnings.simplefilter("ignore")
        yield


@pytest.mark.parametrize("name", SAMPLES)
@pytest.mark.usefixtures("quiet")
async def test_open_received_of_an_archived_file_equals_open_dataset(
    archive: Archive, root: Path, name: str
) -> None:
    data, ts, sop_uid = sample(name)
    outcome = await store(archive, data, sop_uid=sop_uid, ts=ts)
    assert outcome.result == StoreResult.STORED and outcome.record is not None
    path = root / outcome.record.path
    offset = dataset_offset(path.read_bytes())
    assert path.read_bytes()[offset:] == data
    received = header.open_received(path, offset=offset, transfer_syntax_uid=ts)
    opened = header.open_dataset(path)
    assert opened.SOPInstanceUID == sop_uid
    assert_same_header(received, opened)


@pytest.mark.parametrize(
    ("name", "ts"),
    [(name, "") for name in SAMPLES]
    + [("synthetic", ts) for ts in (IMPLICIT_LE, EXPLICIT_LE, EXPLICIT_BE)],
)
@pytest.mark.usefixtures("quiet")
def test_open_received_after_encode_file_meta_equals_open_dataset(
    tmp_path: Path, name: str, ts: str
) -> None:
    if name == "synthetic":
        data, sop_uid = synthetic(ts), "1.2.3.4.5"
    else:
        data, ts, sop_uid = sample(name)  # in the file's own syntax
    meta = file_meta(sop_instance_uid=sop_uid, transfer_syntax_uid=ts)
    path = write_file(tmp_path / "f.dcm", meta, data)
    received = header.open_received(path, offset=len(meta), transfer_syntax_uid=ts)
    opened = header.open_dataset(path)
    assert opened.SOPInstanceUID == sop_uid
    assert_same_header(received, opened)
    if name == "synthetic":
        assert received.PatientName == "Müller^Zoë"
        assert received.ProcedureCodeSequence[0].CodeMeaning == "Gewebe für Prüfung"


# -- summarize -----------------------------------------------------------------------------------


def summary_of(tmp_path: Path, ds: Dataset, ts: str = EXPLICIT_LE) -> HeaderSummary:
    path = write_file(tmp_path / "f.dcm", file_meta(transfer_syntax_uid=ts), encode(ds, ts))
    return header.summarize(header.open_dataset(path))


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
    header_json = json.loads(s.header_json)
    assert "7FE00010" not in header_json
    assert "00091010" not in header_json
    assert header_json["00091011"]["InlineBinary"]
    assert header_json["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "Doe^John"}]}
    assert header_json["00080018"]["Value"] == ["1.2.3.4.5"]


def test_summary_json_includes_sequences(tmp_path: Path) -> None:
    ds = make_dataset()
    item = Dataset()
    item.CodeValue = "T-1"
    ds.ProcedureCodeSequence = [item]
    header_json = json.loads(summary_of(tmp_path, ds).header_json)
    assert header_json["00081032"]["Value"][0]["00080100"]["Value"] == ["T-1"]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_invalid_numbers_are_not_an_error(tmp_path: Path) -> None:
    data = implicit_element(0x00080018, b"1.2.3") + implicit_element(0x00200013, b"abc")
    path = write_file(tmp_path / "f.dcm", file_meta(transfer_syntax_uid=IMPLICIT_LE), data)
    s = header.summarize(header.open_dataset(path))
    assert s.instance_number is None
    assert dcmread(path).SOPInstanceUID == "1.2.3"


def test_missing_keys_are_empty(tmp_path: Path) -> None:
    ds = Dataset()
    ds.SOPInstanceUID = "1.2.3"
    path = write_file(tmp_path / "f.dcm", file_meta(), encode(ds))
    opened = header.open_dataset(path)
    assert header.header_uids(opened) == ("", "", "")
    assert header.summarize(opened).patient_name == ""


def test_absurdly_long_values_are_not_read_into_the_index(tmp_path: Path) -> None:
    data = (
        implicit_element(0x00080018, b"1.2.3")
        + implicit_element(0x00100010, b"A" * 100_000)
        + implicit_element(0x00100020, b"P1")
    )
    path = write_file(tmp_path / "f.dcm", file_meta(transfer_syntax_uid=IMPLICIT_LE), data)
    ds = header.open_dataset(path)
    s = header.summarize(ds)
    assert s.patient_name == ""
    assert "00100010" not in json.loads(s.header_json)
    assert header.header_uids(ds)[0] == "P1"


# -- the value cache -----------------------------------------------------------------------------


class CountingMemo(header._Memo):
    """The cache, counting the look-ups it answered."""

    def __init__(self) -> None:
        super().__init__()
        self.hits = 0

    def get(self, key: tuple[object, ...]) -> header._Converted | None:
        hit = super().get(key)
        self.hits += hit is not None
        return hit


class NoMemo(header._Memo):
    """No cache at all: every element converted by pydicom (the reference)."""

    def key(self, raw: object, charset: object) -> tuple[object, ...] | None:
        return None


def series_files(tmp_path: Path) -> list[Path]:
    """Files whose headers repeat: pydicom samples, and a series of instances of two patients."""
    paths: list[Path] = []
    for name in SAMPLES:
        data, ts, sop_uid = sample(name)
        meta = file_meta(sop_instance_uid=sop_uid, transfer_syntax_uid=ts)
        paths.append(write_file(tmp_path / name, meta, data))
    for i in range(6):
        ds = make_dataset(
            f"1.2.3.{i}",
            patient_id=f"P{i % 2}",
            patient_name=("Doe^John", "Roe^Jane")[i % 2],
        )
        ds.InstanceNumber = str(i + 1)
        ds.SpecificCharacterSet = ("ISO_IR 100", "ISO_IR 192")[i % 2]
        for ts in (IMPLICIT_LE, EXPLICIT_BE):
            meta = file_meta(transfer_syntax_uid=ts)
            paths.append(write_file(tmp_path / f"i{i}-{ts}.dcm", meta, encode(ds, ts)))
    return paths


def summaries(paths: list[Path]) -> list[HeaderSummary]:
    return [header.summarize(header.open_dataset(path)) for path in paths]


@pytest.mark.usefixtures("quiet")
def test_summaries_are_the_same_cold_warm_and_without_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = series_files(tmp_path)
    monkeypatch.setattr(header, "_MEMO", NoMemo())
    reference = summaries(paths)
    memo = CountingMemo()
    monkeypatch.setattr(header, "_MEMO", memo)
    cold = summaries(paths)
    hits_cold = memo.hits
    warm = summaries(paths)
    backwards = summaries(paths[::-1])[::-1]
    assert cold == warm == backwards == reference
    assert memo.hits - hits_cold > 1000  # the warm passes were answered from the cache
    assert [json.loads(s.header_json) for s in warm] == [
        json.loads(s.header_json) for s in reference
    ]


def pair_of_files(
    tmp_path: Path, first: tuple[str, bytes], second: tuple[str, bytes]
) -> list[Path]:
    """Two files, each (transfer syntax, data set bytes)."""
    return [
        write_file(tmp_path / f"{n}.dcm", file_meta(transfer_syntax_uid=ts), data)
        for n, (ts, data) in enumerate((first, second))
    ]


def explicit(tag: int, vr: bytes, value: bytes, *, little: bool = True) -> bytes:
    """One Explicit VR element; OB takes the 4-byte length form (PS3.5 7.1.2)."""
    order = "<" if little else ">"
    if vr == b"OB":
        return struct.pack(f"{order}HH2sHI", tag >> 16, tag & 0xFFFF, vr, 0, len(value)) + value
    return struct.pack(f"{order}HH2sH", tag >> 16, tag & 0xFFFF, vr, len(value)) + value


UID = implicit_element(0x00080018, b"1.2.3")


def differ_only_in(what: str) -> tuple[tuple[str, bytes], tuple[str, bytes]]:
    """Two headers holding the same bytes in one element that must convert differently."""
    if what == "value":  # two patients' names
        return (
            (IMPLICIT_LE, UID + implicit_element(0x00100010, b"Doe^John")),
            (IMPLICIT_LE, UID + implicit_element(0x00100010, b"Roe^Jane")),
        )
    if what == "character set":  # the same bytes, "Ã©tÃ©" in Latin-1 and "été" in UTF-8
        name = "\u00e9t\u00e9".encode()
        return (
            (
                IMPLICIT_LE,
                implicit_element(0x00080005, b"ISO_IR 100")
                + UID
                + implicit_element(0x00100010, name),
            ),
            (
                IMPLICIT_LE,
                implicit_element(0x00080005, b"ISO_IR 192")
                + UID
                + implicit_element(0x00100010, name),
            ),
        )
    if what == "byte order":  # Rows: 1 little endian, 256 big endian
        uid = explicit(0x00080018, b"UI", b"1.2.3\0")
        return (
            (EXPLICIT_LE, uid + explicit(0x00280010, b"US", b"\x01\x00")),
            (
                EXPLICIT_BE,
                explicit(0x00080018, b"UI", b"1.2.3\0", little=False)
                + explicit(0x00280010, b"US", b"\x01\x00", little=False),
            ),
        )
    if what == "tag":  # the same bytes as a date (DA) and as an accession number (SH)
        return (
            (IMPLICIT_LE, UID + implicit_element(0x00080020, b"20240131")),
            (IMPLICIT_LE, UID + implicit_element(0x00080050, b"20240131")),
        )
    # "VR": one private element, LO in one file and OB in the other
    uid = explicit(0x00080018, b"UI", b"1.2.3\0")
    return (
        (EXPLICIT_LE, uid + explicit(0x00091010, b"LO", b"ABCD")),
        (EXPLICIT_LE, uid + explicit(0x00091010, b"OB", b"ABCD")),
    )


@pytest.mark.parametrize("what", ["value", "character set", "byte order", "tag", "VR"])
def test_the_cache_never_mixes_up_two_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, what: str
) -> None:
    paths = pair_of_files(tmp_path, *differ_only_in(what))
    monkeypatch.setattr(header, "_MEMO", NoMemo())
    reference = summaries(paths)
    assert reference[0].header_json != reference[1].header_json
    for order in (paths, paths[::-1]):
        monkeypatch.setattr(header, "_MEMO", header._Memo())
        for _ in range(2):  # the second round is all cache hits
            got = dict(zip(order, summaries(order), strict=True))
            assert [got[p] for p in paths] == reference


def test_the_cache_gives_each_patient_their_own_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(header, "_MEMO", header._Memo())
    paths = pair_of_files(tmp_path, *differ_only_in("value"))
    for _ in range(2):
        names = [header.summarize(header.open_dataset(p)).patient_name for p in paths]
        assert names == ["Doe^John", "Roe^Jane"]
        assert [header.header_uids(header.open_dataset(p)) for p in paths] == [("", "", "")] * 2
