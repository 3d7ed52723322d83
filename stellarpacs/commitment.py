"""The storage commitment data sets, read and written once for both sides (PS3.4 J.3).

The action information of the N-ACTION request (Table J.3-1) and the event
information of the N-EVENT-REPORT result (Table J.3-2), as typed values.
The commitment SCP (:mod:`stellarpacs.services.commitment`) and the SCU
(:mod:`stellarpacs.aio.scu.nservices`) use the same functions, so what we
send is what we parse.  The module sits at the package root, below both:
the asyncio layer may not import the services, and the services import it.
A malformed data set raises :class:`DIMSEError` with the status to answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Final

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from stellarpacs.dimse.status import Status
from stellarpacs.errors import DIMSEError
from stellarpacs.uids import is_valid_uid

__all__ = [
    "REQUEST_STORAGE_COMMITMENT",
    "CommitmentEvent",
    "CommitmentReport",
    "FailedReference",
    "FailureReason",
    "SOPReference",
    "action_information",
    "event_information",
    "read_action_information",
    "read_event_information",
]

REQUEST_STORAGE_COMMITMENT: Final = 1
"""Action Type ID of a storage commitment request (PS3.4 J.3.2.1.1)."""
_UID_MAX: Final = 64  # PS3.5 9.1


class CommitmentEvent(IntEnum):
    """Event Type ID of the storage commitment N-EVENT-REPORT (PS3.4 Table J.3-2)."""

    SUCCESSFUL = 1
    FAILURES_EXIST = 2


class FailureReason(IntEnum):
    """Failure Reason (0008,1197) values (PS3.3 C.14.1.1)."""

    PROCESSING_FAILURE = 0x0110
    NO_SUCH_OBJECT_INSTANCE = 0x0112
    CLASS_INSTANCE_CONFLICT = 0x0119
    REFERENCED_SOP_CLASS_NOT_SUPPORTED = 0x0122
    DUPLICATE_TRANSACTION_UID = 0x0131
    RESOURCE_LIMITATION = 0x0213


@dataclass(frozen=True, slots=True)
class SOPReference:
    """One Referenced SOP Sequence item: the instance to commit (PS3.4 Table J.3-1)."""

    sop_class_uid: str
    sop_instance_uid: str


@dataclass(frozen=True, slots=True)
class FailedReference:
    """One Failed SOP Sequence item of a report, with its Failure Reason."""

    reference: SOPReference
    reason: int


@dataclass(frozen=True, slots=True)
class CommitmentReport:
    """A storage commitment result (PS3.4 J.3.3): what is committed and what failed."""

    transaction_uid: str
    event_type_id: int
    committed: tuple[SOPReference, ...] = ()
    failed: tuple[FailedReference, ...] = ()
    retrieve_ae_title: str | None = None

    @classmethod
    def of(
        cls,
        transaction_uid: str,
        committed: Iterable[SOPReference],
        failed: Iterable[FailedReference],
        retrieve_ae_title: str | None = None,
    ) -> CommitmentReport:
        """The report of these outcomes, event type 1 only when nothing failed."""
        failures = tuple(failed)
        event = CommitmentEvent.FAILURES_EXIST if failures else CommitmentEvent.SUCCESSFUL
        return cls(transaction_uid, int(event), tuple(committed), failures, retrieve_ae_title)


# --- the commitment data sets (PS3.4 Tables J.3-1 and J.3-2) ----------------------------------


def _uid(ds: Dataset, keyword: str, *, strict_shape: bool = False) -> str:
    """A required UID attribute: 0120 when absent, 0121 when empty, 0106 when malformed."""
    if keyword not in ds:
        raise DIMSEError(Status.MISSING_ATTRIBUTE, f"{keyword} missing")
    value = ds[keyword].value
    text = "" if value is None else str(value).strip("\0 ")
    if not text:
        raise DIMSEError(Status.MISSING_ATTRIBUTE_VALUE, f"{keyword} empty")
    if len(text) > _UID_MAX or (strict_shape and not is_valid_uid(text)):
        raise DIMSEError(Status.INVALID_ATTRIBUTE_VALUE, f"{keyword} is not a UID")
    return text


def _items(ds: Dataset, keyword: str, *, required: bool) -> list[Dataset]:
    if keyword not in ds:
        if required:
            raise DIMSEError(Status.MISSING_ATTRIBUTE, f"{keyword} missing")
        return []
    items = list(ds[keyword].value or [])
    if required and not items:
        raise DIMSEError(Status.MISSING_ATTRIBUTE_VALUE, f"{keyword} empty")
    return items


def _reference(item: Dataset) -> SOPReference:
    return SOPReference(_uid(item, "ReferencedSOPClassUID"), _uid(item, "ReferencedSOPInstanceUID"))


def _parsing(read: Callable[[], Any]) -> Any:
    """Run ``read``; a value pydicom cannot decode becomes 0106 invalid attribute value."""
    try:
        return read()
    except DIMSEError:
        raise
    except Exception as error:  # pydicom raises many kinds on malformed values
        raise DIMSEError(Status.INVALID_ATTRIBUTE_VALUE, f"cannot read: {error}") from error


def _reference_item(ref: SOPReference) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = ref.sop_class_uid
    item.ReferencedSOPInstanceUID = ref.sop_instance_uid
    return item


def action_information(transaction_uid: str, references: Iterable[SOPReference]) -> Dataset:
    """The N-ACTION data set of a storage commitment request (PS3.4 Table J.3-1)."""
    ds = Dataset()
    ds.TransactionUID = transaction_uid
    ds.ReferencedSOPSequence = DicomSequence([_reference_item(r) for r in references])
    return ds


def read_action_information(ds: Dataset) -> tuple[str, tuple[SOPReference, ...]]:
    """Transaction UID and references of a request; DIMSEError with the status to answer.

    The Transaction UID must be a well-formed UID (it names the transaction
    for both sides); referenced UIDs are taken as given, since an instance
    stored under a sloppy UID may still be committed.
    """

    def read() -> tuple[str, tuple[SOPReference, ...]]:
        transaction = _uid(ds, "TransactionUID", strict_shape=True)
        items = _items(ds, "ReferencedSOPSequence", required=True)
        return transaction, tuple(_reference(item) for item in items)

    result: tuple[str, tuple[SOPReference, ...]] = _parsing(read)
    return result


def event_information(report: CommitmentReport) -> Dataset:
    """The N-EVENT-REPORT data set of a commitment result (PS3.4 Table J.3-2)."""
    ds = Dataset()
    ds.TransactionUID = report.transaction_uid
    if report.retrieve_ae_title:
        ds.RetrieveAETitle = report.retrieve_ae_title
    if report.committed:
        ds.ReferencedSOPSequence = DicomSequence([_reference_item(r) for r in report.committed])
    if report.failed:
        failed = []
        for failure in report.failed:
            item = _reference_item(failure.reference)
            item.FailureReason = int(failure.reason)
            failed.append(item)
        ds.FailedSOPSequence = DicomSequence(failed)
    return ds


def read_event_information(ds: Dataset, event_type_id: int) -> CommitmentReport:
    """A received commitment result; DIMSEError with the status to answer when malformed."""

    def read() -> CommitmentReport:
        transaction = _uid(ds, "TransactionUID")
        committed = tuple(
            _reference(i) for i in _items(ds, "ReferencedSOPSequence", required=False)
        )
        failed = tuple(
            FailedReference(_reference(item), int(item.get("FailureReason", 0) or 0))
            for item in _items(ds, "FailedSOPSequence", required=event_type_id == 2)
        )
        retrieve = ds.get("RetrieveAETitle")
        title = str(retrieve).strip() if retrieve else None
        return CommitmentReport(transaction, event_type_id, committed, failed, title)

    report: CommitmentReport = _parsing(read)
    return report
