"""Storage Commitment and MPPS against pynetdicom and our own client, over loopback.

pynetdicom is blocking: its SCU runs in a worker thread under a bounded wait,
and the listener that receives our N-EVENT-REPORTs (PS3.4 J.3.3.1.3: the
SCU accepts an association on which we take the SCP role) runs in its own
threads, shut down in ``finally``.  Reports are read from a thread-safe queue
with a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import socket
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, cast

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, evt

from stellarpacs.aio.client import commit, connect
from stellarpacs.aio.protocols import AssociationLike
from stellarpacs.aio.scu.contexts import ProposedContext
from stellarpacs.aio.scu.nservices import CommitmentListener
from stellarpacs.aio.server import Server
from stellarpacs.commitment import CommitmentReport, SOPReference, event_information
from stellarpacs.config import Config, RemoteAE
from stellarpacs.datasets import encode_dataset
from stellarpacs.dimse.commands import Message, NActionRQ, NActionRSP, NEventReportRQ
from stellarpacs.dimse.events import DatasetSink, Incoming
from stellarpacs.services.commitment import CommitmentService
from stellarpacs.services.mpps import MPPSService
from stellarpacs.services.registry import ServiceSet, default_services
from stellarpacs.services.storage import STORE_STATUS
from stellarpacs.storage.archive import Archive
from stellarpacs.storage.index.nservices import SQLiteNServiceStore
from stellarpacs.storage.records import CommitmentState
from stellarpacs.uids import (
    MPPS,
    STORAGE_COMMITMENT_PUSH,
    STORAGE_COMMITMENT_PUSH_INSTANCE,
    VERIFICATION,
)
from stellarpacs.ul.negotiation import PresentationContext, Role
from tests.integration.peers import HOST
from tests.storage.dicomdata import CT_IMAGE, encode, make_dataset, store

pytestmark = pytest.mark.interop

SERVER_AE = "STELLARPACS"
PEER_AE = "PYSCU"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
WAIT = 10.0
PY_TIMEOUT = 5  # pynetdicom's ACSE / DIMSE / network timeouts


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def make_config(storage: Path, peer_port: int, **overrides: Any) -> Config:
    values: dict[str, Any] = {
        "host": HOST, "port": 0, "storage": storage, "fsync": False, "artim_timeout": 1.0,
        "connect_timeout": 2.0, "dimse_timeout": 5.0,
        "remotes": {PEER_AE: RemoteAE(PEER_AE, HOST, peer_port)},
    }  # fmt: skip
    return Config(**(values | overrides))


@contextlib.asynccontextmanager
async def serving(services: ServiceSet, config: Config) -> AsyncIterator[Server]:
    try:
        async with Server(config, services.services) as server:
            yield server
    finally:
        await services.close()


async def stored(archive: Archive, *uids: str) -> None:
    for uid in uids:
        outcome = await store(archive, encode(make_dataset(uid)), sop_uid=uid)
        assert STORE_STATUS[outcome.result] == 0


# --- pynetdicom as storage commitment SCU ------------------------------------------------------


@dataclass(frozen=True)
class Received:
    """One N-EVENT-REPORT as pynetdicom's listener saw it."""

    event_type: int
    info: Dataset
    calling_ae: str
    as_scu: bool  # the listener's role on the context: SCU means we were the SCP

    def committed(self) -> list[str]:
        return [i.ReferencedSOPInstanceUID for i in self.info.get("ReferencedSOPSequence", [])]

    def failed(self) -> list[tuple[str, int]]:
        items = self.info.get("FailedSOPSequence", [])
        return [(i.ReferencedSOPInstanceUID, int(i.FailureReason)) for i in items]


@contextlib.contextmanager
def py_listener(port: int) -> Iterator[queue.Queue[Received]]:
    """pynetdicom accepting our N-EVENT-REPORTs, granting us the SCP role."""
    reports: queue.Queue[Received] = queue.Queue()

    def on_report(event: Any) -> tuple[int, None]:
        [context] = [
            cx for cx in event.assoc.accepted_contexts if cx.context_id == event.context.context_id
        ]
        reports.put(
            Received(
                int(event.request.EventTypeID),
                event.event_information,
                str(event.assoc.requestor.ae_title).strip(),
                bool(context.as_scu),
            )
        )
        return 0x0000, None

    ae = AE(ae_title=PEER_AE)
    ae.network_timeout = ae.acse_timeout = ae.dimse_timeout = PY_TIMEOUT
    ae.add_supported_context(STORAGE_COMMITMENT_PUSH, scu_role=False, scp_role=True)
    server = ae.start_server(
        (HOST, port), block=False, evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)]
    )
    assert server is not None  # block=False returns the server
    try:
        yield reports
    finally:
        server.shutdown()


def action_dataset(transaction: str, refs: list[tuple[str, str]]) -> Dataset:
    ds = Dataset()
    ds.TransactionUID = transaction
    items = []
    for sop_class, sop_instance in refs:
        item = Dataset()
        item.ReferencedSOPClassUID = sop_class
        item.ReferencedSOPInstanceUID = sop_instance
        items.append(item)
    ds.ReferencedSOPSequence = items
    return ds


def _py_n_action(port: int, ds: Dataset) -> int:
    ae = AE(ae_title=PEER_AE)
    ae.network_timeout = ae.acse_timeout = ae.dimse_timeout = PY_TIMEOUT
    ae.add_requested_context(STORAGE_COMMITMENT_PUSH)
    assoc = ae.associate(HOST, port, ae_title=SERVER_AE)
    assert assoc.is_established
    try:
        status, _ = assoc.send_n_action(
            ds, 1, STORAGE_COMMITMENT_PUSH, STORAGE_COMMITMENT_PUSH_INSTANCE
        )
    finally:
        assoc.release()
    return int(status.Status)


async def py_n_action(port: int, transaction: str, refs: list[tuple[str, str]]) -> int:
    ds = action_dataset(transaction, refs)
    return await asyncio.wait_for(asyncio.to_thread(_py_n_action, port, ds), WAIT)


async def next_report(reports: queue.Queue[Received]) -> Received:
    return await asyncio.to_thread(reports.get, True, WAIT)


async def test_pynetdicom_scu_gets_each_reference_right_on_a_new_association(
    tmp_path: Path,
) -> None:
    peer_port = free_port()
    config = make_config(tmp_path / "storage", peer_port)
    services = await default_services(config)
    assert services.archive is not None
    await stored(services.archive, "1.2.3.4.1", "1.2.3.4.2")
    with py_listener(peer_port) as reports:
        async with serving(services, config) as server:
            mix = [
                (CT_IMAGE, "1.2.3.4.1"),
                (CT_IMAGE, "1.2.3.4.404"),
                (MR_IMAGE, "1.2.3.4.2"),
                (CT_IMAGE, "1.2.3.4.2"),
            ]
            assert await py_n_action(server.port, "1.2.9.1", mix) == 0x0000
            report = await next_report(reports)
            assert (report.event_type, report.calling_ae) == (2, SERVER_AE)
            assert report.as_scu  # role selection made StellarPACS the SCP
            assert report.info.TransactionUID == "1.2.9.1"
            assert report.committed() == ["1.2.3.4.1", "1.2.3.4.2"]
            assert report.failed() == [("1.2.3.4.404", 0x0112), ("1.2.3.4.2", 0x0119)]
            all_stored = [(CT_IMAGE, "1.2.3.4.1"), (CT_IMAGE, "1.2.3.4.2")]
            assert await py_n_action(server.port, "1.2.9.2", all_stored) == 0x0000
            report = await next_report(reports)
            assert report.event_type == 1
            assert report.committed() == ["1.2.3.4.1", "1.2.3.4.2"] and not report.failed()
            assert "FailedSOPSequence" not in report.info


async def test_pynetdicom_refusals_keep_the_association_usable(tmp_path: Path) -> None:
    config = make_config(tmp_path / "storage", free_port())
    services = await default_services(config)

    def session(port: int) -> list[int]:
        ae = AE(ae_title="STRANGER")
        ae.network_timeout = ae.acse_timeout = ae.dimse_timeout = PY_TIMEOUT
        ae.add_requested_context(STORAGE_COMMITMENT_PUSH)
        ae.add_requested_context(VERIFICATION)
        assoc = ae.associate(HOST, port, ae_title=SERVER_AE)
        assert assoc.is_established
        try:
            ds = action_dataset("1.2.9.1", [(CT_IMAGE, "1.2.3.4.1")])
            unknown_ae, _ = assoc.send_n_action(
                ds, 1, STORAGE_COMMITMENT_PUSH, STORAGE_COMMITMENT_PUSH_INSTANCE
            )
            no_action, _ = assoc.send_n_action(
                ds, 7, STORAGE_COMMITMENT_PUSH, STORAGE_COMMITMENT_PUSH_INSTANCE
            )
            echo = assoc.send_c_echo()
        finally:
            assoc.release()
        return [int(unknown_ae.Status), int(no_action.Status), int(echo.Status)]

    async with serving(services, config) as server:
        statuses = await asyncio.wait_for(asyncio.to_thread(session, server.port), WAIT)
    assert statuses == [0x0110, 0x0123, 0x0000]


async def test_a_requester_that_is_down_gets_the_report_when_back(tmp_path: Path) -> None:
    """Retried with back-off (tiny here) until the requester listens again."""
    peer_port = free_port()
    config = make_config(tmp_path / "storage", peer_port)
    archive = Archive(config.storage, fsync=False)
    await archive.open()
    nstore = SQLiteNServiceStore(archive.layout.index_path, durable=False)
    commitment = CommitmentService(archive, nstore, config, base_delay=0.02, max_delay=0.1)
    failures: asyncio.Queue[Exception | None] = asyncio.Queue()
    commitment.worker.hooks.append(lambda request, error: failures.put_nowait(error))
    commitment.worker.start()
    services = ServiceSet([commitment], archive, [nstore.close, commitment.worker.close])
    await stored(archive, "1.2.3.4.1")
    async with serving(services, config) as server:
        assert await py_n_action(server.port, "1.2.9.1", [(CT_IMAGE, "1.2.3.4.1")]) == 0
        for _ in range(2):  # refused twice: nobody listens
            assert isinstance(await asyncio.wait_for(failures.get(), WAIT), OSError)
        with py_listener(peer_port) as reports:
            report = await next_report(reports)
    assert report.event_type == 1 and report.committed() == ["1.2.3.4.1"]


async def test_a_pending_report_survives_a_restart(tmp_path: Path) -> None:
    peer_port = free_port()
    config = make_config(tmp_path / "storage", peer_port)
    services = await default_services(config)
    assert services.archive is not None
    await stored(services.archive, "1.2.3.4.1")
    [commitment] = [s for s in services.services if isinstance(s, CommitmentService)]
    failures: asyncio.Queue[Exception | None] = asyncio.Queue()
    commitment.worker.hooks.append(lambda request, error: failures.put_nowait(error))
    async with serving(services, config) as server:
        refs = [(CT_IMAGE, "1.2.3.4.1"), (CT_IMAGE, "1.2.3.4.9")]
        assert await py_n_action(server.port, "1.2.9.1", refs) == 0
        assert isinstance(await asyncio.wait_for(failures.get(), WAIT), OSError)
    # StellarPACS is stopped; the requester comes back; a new server on the same storage
    with py_listener(peer_port) as reports:
        again = await default_services(config)  # its worker loads the pending request
        [after] = [s for s in again.services if isinstance(s, CommitmentService)]
        attempts: asyncio.Queue[Exception | None] = asyncio.Queue()
        after.worker.hooks.append(lambda request, error: attempts.put_nowait(error))
        async with serving(again, config):
            report = await next_report(reports)
            assert report.event_type == 2
            assert report.committed() == ["1.2.3.4.1"]
            assert report.failed() == [("1.2.3.4.9", 0x0112)]
            assert await asyncio.wait_for(attempts.get(), WAIT) is None  # acknowledged
            assert after.worker.pending == 0
            [kept] = await cast(SQLiteNServiceStore, after.store).commitments()
            assert kept.state is CommitmentState.DELIVERED and kept.attempts >= 2


# --- pynetdicom as MPPS SCU ---------------------------------------------------------------------


def in_progress(study: str) -> Dataset:
    ds = Dataset()
    ds.PatientID = "P001"
    ds.PatientName = "Doe^John"
    ds.Modality = "CT"
    ds.PerformedProcedureStepID = "PPS1"
    ds.PerformedStationAETitle = PEER_AE
    ds.PerformedProcedureStepStartDate = "20240131"
    ds.PerformedProcedureStepStartTime = "101500"
    ds.PerformedProcedureStepStatus = "IN PROGRESS"
    step = Dataset()
    step.StudyInstanceUID = study
    step.AccessionNumber = "ACC1"
    ds.ScheduledStepAttributesSequence = [step]
    ds.PerformedSeriesSequence = []
    return ds


def final(status: str, series: str, images: list[str]) -> Dataset:
    ds = Dataset()
    ds.PerformedProcedureStepStatus = status
    ds.PerformedProcedureStepEndDate = "20240131"
    ds.PerformedProcedureStepEndTime = "103000"
    item = Dataset()
    item.SeriesInstanceUID = series
    refs = []
    for uid in images:
        ref = Dataset()
        ref.ReferencedSOPClassUID = CT_IMAGE
        ref.ReferencedSOPInstanceUID = uid
        refs.append(ref)
    item.ReferencedImageSequence = refs
    ds.PerformedSeriesSequence = [item]
    return ds


def _py_mpps_session(port: int) -> dict[str, Any]:
    ae = AE(ae_title=PEER_AE)
    ae.network_timeout = ae.acse_timeout = ae.dimse_timeout = PY_TIMEOUT
    ae.add_requested_context(MPPS)
    ae.add_requested_context(VERIFICATION)
    assoc = ae.associate(HOST, port, ae_title=SERVER_AE)
    assert assoc.is_established
    seen: dict[str, Any] = {}

    def n_create(ds: Dataset, uid: str) -> int:
        status, _ = assoc.send_n_create(ds, MPPS, uid)
        return int(status.Status)

    def n_set(ds: Dataset, uid: str) -> Dataset:
        status, _ = assoc.send_n_set(ds, MPPS, uid)
        return status

    try:
        seen["create"] = n_create(in_progress("1.2.3.100"), "1.2.7.1")
        seen["duplicate"] = n_create(in_progress("1.2.3.100"), "1.2.7.1")
        created_final = in_progress("1.2.3.100")
        created_final.PerformedProcedureStepStatus = "COMPLETED"
        seen["create_completed"] = n_create(created_final, "1.2.7.2")
        still = Dataset()
        still.PerformedProcedureStepDescription = "CT chest"
        seen["set_in_progress"] = int(n_set(still, "1.2.7.1").Status)
        odd = final("DONE", "1.2.3.100.1", [])
        seen["set_invalid"] = int(n_set(odd, "1.2.7.1").Status)
        done = final("COMPLETED", "1.2.3.100.1", ["1.2.3.4.5", "1.2.3.4.6"])
        seen["set_completed"] = int(n_set(done, "1.2.7.1").Status)
        late = n_set(final("DISCONTINUED", "1.2.3.100.1", []), "1.2.7.1")
        seen["set_after_final"] = (int(late.Status), late.get("ErrorID"), late.get("ErrorComment"))
        seen["set_unknown"] = int(n_set(done, "1.2.7.404").Status)
        seen["echo"] = int(assoc.send_c_echo().Status)
    finally:
        assoc.release()
    return seen


async def test_pynetdicom_mpps_sequence_is_stored_and_linked(tmp_path: Path) -> None:
    config = make_config(tmp_path / "storage", free_port())
    services = await default_services(config)
    assert services.archive is not None
    [mpps] = [s for s in services.services if isinstance(s, MPPSService)]
    async with serving(services, config) as server:
        seen = await asyncio.wait_for(asyncio.to_thread(_py_mpps_session, server.port), WAIT)
        assert seen == {
            "create": 0x0000,
            "duplicate": 0x0111,
            "create_completed": 0x0106,
            "set_in_progress": 0x0000,
            "set_invalid": 0x0106,
            "set_completed": 0x0000,
            "set_after_final": (
                0x0110, 0xA710, "Performed Procedure Step Object may no longer be updated",
            ),
            "set_unknown": 0x0112,
            "echo": 0x0000,
        }  # fmt: skip
        record = await mpps.store.get_mpps("1.2.7.1")
        assert record is not None and record.status == "COMPLETED"
        assert record.attributes["00400254"]["Value"] == ["CT chest"]  # the first N-SET
        assert await mpps.store.get_mpps("1.2.7.2") is None
        await stored(services.archive, "1.2.3.4.5")  # the study's instances arrive
        [summary] = await cast(SQLiteNServiceStore, mpps.store).mpps_summaries()
        assert (summary.studies_stored, summary.images_referenced, summary.images_stored) == (
            1, 2, 1,
        )  # fmt: skip


# --- our own client -----------------------------------------------------------------------------


async def test_our_client_commits_and_sends_mpps(tmp_path: Path) -> None:
    listen_port = free_port()
    config = make_config(
        tmp_path / "storage",
        listen_port,
        remotes={"OURSCU": RemoteAE("OURSCU", HOST, listen_port)},
    )
    services = await default_services(config)
    assert services.archive is not None
    await stored(services.archive, "1.2.3.4.1")
    async with serving(services, config) as server:
        report = await commit(
            HOST, server.port, [(CT_IMAGE, "1.2.3.4.1"), (CT_IMAGE, "1.2.3.4.2")],
            called_ae=SERVER_AE, calling_ae="OURSCU", listen_port=listen_port,
            listen_host=HOST, timeout=WAIT,
        )  # fmt: skip
        assert report.event_type_id == 2 and report.retrieve_ae_title == SERVER_AE
        assert report.committed == (SOPReference(CT_IMAGE, "1.2.3.4.1"),)
        assert [(f.reference.sop_instance_uid, f.reason) for f in report.failed] == [
            ("1.2.3.4.2", 0x0112)
        ]
        async with CommitmentListener("OURSCU", host=HOST, port=listen_port) as listener:
            ok = await commit(
                HOST, server.port, [SOPReference(CT_IMAGE, "1.2.3.4.1")],
                called_ae=SERVER_AE, calling_ae="OURSCU", listener=listener,
                transaction_uid="1.2.9.77", timeout=WAIT,
            )  # fmt: skip
            assert (ok.event_type_id, ok.transaction_uid) == (1, "1.2.9.77")
            assert listener.received == [ok]
        client = await connect(
            HOST, server.port, called_ae=SERVER_AE, calling_ae="OURSCU",
            contexts=[ProposedContext(MPPS)], dimse_timeout=WAIT,
        )  # fmt: skip
        async with client:
            created = await client.n_create(MPPS, in_progress("1.2.3.100"))
            assert created.ok and created.sop_instance_uid
            uid = created.sop_instance_uid
            assert (await client.n_set(MPPS, uid, final("COMPLETED", "1.2.3.100.1", []))).ok
            late = await client.n_set(MPPS, uid, final("COMPLETED", "1.2.3.100.1", []))
            assert (late.status, late.error_id) == (0x0110, 0xA710)
            missing = await client.n_set(MPPS, "1.2.7.404", final("COMPLETED", "1.2", []))
            assert missing.status == 0x0112 and not missing.ok


class _SameAssociationSCP:
    """A commitment SCP that reports on the N-ACTION's own association (J.3.3 note 1)."""

    abstract_syntaxes: Mapping[str, tuple[str, ...]] = MappingProxyType(
        {STORAGE_COMMITMENT_PUSH: ("1.2.840.10008.1.2",)}
    )
    roles: Mapping[str, Role] = MappingProxyType({})
    requests: tuple[type[Message], ...] = (NActionRQ,)

    def __init__(self) -> None:
        self.acknowledged: list[int] = []

    def sink(
        self, association: AssociationLike, context: PresentationContext, command: Message
    ) -> DatasetSink | None:
        return None

    async def handle(self, association: AssociationLike, incoming: Incoming) -> None:
        rq = incoming.command
        assert isinstance(rq, NActionRQ)
        context = incoming.context
        await association.send(
            context.context_id,
            NActionRSP(message_id_being_responded_to=rq.message_id, status=0),
        )
        report = CommitmentReport.of("1.2.9.5", [SOPReference(CT_IMAGE, "1.2.3")], [])
        event = NEventReportRQ(
            message_id=1, affected_sop_class_uid=STORAGE_COMMITMENT_PUSH,
            affected_sop_instance_uid=STORAGE_COMMITMENT_PUSH_INSTANCE, event_type_id=1,
            has_dataset=True,
        )  # fmt: skip
        data = encode_dataset(event_information(report), context.transfer_syntax)
        await association.send(context.context_id, event, data)
        answer = await association.receive()
        assert answer is not None
        self.acknowledged.append(getattr(answer.command, "status", -1))


async def test_commit_takes_the_report_on_the_same_association(tmp_path: Path) -> None:
    scp = _SameAssociationSCP()
    config = Config(host=HOST, port=0, storage=tmp_path, accept_any_called_ae=True)
    async with Server(config, [scp]) as server:
        report = await commit(
            HOST, server.port, [(CT_IMAGE, "1.2.3")], transaction_uid="1.2.9.5", timeout=WAIT
        )
    assert (report.event_type_id, report.committed) == (1, (SOPReference(CT_IMAGE, "1.2.3"),))
    assert scp.acknowledged == [0]


async def test_commit_and_mpps_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from stellarpacs.cli import main

    listen_port = free_port()
    config = make_config(
        tmp_path / "storage", listen_port, remotes={"OURSCU": RemoteAE("OURSCU", HOST, listen_port)}
    )
    services = await default_services(config)
    assert services.archive is not None
    await stored(services.archive, "1.2.3.4.1")
    async with serving(services, config) as server:
        peer = [HOST, str(server.port), "--aet", "OURSCU", "--aec", SERVER_AE, "--timeout", "5"]

        def run(*args: str) -> int:
            return main([*args])  # runs its own event loop: called off ours

        ok = ["commit", *peer, "--ref", f"{CT_IMAGE}/1.2.3.4.1", "--listen-port",
              str(listen_port), "--listen-host", HOST]  # fmt: skip
        assert await asyncio.wait_for(asyncio.to_thread(run, *ok), WAIT) == 0
        assert "event type 1, 1 committed, 0 failed" in capsys.readouterr().out
        bad = [*ok, "--ref", f"{CT_IMAGE}/1.2.3.4.404"]
        assert await asyncio.wait_for(asyncio.to_thread(run, *bad), WAIT) == 1
        out = capsys.readouterr().out
        assert "FAILED 1.2.3.4.404: 0x0112 no such object instance" in out
        mpps = ["mpps", *peer, "--patient-id", "P9", "--study", "1.2.3.100", "--uid",
                "1.2.7.9", "--final", "COMPLETED", "--series", "1.2.3.100.1"]  # fmt: skip
        assert await asyncio.wait_for(asyncio.to_thread(run, *mpps), WAIT) == 0
        out = capsys.readouterr().out
        assert "N-CREATE 1.2.7.9: 0x0000 success" in out
        assert "N-SET 1.2.7.9 COMPLETED: 0x0000 success" in out
        assert await asyncio.wait_for(asyncio.to_thread(run, *mpps), WAIT) == 1  # duplicate
        assert "0x0111" in capsys.readouterr().out
