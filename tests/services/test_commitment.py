"""Storage Commitment SCP: N-ACTION checks, the assessment, and the delivery worker."""

from __future__ import annotations

import asyncio
import socket
import struct
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset

from stellarpacs.aio.scu.nservices import CommitmentListener
from stellarpacs.commitment import FailureReason, SOPReference, action_information
from stellarpacs.config import Config, RemoteAE
from stellarpacs.datasets import encode_dataset
from stellarpacs.dimse.commands import NActionRQ, NActionRSP
from stellarpacs.dimse.events import Incoming
from stellarpacs.services.commitment import CommitmentService
from stellarpacs.services.commitment_delivery import DeliveryWorker, assess
from stellarpacs.services.storage import STORE_STATUS
from stellarpacs.storage.archive import Archive
from stellarpacs.storage.index.nservices import SQLiteNServiceStore
from stellarpacs.storage.records import CommitmentRequest, CommitmentState
from stellarpacs.uids import (
    IMPLICIT_VR_LITTLE_ENDIAN,
    STORAGE_COMMITMENT_PUSH,
    STORAGE_COMMITMENT_PUSH_INSTANCE,
)
from stellarpacs.ul.negotiation import PresentationContext
from tests.aio.fakes import RecordingAssociation
from tests.storage.dicomdata import CT_IMAGE, encode, make_dataset, store

HOST = "127.0.0.1"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
CONTEXT = PresentationContext(1, STORAGE_COMMITMENT_PUSH, IMPLICIT_VR_LITTLE_ENDIAN)
WAIT = 5.0
TINY: dict[str, Any] = {"base_delay": 0.01, "max_delay": 0.05}
#: Referenced SOP Sequence of undefined length whose item never ends: pydicom cannot read it.
UNPARSABLE = struct.pack("<HHI", 0x0008, 0x1199, 0xFFFFFFFF) + b"\x01\x02"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def make_config(root: Path, port: int = 1, **overrides: Any) -> Config:
    remote = RemoteAE("MODALITY", HOST, port)
    values: dict[str, Any] = {
        "storage": root, "fsync": False, "connect_timeout": 2.0, "dimse_timeout": 2.0,
        "remotes": {"MODALITY": remote},
    }  # fmt: skip
    return Config(**(values | overrides))


@pytest.fixture
async def archive(tmp_path: Path) -> AsyncIterator[Archive]:
    async with Archive(tmp_path / "archive", fsync=False) as opened:
        yield opened


@pytest.fixture
async def nstore(archive: Archive) -> AsyncIterator[SQLiteNServiceStore]:
    async with SQLiteNServiceStore(archive.layout.index_path, durable=False) as opened:
        yield opened


async def stored(archive: Archive, uid: str) -> None:
    outcome = await store(archive, encode(make_dataset(uid)), sop_uid=uid)
    assert STORE_STATUS[outcome.result] == 0


# --- N-ACTION -------------------------------------------------------------------------------


def request_data(
    transaction: str | None = "1.2.9.1", refs: list[tuple[str, str]] | None = None
) -> bytes:
    with warnings.catch_warnings():  # pydicom warns about the malformed UIDs we want
        warnings.simplefilter("ignore")
        ds = action_information(
            transaction or "", [SOPReference(*r) for r in (refs or [(CT_IMAGE, "1.2.3.4.5")])]
        )
    if transaction is None:
        del ds.TransactionUID
    return encode_dataset(ds, IMPLICIT_VR_LITTLE_ENDIAN)


async def n_action(
    service: CommitmentService,
    data: bytes | None,
    *,
    calling_ae: str = "MODALITY",
    sop_class: str = STORAGE_COMMITMENT_PUSH,
    instance: str = STORAGE_COMMITMENT_PUSH_INSTANCE,
    action: int = 1,
) -> NActionRSP:
    association = RecordingAssociation(calling_ae)
    rq = NActionRQ(
        message_id=9, requested_sop_class_uid=sop_class, requested_sop_instance_uid=instance,
        action_type_id=action, has_dataset=data is not None,
    )  # fmt: skip
    await service.handle(association, Incoming(CONTEXT, rq, data))
    [rsp] = association.messages
    assert isinstance(rsp, NActionRSP) and rsp.message_id_being_responded_to == 9
    return rsp


@pytest.fixture
def service(archive: Archive, nstore: SQLiteNServiceStore) -> CommitmentService:
    return CommitmentService(archive, nstore, make_config(archive.layout.root))


async def test_a_valid_request_is_kept_and_answered_at_once(
    service: CommitmentService, nstore: SQLiteNServiceStore
) -> None:
    refs = [(CT_IMAGE, "1.2.3.4.5"), (MR_IMAGE, "1.2.3.4.6")]
    rsp = await n_action(service, request_data("1.2.9.1", refs))
    assert (rsp.status, rsp.action_type_id) == (0, 1)
    assert rsp.affected_sop_class_uid == STORAGE_COMMITMENT_PUSH
    assert rsp.affected_sop_instance_uid == STORAGE_COMMITMENT_PUSH_INSTANCE
    [kept] = await nstore.pending_commitments()
    assert (kept.transaction_uid, kept.requester_ae, kept.references) == (
        "1.2.9.1", "MODALITY", tuple(refs),
    )  # fmt: skip
    assert service.worker.pending == 1  # handed to the (not started) worker


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"sop_class": "1.2.840.10008.1.1"}, 0x0118),
        ({"instance": "1.2.3"}, 0x0112),
        ({"instance": "1.2.03.x"}, 0x0117),
        ({"action": 2}, 0x0123),
        ({"calling_ae": "STRANGER"}, 0x0110),
        ({"data": None}, 0x0120),
        ({"data": request_data(None)}, 0x0120),
        ({"data": request_data("")}, 0x0121),
        ({"data": request_data("1.2.abc")}, 0x0106),
        ({"data": request_data("1.2.9.1", [(CT_IMAGE, "")])}, 0x0121),
        ({"data": UNPARSABLE}, 0x0110),
    ],
)
@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")  # 1.2.abc, on purpose
async def test_refusals(
    service: CommitmentService, nstore: SQLiteNServiceStore, kwargs: dict[str, Any], status: int
) -> None:
    data = kwargs.pop("data", request_data())
    rsp = await n_action(service, data, **kwargs)
    assert rsp.status == status and rsp.error_comment
    assert await nstore.commitments() == []
    assert service.worker.pending == 0


async def test_empty_reference_sequence_and_unknown_ae_comment(
    service: CommitmentService,
) -> None:
    ds = Dataset()
    ds.TransactionUID = "1.2.9.1"
    ds.ReferencedSOPSequence = []
    rsp = await n_action(service, encode_dataset(ds, IMPLICIT_VR_LITTLE_ENDIAN))
    assert rsp.status == 0x0121
    rsp = await n_action(service, request_data(), calling_ae="STRANGER")
    assert rsp.error_comment == "AE STRANGER not configured"


# --- the assessment -------------------------------------------------------------------------


async def test_assess_names_each_failure(archive: Archive) -> None:
    for uid in ("1.2.3.4.5", "1.2.3.4.7"):
        await stored(archive, uid)
    record = await archive.index.get_instance("1.2.3.4.7")
    assert record is not None
    archive.layout.absolute(record.path).unlink()  # indexed, but its file is gone
    refs = (
        (CT_IMAGE, "1.2.3.4.5"),
        (CT_IMAGE, "1.2.3.4.6"),
        (MR_IMAGE, "1.2.3.4.5"),
        (CT_IMAGE, "1.2.3.4.7"),
        ("1.2.3.999", "1.2.3.4.8"),
    )
    config = make_config(archive.layout.root, storage_sop_classes=(CT_IMAGE, MR_IMAGE))
    report = await assess(archive, CommitmentRequest(1, "1.2.9.1", "MODALITY", refs), config)
    assert report.event_type_id == 2 and report.transaction_uid == "1.2.9.1"
    assert report.committed == (SOPReference(CT_IMAGE, "1.2.3.4.5"),)
    assert [(f.reference.sop_instance_uid, f.reason) for f in report.failed] == [
        ("1.2.3.4.6", FailureReason.NO_SUCH_OBJECT_INSTANCE),
        ("1.2.3.4.5", FailureReason.CLASS_INSTANCE_CONFLICT),
        ("1.2.3.4.7", FailureReason.PROCESSING_FAILURE),
        ("1.2.3.4.8", FailureReason.REFERENCED_SOP_CLASS_NOT_SUPPORTED),
    ]
    ok = await assess(archive, CommitmentRequest(2, "1.2.9.2", "M", refs[:1]), config)
    assert (ok.event_type_id, ok.failed, ok.retrieve_ae_title) == (1, (), "STELLARPACS")
    dup = CommitmentRequest(3, "1.2.9.1", "MODALITY", refs[:1], duplicate=True)
    reused = await assess(archive, dup, config)
    assert reused.committed == () and [f.reason for f in reused.failed] == [0x0131]


# --- the delivery worker --------------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap(tmp_path: Path) -> None:
    worker = DeliveryWorker(
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        make_config(tmp_path),
        base_delay=0.5,
        max_delay=3.0,
    )
    assert [worker.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    with pytest.raises(ValueError):
        DeliveryWorker(None, None, make_config(tmp_path), base_delay=2, max_delay=1)  # type: ignore[arg-type]


def attempts_queue(worker: DeliveryWorker) -> asyncio.Queue[Exception | None]:
    queue: asyncio.Queue[Exception | None] = asyncio.Queue()
    worker.hooks.append(lambda request, error: queue.put_nowait(error))
    return queue


async def test_unreachable_requester_gets_the_report_when_it_comes_back(
    archive: Archive, nstore: SQLiteNServiceStore
) -> None:
    await stored(archive, "1.2.3.4.5")
    port = free_port()
    config = make_config(archive.layout.root, port)
    worker = DeliveryWorker(archive, nstore, config, **TINY)
    attempts = attempts_queue(worker)
    request = await nstore.add_commitment("1.2.9.1", "MODALITY", [(CT_IMAGE, "1.2.3.4.5")])
    worker.start()
    worker.submit(request)
    try:
        for _ in range(3):  # refused, retried with back-off
            error = await asyncio.wait_for(attempts.get(), WAIT)
            assert isinstance(error, OSError)
        [pending] = await nstore.pending_commitments()
        assert pending.attempts >= 3 and pending.last_error
        async with CommitmentListener("MODALITY", host=HOST, port=port) as listener:
            report = await asyncio.wait_for(listener.report("1.2.9.1"), WAIT)
            while (error := await asyncio.wait_for(attempts.get(), WAIT)) is not None:
                pass  # attempts that began before the listener was up
    finally:
        await worker.close()
    assert report.event_type_id == 1
    assert report.committed == (SOPReference(CT_IMAGE, "1.2.3.4.5"),)
    assert await nstore.pending_commitments() == []
    [done] = await nstore.commitments()
    assert (done.state, done.event_type_id, done.failed_count) == (CommitmentState.DELIVERED, 1, 0)
    assert worker.pending == 0 and "1.2.9.1" in worker.delivered


async def test_a_restarted_worker_delivers_what_was_pending(
    archive: Archive, nstore: SQLiteNServiceStore
) -> None:
    port = free_port()
    config = make_config(archive.layout.root, port)
    first = DeliveryWorker(archive, nstore, config, **TINY)
    attempts = attempts_queue(first)
    request = await nstore.add_commitment("1.2.9.1", "MODALITY", [(CT_IMAGE, "1.2.3.4.404")])
    first.start()
    first.submit(request)
    assert isinstance(await asyncio.wait_for(attempts.get(), WAIT), OSError)
    await first.close()
    async with (
        SQLiteNServiceStore(archive.layout.index_path) as reopened,
        CommitmentListener("MODALITY", host=HOST, port=port) as listener,
    ):
        second = DeliveryWorker(archive, reopened, config, **TINY)
        second.start()  # loads the pending request by itself
        try:
            report = await asyncio.wait_for(listener.report("1.2.9.1"), WAIT)
        finally:
            await second.close()
        assert report.event_type_id == 2
        assert [(f.reference.sop_instance_uid, f.reason) for f in report.failed] == [
            ("1.2.3.4.404", 0x0112)
        ]


async def test_worker_waits_for_the_archive_to_open(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "late", fsync=False)
    store = SQLiteNServiceStore(archive.layout.index_path, durable=False)
    worker = DeliveryWorker(archive, store, make_config(tmp_path, free_port()), **TINY)
    attempts = attempts_queue(worker)
    worker.start()
    await asyncio.sleep(0)
    assert not archive.layout.root.exists()  # nothing is created before the archive opens
    await archive.open()
    try:
        async with SQLiteNServiceStore(archive.layout.index_path) as other:
            await other.add_commitment("1.2.9.1", "MODALITY", [(CT_IMAGE, "1.2.3.4.5")])
        # the worker opens its store once the archive is open and finds the request
        assert isinstance(await asyncio.wait_for(attempts.get(), WAIT), OSError)
        assert store.is_open
    finally:
        await worker.close()
        await store.close()
        await archive.close()


async def test_a_resent_request_skips_the_back_off(
    archive: Archive, nstore: SQLiteNServiceStore
) -> None:
    port = free_port()
    worker = DeliveryWorker(archive, nstore, make_config(archive.layout.root, port),
                            base_delay=300.0, max_delay=300.0)  # fmt: skip
    attempts = attempts_queue(worker)
    refs = [(CT_IMAGE, "1.2.3.4.5")]
    request = await nstore.add_commitment("1.2.9.1", "MODALITY", refs)
    worker.start()
    worker.submit(request)
    try:
        assert isinstance(await asyncio.wait_for(attempts.get(), WAIT), OSError)
        async with CommitmentListener("MODALITY", host=HOST, port=port) as listener:
            again = await nstore.add_commitment("1.2.9.1", "MODALITY", refs)
            assert again.pk == request.pk
            worker.submit(again)  # what the N-ACTION handler does: not 300 s later
            report = await asyncio.wait_for(listener.report("1.2.9.1"), WAIT)
    finally:
        await worker.close()
    assert report.failed[0].reason == FailureReason.NO_SUCH_OBJECT_INSTANCE
