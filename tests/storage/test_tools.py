from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from stellarpacs.storage import tools
from stellarpacs.storage.archive import Archive
from stellarpacs.storage.records import InstanceRecord, StoreResult
from tests.storage.dicomdata import encode, make_dataset, store


async def fill(archive: Archive) -> list[InstanceRecord]:
    records = []
    plan = [
        ("1.1", "1.1.1", "1.1.1.1", "CT"),
        ("1.1", "1.1.1", "1.1.1.2", "CT"),
        ("1.1", "1.1.2", "1.1.2.1", "SR"),
        ("2.2", "2.2.1", "2.2.1.1", "MR"),
    ]
    for study, series, sop, modality in plan:
        ds = make_dataset(
            sop, study=study, series=series, patient_id=f"P{study}", modality=modality
        )
        outcome = await store(archive, encode(ds), sop_uid=sop, calling_ae="CT01")
        assert outcome.result == StoreResult.STORED and outcome.record is not None
        records.append(outcome.record)
    return records


@pytest.fixture
async def filled(root: Path) -> list[InstanceRecord]:
    async with Archive(root) as archive:
        return await fill(archive)


async def test_stats_and_list_studies(root: Path, filled: list[InstanceRecord]) -> None:
    stats = await tools.stats(root)
    assert stats["instances"] == 4 and stats["studies"] == 2 and stats["series"] == 3
    assert stats["bytes"] == sum(r.size for r in filled)
    studies = await tools.list_studies(root)
    assert [(s.study_instance_uid, s.modalities) for s in studies] == [
        ("1.1", ("CT", "SR")),
        ("2.2", ("MR",)),
    ]


async def test_tools_need_an_existing_index(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        await tools.stats(tmp_path)


async def test_verify_a_clean_archive(root: Path, filled: list[InstanceRecord]) -> None:
    report = await tools.verify(root)
    assert report.ok
    assert (report.rows_checked, report.files_scanned) == (4, 4)


async def test_verify_finds_every_kind_of_problem(root: Path, filled: list[InstanceRecord]) -> None:
    missing, resized, swapped, _ = filled
    (root / missing.path).unlink()
    with (root / resized.path).open("ab") as fp:
        fp.write(b"\0\0")
    (root / swapped.path).write_bytes((root / filled[3].path).read_bytes())  # other meta UID
    stray = root / "studies" / "9.9" / "9.9.1" / "9.9.1.1.dcm"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"not indexed")
    report = await tools.verify(root)
    found = {(p.kind, p.path) for p in report.problems}
    assert found == {
        (tools.ProblemKind.MISSING, missing.path),
        (tools.ProblemKind.SIZE_MISMATCH, resized.path),
        (tools.ProblemKind.UID_MISMATCH, swapped.path),
        (tools.ProblemKind.UNINDEXED, "studies/9.9/9.9.1/9.9.1.1.dcm"),
    }
    assert not report.ok


async def test_reindex_rebuilds_the_index_from_the_files(
    root: Path, filled: list[InstanceRecord]
) -> None:
    for suffix in ("", "-wal", "-shm"):
        (root / f"index.sqlite3{suffix}").unlink(missing_ok=True)
    (root / "studies" / "junk.dcm").write_bytes(b"not dicom")
    seen: list[tuple[int, int]] = []
    report = await tools.reindex(root, progress=lambda done, total: seen.append((done, total)))
    assert (report.indexed, report.duplicates) == (4, 0)
    assert [p.path for p in report.skipped] == ["studies/junk.dcm"]
    assert seen[-1] == (5, 5)
    async with Archive(root) as archive:
        for record in filled:
            rebuilt = await archive.index.get_instance(record.sop_instance_uid)
            assert rebuilt is not None
            assert rebuilt.path == record.path and rebuilt.size == record.size
            assert rebuilt.calling_ae == "CT01"
            assert rebuilt.transfer_syntax_uid == record.transfer_syntax_uid
            assert rebuilt.study_instance_uid == record.study_instance_uid
    studies = await tools.list_studies(root)
    assert studies[0].modalities == ("CT", "SR")


async def test_reindex_replaces_stale_rows(root: Path, filled: list[InstanceRecord]) -> None:
    (root / filled[0].path).unlink()
    report = await tools.reindex(root)
    assert report.indexed == 3
    assert (await tools.verify(root)).ok


async def test_delete_study_removes_files_directories_and_rows(
    root: Path, filled: list[InstanceRecord]
) -> None:
    assert await tools.delete_study(root, "1.1") == 3
    assert not (root / "studies" / "1.1").exists()
    assert (root / filled[3].path).is_file()
    assert await tools.stats(root) == {
        "patients": 1,
        "studies": 1,
        "series": 1,
        "instances": 1,
        "bytes": filled[3].size,
    }
    assert (await tools.verify(root)).ok
    assert await tools.delete_study(root, "1.1") == 0


async def test_tools_work_while_the_archive_runs(root: Path) -> None:
    async with Archive(root) as archive:
        await fill(archive)
        assert (await tools.stats(root))["instances"] == 4
        assert (await tools.verify(root)).ok
        assert await tools.delete_study(root, "2.2") == 1
        assert not await archive.index.has_instance("2.2.1.1")
        ds = make_dataset("3.3.1.1", study="3.3", series="3.3.1")
        outcome = await store(archive, encode(ds), sop_uid="3.3.1.1")
        assert outcome.result == StoreResult.STORED
    assert (await tools.stats(root))["instances"] == 4


async def test_a_tampered_row_path_never_reaches_outside_the_root(
    root: Path, filled: list[InstanceRecord]
) -> None:
    victim = root.parent / "victim.dcm"
    victim.write_bytes(b"keep me")
    with sqlite3.connect(root / "index.sqlite3") as db:
        db.execute(
            "UPDATE instance SET path = ? WHERE sop_instance_uid = ?",
            ("../victim.dcm", filled[3].sop_instance_uid),
        )
    report = await tools.verify(root)
    assert (tools.ProblemKind.UNREADABLE, "../victim.dcm") in {
        (p.kind, p.path) for p in report.problems
    }
    assert await tools.delete_study(root, "2.2") == 1
    assert victim.read_bytes() == b"keep me"
