"""Modality Performed Procedure Step SOP Class SCP (PS3.4 F.7): N-CREATE and N-SET.

State rules (PS3.4 F.7.2.1.2, F.7.2.2.3), as the table :data:`TRANSITIONS`:
an instance is created IN PROGRESS, may be N-SET while IN PROGRESS (to IN
PROGRESS, COMPLETED or DISCONTINUED), and never changes once COMPLETED or
DISCONTINUED.  Statuses, checked in this order:

- 0118 the SOP class is not MPPS (or not its context's);
- 0117 the given SOP Instance UID breaks the UID rules (PS3.5 9.1);
- 0120 / 0121 / 0106 no data set, Performed Procedure Step Status (0040,0252)
  absent in N-CREATE / empty / not an allowed value (N-CREATE: IN PROGRESS);
- 0111 N-CREATE of a SOP Instance UID already known (duplicate);
- 0112 N-SET of an unknown instance;
- 0110 with Error ID A710 N-SET after COMPLETED or DISCONTINUED (Table F.7.2-2);
- 0110 the data set cannot be parsed, or the index cannot be written.

The attributes are kept as DICOM JSON (N-SET replaces the elements it
carries, except Specific Character Set, F.7.2.2.3: the JSON text is Unicode
anyway), with the instance's link to what it produced: the Study Instance
UIDs of its Scheduled Step Attributes Sequence, the Series Instance UIDs and
referenced images of its Performed Series Sequence.  Those are joined with
the index when listed (``storage mpps``), so an MPPS is linked to its study
whenever the instances arrive, before or after it.  Other attributes are
stored as received, not validated.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Any, ClassVar, Final

from pydicom.dataset import Dataset

from stellarpacs.aio.protocols import AssociationLike
from stellarpacs.datasets import decode_dataset
from stellarpacs.dimse.commands import Message, NCreateRQ, NCreateRSP, NSetRQ, NSetRSP
from stellarpacs.dimse.events import DatasetSink, Incoming
from stellarpacs.dimse.status import Status
from stellarpacs.errors import DIMSEError
from stellarpacs.logtext import printable
from stellarpacs.services.offload import parse_off_loop
from stellarpacs.storage.api import MPPSRecord, NServiceStore, StorageUnavailable
from stellarpacs.uids import (
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    MPPS,
    is_valid_uid,
    new_uid,
)
from stellarpacs.ul.negotiation import PresentationContext, Role

__all__ = [
    "MAY_NO_LONGER_BE_UPDATED",
    "TRANSITIONS",
    "MPPSRefused",
    "MPPSService",
    "PPSStatus",
    "created_status",
    "next_status",
]

log = logging.getLogger("stellarpacs.mpps")

PPS_STATUS_TAG: Final = 0x00400252  # Performed Procedure Step Status
_CHARSET_TAG: Final = 0x00080005
MAY_NO_LONGER_BE_UPDATED: Final = 0xA710
"""Error ID of "Performed Procedure Step Object may no longer be updated" (Table F.7.2-2)."""


class PPSStatus(StrEnum):
    """Performed Procedure Step Status (0040,0252) values of MPPS (PS3.3 C.4.14)."""

    IN_PROGRESS = "IN PROGRESS"
    COMPLETED = "COMPLETED"
    DISCONTINUED = "DISCONTINUED"


CREATED: Final = PPSStatus.IN_PROGRESS
TRANSITIONS: Final[Mapping[PPSStatus, frozenset[PPSStatus]]] = MappingProxyType(
    {
        PPSStatus.IN_PROGRESS: frozenset(PPSStatus),
        PPSStatus.COMPLETED: frozenset(),
        PPSStatus.DISCONTINUED: frozenset(),
    }
)
"""Status now -> the statuses an N-SET may give it (PS3.4 F.7.2.2.3)."""


class MPPSRefused(DIMSEError):
    """An N-CREATE or N-SET refused; carries the response's status, comment and fields."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        tags: tuple[int, ...] = (),
        error_id: int | None = None,
    ) -> None:
        super().__init__(status, message)
        self.tags = tags
        self.error_id = error_id


def _requested(value: str | None, *, creating: bool) -> PPSStatus | None:
    """The status asked for: None when absent in an N-SET; refused when invalid."""
    if value is None:
        if creating:
            raise MPPSRefused(
                Status.MISSING_ATTRIBUTE,
                "Performed Procedure Step Status missing",
                tags=(PPS_STATUS_TAG,),
            )
        return None
    if not value:
        raise MPPSRefused(
            Status.MISSING_ATTRIBUTE_VALUE,
            "Performed Procedure Step Status empty",
            tags=(PPS_STATUS_TAG,),
        )
    try:
        return PPSStatus(value)
    except ValueError:
        raise MPPSRefused(
            Status.INVALID_ATTRIBUTE_VALUE,
            f"Performed Procedure Step Status {value[:24]!r} not allowed",
            tags=(PPS_STATUS_TAG,),
        ) from None


def created_status(value: str | None) -> PPSStatus:
    """The status of a new instance: it must be created IN PROGRESS (PS3.4 F.7.2.1.2)."""
    requested = _requested(value, creating=True)
    if requested is not CREATED:
        raise MPPSRefused(
            Status.INVALID_ATTRIBUTE_VALUE,
            "N-CREATE needs Performed Procedure Step Status IN PROGRESS",
            tags=(PPS_STATUS_TAG,),
        )
    return CREATED


def next_status(current: PPSStatus, value: str | None) -> PPSStatus:
    """The status after an N-SET asking for ``value`` (None: not in the modification list)."""
    allowed = TRANSITIONS[current]
    if not allowed:
        raise MPPSRefused(
            Status.PROCESSING_FAILURE,
            "Performed Procedure Step Object may no longer be updated",
            error_id=MAY_NO_LONGER_BE_UPDATED,
        )
    requested = _requested(value, creating=False)
    if requested is None:
        return current
    if requested not in allowed:
        raise MPPSRefused(
            Status.INVALID_ATTRIBUTE_VALUE,
            f"cannot go from {current} to {requested}",
            tags=(PPS_STATUS_TAG,),
        )
    return requested


# --- data sets --------------------------------------------------------------------------------


def _status_value(ds: Dataset) -> str | None:
    if PPS_STATUS_TAG not in ds:
        return None
    value = ds[PPS_STATUS_TAG].value
    return "" if value is None else str(value).strip("\0 ")


def _uids(items: Iterable[Dataset], keyword: str) -> list[str]:
    found = (str(item.get(keyword, "") or "").strip("\0 ") for item in items)
    return [uid for uid in found if uid]


def _links(ds: Dataset) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """Study, series and composite instance UIDs this step names (PS3.3 C.4.13, C.4.17)."""
    steps = list(ds.get("ScheduledStepAttributesSequence", None) or [])
    series = list(ds.get("PerformedSeriesSequence", None) or [])
    instances: list[str] = []
    for item in series:
        for keyword in (
            "ReferencedImageSequence",
            "ReferencedNonImageCompositeSOPInstanceSequence",
        ):
            instances += _uids(item.get(keyword, None) or [], "ReferencedSOPInstanceUID")
    return (
        tuple(_uids(steps, "StudyInstanceUID")),
        tuple(_uids(series, "SeriesInstanceUID")),
        tuple(instances),
    )


def _as_json(ds: Dataset) -> dict[str, Any]:
    try:
        return dict(ds.to_json_dict())
    except Exception as error:  # a value pydicom cannot decode
        raise MPPSRefused(Status.INVALID_ATTRIBUTE_VALUE, f"cannot read: {error}") from error


def _merged(stored: Mapping[str, Any], modifications: Dataset) -> Dataset:
    """The stored attributes with the N-SET's elements put in (PS3.4 F.7.2.2.3)."""
    current = Dataset.from_json(dict(stored))
    try:
        for element in modifications:
            if element.tag != _CHARSET_TAG:
                current[element.tag] = element
    except Exception as error:
        raise MPPSRefused(Status.INVALID_ATTRIBUTE_VALUE, f"cannot read: {error}") from error
    return current


def _record(uid: str, status: PPSStatus, ds: Dataset, calling_ae: str) -> MPPSRecord:
    attributes = _as_json(ds)
    studies, series, instances = _links(ds)
    return MPPSRecord(
        sop_instance_uid=uid,
        status=str(status),
        attributes=attributes,
        calling_ae=calling_ae,
        study_uids=studies,
        series_uids=series,
        instance_uids=instances,
    )


def _comment(text: str) -> str:
    """Error Comment is LO: ASCII here, at most 64 characters (PS3.7 C.4)."""
    return text.encode("ascii", "replace").decode("ascii")[:64]


# --- the service -------------------------------------------------------------------------------

_Handler = Callable[["MPPSService", AssociationLike, Incoming], Awaitable[Message]]


class MPPSService:
    """MPPS SCP keeping its instances in the N-service store (``storage.api.NServiceStore``)."""

    abstract_syntaxes: Mapping[str, tuple[str, ...]] = MappingProxyType(
        {MPPS: (IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN)}
    )
    roles: Mapping[str, Role] = MappingProxyType({})
    requests: tuple[type[Message], ...] = (NCreateRQ, NSetRQ)

    ACTIVITY: ClassVar[str] = (
        "Keeps each Modality Performed Procedure Step a modality creates (N-CREATE, IN "
        "PROGRESS) and its updates (N-SET, to COMPLETED or DISCONTINUED) in the index "
        "database, linked to the study its instances belong to; `python -m stellarpacs "
        "storage mpps` lists them with what of each study is stored."
    )
    CONFORMANCE: ClassVar[str] = (
        "State rules of PS3.4 F.7.2: created IN PROGRESS only; N-SET accepted while IN "
        "PROGRESS; no change after COMPLETED or DISCONTINUED. N-SET replaces the elements "
        "it carries (Specific Character Set excepted). Only the Performed Procedure Step "
        "Status is validated; the other attributes are kept as received."
    )
    STATUSES: ClassVar[Mapping[int, str]] = MappingProxyType(
        {
            Status.SUCCESS: "the instance was created or updated",
            Status.INVALID_ATTRIBUTE_VALUE: "N-CREATE not IN PROGRESS, or N-SET to a status "
            "other than IN PROGRESS, COMPLETED, DISCONTINUED",
            Status.PROCESSING_FAILURE: "N-SET after COMPLETED or DISCONTINUED (Error ID A710), "
            "or the data set cannot be parsed or kept",
            Status.DUPLICATE_SOP_INSTANCE: "N-CREATE of a SOP Instance UID already created",
            Status.NO_SUCH_OBJECT_INSTANCE: "N-SET of an instance never created",
            Status.INVALID_OBJECT_INSTANCE: "the SOP Instance UID breaks PS3.5 9.1",
            Status.NO_SUCH_SOP_CLASS: "the request's SOP class is not MPPS",
            Status.MISSING_ATTRIBUTE: "no data set, or N-CREATE without the status",
            Status.MISSING_ATTRIBUTE_VALUE: "the status is empty",
            Status.RESOURCE_LIMITATION: "the data set is over `max_nservice_dataset_size` "
            "(drained unread)",
        }
    )

    def __init__(self, store: NServiceStore) -> None:
        self.store = store

    def sink(
        self, association: AssociationLike, context: PresentationContext, command: Message
    ) -> DatasetSink | None:
        return None

    async def handle(self, association: AssociationLike, incoming: Incoming) -> None:
        handler = _HANDLERS[type(incoming.command)]
        response = await handler(self, association, incoming)
        await association.send(incoming.context.context_id, response)

    # -- N-CREATE (PS3.4 F.7.2.1) ---------------------------------------------------------

    async def create(self, association: AssociationLike, incoming: Incoming) -> Message:
        request = incoming.command
        assert isinstance(request, NCreateRQ)
        given = request.affected_sop_instance_uid
        uid = given or new_uid()
        try:
            _check(request.affected_sop_class_uid, incoming.context, given)
            ds = await parse_off_loop(incoming.dataset, lambda: _dataset(incoming))
            status = created_status(_status_value(ds))
            record = _record(uid, status, ds, association.calling_ae_title)
            await self._keep(record)
        except DIMSEError as error:
            log.warning("MPPS N-CREATE of %s from %s refused: %s", printable(uid),
                        printable(association.calling_ae_title), printable(error))  # fmt: skip
            return _response(NCreateRSP, request.message_id, given, error)
        log.info(
            "MPPS %s created IN PROGRESS by %s",
            printable(uid),
            printable(association.calling_ae_title),
        )
        return NCreateRSP(
            message_id_being_responded_to=request.message_id,
            status=Status.SUCCESS,
            affected_sop_class_uid=MPPS,
            affected_sop_instance_uid=uid,
        )

    async def _keep(self, record: MPPSRecord) -> None:
        try:
            created = await self.store.create_mpps(record)
        except StorageUnavailable as error:
            raise MPPSRefused(Status.PROCESSING_FAILURE, f"cannot keep: {error}") from error
        if not created:
            raise MPPSRefused(Status.DUPLICATE_SOP_INSTANCE, "MPPS instance already exists")

    # -- N-SET (PS3.4 F.7.2.2) ------------------------------------------------------------

    async def set(self, association: AssociationLike, incoming: Incoming) -> Message:
        request = incoming.command
        assert isinstance(request, NSetRQ)
        uid = request.requested_sop_instance_uid
        try:
            _check(request.requested_sop_class_uid, incoming.context, uid)
            ds = await parse_off_loop(incoming.dataset, lambda: _dataset(incoming))
            updated = await self._update(uid, ds)
        except DIMSEError as error:
            log.warning("MPPS N-SET of %s from %s refused: %s", printable(uid),
                        printable(association.calling_ae_title), printable(error))  # fmt: skip
            return _response(NSetRSP, request.message_id, uid, error)
        log.info(
            "MPPS %s set %s by %s",
            printable(uid),
            printable(updated.status),
            printable(association.calling_ae_title),
        )
        return NSetRSP(
            message_id_being_responded_to=request.message_id,
            status=Status.SUCCESS,
            affected_sop_class_uid=MPPS,
            affected_sop_instance_uid=uid,
        )

    async def _update(self, uid: str, modifications: Dataset) -> MPPSRecord:
        def change(current: MPPSRecord) -> MPPSRecord:
            status = next_status(PPSStatus(current.status), _status_value(modifications))
            merged = _merged(current.attributes, modifications)
            return _record(uid, status, merged, current.calling_ae)

        try:
            updated = await self.store.update_mpps(uid, change)
        except StorageUnavailable as error:
            raise MPPSRefused(Status.PROCESSING_FAILURE, f"cannot keep: {error}") from error
        if updated is None:
            raise MPPSRefused(Status.NO_SUCH_OBJECT_INSTANCE, "no such MPPS instance")
        return updated


_HANDLERS: Final[Mapping[type[Message], _Handler]] = MappingProxyType(
    {NCreateRQ: MPPSService.create, NSetRQ: MPPSService.set}
)


def _check(sop_class_uid: str, context: PresentationContext, sop_instance_uid: str | None) -> None:
    if sop_class_uid != MPPS or context.abstract_syntax != MPPS:
        raise MPPSRefused(Status.NO_SUCH_SOP_CLASS, f"SOP class {sop_class_uid} is not MPPS")
    if sop_instance_uid is not None and not is_valid_uid(sop_instance_uid):
        raise MPPSRefused(Status.INVALID_OBJECT_INSTANCE, "SOP Instance UID is not a valid UID")


def _dataset(incoming: Incoming) -> Dataset:
    if not incoming.dataset:
        raise MPPSRefused(Status.MISSING_ATTRIBUTE, "no attribute list")
    try:
        return decode_dataset(incoming.dataset, incoming.context.transfer_syntax)
    except DIMSEError as error:
        raise MPPSRefused(Status.PROCESSING_FAILURE, str(error)) from error


def _response(
    cls: type[NCreateRSP] | type[NSetRSP], message_id: int, uid: str | None, error: DIMSEError
) -> Message:
    refused = error if isinstance(error, MPPSRefused) else MPPSRefused(error.status, str(error))
    return cls(
        message_id_being_responded_to=message_id,
        status=refused.status,
        affected_sop_class_uid=MPPS,
        affected_sop_instance_uid=uid if uid and is_valid_uid(uid) else None,
        error_comment=_comment(str(refused)),
        error_id=refused.error_id,
        attribute_identifier_list=refused.tags or None,
    )
