from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from stellarpacs.storage.errors import SchemaTooNew
from stellarpacs.storage.index import schema as index_module
from stellarpacs.storage.index.instances import SQLiteIndex
from stellarpacs.storage.records import HeaderSummary, InstanceRecord, InstanceRow


def row(
    sop: str,
    *,
    study: str = "1.1",
    series: str = "1.1.1",
    patient: str = "P1",
    name: str = "",
    modality: str = "CT",
    size: int = 100,
    **header: Any,
) -> InstanceRow:
    record = InstanceRecord(
        sop_instance_uid=sop,
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        patient_id=patient,
        study_instance_uid=study,
        series_instance_uid=series,
        path=f"studies/{study}/{series}/{sop}.dcm",
        size=size,
        received_at="2024-01-31T10:00:00.000+00:00",
        calling_ae="SCU",
    )
    return InstanceRow(record, HeaderSummary(patient_name=name, modality=modality, **header))


@pytest.fixture
async def index(tmp_path: Path) -> AsyncIterator[SQLiteIndex]:
    async with SQLiteIndex(tmp_path / "index.sqlite3") as opened:
        yield opened


def user_version(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("PRAGMA user_version").fetchone()[0])


def columns(path: Path, table: str) -> set[str]:
    with sqlite3.connect(path) as db:
        return {r[1] for r in db.execute(f"PRAGMA table_info({table})")}


async def test_add_and_read_back(index: SQLiteIndex) -> None:
    r = row("1.1.1.1", name="Doe^John")
    assert await index.add([r]) == [True]
    assert await index.has_instance("1.1.1.1")
    assert not await index.has_instance("9")
    assert await index.get_instance("1.1.1.1") == r.record
    assert await index.get_instance("9") is None
    assert await index.instances_of_study("1.1") == [r.record]
    assert [rec async for rec in index.iter_instances()] == [r.record]
    assert await index.get_header_json("1.1.1.1") == {}


async def test_a_known_instance_is_not_added_twice(index: SQLiteIndex) -> None:
    assert await index.add([row("1"), row("1", study="2.2"), row("2")]) == [True, False, True]
    assert (await index.get_instance("1")) == row("1").record
    assert (await index.stats())["studies"] == 1


async def test_the_first_non_empty_value_wins(index: SQLiteIndex) -> None:
    await index.add([row("1", name="")])
    await index.add([row("2", name="Doe^John", study_date="20240101")])
    await index.add([row("3", name="Other^Name", study_date="20231231")])
    (study,) = await index.list_studies()
    assert (study.patient_name, study.study_date) == ("Doe^John", "20240101")


async def test_query_columns_and_case_folded_name(index: SQLiteIndex) -> None:
    await index.add([row("1", name="MÜLLER^Hans", accession_number="A7")])
    async with index.db.execute(
        "SELECT patient_name, patient_name_folded FROM patient WHERE patient_id = ?", ("P1",)
    ) as cur:
        assert await cur.fetchone() == ("MÜLLER^Hans", "müller^hans")
    async with index.db.execute(
        "EXPLAIN QUERY PLAN SELECT * FROM study WHERE accession_number = ?", ("A7",)
    ) as cur:
        plan = " ".join(str(r) for r in await cur.fetchall())
    assert "study_accession_ix" in plan


async def test_stats_and_list_studies(index: SQLiteIndex) -> None:
    await index.add(
        [
            row("1", modality="CT", size=10),
            row("2", series="1.1.2", modality="SR", size=20),
            row("3", study="2.2", series="2.2.1", patient="P2", modality="MR", size=5),
        ]
    )
    assert await index.stats() == {
        "patients": 2,
        "studies": 2,
        "series": 3,
        "instances": 3,
        "bytes": 35,
    }
    first, second = await index.list_studies()
    assert (first.study_instance_uid, first.modalities) == ("1.1", ("CT", "SR"))
    assert (first.series_count, first.instance_count, first.size) == (2, 2, 30)
    assert (second.patient_id, second.modalities) == ("P2", ("MR",))


async def test_delete_study_removes_its_rows_and_orphaned_patient(index: SQLiteIndex) -> None:
    await index.add(
        [row("1"), row("2", series="1.1.2"), row("3", study="2.2", series="2.2.1", patient="P2")]
    )
    assert await index.delete_study("1.1") == 2
    assert await index.stats() == {
        "patients": 1,
        "studies": 1,
        "series": 1,
        "instances": 1,
        "bytes": 100,
    }
    assert await index.delete_study("1.1") == 0


async def test_known_paths(index: SQLiteIndex) -> None:
    await index.add([row("1")])
    paths = [f"studies/x/{i}.dcm" for i in range(1200)] + ["studies/1.1/1.1.1/1.dcm"]
    assert await index.known_paths(paths) == {"studies/1.1/1.1.1/1.dcm"}


async def test_a_failed_transaction_rolls_back(index: SQLiteIndex) -> None:
    bad = InstanceRow(row("2").record, HeaderSummary(series_number=object()))  # type: ignore[arg-type]
    with pytest.raises(sqlite3.Error):
        await index.add([row("1"), bad])
    assert await index.stats() == dict.fromkeys(
        ("patients", "studies", "series", "instances", "bytes"), 0
    )
    assert await index.add([row("1")]) == [True]


async def test_another_connection_reads_while_a_write_is_open(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite3"
    async with SQLiteIndex(path) as writer, SQLiteIndex(path) as reader:
        await writer.add([row("1")])
        async with writer._transaction():
            await writer._insert(row("2"))
            stats = await asyncio.wait_for(reader.stats(), timeout=5)
            assert stats["instances"] == 1  # the reader sees the last commit
        assert (await reader.stats())["instances"] == 2


async def test_open_without_create_needs_an_index(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        await SQLiteIndex(tmp_path / "none.sqlite3").open(create=False)


# -- migrations ---------------------------------------------------------------------------------


async def test_an_empty_v0_database_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE unrelated (x)")
    assert user_version(path) == 0
    async with SQLiteIndex(path):
        pass
    assert user_version(path) == 1
    assert {"patient_name_folded", "patient_id"} <= columns(path, "patient")
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_an_older_schema_is_migrated_keeping_its_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "index.sqlite3"
    async with SQLiteIndex(path) as v1:
        await v1.add([row("1")])
    v2 = ("ALTER TABLE instance ADD COLUMN retrieve_ae TEXT NOT NULL DEFAULT ''",)
    monkeypatch.setattr(index_module, "MIGRATIONS", [*index_module.MIGRATIONS, v2])
    async with SQLiteIndex(path) as migrated:
        assert await migrated.has_instance("1")
    assert user_version(path) == 2
    assert "retrieve_ae" in columns(path, "instance")


async def test_a_failing_migration_leaves_the_old_schema(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "index.sqlite3"
    async with SQLiteIndex(path):
        pass
    broken = ("ALTER TABLE instance ADD COLUMN a TEXT", "THIS IS NOT SQL")
    monkeypatch.setattr(index_module, "MIGRATIONS", [*index_module.MIGRATIONS, broken])
    with pytest.raises(sqlite3.Error):
        await SQLiteIndex(path).open()
    assert user_version(path) == 1
    assert "a" not in columns(path, "instance")


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(SchemaTooNew):
        await SQLiteIndex(path).open()
