"""The client's store(), move() and get() against in-process StellarPACS servers.

A C-MOVE goes from one in-process server (the archive) to a second one (the
destination, configured as a remote); a C-GET brings instances back into a
folder through :class:`FolderStoreHandler`. No external peer is involved.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, generate_uid

from stellarpacs.aio.client import contexts_for_paths
from stellarpacs.aio.scu.contexts import ProposedContext, get_contexts
from stellarpacs.aio.scu.retrieve import FolderStoreHandler, RetrieveResponse
from stellarpacs.aio.scu.store import UNCOMPRESSED, StoreItem, _groups, propose_contexts
from stellarpacs.aio.server import Server
from stellarpacs.storage.archive import Archive
from stellarpacs.uids import (
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    PATIENT_ROOT_QR_GET,
    QR_GET_MODELS,
    STUDY_ROOT_QR_GET,
    STUDY_ROOT_QR_MOVE,
    VERIFICATION,
)
from tests.integration.retrieve_fixtures import (
    COMPRESSED_SOURCES,
    Instance,
    archive,
    client_for,
    make_instances,
    remotes,
    set_pending_interval,
)
from tests.integration.storage_fixtures import dataset_bytes, synthetic_dataset


@contextlib.asynccontextmanager
async def two_servers(
    tmp_path: Path, instances: list[Instance]
) -> AsyncIterator[tuple[Server, Archive]]:
    """(the archive holding ``instances``, the destination DEST's archive)."""
    async with (
        archive(tmp_path / "dest", [], ae_title="DEST") as (destination, dest_archive),
        archive(tmp_path / "src", instances, remotes=remotes(DEST=destination.port)) as (
            server,
            _,
        ),
    ):
        yield server, dest_archive


def study_identifier(instance: Instance) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = instance.study_uid
    return ds


async def stored_bytes(store: Archive, uid: str) -> bytes:
    record = await store.index.get_instance(uid)
    assert record is not None, uid
    return dataset_bytes(store.layout.absolute(record.path))


# --- store() -----------------------------------------------------------------------------


async def test_store_sends_a_file_a_folder_and_a_dataset(tmp_path: Path) -> None:
    instances = make_instances(tmp_path / "files")
    (tmp_path / "files" / "readme.txt").write_text("not DICOM")
    sc = "1.2.840.10008.5.1.4.1.1.7"
    loose = synthetic_dataset(sc, 0, patient_id="DS")
    loose.file_meta = FileMetaDataset()
    loose.file_meta.TransferSyntaxUID = UID(IMPLICIT_VR_LITTLE_ENDIAN)
    bare = synthetic_dataset(sc, 1, patient_id="DS")
    contexts = contexts_for_paths([tmp_path / "files"])
    contexts += [
        ProposedContext(sc, (IMPLICIT_VR_LITTLE_ENDIAN,)),
        ProposedContext(sc, (EXPLICIT_VR_LITTLE_ENDIAN,)),
    ]
    async with archive(tmp_path / "a", []) as (server, store):
        client = await client_for(server.port, contexts)
        async with client:
            one = await client.store(instances[0].path)
            many = await client.store(tmp_path / "files")
            from_memory = await client.store(loose)
            with_syntax = await client.store(bare, transfer_syntax=EXPLICIT_VR_LITTLE_ENDIAN)
            with pytest.raises(ValueError, match="transfer syntax"):
                await client.store(bare)
        for instance in instances:  # sent as stored: data set bytes unchanged
            assert await stored_bytes(store, instance.sop_instance_uid) == instance.dataset()
        loose_record = await store.index.get_instance(str(loose.SOPInstanceUID))
        bare_record = await store.index.get_instance(str(bare.SOPInstanceUID))
    assert [r.status for r in one] == [0]
    assert sorted(r.item.sop_instance_uid for r in many) == sorted(
        i.sop_instance_uid for i in instances
    )  # readme.txt skipped
    assert all(r.status == 0 for r in many)
    assert [r.status for r in from_memory + with_syntax] == [0, 0]
    assert loose_record is not None
    assert loose_record.transfer_syntax_uid == IMPLICIT_VR_LITTLE_ENDIAN
    assert bare_record is not None
    assert bare_record.transfer_syntax_uid == EXPLICIT_VR_LITTLE_ENDIAN


def test_contexts_for_paths_offer_each_stored_syntax_alone(tmp_path: Path) -> None:
    instances = make_instances(tmp_path)
    contexts = contexts_for_paths([tmp_path])
    offered = {(c.abstract_syntax, c.transfer_syntaxes) for c in contexts}
    for instance in instances:
        assert (instance.sop_class_uid, (instance.transfer_syntax,)) in offered
        assert (instance.sop_class_uid, UNCOMPRESSED) in offered or {
            (instance.sop_class_uid, (ts,)) for ts in UNCOMPRESSED
        } <= offered
    assert len(contexts) == len(set(contexts)) <= 128


# --- move() ------------------------------------------------------------------------------


@pytest.mark.parametrize("interval", [0.0, 3600.0])
async def test_move_yields_pending_counts_then_the_final_response(
    tmp_path: Path, interval: float
) -> None:
    instances = make_instances(tmp_path / "files", big_study=6)
    study = [i for i in instances if i.patient_id == "P4"]
    async with two_servers(tmp_path, instances) as (server, dest):
        set_pending_interval(server, interval)
        client = await client_for(server.port)
        async with client:
            responses = [
                r async for r in client.move(STUDY_ROOT_QR_MOVE, study_identifier(study[0]), "DEST")
            ]
        for instance in study:
            assert await stored_bytes(dest, instance.sop_instance_uid) == instance.dataset()
    *pending, final = responses
    # Every sub-operation reported, or (throttled) only the first one.
    steps = range(1, len(study)) if interval == 0 else range(1, 2)
    assert [(r.status, r.remaining, r.completed, r.failed) for r in pending] == [
        (0xFF00, len(study) - n, n, 0) for n in steps
    ]
    assert (final.status, final.completed, final.failed, final.warning) == (0, len(study), 0, 0)
    assert final.remaining is None and not final.pending
    assert final.failed_sop_instance_uids == ()


async def test_leaving_a_move_early_cancels_it_and_the_association_goes_on(
    tmp_path: Path,
) -> None:
    instances = make_instances(tmp_path / "files", big_study=60)
    study = [i for i in instances if i.patient_id == "P4"]
    async with two_servers(tmp_path, instances) as (server, dest):
        client = await client_for(server.port)
        async with client:
            async with client.move(STUDY_ROOT_QR_MOVE, study_identifier(study[0]), "DEST") as s:
                async for first in s:
                    assert first.pending
                    break
            final = s.final
            assert final is not None and final.status == 0xFE00
            assert final.completed is not None and final.remaining is not None
            assert 1 <= final.completed < len(study)
            assert final.completed + (final.failed or 0) + final.remaining == len(study)
            assert await client.echo() == 0
            # A bare break (no async with) is settled before the next request.
            async for _ in client.move(STUDY_ROOT_QR_MOVE, study_identifier(study[0]), "DEST"):
                break
            assert client.open_stream is not None
            assert await client.echo() == 0
            assert client.open_stream is None
        arrived = [i for i in study if await dest.index.get_instance(i.sop_instance_uid)]
    assert len(arrived) < len(study)  # the sub-operations stopped


async def test_a_refused_move_is_yielded_not_raised(tmp_path: Path) -> None:
    instances = make_instances(tmp_path / "files")
    async with two_servers(tmp_path, instances) as (server, _):
        client = await client_for(server.port)
        async with client:
            stream = client.move(STUDY_ROOT_QR_MOVE, study_identifier(instances[0]), "NOBODY")
            responses = [r async for r in stream]
            assert [r.status for r in responses] == [0xA801]
            assert responses[0].error_comment and "NOBODY" in responses[0].error_comment
            assert stream.final == responses[0]
            assert [r async for r in stream] == []  # finished: iterating again yields nothing


# --- get() -------------------------------------------------------------------------------


async def test_get_writes_each_instance_as_a_part10_file(tmp_path: Path) -> None:
    instances = make_instances(tmp_path / "files")
    classes = sorted({i.sop_class_uid for i in instances})
    syntaxes = [*UNCOMPRESSED, *COMPRESSED_SOURCES]
    async with archive(tmp_path / "a", instances) as (server, _):
        client = await client_for(server.port, get_contexts(classes, syntaxes))
        async with client:
            for patient in ("P1", "P3"):
                wanted = [i for i in instances if i.patient_id == patient]
                handler = FolderStoreHandler(tmp_path / patient)
                ds = Dataset()
                ds.QueryRetrieveLevel, ds.PatientID = "PATIENT", patient
                responses = [r async for r in client.get(PATIENT_ROOT_QR_GET, ds, handler)]
                assert responses[-1].status == 0
                assert responses[-1].completed == len(wanted)
                assert client.association.sink_factory is None  # restored after the C-GET
                assert len(handler.received) == len(wanted)
                for instance in wanted:
                    path = tmp_path / patient / f"{instance.sop_instance_uid}.dcm"
                    # Offered every stored syntax alone, so every instance comes as stored.
                    assert dataset_bytes(path) == instance.dataset()
                    meta = dcmread(path, stop_before_pixels=True).file_meta
                    assert meta.TransferSyntaxUID == instance.transfer_syntax
                    assert meta.SourceApplicationEntityTitle == "STELLARPACS"
                assert not list((tmp_path / patient).glob("*.part"))


async def test_get_answers_a700_when_the_handler_cannot_write(tmp_path: Path) -> None:
    instances = make_instances(tmp_path / "files")
    wanted = [i for i in instances if i.patient_id == "P2"]
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the output folder should be")
    handler = FolderStoreHandler(blocked / "out")
    async with archive(tmp_path / "a", instances) as (server, _):
        contexts = [*get_contexts([wanted[0].sop_class_uid]), ProposedContext(VERIFICATION)]
        client = await client_for(server.port, contexts)
        async with client:
            ds = Dataset()
            ds.QueryRetrieveLevel, ds.PatientID = "PATIENT", "P2"
            responses = [r async for r in client.get(PATIENT_ROOT_QR_GET, ds, handler)]
            assert await client.echo() == 0
    final = responses[-1]
    assert final.status == 0xA702, final  # every sub-operation failed: Refused (PS3.4 C.4.2.2.1)
    assert final.failed == len(wanted) and final.completed == 0
    assert set(final.failed_sop_instance_uids) == {i.sop_instance_uid for i in wanted}
    assert {uid for uid, _ in handler.failed} == set(final.failed_sop_instance_uids)
    assert handler.received == []


def test_get_contexts_ask_for_the_scp_role_one_syntax_each() -> None:
    classes = [generate_uid() for _ in range(3)]
    contexts = get_contexts(classes, [EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN])
    assert contexts[:3] == [ProposedContext(m) for m in QR_GET_MODELS]
    storage = contexts[3:]
    assert len(storage) == 6
    assert all(c.scp_role and not c.scu_role and len(c.transfer_syntaxes) == 1 for c in storage)
    assert len(get_contexts(["1.2.3"] * 200, models=(STUDY_ROOT_QR_GET,))) == 3  # deduplicated
    with pytest.raises(ValueError, match="128"):
        get_contexts([generate_uid() for _ in range(63)], models=QR_GET_MODELS)


def test_retrieve_response_reads_counts_and_failed_uids() -> None:
    from stellarpacs.datasets import encode_dataset
    from stellarpacs.dimse.commands import CMoveRSP
    from stellarpacs.dimse.events import Incoming
    from stellarpacs.ul.negotiation import PresentationContext

    ds = Dataset()
    ds.FailedSOPInstanceUIDList = ["1.2.3", "1.2.4"]
    rsp = CMoveRSP(
        message_id_being_responded_to=1,
        status=0xB000,
        number_of_completed_suboperations=3,
        number_of_failed_suboperations=2,
        number_of_warning_suboperations=0,
        has_dataset=True,
    )
    context = PresentationContext(1, STUDY_ROOT_QR_MOVE, EXPLICIT_VR_LITTLE_ENDIAN)
    incoming = Incoming(context, rsp, encode_dataset(ds, EXPLICIT_VR_LITTLE_ENDIAN))
    response = RetrieveResponse.of(incoming)
    assert response.failed_sop_instance_uids == ("1.2.3", "1.2.4")
    assert (response.completed, response.failed, response.remaining) == (3, 2, None)
    assert not response.pending and response.category.value == "warning"


# --- the contexts of a store (stellarpacs.aio.scu.store) ------------------------------------

_CLASSES = [f"1.2.840.10008.5.1.4.1.1.{n}" for n in range(1, 90)]
_SYNTAXES = [*UNCOMPRESSED, *COMPRESSED_SOURCES]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_CLASSES), st.sampled_from(_SYNTAXES)), max_size=300))
def test_groups_fit_one_request_and_offer_each_stored_syntax_alone(
    pairs: list[tuple[str, str]],
) -> None:
    items = [
        StoreItem(Path(f"{n}.dcm"), sop, f"1.2.3.{n}", ts, 132, 1000)
        for n, (sop, ts) in enumerate(pairs)
    ]
    groups = _groups(items)
    assert [i for g in groups for i in g] == items  # all of them, in order
    for group in groups:
        contexts = propose_contexts(group)  # raises above 128
        offered = {(c.abstract_syntax, c.transfer_syntaxes) for c in contexts}
        for item in group:
            assert (item.sop_class_uid, (item.transfer_syntax_uid,)) in offered
    # A group is cut only when the next item would not fit.
    for group, following in itertools.pairwise(groups):
        with pytest.raises(ValueError, match="128"):
            propose_contexts([*group, following[0]])
