"""MoveService and GetService as a peer sees them: statuses, counts, sub-operations.

The retrieve keys are checked directly; everything else goes through an
in-process server and our own client. A C-MOVE destination here is a second
in-process server with a recording storage service, so the tests see exactly
which C-STOREs the sub-operations sent.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from types import MappingProxyType

import pytest
from pydicom.dataset import Dataset

from stellarpacs.aio.protocols import AssociationLike
from stellarpacs.aio.scu.contexts import ProposedContext, get_contexts
from stellarpacs.aio.scu.retrieve import FolderStoreHandler, RetrieveResponse
from stellarpacs.aio.server import Server
from stellarpacs.config import Config
from stellarpacs.dimse.commands import CMoveRQ, CMoveRSP, CStoreRQ, CStoreRSP, Message
from stellarpacs.dimse.events import DatasetSink, Incoming
from stellarpacs.errors import DIMSEError
from stellarpacs.services.retrieve import RETRIEVE_FAILURE, _fitting, identifier_keys
from stellarpacs.storage.api import QueryProblem, retrieve_keys
from stellarpacs.storage.archive import Archive
from stellarpacs.uids import (
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    PATIENT_ROOT_QR_GET,
    PATIENT_ROOT_QR_MOVE,
    PATIENT_STUDY_ONLY_QR_MOVE,
    STORAGE_SOP_CLASSES,
    STUDY_ROOT_QR_MOVE,
    VERIFICATION,
)
from stellarpacs.ul.negotiation import PresentationContext, Role
from tests.integration.peers import HOST, assert_still_serves
from tests.integration.retrieve_fixtures import (
    Instance,
    archive,
    client_for,
    make_instances,
    remotes,
)
from tests.integration.storage_fixtures import free_port


def element(tag: int, vr: bytes, value: bytes, transfer_syntax: str) -> bytes:
    """One data element encoded by hand, so that it may hold any bytes (PS3.5 7.1)."""
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF)
    if transfer_syntax == IMPLICIT_VR_LITTLE_ENDIAN:
        return head + struct.pack("<I", len(value)) + value
    return head + vr + struct.pack("<H", len(value)) + value


def identifier(**keys: str | list[str]) -> Dataset:
    ds = Dataset()
    for key, value in keys.items():
        setattr(ds, key, value)
    return ds


# --- the retrieve keys (PS3.4 C.4.2.2.1) ------------------------------------------------------


def test_keys_down_to_the_level_with_a_uid_list_at_it() -> None:
    ds = identifier(
        QueryRetrieveLevel="SERIES", StudyInstanceUID="1.2", SeriesInstanceUID=["1.3", "1.4"]
    )
    keys = retrieve_keys(ds, STUDY_ROOT_QR_MOVE)
    assert keys.level == "SERIES"
    assert keys.conditions == (("st.study_uid", ("1.2",)), ("se.series_uid", ("1.3", "1.4")))


def test_patient_id_above_the_level_may_be_left_out() -> None:
    ds = identifier(QueryRetrieveLevel="STUDY", StudyInstanceUID="1.2")
    assert retrieve_keys(ds, PATIENT_ROOT_QR_MOVE).conditions == (("st.study_uid", ("1.2",)),)


@pytest.mark.parametrize(
    ("model", "keys", "status"),
    [
        (STUDY_ROOT_QR_MOVE, {"StudyInstanceUID": "1.2"}, 0xA900),  # no level
        (STUDY_ROOT_QR_MOVE, {"QueryRetrieveLevel": "PATIENT", "PatientID": "1"}, 0xA900),
        (PATIENT_STUDY_ONLY_QR_MOVE, {"QueryRetrieveLevel": "SERIES"}, 0xA900),
        (STUDY_ROOT_QR_MOVE, {"QueryRetrieveLevel": "STUDY"}, 0xC000),  # no unique key
        (
            STUDY_ROOT_QR_MOVE,
            {"QueryRetrieveLevel": "SERIES", "StudyInstanceUID": ["1.2", "1.3"]},
            0xC000,  # a list above the level
        ),
    ],
)
def test_bad_identifiers_are_refused(model: str, keys: dict[str, str], status: int) -> None:
    with pytest.raises(DIMSEError) as caught:
        identifier_keys(identifier(**keys), model)
    assert caught.value.status == status


def test_every_identifier_problem_has_its_retrieve_status() -> None:
    assert set(RETRIEVE_FAILURE) == set(QueryProblem)


def test_failed_uid_list_fits_one_explicit_vr_value() -> None:
    uids = [f"1.2.826.0.1.3680043.8.498.{n:040d}" for n in range(2000)]
    kept = _fitting(uids, EXPLICIT_VR_LITTLE_ENDIAN)
    assert kept == uids[: len(kept)]
    assert len("\\".join(kept)) <= 0xFFFE < len("\\".join(uids[: len(kept) + 1]))
    assert _fitting(uids, IMPLICIT_VR_LITTLE_ENDIAN) == uids


# --- a recording destination ------------------------------------------------------------------


class Recorder:
    """A storage SCP that keeps every C-STORE-RQ it gets and answers Success."""

    requests: tuple[type[Message], ...] = (CStoreRQ,)
    roles: MappingProxyType[str, Role] = MappingProxyType({})

    def __init__(self) -> None:
        syntaxes = (EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN)
        self.abstract_syntaxes = MappingProxyType(dict.fromkeys(STORAGE_SOP_CLASSES, syntaxes))
        self.seen: list[CStoreRQ] = []

    def sink(
        self, association: AssociationLike, context: PresentationContext, command: Message
    ) -> DatasetSink | None:
        return None

    async def handle(self, association: AssociationLike, incoming: Incoming) -> None:
        request = incoming.command
        assert isinstance(request, CStoreRQ)
        self.seen.append(request)
        response = CStoreRSP(message_id_being_responded_to=request.message_id, status=0)
        await association.send(incoming.context.context_id, response)


@contextlib.asynccontextmanager
async def source_and_recorder(
    tmp_path: Path, instances: list[Instance]
) -> AsyncIterator[tuple[Server, Recorder, Archive]]:
    recorder = Recorder()
    config = Config(ae_title="DEST", host=HOST, port=0, storage=tmp_path / "unused")
    async with (
        Server(config, [recorder]) as destination,
        archive(tmp_path / "src", instances, remotes=remotes(DEST=destination.port)) as (
            server,
            store,
        ),
    ):
        yield server, recorder, store


async def move(port: int, ds: Dataset, destination: str = "DEST") -> list[RetrieveResponse]:
    client = await client_for(port)
    async with client:
        return [r async for r in client.move(PATIENT_ROOT_QR_MOVE, ds, destination)]


# --- C-MOVE -----------------------------------------------------------------------------------


async def test_move_sends_each_match_once_with_the_move_originator(tmp_path: Path) -> None:
    instances = make_instances(tmp_path / "files")
    p1 = [i for i in instances if i.patient_id == "P1"]
    async with source_and_recorder(tmp_path, instances) as (server, recorder, _):
        responses = await move(
            server.port, identifier(QueryRetrieveLevel="PATIENT", PatientID="P1")
        )
    assert responses[-1].status == 0 and responses[-1].completed == len(p1)
    assert sorted(r.affected_sop_instance_uid for r in recorder.seen) == sorted(
        i.sop_instance_uid for i in p1
    )
    assert {r.move_originator_ae_title for r in recorder.seen} == {"RETRIEVER"}
    assert {r.move_originator_message_id for r in recorder.seen} == {1}


async def test_unknown_destination_a801_and_nothing_is_sent(tmp_path: Path) -> None:
    instances = make_instances(tmp_path / "files")
    async with source_and_recorder(tmp_path, instances) as (server, recorder, _):
        responses = await move(
            server.port, identifier(QueryRetrieveLevel="PATIENT", PatientID="P1"), "UNKNOWN"
        )
        await assert_still_serves(server.port)
    assert [r.status for r in responses] == [0xA801]
    assert recorder.seen == []


async def test_destination_down_a702_with_every_instance_failed(tmp_path: Path) -> None:
    instances = make_instances(tmp_path / "files")
    p2 = {i.sop_instance_uid for i in instances if i.patient_id == "P2"}
    down = remotes(DEST=free_port())
    async with archive(tmp_path / "src", instances, remotes=down) as (server, _):
        responses = await move(
            server.port, identifier(QueryRetrieveLevel="PATIENT", PatientID="P2")
        )
        await assert_still_serves(server.port)
    [final] = responses
    assert (final.status, final.failed, final.completed) == (0xA702, len(p2), 0)
    assert set(final.failed_sop_instance_uids) == p2


async def test_identifier_errors_are_answered_not_aborted(tmp_path: Path) -> None:
    instances = make_instances(tmp_path / "files")
    async with source_and_recorder(tmp_path, instances) as (server, recorder, _):
        client = await client_for(server.port)
        async with client:
            wrong_level = identifier(QueryRetrieveLevel="SERIES", PatientID="P1")
            stream = client.move(PATIENT_STUDY_ONLY_QR_MOVE, wrong_level, "DEST")
            assert [r.status async for r in stream] == [0xA900]
            no_key = identifier(QueryRetrieveLevel="STUDY")
            stream = client.move(STUDY_ROOT_QR_MOVE, no_key, "DEST")
            assert [r.status async for r in stream] == [0xC000]
            context = client.association.context_for(STUDY_ROOT_QR_MOVE)
            for value, status in ((b"\xc9TUDE ", 0xA900), (b"\xff" * 6, 0xA900)):
                rq = CMoveRQ(
                    message_id=client.association.next_message_id(),
                    affected_sop_class_uid=STUDY_ROOT_QR_MOVE,
                    move_destination="DEST",
                )
                level = element(0x00080052, b"CS", value, context.transfer_syntax)
                rsp = (await client.request(context.context_id, rq, level)).command
                assert isinstance(rsp, CMoveRSP)
                assert rsp.status == status
                assert rsp.error_comment is not None and rsp.error_comment.isascii()
            assert await client.echo() == 0
    assert recorder.seen == []


async def test_no_match_is_success_with_zero_counts(tmp_path: Path) -> None:
    instances = make_instances(tmp_path / "files")
    async with source_and_recorder(tmp_path, instances) as (server, recorder, _):
        responses = await move(server.port, identifier(QueryRetrieveLevel="PATIENT", PatientID="X"))
    assert [(r.status, r.completed, r.failed) for r in responses] == [(0, 0, 0)]
    assert recorder.seen == []


async def test_a_missing_file_fails_alone_with_b000(tmp_path: Path) -> None:
    instances = make_instances(tmp_path / "files")
    p1 = [i for i in instances if i.patient_id == "P1"]
    async with source_and_recorder(tmp_path, instances) as (server, recorder, store):
        record = await store.index.get_instance(p1[1].sop_instance_uid)
        assert record is not None
        store.layout.absolute(record.path).unlink()
        responses = await move(
            server.port, identifier(QueryRetrieveLevel="PATIENT", PatientID="P1")
        )
    final = responses[-1]
    assert (final.status, final.completed, final.failed) == (0xB000, len(p1) - 1, 1)
    assert final.failed_sop_instance_uids == (p1[1].sop_instance_uid,)
    assert len(recorder.seen) == len(p1) - 1


async def test_a_cancelled_move_stops_and_forgets_its_message_id(tmp_path: Path) -> None:
    instances = make_instances(tmp_path / "files", big_study=40)
    async with source_and_recorder(tmp_path, instances) as (server, recorder, _):
        client = await client_for(server.port)
        async with client:
            ds = identifier(QueryRetrieveLevel="PATIENT", PatientID="P4")
            async with client.move(PATIENT_ROOT_QR_MOVE, ds, "DEST") as stream:
                async for _ in stream:
                    break
            assert stream.final is not None and stream.final.status == 0xFE00
            [association] = server.associations
            assert association.cancelled == set()
    completed = stream.final.completed
    assert completed is not None and len(recorder.seen) == completed < 40


# --- C-GET ------------------------------------------------------------------------------------


async def test_get_needs_the_scp_role_and_sets_no_move_originator(tmp_path: Path) -> None:
    instances = make_instances(tmp_path / "files")
    p2 = [i for i in instances if i.patient_id == "P2"]
    seen: list[CStoreRQ] = []

    class Handler(FolderStoreHandler):
        async def handle(self, association: AssociationLike, incoming: Incoming) -> int:
            assert isinstance(incoming.command, CStoreRQ)
            seen.append(incoming.command)
            return await super().handle(association, incoming)

    ds = identifier(QueryRetrieveLevel="PATIENT", PatientID="P2")
    async with archive(tmp_path / "src", instances) as (server, _):
        with_role = get_contexts([p2[0].sop_class_uid], models=(PATIENT_ROOT_QR_GET,))
        client = await client_for(server.port, with_role)
        async with client:
            handler = Handler(tmp_path / "got")
            got = [r async for r in client.get(PATIENT_ROOT_QR_GET, ds, handler)]
        without_role = [ProposedContext(PATIENT_ROOT_QR_GET), ProposedContext(p2[0].sop_class_uid)]
        client = await client_for(server.port, [*without_role, ProposedContext(VERIFICATION)])
        async with client:
            refused = [
                r async for r in client.get(PATIENT_ROOT_QR_GET, ds, Handler(tmp_path / "x"))
            ]
    assert got[-1].status == 0 and got[-1].completed == len(p2)
    assert len(seen) == len(p2)  # none on the context without the SCP role
    assert all(r.move_originator_ae_title is None for r in seen)
    assert all(r.move_originator_message_id is None for r in seen)
    assert (refused[-1].status, refused[-1].failed) == (0xA702, len(p2))
