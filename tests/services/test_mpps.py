"""MPPS SCP: the state rules of PS3.4 F.7.2 and what N-CREATE / N-SET answer and keep."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset

from stellarpacs.datasets import encode_dataset
from stellarpacs.dimse.commands import NCreateRQ, NCreateRSP, NSetRQ, NSetRSP
from stellarpacs.dimse.events import Incoming
from stellarpacs.errors import DIMSEError
from stellarpacs.services.mpps import (
    MAY_NO_LONGER_BE_UPDATED,
    TRANSITIONS,
    MPPSService,
    PPSStatus,
    created_status,
    next_status,
)
from stellarpacs.storage.archive import Archive
from stellarpacs.storage.index.nservices import SQLiteNServiceStore
from stellarpacs.uids import EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN, MPPS
from stellarpacs.ul.negotiation import PresentationContext
from tests.aio.fakes import RecordingAssociation

FINAL = (PPSStatus.COMPLETED, PPSStatus.DISCONTINUED)
CONTEXT = PresentationContext(1, MPPS, IMPLICIT_VR_LITTLE_ENDIAN)

# --- the state rules, as pure functions ------------------------------------------------


@pytest.mark.parametrize(
    ("value", "status"),
    [(None, 0x0120), ("", 0x0121), ("COMPLETED", 0x0106), ("DISCONTINUED", 0x0106),
     ("in progress", 0x0106), ("SCHEDULED", 0x0106)],
)  # fmt: skip
def test_create_needs_in_progress(value: str | None, status: int) -> None:
    with pytest.raises(DIMSEError) as caught:
        created_status(value)
    assert caught.value.status == status
    assert created_status("IN PROGRESS") is PPSStatus.IN_PROGRESS


@pytest.mark.parametrize("current", list(PPSStatus))
@pytest.mark.parametrize("requested", [*PPSStatus, None])
def test_transition_table(current: PPSStatus, requested: PPSStatus | None) -> None:
    value = None if requested is None else str(requested)
    if current in FINAL:
        with pytest.raises(DIMSEError) as caught:
            next_status(current, value)
        assert caught.value.status == 0x0110
        assert caught.value.error_id == MAY_NO_LONGER_BE_UPDATED  # type: ignore[attr-defined]
    else:
        assert next_status(current, value) is (requested or current)


@settings(max_examples=150)
@given(st.text(max_size=20))
def test_any_other_value_is_an_invalid_attribute_value(value: str) -> None:
    if value in set(PPSStatus):
        return
    with pytest.raises(DIMSEError) as caught:
        next_status(PPSStatus.IN_PROGRESS, value)
    assert caught.value.status == (0x0121 if value == "" else 0x0106)


def test_final_states_have_no_way_out() -> None:
    assert all(not TRANSITIONS[s] for s in FINAL)
    assert TRANSITIONS[PPSStatus.IN_PROGRESS] == frozenset(PPSStatus)


# --- the service, over a recording association -----------------------------------------


@pytest.fixture
async def service(archive: Archive) -> AsyncIterator[MPPSService]:
    store = SQLiteNServiceStore(archive.layout.index_path, durable=False)
    await store.open()
    yield MPPSService(store)
    await store.close()


@pytest.fixture
def archive_root(tmp_path: Path) -> Path:
    return tmp_path / "archive"


@pytest.fixture
async def archive(archive_root: Path) -> AsyncIterator[Archive]:
    async with Archive(archive_root, fsync=False) as opened:
        yield opened


def in_progress(study: str = "1.2.3.100") -> Dataset:
    ds = Dataset()
    ds.PatientID = "P001"
    ds.Modality = "CT"
    ds.PerformedProcedureStepStatus = "IN PROGRESS"
    step = Dataset()
    step.StudyInstanceUID = study
    ds.ScheduledStepAttributesSequence = [step]
    ds.PerformedSeriesSequence = []
    return ds


def completed(series: str = "1.2.3.100.1", images: tuple[str, ...] = ("1.2.3.4.5",)) -> Dataset:
    ds = Dataset()
    ds.PerformedProcedureStepStatus = "COMPLETED"
    ds.PerformedProcedureStepEndDate = "20240131"
    item = Dataset()
    item.SeriesInstanceUID = series
    refs = []
    for uid in images:
        ref = Dataset()
        ref.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        ref.ReferencedSOPInstanceUID = uid
        refs.append(ref)
    item.ReferencedImageSequence = refs
    ds.PerformedSeriesSequence = [item]
    return ds


async def create(
    service: MPPSService,
    ds: Dataset | None,
    uid: str | None = "1.2.7.1",
    *,
    context: PresentationContext = CONTEXT,
    sop_class: str = MPPS,
) -> NCreateRSP:
    association = RecordingAssociation("MODALITY")
    rq = NCreateRQ(
        message_id=5, affected_sop_class_uid=sop_class, affected_sop_instance_uid=uid,
        has_dataset=ds is not None,
    )  # fmt: skip
    data = None if ds is None else encode_dataset(ds, context.transfer_syntax)
    await service.handle(association, Incoming(context, rq, data))
    [rsp] = association.messages
    assert isinstance(rsp, NCreateRSP) and rsp.message_id_being_responded_to == 5
    return rsp


async def set_(service: MPPSService, ds: Dataset | None, uid: str = "1.2.7.1") -> NSetRSP:
    association = RecordingAssociation("MODALITY")
    rq = NSetRQ(
        message_id=6, requested_sop_class_uid=MPPS, requested_sop_instance_uid=uid,
        has_dataset=ds is not None,
    )  # fmt: skip
    data = None if ds is None else encode_dataset(ds, CONTEXT.transfer_syntax)
    await service.handle(association, Incoming(CONTEXT, rq, data))
    [rsp] = association.messages
    assert isinstance(rsp, NSetRSP) and rsp.message_id_being_responded_to == 6
    return rsp


async def test_create_then_complete_is_kept_with_merged_attributes(service: MPPSService) -> None:
    rsp = await create(service, in_progress())
    assert (rsp.status, rsp.affected_sop_instance_uid, rsp.affected_sop_class_uid) == (
        0, "1.2.7.1", MPPS,
    )  # fmt: skip
    assert (await set_(service, completed())).status == 0
    record = await service.store.get_mpps("1.2.7.1")
    assert record is not None
    assert record.status == "COMPLETED" and record.calling_ae == "MODALITY"
    stored = Dataset.from_json(record.attributes)
    assert stored.PatientID == "P001"  # from the N-CREATE
    assert stored.PerformedProcedureStepEndDate == "20240131"  # from the N-SET
    assert stored.PerformedProcedureStepStatus == "COMPLETED"
    assert record.study_uids == ("1.2.3.100",)
    assert (record.series_uids, record.instance_uids) == (("1.2.3.100.1",), ("1.2.3.4.5",))


async def test_create_without_uid_gets_one_assigned(service: MPPSService) -> None:
    rsp = await create(service, in_progress(), uid=None)
    assert rsp.status == 0 and rsp.affected_sop_instance_uid is not None
    assert rsp.affected_sop_instance_uid.startswith("2.25.")
    assert await service.store.get_mpps(rsp.affected_sop_instance_uid) is not None


async def test_create_refusals(service: MPPSService) -> None:
    bad = in_progress()
    bad.PerformedProcedureStepStatus = "COMPLETED"
    rsp = await create(service, bad)
    assert rsp.status == 0x0106 and rsp.attribute_identifier_list == (0x00400252,)
    del bad.PerformedProcedureStepStatus
    assert (await create(service, bad)).status == 0x0120
    assert (await create(service, None)).status == 0x0120
    assert (await create(service, in_progress(), uid="1.2.x")).status == 0x0117
    assert (await create(service, in_progress(), sop_class="1.2.3")).status == 0x0118
    assert await service.store.get_mpps("1.2.7.1") is None  # nothing kept by refusals
    assert (await create(service, in_progress())).status == 0
    assert (await create(service, in_progress())).status == 0x0111


async def test_explicit_vr_context_works_too(service: MPPSService) -> None:
    context = PresentationContext(3, MPPS, EXPLICIT_VR_LITTLE_ENDIAN)
    assert (await create(service, in_progress(), context=context)).status == 0


async def test_set_refusals_leave_the_instance_as_it_was(service: MPPSService) -> None:
    assert (await set_(service, completed(), uid="1.2.7.404")).status == 0x0112
    await create(service, in_progress())
    wrong = completed()
    wrong.PerformedProcedureStepStatus = "FINISHED"
    rsp = await set_(service, wrong)
    assert rsp.status == 0x0106 and rsp.affected_sop_instance_uid == "1.2.7.1"
    record = await service.store.get_mpps("1.2.7.1")
    assert record is not None and record.status == "IN PROGRESS" and not record.series_uids
    keep_going = Dataset()
    keep_going.PerformedProcedureStepDescription = "still at it"
    assert (await set_(service, keep_going)).status == 0  # IN PROGRESS -> IN PROGRESS
    discontinued = Dataset()
    discontinued.PerformedProcedureStepStatus = "DISCONTINUED"
    assert (await set_(service, discontinued)).status == 0
    late = await set_(service, completed())
    assert (late.status, late.error_id) == (0x0110, 0xA710)
    assert late.error_comment == "Performed Procedure Step Object may no longer be updated"
    record = await service.store.get_mpps("1.2.7.1")
    assert record is not None and record.status == "DISCONTINUED"
    assert Dataset.from_json(record.attributes).PerformedProcedureStepDescription == "still at it"
