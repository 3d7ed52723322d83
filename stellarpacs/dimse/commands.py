"""DIMSE messages: one typed, frozen dataclass per primitive (PS3.7 9.3, 10.3).

Each message's field names are the standard's keywords in snake_case, so the
codec in :mod:`stellarpacs.dimse.command_codec` can walk the dataclass fields
instead of being written per class.  Command Field is a class constant;
Command Data Set Type becomes ``has_dataset``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from types import MappingProxyType
from typing import ClassVar, Final, TypeAlias

__all__ = [
    "COMMAND_CLASSES",
    "COMMAND_NAMES",
    "NAMED_CLASSES",
    "VERIFICATION_SOP_CLASS",
    "CCancelRQ",
    "CEchoRQ",
    "CEchoRSP",
    "CFindRQ",
    "CFindRSP",
    "CGetRQ",
    "CGetRSP",
    "CMoveRQ",
    "CMoveRSP",
    "CStoreRQ",
    "CStoreRSP",
    "Message",
    "NActionRQ",
    "NActionRSP",
    "NCreateRQ",
    "NCreateRSP",
    "NDeleteRQ",
    "NDeleteRSP",
    "NEventReportRQ",
    "NEventReportRSP",
    "NGetRQ",
    "NGetRSP",
    "NSetRQ",
    "NSetRSP",
    "Priority",
    "is_request",
]

VERIFICATION_SOP_CLASS: Final = "1.2.840.10008.1.1"
"""Verification SOP Class, the default of C-ECHO-RQ (PS3.4 A.4)."""


class Priority(IntEnum):
    """Priority (0000,0700) of C-STORE, C-FIND, C-GET and C-MOVE requests (PS3.7 E.1)."""

    MEDIUM = 0x0000
    HIGH = 0x0001
    LOW = 0x0002


# --- the messages (PS3.7 9.3 and 10.3) -------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _Request:
    message_id: int
    has_dataset: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class _Response:
    message_id_being_responded_to: int
    status: int
    error_comment: str | None = None
    error_id: int | None = None
    offending_element: tuple[int, ...] | None = None
    has_dataset: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class _NResponse(_Response):
    affected_sop_class_uid: str | None = None
    affected_sop_instance_uid: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CEchoRQ(_Request):
    """C-ECHO-RQ (PS3.7 9.3.5.1)."""

    command_field: ClassVar[int] = 0x0030
    affected_sop_class_uid: str = VERIFICATION_SOP_CLASS


@dataclass(frozen=True, slots=True, kw_only=True)
class CEchoRSP(_Response):
    """C-ECHO-RSP (PS3.7 9.3.5.2)."""

    command_field: ClassVar[int] = 0x8030
    affected_sop_class_uid: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CStoreRQ(_Request):
    """C-STORE-RQ (PS3.7 9.3.1.1); the move originator fields are set by C-MOVE SCPs."""

    command_field: ClassVar[int] = 0x0001
    affected_sop_class_uid: str
    affected_sop_instance_uid: str
    priority: int = Priority.MEDIUM
    move_originator_ae_title: str | None = None
    move_originator_message_id: int | None = None
    has_dataset: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class CStoreRSP(_Response):
    """C-STORE-RSP (PS3.7 9.3.1.2)."""

    command_field: ClassVar[int] = 0x8001
    affected_sop_class_uid: str | None = None
    affected_sop_instance_uid: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CFindRQ(_Request):
    """C-FIND-RQ (PS3.7 9.3.2.1); the identifier is the data set."""

    command_field: ClassVar[int] = 0x0020
    affected_sop_class_uid: str
    priority: int = Priority.MEDIUM
    has_dataset: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class CFindRSP(_Response):
    """C-FIND-RSP (PS3.7 9.3.2.2); pending responses carry a match as data set."""

    command_field: ClassVar[int] = 0x8020
    affected_sop_class_uid: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CGetRQ(_Request):
    """C-GET-RQ (PS3.7 9.3.3.1)."""

    command_field: ClassVar[int] = 0x0010
    affected_sop_class_uid: str
    priority: int = Priority.MEDIUM
    has_dataset: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class CGetRSP(_Response):
    """C-GET-RSP (PS3.7 9.3.3.2) with the sub-operation counts."""

    command_field: ClassVar[int] = 0x8010
    affected_sop_class_uid: str | None = None
    number_of_remaining_suboperations: int | None = None
    number_of_completed_suboperations: int | None = None
    number_of_failed_suboperations: int | None = None
    number_of_warning_suboperations: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CMoveRQ(_Request):
    """C-MOVE-RQ (PS3.7 9.3.4.1)."""

    command_field: ClassVar[int] = 0x0021
    affected_sop_class_uid: str
    move_destination: str
    priority: int = Priority.MEDIUM
    has_dataset: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class CMoveRSP(_Response):
    """C-MOVE-RSP (PS3.7 9.3.4.2) with the sub-operation counts."""

    command_field: ClassVar[int] = 0x8021
    affected_sop_class_uid: str | None = None
    number_of_remaining_suboperations: int | None = None
    number_of_completed_suboperations: int | None = None
    number_of_failed_suboperations: int | None = None
    number_of_warning_suboperations: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CCancelRQ:
    """C-CANCEL-RQ (PS3.7 9.3.2.3): names the request it cancels, has no Message ID."""

    command_field: ClassVar[int] = 0x0FFF
    message_id_being_responded_to: int
    has_dataset: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class NEventReportRQ(_Request):
    """N-EVENT-REPORT-RQ (PS3.7 10.3.1.1); the event information is the data set."""

    command_field: ClassVar[int] = 0x0100
    affected_sop_class_uid: str
    affected_sop_instance_uid: str
    event_type_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class NEventReportRSP(_NResponse):
    """N-EVENT-REPORT-RSP (PS3.7 10.3.1.2)."""

    command_field: ClassVar[int] = 0x8100
    event_type_id: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class NGetRQ(_Request):
    """N-GET-RQ (PS3.7 10.3.2.1); no attribute list means "all attributes"."""

    command_field: ClassVar[int] = 0x0110
    requested_sop_class_uid: str
    requested_sop_instance_uid: str
    attribute_identifier_list: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class NGetRSP(_NResponse):
    """N-GET-RSP (PS3.7 10.3.2.2)."""

    command_field: ClassVar[int] = 0x8110
    attribute_identifier_list: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class NSetRQ(_Request):
    """N-SET-RQ (PS3.7 10.3.3.1); the modification list is the data set."""

    command_field: ClassVar[int] = 0x0120
    requested_sop_class_uid: str
    requested_sop_instance_uid: str
    has_dataset: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class NSetRSP(_NResponse):
    """N-SET-RSP (PS3.7 10.3.3.2)."""

    command_field: ClassVar[int] = 0x8120
    attribute_identifier_list: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class NActionRQ(_Request):
    """N-ACTION-RQ (PS3.7 10.3.4.1); the action information is the data set."""

    command_field: ClassVar[int] = 0x0130
    requested_sop_class_uid: str
    requested_sop_instance_uid: str
    action_type_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class NActionRSP(_NResponse):
    """N-ACTION-RSP (PS3.7 10.3.4.2)."""

    command_field: ClassVar[int] = 0x8130
    action_type_id: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class NCreateRQ(_Request):
    """N-CREATE-RQ (PS3.7 10.3.5.1); without an instance UID the SCP assigns one."""

    command_field: ClassVar[int] = 0x0140
    affected_sop_class_uid: str
    affected_sop_instance_uid: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class NCreateRSP(_NResponse):
    """N-CREATE-RSP (PS3.7 10.3.5.2)."""

    command_field: ClassVar[int] = 0x8140
    attribute_identifier_list: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class NDeleteRQ(_Request):
    """N-DELETE-RQ (PS3.7 10.3.6.1)."""

    command_field: ClassVar[int] = 0x0150
    requested_sop_class_uid: str
    requested_sop_instance_uid: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NDeleteRSP(_NResponse):
    """N-DELETE-RSP (PS3.7 10.3.6.2)."""

    command_field: ClassVar[int] = 0x8150


Message: TypeAlias = (
    CEchoRQ
    | CEchoRSP
    | CStoreRQ
    | CStoreRSP
    | CFindRQ
    | CFindRSP
    | CGetRQ
    | CGetRSP
    | CMoveRQ
    | CMoveRSP
    | CCancelRQ
    | NEventReportRQ
    | NEventReportRSP
    | NGetRQ
    | NGetRSP
    | NSetRQ
    | NSetRSP
    | NActionRQ
    | NActionRSP
    | NCreateRQ
    | NCreateRSP
    | NDeleteRQ
    | NDeleteRSP
)

NAMED_CLASSES: tuple[tuple[type[Message], str], ...] = (
    (CStoreRQ, "C-STORE-RQ"),
    (CStoreRSP, "C-STORE-RSP"),
    (CGetRQ, "C-GET-RQ"),
    (CGetRSP, "C-GET-RSP"),
    (CFindRQ, "C-FIND-RQ"),
    (CFindRSP, "C-FIND-RSP"),
    (CMoveRQ, "C-MOVE-RQ"),
    (CMoveRSP, "C-MOVE-RSP"),
    (CEchoRQ, "C-ECHO-RQ"),
    (CEchoRSP, "C-ECHO-RSP"),
    (NEventReportRQ, "N-EVENT-REPORT-RQ"),
    (NEventReportRSP, "N-EVENT-REPORT-RSP"),
    (NGetRQ, "N-GET-RQ"),
    (NGetRSP, "N-GET-RSP"),
    (NSetRQ, "N-SET-RQ"),
    (NSetRSP, "N-SET-RSP"),
    (NActionRQ, "N-ACTION-RQ"),
    (NActionRSP, "N-ACTION-RSP"),
    (NCreateRQ, "N-CREATE-RQ"),
    (NCreateRSP, "N-CREATE-RSP"),
    (NDeleteRQ, "N-DELETE-RQ"),
    (NDeleteRSP, "N-DELETE-RSP"),
    (CCancelRQ, "C-CANCEL-RQ"),
)

COMMAND_CLASSES: Final[Mapping[int, type[Message]]] = MappingProxyType(
    {cls.command_field: cls for cls, _ in NAMED_CLASSES}
)
"""Command Field (0000,0100) value -> message class (PS3.7 E.1)."""

COMMAND_NAMES: Final[Mapping[int, str]] = MappingProxyType(
    {cls.command_field: name for cls, name in NAMED_CLASSES}
)
"""Command Field value -> the standard's name, e.g. ``0x0001 -> "C-STORE-RQ"``."""


def is_request(msg: Message) -> bool:
    """True for requests (C-CANCEL-RQ included); responses have bit 15 of Command Field set."""
    return not msg.command_field & 0x8000
