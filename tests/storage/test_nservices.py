"""The N-service tables in the index file: commitment requests and MPPS instances."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from stellarpacs.cli import main
from stellarpacs.storage import tools
from stellarpacs.storage.archive import Archive
from stellarpacs.storage.errors import SchemaTooNew, StorageUnavailable
from stellarpacs.storage.index.nservices import (
    SCHEMA_VERSION,
    SQLiteNServiceStore,
)
from stellarpacs.storage.records import CommitmentState, MPPSRecord
from tests.storage.dicomdata import CT_IMAGE, encode, make_dataset, store

REFS = [(CT_IMAGE, "1.2.3.4.5"), (CT_IMAGE, "1.2.3.4.6")]


@pytest.fixture
async def nstore(archive: Archive) -> AsyncIterator[SQLiteNServiceStore]:
    opened = SQLiteNServiceStore(archive.layout.index_path, durable=False)
    await opened.open()
    yield opened
    await opened.close()


def _user_version(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("PRAGMA user_version").fetchone()[0])


async def test_a_closed_store_refuses_use_instead_of_opening_again(tmp_path: Path) -> None:
    """A worker that runs on after shutdown must not reopen the file behind its owner."""
    path = tmp_path / "index.sqlite3"
    closing = SQLiteNServiceStore(path, durable=False)
    await closing.add_commitment("1.2.9.1", "MODALITY", REFS)  # first use opens it
    await closing.close()
    with pytest.raises(StorageUnavailable, match="closed"):
        await closing.pending_commitments()
    assert not closing.is_open
    assert not path.with_name("index.sqlite3-wal").exists()
    await closing.open()  # an explicit open is the owner's choice
    assert len(await closing.pending_commitments()) == 1
    await closing.close()


async def test_tables_live_beside_the_index_without_touching_its_version(
    archive: Archive, nstore: SQLiteNServiceStore
) -> None:
    path = archive.layout.index_path
    with sqlite3.connect(path) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        version = db.execute("SELECT version FROM nservices_schema").fetchall()
    assert {"nservices_commitment", "nservices_mpps", "instance", "study"} <= tables
    assert version == [(SCHEMA_VERSION,)]
    assert _user_version(path) == 1  # the index's own migration counter is untouched
    await nstore.close()
    await nstore.open()  # idempotent: a second open changes nothing
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM nservices_schema").fetchone() == (1,)


async def test_a_newer_schema_is_refused(archive: Archive, nstore: SQLiteNServiceStore) -> None:
    await nstore.close()
    with sqlite3.connect(archive.layout.index_path) as db:
        db.execute("UPDATE nservices_schema SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(SchemaTooNew):
        await SQLiteNServiceStore(archive.layout.index_path).open()


async def test_commitment_requests_survive_a_reopen(
    archive: Archive, nstore: SQLiteNServiceStore
) -> None:
    kept = await nstore.add_commitment("1.2.9.1", "MODALITY", REFS)
    assert kept.references == tuple(REFS) and not kept.duplicate
    await nstore.record_attempt(kept.pk, "connection refused")
    await nstore.close()
    reopened = SQLiteNServiceStore(archive.layout.index_path)
    async with reopened:
        [pending] = await reopened.pending_commitments()
    assert (pending.pk, pending.transaction_uid, pending.requester_ae) == (
        kept.pk,
        "1.2.9.1",
        "MODALITY",
    )
    assert pending.references == tuple(REFS)
    assert (pending.attempts, pending.last_error) == (1, "connection refused")
    assert pending.state is CommitmentState.PENDING


async def test_delivered_requests_leave_the_pending_list_but_stay_listed(
    nstore: SQLiteNServiceStore,
) -> None:
    first = await nstore.add_commitment("1.2.9.1", "MODALITY", REFS)
    second = await nstore.add_commitment("1.2.9.2", "MODALITY", REFS[:1])
    await nstore.mark_delivered(first.pk, 2, 1)
    assert [r.pk for r in await nstore.pending_commitments()] == [second.pk]
    done = (await nstore.commitments())[0]
    assert done.state is CommitmentState.DELIVERED
    assert (done.event_type_id, done.failed_count, done.attempts) == (2, 1, 1)
    assert done.delivered_at


async def test_a_resent_pending_request_is_not_doubled_but_a_reused_uid_is_flagged(
    nstore: SQLiteNServiceStore,
) -> None:
    first = await nstore.add_commitment("1.2.9.1", "MODALITY", REFS)
    again = await nstore.add_commitment("1.2.9.1", "MODALITY", REFS)
    assert again.pk == first.pk
    other = await nstore.add_commitment("1.2.9.1", "MODALITY", REFS[:1])
    assert other.pk != first.pk and other.duplicate
    await nstore.mark_delivered(first.pk, 1, 0)
    reused = await nstore.add_commitment("1.2.9.1", "MODALITY", REFS)
    assert reused.duplicate  # no longer active once reported (PS3.4 J.3.3.1.2)
    assert len(await nstore.commitments()) == 3


def _mpps(uid: str = "1.2.7.1", status: str = "IN PROGRESS") -> MPPSRecord:
    return MPPSRecord(
        sop_instance_uid=uid,
        status=status,
        attributes={"00400252": {"vr": "CS", "Value": [status]}},
        calling_ae="MODALITY",
        study_uids=("1.2.3.100",),
        series_uids=("1.2.3.100.1",),
        instance_uids=("1.2.3.4.5", "1.2.3.4.99"),
    )


async def test_mpps_create_get_and_duplicate(nstore: SQLiteNServiceStore) -> None:
    assert await nstore.create_mpps(_mpps())
    assert not await nstore.create_mpps(_mpps(status="COMPLETED"))
    got = await nstore.get_mpps("1.2.7.1")
    assert got is not None
    assert (got.status, got.calling_ae, got.study_uids) == (
        "IN PROGRESS",
        "MODALITY",
        ("1.2.3.100",),
    )
    assert got.instance_uids == ("1.2.3.4.5", "1.2.3.4.99")
    assert await nstore.get_mpps("1.2.7.404") is None


async def test_mpps_update_is_all_or_nothing(nstore: SQLiteNServiceStore) -> None:
    await nstore.create_mpps(_mpps())

    def refuse(current: MPPSRecord) -> MPPSRecord:
        raise ValueError("no")

    with pytest.raises(ValueError):
        await nstore.update_mpps("1.2.7.1", refuse)
    unchanged = await nstore.get_mpps("1.2.7.1")
    assert unchanged is not None and unchanged.status == "IN PROGRESS"

    def complete(current: MPPSRecord) -> MPPSRecord:
        return MPPSRecord(current.sop_instance_uid, "COMPLETED", {}, study_uids=("9.9",))

    updated = await nstore.update_mpps("1.2.7.1", complete)
    assert updated is not None
    again = await nstore.get_mpps("1.2.7.1")
    assert again is not None
    assert (again.status, again.study_uids, again.series_uids) == ("COMPLETED", ("9.9",), ())
    assert await nstore.update_mpps("1.2.7.404", complete) is None


async def test_mpps_is_linked_to_its_study_when_the_instances_arrive(
    archive: Archive, nstore: SQLiteNServiceStore
) -> None:
    await nstore.create_mpps(_mpps())
    [before] = await nstore.mpps_summaries()
    assert (before.studies_stored, before.instances_stored) == (0, 0)
    assert (before.images_referenced, before.images_stored) == (2, 0)
    await store(archive, encode(make_dataset("1.2.3.4.5")), sop_uid="1.2.3.4.5")
    [after] = await nstore.mpps_summaries()
    assert (after.studies_stored, after.instances_stored) == (1, 1)
    assert (after.images_referenced, after.images_stored) == (2, 1)
    assert after.record.study_uids == ("1.2.3.100",)


async def test_reindex_keeps_the_nservice_rows(root: Path, archive: Archive) -> None:
    await store(archive, encode(make_dataset("1.2.3.4.5")), sop_uid="1.2.3.4.5")
    async with SQLiteNServiceStore(archive.layout.index_path) as nstore:
        await nstore.add_commitment("1.2.9.1", "MODALITY", REFS)
        await nstore.create_mpps(_mpps())
    await archive.close()
    report = await tools.reindex(root)
    assert report.indexed == 1
    async with SQLiteNServiceStore(Path(root) / "index.sqlite3") as nstore:
        assert len(await nstore.pending_commitments()) == 1
        assert len(await nstore.mpps_summaries()) == 1
    await archive.open()  # the fixture closes it again


async def test_storage_cli_lists_mpps_and_commitments(
    root: Path, archive: Archive, capsys: pytest.CaptureFixture[str]
) -> None:
    await store(archive, encode(make_dataset("1.2.3.4.5")), sop_uid="1.2.3.4.5")
    async with SQLiteNServiceStore(archive.layout.index_path) as nstore:
        await nstore.create_mpps(_mpps())
        done = await nstore.add_commitment("1.2.9.1", "MODALITY", REFS)
        await nstore.mark_delivered(done.pk, 2, 1)
        await nstore.add_commitment("1.2.9.2", "CT01", REFS[:1])

    def run(*args: str) -> int:
        return main(["storage", *args, "--storage", str(root)])

    # the tools run asyncio.run() themselves: off this test's event loop
    assert await asyncio.to_thread(run, "mpps") == 0
    out = capsys.readouterr().out
    assert "1.2.7.1" in out and "IN PROGRESS" in out and "1.2.3.100" in out
    assert "1 of 1 stored" in out and "1/2" in out  # study stored; 1 of 2 images
    assert await asyncio.to_thread(run, "mpps", "--json") == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["status"] == "IN PROGRESS" and row["instances_stored"] == 1
    assert await asyncio.to_thread(run, "commitments") == 0
    out = capsys.readouterr().out
    assert "1.2.9.1" in out and "delivered" in out and "1.2.9.2" in out and "pending" in out
    assert await asyncio.to_thread(run, "commitments", "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["transaction_uid"], r["state"]) for r in rows] == [
        ("1.2.9.1", "delivered"),
        ("1.2.9.2", "pending"),
    ]
