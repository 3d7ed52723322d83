"""What the DIMSE association hands its user (PS3.7 7, 8): messages, a release, the end.

The events of :class:`~stellarpacs.dimse.association.DIMSEAssociation`, and
the shape of the sink a received data set streams into.  Both the SCP
handlers and the SCU helpers read them, on top of any adapter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, TypeAlias

from stellarpacs.dimse.commands import Message
from stellarpacs.errors import AssociationAborted, RemoteProtocolError
from stellarpacs.ul.negotiation import PresentationContext

__all__ = [
    "Closed",
    "DIMSEEvent",
    "DatasetSink",
    "Incoming",
    "MessageCounts",
    "ReleaseIndicated",
]


class DatasetSink(Protocol):
    """Where the fragments of one received data set go, in order."""

    def write(self, data: bytes) -> None:
        """Take one fragment; called as bytes are fed in, so it must not block long."""

    def abandon(self) -> None:
        """The association ended before the last fragment: drop what was written."""


@dataclass(slots=True)
class Incoming:
    """One received DIMSE message, complete.

    ``dataset`` holds the data set when it was gathered in memory; when a
    sink took the fragments, ``sink`` is that sink and ``dataset`` is None.
    For a response, ``answers`` is the outstanding request it answers
    (same class pair, same Message ID), or None when it answers none.
    """

    context: PresentationContext
    command: Message
    dataset: bytes | None = None
    sink: DatasetSink | None = None
    answers: Message | None = None


@dataclass(frozen=True, slots=True)
class ReleaseIndicated:
    """The peer asks to release (A-RELEASE indication, PS3.8 9.2.3).

    Answer with
    :meth:`~stellarpacs.dimse.association.DIMSEAssociation.release_response`
    once the messages received before it are answered.
    """


@dataclass(frozen=True, slots=True)
class Closed:
    """The association is over: released (``error`` None) or aborted.

    ``protocol_error`` is the DIMSE-level fault of the peer that we answered
    with A-ABORT, if that is why.
    """

    error: AssociationAborted | None = None
    protocol_error: RemoteProtocolError | None = None


DIMSEEvent: TypeAlias = Incoming | ReleaseIndicated | Closed


@dataclass(slots=True)
class MessageCounts:
    """Complete DIMSE messages received and sent (C-CANCEL-RQs included)."""

    messages_in: int = 0
    messages_out: int = 0
