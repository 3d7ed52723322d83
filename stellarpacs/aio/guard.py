"""Requests the server answers itself, before any service handler sees them.

Two kinds of request are refused here, in one place, for every service:

- A C-service request whose Affected SOP Class UID arrived with non-ASCII
  bytes. The command codec decodes UI values as ASCII (PS3.5 9.1), so such a
  UID reaches us with U+FFFD in it: it cannot name the SOP class of its
  presentation context, and echoing it would make the response impossible
  to encode. Answered 0122, Refused: SOP Class not supported, which the
  status lists of C-STORE, C-FIND, C-GET, C-MOVE and C-ECHO all hold
  (PS3.7 9.1.1 to 9.1.5, Annex C.5). The N-services check their own SOP
  class against a constant and answer 0118 already.
- A request whose data set, gathered in memory because no service streams
  it, is larger than its bound (``max_identifier_size`` for the C-FIND,
  C-MOVE and C-GET identifiers, ``max_nservice_dataset_size`` for the data
  sets of the N-services). :class:`BoundedSink` keeps the fragments up to the
  bound, then drops them and only counts the rest: the data set is drained
  as it arrives, never held, and the association stays usable, since a
  status is an answer PS3.7 allows where an A-ABORT would also end the other
  operations of the peer. The status is the service's "out of resources":
  A700 for C-FIND (PS3.4 Table C.4-1), A701 for C-MOVE and C-GET (Tables
  C.4-2, C.4-3), 0213 Resource Limitation for the N-services (PS3.7 10.1,
  Annex C) and A700 for C-STORE (PS3.4 B.2.3).

Every response built here carries the context's abstract syntax as its
Affected SOP Class UID, which is what the request had to name and can always
be encoded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any, Final

from stellarpacs.config import Config
from stellarpacs.dimse.association import MAX_IN_MEMORY_DATASET
from stellarpacs.dimse.commands import (
    CEchoRQ,
    CFindRQ,
    CGetRQ,
    CMoveRQ,
    CStoreRQ,
    Message,
    NActionRQ,
    NCreateRQ,
    NEventReportRQ,
    NSetRQ,
)
from stellarpacs.dimse.events import Incoming
from stellarpacs.dimse.matching import RESPONSE_CLASSES
from stellarpacs.dimse.status import Status

__all__ = ["BoundedSink", "Refusal", "dataset_limit", "screen"]

_C_SERVICES: Final = (CEchoRQ, CStoreRQ, CFindRQ, CGetRQ, CMoveRQ)
_IDENTIFIERS: Final = (CFindRQ, CGetRQ, CMoveRQ)
_NSERVICE_DATA: Final = (NActionRQ, NCreateRQ, NSetRQ, NEventReportRQ)
_OVERSIZED: Final[Mapping[type[Message], int]] = MappingProxyType(
    {
        CStoreRQ: Status.OUT_OF_RESOURCES,
        CFindRQ: Status.OUT_OF_RESOURCES,
        CGetRQ: Status.OUT_OF_RESOURCES_MATCHES,
        CMoveRQ: Status.OUT_OF_RESOURCES_MATCHES,
    }
)
"""The C-services' statuses for a data set over its bound; every other request gets 0213."""
_ECHOED: Final = ("action_type_id", "event_type_id")


class BoundedSink:
    """Gathers a data set in memory up to ``limit`` bytes; past it, drops and counts."""

    __slots__ = ("limit", "parts", "size")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[bytes] = []
        self.size = 0

    @property
    def oversized(self) -> bool:
        return self.size > self.limit

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size <= self.limit:
            self.parts.append(data)
        elif self.parts:
            self.parts.clear()  # refused at the first fragment over the bound

    def abandon(self) -> None:
        self.parts.clear()


def dataset_limit(config: Config, command: Message) -> int:
    """The largest data set of ``command`` gathered in memory."""
    if isinstance(command, _IDENTIFIERS):
        return config.max_identifier_size
    if isinstance(command, _NSERVICE_DATA):
        return config.max_nservice_dataset_size
    return MAX_IN_MEMORY_DATASET


@dataclass(frozen=True, slots=True)
class Refusal:
    """A response to send instead of running the handler, and why (for the log)."""

    response: Message
    status: int
    reason: str


def screen(incoming: Incoming) -> tuple[Incoming, Refusal | None]:
    """``incoming`` as the handler should see it, or the refusal to answer it with.

    A data set gathered by a :class:`BoundedSink` becomes ``incoming.dataset``.
    """
    command = incoming.command
    sink = incoming.sink
    if isinstance(sink, BoundedSink):
        if sink.oversized:
            status = _OVERSIZED.get(type(command), Status.RESOURCE_LIMITATION)
            why = f"data set of {sink.size} bytes over the limit of {sink.limit}"
            return incoming, _refusal(incoming, status, why)
        data = b"".join(sink.parts)
        incoming = Incoming(incoming.context, command, data, None, incoming.answers)
    if isinstance(command, _C_SERVICES) and not command.affected_sop_class_uid.isascii():
        why = "Affected SOP Class UID is not ASCII"
        return incoming, _refusal(incoming, Status.SOP_CLASS_NOT_SUPPORTED, why)
    return incoming, None


def _refusal(incoming: Incoming, status: int, why: str) -> Refusal:
    command = incoming.command
    response_class = RESPONSE_CLASSES[type(command)]
    values: dict[str, Any] = {
        "message_id_being_responded_to": getattr(command, "message_id", 0),
        "status": status,
        "affected_sop_class_uid": incoming.context.abstract_syntax,
        "error_comment": why[:64],  # LO (PS3.7 C.4)
    }
    names = {f.name for f in fields(response_class)}
    instance = getattr(command, "affected_sop_instance_uid", None) or getattr(
        command, "requested_sop_instance_uid", None
    )
    if "affected_sop_instance_uid" in names and instance and instance.isascii():
        values["affected_sop_instance_uid"] = instance
    for name in _ECHOED:
        if name in names:
            values[name] = getattr(command, name, None)
    return Refusal(response_class(**values), status, why)
