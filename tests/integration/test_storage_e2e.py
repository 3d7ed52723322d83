"""Storage SCP end to end, in process: our client sends C-STOREs to a running server.

Hostile UIDs stay inside the storage root, a full disk is answered A702 and
the association goes on, a C-STORE on the wrong context gets 0122, a second
copy of an instance with other content is answered B006 and kept out, and
notification hooks see each stored instance once.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom.filereader import read_file_meta_info

from stellarpacs.aio.client import ClientAssociation
from stellarpacs.aio.scu.contexts import ProposedContext
from stellarpacs.dimse.command_codec import encode_command
from stellarpacs.dimse.commands import CStoreRQ, CStoreRSP
from stellarpacs.dimse.fragments import fragment_message
from stellarpacs.errors import AssociationAborted
from stellarpacs.fileio import TempFile
from stellarpacs.storage import tools
from stellarpacs.storage.archive import Archive
from stellarpacs.storage.files.layout import Layout
from stellarpacs.storage.index.instances import SQLiteIndex
from stellarpacs.storage.records import InstanceRecord, StoredEvent
from stellarpacs.uids import EXPLICIT_VR_LITTLE_ENDIAN
from tests.integration.storage_fixtures import (
    c_store,
    dataset_bytes,
    encode_dataset,
    files_under,
    open_store_association,
    serving,
    synthetic_dataset,
)

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
CALLING_AE = "E2ESCU"
CONTEXTS = (ProposedContext(CT, (EXPLICIT_VR_LITTLE_ENDIAN,)), ProposedContext(MR))

SUCCESS, SOP_CLASS_NOT_SUPPORTED, OUT_OF_RESOURCES = 0x0000, 0x0122, 0xA702
INVALID_SOP_INSTANCE = 0x0117


def ct_instance(
    index: int, *, sop_uid: str | None = None, study: str | None = None, series: str | None = None
) -> tuple[str, bytes]:
    """(SOP Instance UID, Explicit VR LE data set bytes) of a small CT image."""
    ds = synthetic_dataset(CT, index, patient_id=f"E2E{index:03d}")
    if sop_uid is not None:
        ds.SOPInstanceUID = sop_uid
    if study is not None:
        ds.StudyInstanceUID = study
    if series is not None:
        ds.SeriesInstanceUID = series
    return str(ds.SOPInstanceUID), encode_dataset(ds)


async def store_ct(client: ClientAssociation, uid: str, data: bytes) -> int:
    rsp = await c_store(client, data, sop_class_uid=CT, sop_instance_uid=uid)
    return rsp.status


async def stored_bytes(archive: Archive, uid: str) -> bytes:
    record = await archive.index.get_instance(uid)
    assert record is not None, f"{uid!r} is not indexed"
    return dataset_bytes(archive.layout.absolute(record.path))


# -- hostile UIDs --------------------------------------------------------------------------------

HOSTILE_UIDS = (
    "../../etc/passwd",
    "/abs/path",
    "..",
    ".",
    "1." * 100,  # 200 characters
    "1.2\x00.3",
    "1.2\x00.3/../../x",
    "1.2.3\n4",
    "C:\\Windows\\evil",
    "~root",
)


def _raw_store_request(context_id: int, message_id: int, uid: bytes) -> bytes:
    """A C-STORE-RQ command set whose Affected SOP Instance UID is ``uid``, any bytes.

    Our encoder refuses non-ASCII text, as it should; a hostile peer does not care.
    """
    placeholder = "9" * len(uid)
    command = encode_command(
        CStoreRQ(
            message_id=message_id, affected_sop_class_uid=CT, affected_sop_instance_uid=placeholder
        )
    )
    assert command.count(placeholder.encode()) == 1
    return command.replace(placeholder.encode(), uid)


async def raw_store(client: ClientAssociation, uid: bytes, data: bytes) -> CStoreRSP:
    """Send a C-STORE whose command carries raw ``uid`` bytes; the response."""
    association = client.association
    context = association.context_for(CT)
    command = _raw_store_request(context.context_id, association.next_message_id(), uid)
    for pdu in fragment_message(context.context_id, command, data, association.peer_max_pdu):
        association.connection.send_data(pdu)
    assert association.protocol is not None
    association.protocol.pump()
    incoming = await client.response()
    assert isinstance(incoming.command, CStoreRSP)
    return incoming.command


@pytest.mark.filterwarnings("ignore:.*for VR UI:UserWarning")  # pydicom: hostile on purpose
async def test_hostile_uids_stay_inside_the_root_and_never_collide(tmp_path: Path) -> None:
    root = tmp_path / "storage"
    before = {p for p in files_under(tmp_path.parent) if not p.is_relative_to(root)}
    sent: dict[str, bytes] = {}
    async with serving(root) as (server, archive):
        client = await open_store_association(server.port, CONTEXTS, calling_ae=CALLING_AE)
        async with client:
            for n, uid in enumerate(HOSTILE_UIDS):
                # the same hostile text names the study and the series inside the data set
                _, data = ct_instance(n, sop_uid=uid, study=uid, series=uid + "/s")
                assert await store_ct(client, uid, data) == SUCCESS, repr(uid)
                sent[uid] = data
            uid, data = ct_instance(50, study="\u00e9/..", series="\u00fc/../..")
            assert await store_ct(client, uid, data) == SUCCESS
            sent[uid] = data
        records = [r async for r in archive.index.iter_instances()]
        assert len(records) == len(sent), "two UIDs shared one instance"
        paths = {archive.layout.absolute(r.path).resolve() for r in records}
        assert len(paths) == len(records), "two instances share one file"
        for path in paths:
            assert path.is_relative_to(root.resolve() / "studies"), path
            assert path.is_file()
        for uid, data in sent.items():
            assert await stored_bytes(archive, uid) == data
            meta = read_file_meta_info(archive.layout.absolute(_path_of(records, uid)))
            value = meta.MediaStorageSOPInstanceUID  # a backslash makes pydicom split it
            assert (value if isinstance(value, str) else "\\".join(value)) == uid
        assert len(files_under(root / "studies", ".dcm")) == len(records)
        assert files_under(root / "tmp") == []
        assert (await tools.verify(root)).ok
    after = {p for p in files_under(tmp_path.parent) if not p.is_relative_to(root)}
    assert after == before, "something was written outside the storage root"
    assert not Path("/abs").exists() and not Path("/etc/passwd.dcm").exists()
    # the files alone name their instances: a rebuilt index holds the same rows
    report = await tools.reindex(root)
    assert (report.indexed, report.duplicates, report.skipped) == (len(sent), 0, ())
    async with SQLiteIndex(Layout(root).index_path) as index:
        rebuilt = [r async for r in index.iter_instances()]
    assert _identities(rebuilt) == _identities(records)


def _identities(records: list[InstanceRecord]) -> list[tuple[str, str, str, str]]:
    return sorted(
        (r.sop_instance_uid, r.path, r.study_instance_uid, r.series_instance_uid) for r in records
    )


def _path_of(records: list[InstanceRecord], uid: str) -> str:
    return next(r.path for r in records if r.sop_instance_uid == uid)


async def test_a_non_ascii_sop_instance_uid_is_refused_0117(tmp_path: Path) -> None:
    """Non-ASCII bytes cannot be kept apart once decoded (PS3.5 9.1): 0117, nothing stored."""
    root = tmp_path / "storage"
    async with serving(root) as (server, archive):
        client = await open_store_association(server.port, CONTEXTS, calling_ae=CALLING_AE)
        async with client:
            for n, raw in enumerate(("1.2.\u00e9".encode(), "1.2.\u00fc".encode(), b"1.2\xff")):
                _, data = ct_instance(n)
                rsp = await raw_store(client, raw, data)
                assert rsp.status == INVALID_SOP_INSTANCE
                assert rsp.affected_sop_instance_uid is None  # it cannot be sent back
            uid, data = ct_instance(9)
            assert await store_ct(client, uid, data) == SUCCESS
        assert (await archive.index.stats())["instances"] == 1
        assert len(files_under(root / "studies", ".dcm")) == 1
        assert files_under(root / "tmp") == []


async def test_an_empty_sop_instance_uid_aborts_and_writes_nothing(tmp_path: Path) -> None:
    """The DIMSE layer takes an empty mandatory UID for a missing one (PS3.7 9.3.1.1): A-ABORT."""
    root = tmp_path / "storage"
    async with serving(root) as (server, archive):
        client = await open_store_association(server.port, CONTEXTS, calling_ae=CALLING_AE)
        _, data = ct_instance(1, study="", series="")
        with pytest.raises(AssociationAborted):
            async with client:
                await store_ct(client, "", data)
        assert (await archive.index.stats())["instances"] == 0
        assert files_under(root / "studies") == [] and files_under(root / "tmp") == []
        client = await open_store_association(server.port, CONTEXTS, calling_ae=CALLING_AE)
        async with client:
            uid, data = ct_instance(2, study="", series="")
            assert await store_ct(client, uid, data) == SUCCESS
        assert await stored_bytes(archive, uid) == data


# -- full disk -----------------------------------------------------------------------------------


class DiskFull:
    """Makes the archive's writes fail with ENOSPC while armed."""

    def __init__(self) -> None:
        self.armed = False
        self.raised = 0

    def check(self) -> None:
        if self.armed:
            self.raised += 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _fail_writes(monkeypatch: pytest.MonkeyPatch, fault: DiskFull) -> None:
    original = TempFile.write

    def write(self: TempFile, data: bytes) -> None:
        if self.size:  # the meta header went in already: this is data set bytes
            fault.check()
        original(self, data)

    monkeypatch.setattr(TempFile, "write", write)


def _fail_fsync(monkeypatch: pytest.MonkeyPatch, fault: DiskFull) -> None:
    original = os.fsync

    def fsync(fd: int) -> None:
        fault.check()
        original(fd)

    monkeypatch.setattr(os, "fsync", fsync)


@pytest.mark.parametrize("inject", [_fail_writes, _fail_fsync], ids=["write", "fsync"])
async def test_a_full_disk_is_answered_a702_and_the_association_goes_on(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    inject: Callable[[pytest.MonkeyPatch, DiskFull], None],
) -> None:
    root = tmp_path / "storage"
    fault = DiskFull()
    inject(monkeypatch, fault)
    async with serving(root) as (server, archive):
        client = await open_store_association(server.port, CONTEXTS, calling_ae=CALLING_AE)
        async with client:
            before = [ct_instance(n) for n in range(3)]
            for uid, data in before:
                assert await store_ct(client, uid, data) == SUCCESS
            failing_uid, failing = ct_instance(10)
            fault.armed = True
            rsp = await c_store(client, failing, sop_class_uid=CT, sop_instance_uid=failing_uid)
            fault.armed = False
            assert fault.raised >= 1
            assert rsp.status == OUT_OF_RESOURCES
            assert rsp.error_comment and "No space left on device" in rsp.error_comment
            after_uid, after = ct_instance(11)
            assert await store_ct(client, after_uid, after) == SUCCESS
            assert client.association.is_established
        assert not await archive.index.has_instance(failing_uid)
        assert files_under(root / "tmp") == []
        for uid, data in [*before, (after_uid, after)]:
            assert await stored_bytes(archive, uid) == data
        assert len(files_under(root / "studies", ".dcm")) == 4
        report = await tools.verify(root)
        assert report.ok, report.problems
        # the refused instance can be sent again once there is room
        client = await open_store_association(server.port, CONTEXTS, calling_ae=CALLING_AE)
        async with client:
            assert await store_ct(client, failing_uid, failing) == SUCCESS
        assert await stored_bytes(archive, failing_uid) == failing


# -- a SOP class that is not the context's ---------------------------------------------------------


async def test_a_sop_class_other_than_the_contexts_gets_0122(tmp_path: Path) -> None:
    root = tmp_path / "storage"
    async with serving(root) as (server, archive):
        client = await open_store_association(server.port, CONTEXTS, calling_ae=CALLING_AE)
        async with client:
            uid, data = ct_instance(1)
            rsp = await c_store(
                client, data, sop_class_uid=MR, sop_instance_uid=uid, context_sop_class=CT
            )
            assert rsp.status == SOP_CLASS_NOT_SUPPORTED
            assert rsp.affected_sop_instance_uid == uid
            assert not await archive.index.has_instance(uid)
            assert await store_ct(client, uid, data) == SUCCESS
            assert client.association.is_established
        assert await stored_bytes(archive, uid) == data
        assert files_under(root / "tmp") == []
        assert len(files_under(root / "studies", ".dcm")) == 1


# -- duplicates ------------------------------------------------------------------------------------


async def test_a_duplicate_with_other_content_is_answered_b006_and_the_first_is_kept(
    tmp_path: Path,
) -> None:
    root = tmp_path / "storage"
    async with serving(root) as (server, archive):
        uid, first = ct_instance(1)
        _, second = ct_instance(2, sop_uid=uid)
        assert first != second
        client = await open_store_association(server.port, CONTEXTS, calling_ae=CALLING_AE)
        async with client:
            assert await store_ct(client, uid, first) == SUCCESS
            record = await archive.index.get_instance(uid)
            assert record is not None
            path = archive.layout.absolute(record.path)
            stat = path.stat()
            # Issue 12, defect 10: other content under a known UID is no longer a silent
            # Success; duplicate_policy "keep" (the default) answers B006, elements discarded.
            assert await store_ct(client, uid, second) == 0xB006
        assert archive.duplicates == 1
        assert await stored_bytes(archive, uid) == first
        assert path.stat().st_mtime_ns == stat.st_mtime_ns
        assert (await archive.index.stats())["instances"] == 1
        assert len(files_under(root / "studies", ".dcm")) == 1
        assert files_under(root / "tmp") == []


# -- notification hooks ----------------------------------------------------------------------------


async def test_the_hook_sees_each_stored_instance_once(tmp_path: Path) -> None:
    root = tmp_path / "storage"
    events: list[StoredEvent] = []

    async def hook(event: StoredEvent) -> None:
        events.append(event)

    async with serving(root) as (server, archive):
        archive.add_hook(hook)
        sent = [ct_instance(n) for n in range(3)]
        client = await open_store_association(server.port, CONTEXTS, calling_ae=CALLING_AE)
        async with client:
            for uid, data in sent:
                assert await store_ct(client, uid, data) == SUCCESS
            assert await store_ct(client, *sent[0]) == SUCCESS  # a duplicate: no event
        await archive.drain()
        assert [e.record.sop_instance_uid for e in events] == [uid for uid, _ in sent]
        for event, (uid, data) in zip(events, sent, strict=True):
            record = await archive.index.get_instance(uid)
            assert event.record == record
            assert event.path == archive.layout.absolute(event.record.path)
            assert event.path.is_absolute() and dataset_bytes(event.path) == data
            assert event.record.calling_ae == CALLING_AE
            assert event.record.sop_class_uid == CT
            meta = read_file_meta_info(event.path)
            assert meta.MediaStorageSOPInstanceUID == uid
