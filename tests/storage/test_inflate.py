"""A deflated data set's header is inflated as read, up to its Pixel Data and a limit.

PS3.5 A.5 deflates the whole data set; pydicom's ``dcmread`` would inflate all
of it in memory first, so a 1 MB bomb would cost 1 GiB (issue 12, defect 1).
"""

from __future__ import annotations

import io
import time
import tracemalloc
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from stellarpacs.storage.archive import Archive
from stellarpacs.storage.errors import UnreadableDataSet
from stellarpacs.storage.files import header
from stellarpacs.storage.files.inflate import InflatingReader, InflationLimit
from stellarpacs.storage.records import StoreResult
from tests.deflate_bombs import GIB, MIB, bomb, deflated, header_bytes, pixel_data, private_ob
from tests.storage.dicomdata import EXPLICIT_LE, encode, file_meta, make_dataset, store

DEFLATED = "1.2.840.10008.1.2.1.99"
LIMIT = 8 * MIB


def write_deflated(path: Path, chunks: Iterator[bytes]) -> tuple[Path, int]:
    """A PS3.10 file of deflated chunks, written as they come; (path, data set offset)."""
    meta = file_meta(transfer_syntax_uid=DEFLATED)
    with path.open("wb") as fp:
        fp.write(meta)
        for chunk in chunks:
            fp.write(chunk)
    return path, len(meta)


def rich_dataset() -> Dataset:
    """A header with sequences (one of undefined length), Latin-1 text and a 2 MiB value."""
    ds = make_dataset(patient_name="Müller^Zoë")
    ds.SpecificCharacterSet = "ISO_IR 100"
    item = Dataset()
    item.CodeValue = "T-1"
    item.CodeMeaning = "Gewebe für Prüfung"
    ds.ProcedureCodeSequence = [item, item]
    ds.ProcedureCodeSequence.is_undefined_length = True
    ds.add_new(0x00291010, "OB", b"\x07" * (2 * MIB))
    ds.add_new(0x7FE00010, "OB", b"\x01" * 4096)
    return ds


def pydicom_header(path: Path) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dcmread(path, stop_before_pixels=True, defer_size=1024)


@pytest.mark.parametrize("source", ["image_dfl.dcm", "rich"])
def test_the_index_sees_what_a_full_inflation_gives(tmp_path: Path, source: str) -> None:
    if source == "rich":
        plain = encode(rich_dataset(), EXPLICIT_LE)
        path, offset = write_deflated(tmp_path / "f.dcm", deflated([plain]))
    else:
        found = get_testdata_file(source)
        assert found is not None
        path, offset = Path(found), 0
    received = header.open_dataset(path)
    assert "PixelData" not in received
    assert header.summarize(received) == header.summarize(pydicom_header(path))
    if source == "rich":
        assert received.PatientName == "Müller^Zoë"
        assert received.ProcedureCodeSequence[1].CodeMeaning == "Gewebe für Prüfung"
        opened = header.open_received(path, offset=offset, transfer_syntax_uid=DEFLATED)
        assert header.summarize(opened) == header.summarize(received)


def test_a_1_gib_pixel_bomb_is_read_up_to_its_pixels_in_flat_memory(tmp_path: Path) -> None:
    path, offset = write_deflated(tmp_path / "bomb.dcm", bomb("1.2.3.9", GIB, before_pixels=False))
    assert path.stat().st_size < 2 * MIB
    tracemalloc.start()
    try:
        started = time.monotonic()
        ds = header.open_received(
            path, offset=offset, transfer_syntax_uid=DEFLATED, max_inflated=LIMIT
        )
        elapsed = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert ds.PatientID == "BOMB001" and "PixelData" not in ds
    assert peak < 4 * MIB, f"{peak / MIB:.1f} MiB held to read a header"
    assert elapsed < 1.0


@pytest.mark.parametrize("length", [GIB, 0xFFFFFFFF], ids=["defined", "undefined"])
def test_a_bomb_before_the_pixels_stops_at_the_limit(tmp_path: Path, length: int) -> None:
    def chunks() -> Iterator[bytes]:
        yield header_bytes("1.2.3.10") + private_ob(length)
        yield from (bytes(MIB) for _ in range(64))  # 64 MiB: past the limit, never to the end
        yield pixel_data(2) + b"\0\0"

    path, offset = write_deflated(tmp_path / "bomb.dcm", deflated(chunks()))
    tracemalloc.start()
    try:
        with pytest.raises(InflationLimit, match=str(LIMIT)):
            header.open_received(
                path, offset=offset, transfer_syntax_uid=DEFLATED, max_inflated=LIMIT
            )
        with pytest.raises(InflationLimit):  # the storage tools read it the same way
            header.open_dataset(path, max_inflated=LIMIT)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * LIMIT


def test_the_reader_keeps_a_window_and_refuses_what_it_cannot_do() -> None:
    pattern = bytes(range(256)) * 4096  # 1 MiB
    data = b"".join(deflated([pattern] * 4))
    reader = InflatingReader(io.BytesIO(data), limit=8 * MIB)
    assert reader.read(10) == bytes(range(10))
    reader.seek(3 * MIB + 512)
    assert reader.tell() == 3 * MIB + 512
    assert reader.read(2) == bytes([0, 1])
    reader.seek(3 * MIB)  # a short rewind, as pydicom's stop_when does
    assert reader.read(1) == b"\0"
    with pytest.raises(io.UnsupportedOperation):
        reader.seek(0)  # dropped: only a window behind the position is kept
    with pytest.raises(io.UnsupportedOperation):
        reader.seek(0, io.SEEK_END)
    assert len(reader.read()) == MIB - 1
    assert reader.size == 4 * MIB
    with pytest.raises(InflationLimit):
        InflatingReader(io.BytesIO(data), limit=2 * MIB).read()
    with pytest.raises(UnreadableDataSet):
        InflatingReader(io.BytesIO(b"\xff" * 64), limit=MIB).read(10)


async def test_an_archive_refuses_an_over_limit_header_with_a_resource_failure(
    tmp_path: Path,
) -> None:
    root = tmp_path / "archive"
    data = b"".join(bomb("1.2.3.11", 16 * MIB, before_pixels=True))
    good = b"".join(bomb("1.2.3.12", 16 * MIB, before_pixels=False))
    async with Archive(root, max_inflated_header=LIMIT) as archive:
        outcome = await store(archive, data, sop_uid="1.2.3.11", ts=DEFLATED)
        assert outcome.result is StoreResult.NOT_STORED
        assert outcome.error_comment is not None and str(LIMIT) in outcome.error_comment
        assert not await archive.index.has_instance("1.2.3.11")
        kept = await store(archive, good, sop_uid="1.2.3.12", ts=DEFLATED)
        assert kept.result is StoreResult.STORED and kept.record is not None
        stored = (root / kept.record.path).read_bytes()
        assert stored.endswith(good) and len(stored) == len(good) + len(file_meta())
    assert sorted(p.name for p in (root / "tmp").iterdir()) == []
