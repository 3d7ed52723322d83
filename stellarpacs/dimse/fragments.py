"""Fragmenting DIMSE messages into P-DATA-TF PDUs and reassembling them (PS3.8 9.3.5, Annex E).

Theory of operation.  A message is a command set followed, when its Command
Data Set Type says so, by a data set (PS3.7 6.3.1).  Each travels as a run of
PDVs on one presentation context, the message control header marking command
or data set and the last fragment of each (PS3.8 E.2).  No fragment of another
message may come in between (PS3.7 6.3.1).

Sending: every PDV goes in its own P-DATA-TF, as dcmtk does, sized so that
the PDU-length field (6 bytes of PDV overhead plus the value) never exceeds the
peer's Maximum Length Received (PS3.8 D.1; 0 means unlimited).
:class:`DatasetFragmenter` streams a data set from chunks of any size without
holding it whole; it keeps one fragment back so that it can mark the last.

Receiving: :class:`MessageAssembler` joins the command fragments (they are
small, and bounded), decodes the command set, and then hands every data set
PDV on as a :class:`DatasetFragment` without copying or keeping it.  A message
is complete at a :class:`CommandReceived` whose ``has_dataset`` is False, or at
a :class:`DatasetFragment` whose ``is_last`` is True.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Final, TypeAlias

from stellarpacs.dimse.command_codec import decode_command
from stellarpacs.dimse.commands import Message
from stellarpacs.errors import AbortReason, LocalProtocolError, RemoteProtocolError
from stellarpacs.ul.pdus import PDataTF, PresentationDataValue

__all__ = [
    "MAX_COMMAND_SET_LENGTH",
    "PDV_OVERHEAD",
    "AssemblerEvent",
    "CommandReceived",
    "DatasetFragment",
    "DatasetFragmenter",
    "MessageAssembler",
    "fragment_message",
    "iter_dataset_pdus",
]

PDV_OVERHEAD: Final = 6
"""Bytes a PDV adds to the PDU length: item length (4), context ID (1), control header (1)."""
MAX_COMMAND_SET_LENGTH: Final = 1 << 20
"""Largest command set we accept; real ones are a few hundred bytes."""


def _payload_size(max_pdu_length: int) -> int | None:
    """Largest PDV value that fits the peer's limit; None when unlimited (PS3.8 D.1)."""
    if max_pdu_length == 0:
        return None
    if max_pdu_length <= PDV_OVERHEAD:
        raise LocalProtocolError(f"maximum PDU length {max_pdu_length} leaves no room for data")
    return max_pdu_length - PDV_OVERHEAD


def _pdu(context_id: int, is_command: bool, is_last: bool, data: bytes) -> PDataTF:
    return PDataTF((PresentationDataValue(context_id, is_command, is_last, data),))


def _split(context_id: int, is_command: bool, data: bytes, size: int | None) -> Iterator[PDataTF]:
    """One PDU per ``size`` bytes of ``data``; the last one flagged, even when ``data`` is empty."""
    if size is None or len(data) <= size:
        yield _pdu(context_id, is_command, True, data)
        return
    view = memoryview(data)
    last_start = (len(data) - 1) // size * size
    for start in range(0, last_start, size):
        yield _pdu(context_id, is_command, False, bytes(view[start : start + size]))
    yield _pdu(context_id, is_command, True, bytes(view[last_start:]))


def fragment_message(
    context_id: int, command: bytes, dataset: bytes | None, max_pdu_length: int
) -> Iterator[PDataTF]:
    """P-DATA-TF PDUs for an encoded command set and optional data set (PS3.8 9.3.5, E.2).

    Command and data set are never mixed in one PDV; each one's final PDV has
    the last-fragment bit.  ``max_pdu_length`` is the peer's Maximum Length
    Received, 0 for unlimited.
    """
    size = _payload_size(max_pdu_length)
    yield from _split(context_id, True, command, size)
    if dataset is not None:
        yield from _split(context_id, False, dataset, size)


class DatasetFragmenter:
    """Push-style data set fragmenter, for streaming a file without holding it (PS3.8 E.2).

    ``feed(chunk)`` returns the PDUs that are ready; ``feed(chunk, final=True)``
    (the chunk may be empty) returns the rest, the last one flagged.  PDVs are
    never merged across chunks, so chunks of at least the maximum PDU length
    give full PDUs; one fragment is held back until the next chunk or the end.
    """

    __slots__ = ("_context_id", "_finished", "_held", "_size")

    def __init__(self, context_id: int, max_pdu_length: int) -> None:
        self._context_id = context_id
        self._size = _payload_size(max_pdu_length)
        self._held: bytes | None = None
        self._finished = False

    def feed(self, chunk: bytes, final: bool = False) -> list[PDataTF]:
        """Cut ``chunk`` into PDUs; with ``final`` also flush the last one."""
        if self._finished:
            raise LocalProtocolError("data set already finished")
        out: list[PDataTF] = []
        for piece in self._pieces(chunk):
            if self._held is not None:
                out.append(_pdu(self._context_id, False, False, self._held))
            self._held = piece
        if final:
            self._finished = True
            out.append(_pdu(self._context_id, False, True, self._held or b""))
            self._held = None
        return out

    def _pieces(self, chunk: bytes) -> Iterator[bytes]:
        size = self._size
        if size is None or len(chunk) <= size:
            if chunk:
                yield chunk
            return
        view = memoryview(chunk)
        for start in range(0, len(chunk), size):
            yield bytes(view[start : start + size])


def iter_dataset_pdus(
    context_id: int, chunks: Iterable[bytes], max_pdu_length: int
) -> Iterator[PDataTF]:
    """P-DATA-TF PDUs for a data set given as chunks; the final PDV is flagged last."""
    fragmenter = DatasetFragmenter(context_id, max_pdu_length)
    for chunk in chunks:
        yield from fragmenter.feed(chunk)
    yield from fragmenter.feed(b"", final=True)


# --- reassembly ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommandReceived:
    """A whole command set arrived and decoded; data set fragments follow if ``has_dataset``."""

    context_id: int
    message: Message
    has_dataset: bool


@dataclass(frozen=True, slots=True)
class DatasetFragment:
    """One data set PDV, passed on as received; ``is_last`` ends the message."""

    context_id: int
    data: bytes
    is_last: bool


AssemblerEvent: TypeAlias = CommandReceived | DatasetFragment


class _State(Enum):
    IDLE = "idle"  # between messages
    COMMAND = "command"  # some command fragments received
    DATASET = "dataset"  # command done, data set fragments expected


def _unexpected(message: str) -> RemoteProtocolError:
    return RemoteProtocolError(message, AbortReason.UNEXPECTED_PDU_PARAMETER)


class MessageAssembler:
    """Sans-I/O reassembly of DIMSE messages from PDVs (PS3.7 6.3.1, PS3.8 E.2).

    Feed every received P-DATA-TF to :meth:`receive`; it returns events in
    order.  Any break of the fragment sequence raises RemoteProtocolError, the
    A-ABORT to send; the assembler is then unusable, as is the association.
    """

    __slots__ = ("_command_length", "_command_parts", "_context_id", "_state")

    def __init__(self) -> None:
        self._state = _State.IDLE
        self._context_id = -1
        self._command_parts: list[bytes] = []
        self._command_length = 0

    @property
    def in_progress(self) -> bool:
        """True while a message has begun but not ended (useful when the peer releases)."""
        return self._state is not _State.IDLE

    def receive(self, pdata: PDataTF) -> list[AssemblerEvent]:
        """Process every PDV of one P-DATA-TF; returns the events it completes."""
        events: list[AssemblerEvent] = []
        for pdv in pdata.pdvs:
            event = self.receive_pdv(pdv)
            if event is not None:
                events.append(event)
        return events

    def receive_pdv(self, pdv: PresentationDataValue) -> AssemblerEvent | None:
        """Process one PDV; returns an event, or None for a non-final command fragment."""
        if self._state is not _State.IDLE and pdv.context_id != self._context_id:
            raise _unexpected(
                f"PDV on presentation context {pdv.context_id} in the middle of a message "
                f"on context {self._context_id}"
            )
        return _HANDLERS[self._state, pdv.is_command](self, pdv)

    def _command_fragment(self, pdv: PresentationDataValue) -> AssemblerEvent | None:
        self._state = _State.COMMAND
        self._context_id = pdv.context_id
        self._command_length += len(pdv.data)
        if self._command_length > MAX_COMMAND_SET_LENGTH:
            raise RemoteProtocolError(
                f"command set longer than {MAX_COMMAND_SET_LENGTH} bytes",
                AbortReason.INVALID_PDU_PARAMETER_VALUE,
            )
        self._command_parts.append(pdv.data)
        if not pdv.is_last:
            return None
        message = decode_command(b"".join(self._command_parts))
        self._command_parts.clear()
        self._command_length = 0
        self._state = _State.DATASET if message.has_dataset else _State.IDLE
        return CommandReceived(pdv.context_id, message, message.has_dataset)

    def _dataset_fragment(self, pdv: PresentationDataValue) -> AssemblerEvent:
        if pdv.is_last:
            self._state = _State.IDLE
        return DatasetFragment(pdv.context_id, pdv.data, pdv.is_last)

    def _dataset_without_command(self, pdv: PresentationDataValue) -> AssemblerEvent:
        raise _unexpected(
            "data set fragment while no command expects one "
            "(none received, or its Command Data Set Type is 0101)"
        )

    def _dataset_during_command(self, pdv: PresentationDataValue) -> AssemblerEvent:
        raise _unexpected("data set fragment before the command set's last fragment")

    def _command_during_dataset(self, pdv: PresentationDataValue) -> AssemblerEvent:
        raise _unexpected("command fragment before the previous message's data set ended")


# (state, is_command) -> handler; every pair is listed, the errors included.
_HANDLERS: Final[
    dict[
        tuple[_State, bool],
        Callable[[MessageAssembler, PresentationDataValue], AssemblerEvent | None],
    ]
] = {
    (_State.IDLE, True): MessageAssembler._command_fragment,
    (_State.IDLE, False): MessageAssembler._dataset_without_command,
    (_State.COMMAND, True): MessageAssembler._command_fragment,
    (_State.COMMAND, False): MessageAssembler._dataset_during_command,
    (_State.DATASET, True): MessageAssembler._command_during_dataset,
    (_State.DATASET, False): MessageAssembler._dataset_fragment,
}
