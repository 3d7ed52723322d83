"""DIMSE status codes as data (PS3.7 Annex C, PS3.4 service-specific tables).

A status is a 16-bit value in every response.  Its *category* (success,
warning, failure, cancel, pending) follows from fixed ranges (PS3.7 C.1 to
C.4), so callers branch on :func:`category` rather than on individual codes.
The meaning of a code inside a range such as A7xx depends on the service
class, which is why :func:`describe` takes an optional :class:`ServiceClass`.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum, IntEnum
from typing import Final

__all__ = [
    "ServiceClass",
    "Status",
    "StatusCategory",
    "category",
    "describe",
]


class StatusCategory(Enum):
    """The five status types of PS3.7 C.1 to C.4."""

    SUCCESS = "success"
    WARNING = "warning"
    FAILURE = "failure"
    CANCEL = "cancel"
    PENDING = "pending"


class ServiceClass(Enum):
    """Service classes whose statuses have their own meanings (PS3.4 B.2.3, C.4)."""

    STORAGE = "storage"
    FIND = "find"
    GET = "get"
    MOVE = "move"


class Status(IntEnum):
    """Named status codes: the general ones of PS3.7 C.4 and the usual service ones.

    Service-specific codes that share a value (B000 means "coercion" to storage
    and "sub-operations failed" to C-GET/C-MOVE) are aliases of one member.
    """

    SUCCESS = 0x0000
    ATTRIBUTE_LIST_ERROR = 0x0107
    ATTRIBUTE_VALUE_OUT_OF_RANGE = 0x0116
    NO_SUCH_ATTRIBUTE = 0x0105
    INVALID_ATTRIBUTE_VALUE = 0x0106
    PROCESSING_FAILURE = 0x0110
    DUPLICATE_SOP_INSTANCE = 0x0111
    NO_SUCH_OBJECT_INSTANCE = 0x0112
    NO_SUCH_EVENT_TYPE = 0x0113
    NO_SUCH_ARGUMENT = 0x0114
    INVALID_ARGUMENT_VALUE = 0x0115
    INVALID_OBJECT_INSTANCE = 0x0117
    NO_SUCH_SOP_CLASS = 0x0118
    CLASS_INSTANCE_CONFLICT = 0x0119
    MISSING_ATTRIBUTE = 0x0120
    MISSING_ATTRIBUTE_VALUE = 0x0121
    SOP_CLASS_NOT_SUPPORTED = 0x0122
    NO_SUCH_ACTION = 0x0123
    NOT_AUTHORIZED = 0x0124
    DUPLICATE_INVOCATION = 0x0210
    UNRECOGNIZED_OPERATION = 0x0211
    MISTYPED_ARGUMENT = 0x0212
    RESOURCE_LIMITATION = 0x0213
    OUT_OF_RESOURCES = 0xA700
    OUT_OF_RESOURCES_MATCHES = 0xA701
    OUT_OF_RESOURCES_SUBOPERATIONS = 0xA702
    MOVE_DESTINATION_UNKNOWN = 0xA801
    DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
    IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS = 0xA900
    CANNOT_UNDERSTAND = 0xC000
    UNABLE_TO_PROCESS = 0xC000
    COERCION_OF_DATA_ELEMENTS = 0xB000
    SUBOPERATIONS_COMPLETE_WITH_FAILURES = 0xB000
    ELEMENTS_DISCARDED = 0xB006
    DATASET_DOES_NOT_MATCH_SOP_CLASS_WARNING = 0xB007
    CANCEL = 0xFE00
    PENDING = 0xFF00
    PENDING_WARNING = 0xFF01


_WARNINGS: Final = frozenset({0x0001, 0x0107, 0x0116})
_EXACT: Final[Mapping[int, StatusCategory]] = {
    0x0000: StatusCategory.SUCCESS,
    0xFE00: StatusCategory.CANCEL,
    0xFF00: StatusCategory.PENDING,
    0xFF01: StatusCategory.PENDING,
}


def category(status: int) -> StatusCategory:
    """Classify a status per PS3.7 C.1 to C.4.

    Warnings are 0001, 0107, 0116 and Bxxx; anything not success, cancel,
    pending or warning counts as a failure, as an unknown code must.
    """
    exact = _EXACT.get(status)
    if exact is not None:
        return exact
    if status in _WARNINGS or status >> 12 == 0xB:
        return StatusCategory.WARNING
    return StatusCategory.FAILURE


# (low, high, text) ranges per service, searched before the general table.
_Ranges = tuple[tuple[int, int, str], ...]
_QR_COMMON: Final[_Ranges] = (
    (0xA900, 0xA900, "identifier does not match SOP class"),
    (0xC000, 0xCFFF, "unable to process"),
    (0xFF00, 0xFF00, "pending: matches are continuing"),
)
_RETRIEVE: Final[_Ranges] = (
    (0xA701, 0xA701, "refused: out of resources, unable to calculate number of matches"),
    (0xA702, 0xA702, "refused: out of resources, unable to perform sub-operations"),
    (0xB000, 0xB000, "sub-operations complete, one or more failures or warnings"),
    (0xFF00, 0xFF00, "pending: sub-operations are continuing"),
    *_QR_COMMON,
)
_SERVICE_TEXT: Final[Mapping[ServiceClass, _Ranges]] = {
    ServiceClass.STORAGE: (
        (0xA700, 0xA7FF, "refused: out of resources"),
        (0xA900, 0xA9FF, "error: data set does not match SOP class"),
        (0xC000, 0xCFFF, "error: cannot understand"),
        (0xB000, 0xB000, "coercion of data elements"),
        (0xB006, 0xB006, "elements discarded"),
        (0xB007, 0xB007, "data set does not match SOP class"),
    ),
    ServiceClass.FIND: (
        (0xA700, 0xA700, "refused: out of resources"),
        (0xFF01, 0xFF01, "pending: optional keys not supported"),
        *_QR_COMMON,
    ),
    ServiceClass.GET: _RETRIEVE,
    ServiceClass.MOVE: ((0xA801, 0xA801, "refused: move destination unknown"), *_RETRIEVE),
}

_GENERAL_TEXT: Final[Mapping[int, str]] = {
    0x0000: "success",
    0x0001: "warning",
    0x0105: "no such attribute",
    0x0106: "invalid attribute value",
    0x0107: "attribute list error",
    0x0110: "processing failure",
    0x0111: "duplicate SOP instance",
    0x0112: "no such object instance",
    0x0113: "no such event type",
    0x0114: "no such argument",
    0x0115: "invalid argument value",
    0x0116: "attribute value out of range",
    0x0117: "invalid object instance",
    0x0118: "no such SOP class",
    0x0119: "class-instance conflict",
    0x0120: "missing attribute",
    0x0121: "missing attribute value",
    0x0122: "SOP class not supported",
    0x0123: "no such action",
    0x0124: "refused: not authorized",
    0x0210: "duplicate invocation",
    0x0211: "unrecognized operation",
    0x0212: "mistyped argument",
    0x0213: "resource limitation",
    0xFE00: "cancel",
    0xFF00: "pending",
    0xFF01: "pending with warnings",
}


def _service_text(status: int, service: ServiceClass | None) -> str | None:
    ranges = _SERVICE_TEXT[service] if service is not None else ()
    for low, high, text in ranges:
        if low <= status <= high:
            return text
    return None


def describe(status: int, service: ServiceClass | None = None) -> str:
    """A one-line text for logs, e.g. ``"0xA700 failure: refused: out of resources"``."""
    text = _service_text(status, service) or _GENERAL_TEXT.get(status)
    head = f"0x{status:04X} {category(status).value}"
    return f"{head}: {text}" if text else head
