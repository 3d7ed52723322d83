"""What storage keeps and hands out, as plain values that every backend shares.

The records of stored instances, of the header columns the index keeps, of
how a store ended, of storage commitment requests and of MPPS instances.
Nothing here does I/O or knows SQL or DIMSE: an index backend fills these
from its tables, the services read them through :mod:`stellarpacs.storage.api`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any

__all__ = [
    "CommitmentRequest",
    "CommitmentState",
    "ConflictRecord",
    "HeaderSummary",
    "InstanceRecord",
    "InstanceRow",
    "MPPSRecord",
    "MPPSSummary",
    "Reference",
    "StoreOutcome",
    "StoreResult",
    "StoredEvent",
    "StudySummary",
    "now_text",
]

# -- instances ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    """What the index knows about one stored instance; ``path`` is POSIX, root-relative."""

    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    patient_id: str
    study_instance_uid: str
    series_instance_uid: str
    path: str
    size: int
    received_at: str
    calling_ae: str


@dataclass(frozen=True, slots=True)
class HeaderSummary:
    """The attributes of one header that the index keeps as columns, plus the whole as JSON."""

    patient_name: str = ""
    patient_birth_date: str = ""
    patient_sex: str = ""
    study_date: str = ""
    study_time: str = ""
    accession_number: str = ""
    study_id: str = ""
    study_description: str = ""
    referring_physician_name: str = ""
    modality: str = ""
    series_number: int | None = None
    series_description: str = ""
    body_part_examined: str = ""
    instance_number: int | None = None
    specific_character_set: str = ""
    header_json: str = "{}"


@dataclass(frozen=True, slots=True)
class InstanceRow:
    """One instance to add: its record and the header columns."""

    record: InstanceRecord
    header: HeaderSummary


@dataclass(frozen=True, slots=True)
class StudySummary:
    """One line of ``list_studies``; Modalities in Study is derived from the series."""

    study_instance_uid: str
    patient_id: str
    patient_name: str
    study_date: str
    study_time: str
    accession_number: str
    study_description: str
    modalities: tuple[str, ...]
    series_count: int
    instance_count: int
    size: int


# -- storing ----------------------------------------------------------------------------------


class StoreResult(Enum):
    """How one store ended; the C-STORE service answers each with its status."""

    STORED = "stored"  # durable and indexed (or a second copy of a known instance, kept out)
    NOT_STORED = "not stored"  # the file or the index could not be written
    UNREADABLE = "unreadable"  # the data set cannot be parsed


@dataclass(frozen=True, slots=True)
class StoreOutcome:
    """The end of one store: how it went, the stored record, and why it failed.

    ``error_comment`` is at most 64 characters, so that it fits an Error
    Comment (LO) as it is.
    """

    result: StoreResult
    record: InstanceRecord | None
    duplicate: bool = False
    error_comment: str | None = None
    #: A known SOP Instance UID arrived with other content: kept out (``keep``: STORED,
    #: the first's record; ``reject``: NOT_STORED), or replacing it (``replaced``).
    conflict: bool = False
    #: Policy ``replace``: ours replaced the stored instance.
    replaced: bool = False
    #: UNREADABLE because the data set names another SOP "class" or "instance" UID.
    mismatch: str | None = None


@dataclass(frozen=True, slots=True)
class ConflictRecord:
    """One arrival of a known SOP Instance UID with other content, as ``storage verify`` lists it.

    ``action`` is what the duplicate policy did: kept (the first), rejected, replaced.
    """

    sop_instance_uid: str
    sop_class_uid: str
    calling_ae: str
    received_at: str
    size: int
    action: str
    path: str


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """Told to notification hooks once an instance is durably stored and indexed."""

    record: InstanceRecord
    path: Path  # absolute


# -- N-service records -------------------------------------------------------------------------

Reference = tuple[str, str]
"""(Referenced SOP Class UID, Referenced SOP Instance UID)."""


class CommitmentState(Enum):
    """Where a storage commitment request is (PS3.4 J.3.3)."""

    PENDING = "pending"  # its N-EVENT-REPORT is not acknowledged yet
    DELIVERED = "delivered"  # the requester answered the N-EVENT-REPORT with Success


@dataclass(frozen=True, slots=True)
class CommitmentRequest:
    """One N-ACTION storage commitment request, as kept until its report is acknowledged.

    ``duplicate`` marks a request whose Transaction UID was already in use: its
    report fails every reference with 0131 (PS3.3 C.14.1.1).
    """

    pk: int
    transaction_uid: str
    requester_ae: str
    references: tuple[Reference, ...]
    duplicate: bool = False
    state: CommitmentState = CommitmentState.PENDING
    received_at: str = ""
    attempts: int = 0
    last_error: str = ""
    delivered_at: str | None = None
    event_type_id: int | None = None
    failed_count: int | None = None


@dataclass(frozen=True, slots=True)
class MPPSRecord:
    """One Modality Performed Procedure Step instance (PS3.4 F.7.2)."""

    sop_instance_uid: str
    status: str
    attributes: dict[str, Any]  # DICOM JSON model, PS3.18 F.2
    calling_ae: str = ""
    created_at: str = ""
    updated_at: str = ""
    study_uids: tuple[str, ...] = ()
    series_uids: tuple[str, ...] = ()
    instance_uids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MPPSSummary:
    """An MPPS with what the index holds of it: its link to the stored study."""

    record: MPPSRecord
    studies_stored: int  # of record.study_uids
    instances_stored: int  # in its studies or its performed series
    images_referenced: int  # Referenced Image Sequence items of its performed series
    images_stored: int


def now_text() -> str:
    """A UTC time stamp as the index writes them."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")
