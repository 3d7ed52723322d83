"""The DIMSE side of one established association, sans-I/O (PS3.7 7 to 9, PS3.8 9.2).

Theory of operation.  :class:`DIMSEAssociation` sits on an established
upper layer :class:`~stellarpacs.ul.connection.Connection` and has its shape
(h11, aioquic): ``receive_data(data, now)`` feeds bytes, ``next_event()``
returns what the user must learn, ``data_to_send()`` the bytes to write,
``next_deadline()`` and ``handle_timeout(now)`` the one timer.  It never
touches a socket or a clock: the adapter passes the time in.

What it keeps, so that no adapter and no SCU has to:

- Message IDs (PS3.7 9.1.1.1): :meth:`~DIMSEAssociation.next_message_id`
  never hands out the ID of a request still outstanding.
- Response matching: a request we send is outstanding until its final (not
  Pending) response; each response received carries the request it answers
  (:attr:`~stellarpacs.dimse.events.Incoming.answers`), and
  :func:`~stellarpacs.dimse.matching.expect_response` is the one check that
  a message answers a request.
- C-CANCEL (PS3.7 9.3.2.3): a C-CANCEL-RQ is not delivered as a message; the
  Message ID it names goes into ``cancelled`` while the peer's request is
  being served, for the handler to notice, and leaves it with the final
  response.
- Data set routing: when a command with a data set arrives, the owner is
  asked synchronously (``sink_for``) where its fragments go; without a sink
  they are gathered in memory, up to :data:`MAX_IN_MEMORY_DATASET`.
- Release collisions (PS3.8 9.2.3): answered here, AR-9 by the requestor,
  AR-4 by the acceptor once its A-RELEASE-RQ is answered (AR-10).
- The idle limit: measured from the last complete PDU received; a peer
  trickling bytes inside one PDU meets the upper layer's PDU limit
  (``pdu_timeout`` of :class:`~stellarpacs.ul.connection.Connection`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final, TypeAlias

from stellarpacs.dimse.command_codec import encode_command
from stellarpacs.dimse.commands import CCancelRQ, Message
from stellarpacs.dimse.events import (
    Closed,
    DatasetSink,
    DIMSEEvent,
    Incoming,
    MessageCounts,
    ReleaseIndicated,
)
from stellarpacs.dimse.fragments import (
    CommandReceived,
    DatasetFragment,
    DatasetFragmenter,
    MessageAssembler,
    fragment_message,
)
from stellarpacs.dimse.matching import RESPONSE_CLASSES, Request, Response, is_final
from stellarpacs.errors import (
    AbortReason,
    AssociationAborted,
    LocalProtocolError,
    RemoteProtocolError,
)
from stellarpacs.ul.connection import (
    Aborted,
    Connection,
    DataReceived,
    ReleaseConfirmed,
    ReleaseRequested,
)
from stellarpacs.ul.connection import ConnectionEvent as ULEvent
from stellarpacs.ul.fsm import State
from stellarpacs.ul.negotiation import PresentationContext
from stellarpacs.ul.pdus import AAssociateAC, AAssociateRQ, PDataTF

__all__ = ["MAX_IN_MEMORY_DATASET", "DIMSEAssociation", "SinkFor"]

MAX_IN_MEMORY_DATASET: Final = 64 * 1024 * 1024
"""Largest data set gathered in memory when no sink takes it."""


# --- data set sinks ------------------------------------------------------------------------------


SinkFor: TypeAlias = Callable[[PresentationContext, Message], DatasetSink | None]
"""Asked when a command with a data set arrives: where its fragments go (None: memory)."""


class _MemorySink:
    """Gathers a small data set; refuses to grow past :data:`MAX_IN_MEMORY_DATASET`."""

    __slots__ = ("parts", "size")

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > MAX_IN_MEMORY_DATASET:
            raise RemoteProtocolError(
                f"data set over {MAX_IN_MEMORY_DATASET} bytes where none was expected",
                AbortReason.NOT_SPECIFIED,
            )
        self.parts.append(data)

    def abandon(self) -> None:
        self.parts.clear()


# --- the association ----------------------------------------------------------------------------


@dataclass(slots=True)
class _Pending:
    """A message whose command arrived and whose data set is still arriving."""

    context: PresentationContext
    command: Message
    answers: Message | None
    sink: DatasetSink | None = None
    memory: _MemorySink | None = None


class DIMSEAssociation:
    """DIMSE over one established association (PS3.7 7, 8), without I/O; see the module docstring.

    ``now`` is the time of establishment and ``idle_timeout`` the longest
    wait for a PDU while established, 0 for none, in the unit of the ``now``
    values passed in.
    """

    def __init__(
        self,
        connection: Connection,
        request: AAssociateRQ,
        response: AAssociateAC,
        contexts: dict[int, PresentationContext],
        *,
        now: float,
        idle_timeout: float = 0.0,
        sink_for: SinkFor | None = None,
    ) -> None:
        self.connection = connection
        self.request = request
        self.response = response
        self.contexts = contexts
        self.sink_for = sink_for
        self.idle_timeout = idle_timeout
        peer_info = response.user_information if connection.requestor else request.user_information
        #: The peer's Maximum Length (PS3.8 D.1); 0 means no limit.
        self.peer_max_pdu = peer_info.maximum_length or 0
        #: Message IDs of the peer's requests it asked to cancel (C-CANCEL, PS3.7 9.3.2.3).
        self.cancelled: set[int] = set()
        self.counts = MessageCounts()
        #: Why the association ended, for the log ("" while it lasts).
        self.end_reason = ""
        #: True once the idle limit ended the association.
        self.idle_expired = False
        self._now = now
        self._last_pdu = now
        self._assembler = MessageAssembler()
        self._pending: _Pending | None = None
        self._events: deque[DIMSEEvent] = deque()
        self._outstanding: dict[int, Message] = {}
        self._serving: set[int] = set()
        self._message_id = 0
        self._closed = False

    # --- identity and state ---------------------------------------------------------------

    @property
    def calling_ae_title(self) -> str:
        return self.request.calling_ae_title

    @property
    def called_ae_title(self) -> str:
        return self.request.called_ae_title

    @property
    def state(self) -> State:
        return self.connection.state

    @property
    def is_established(self) -> bool:
        return self.connection.is_established

    @property
    def closed(self) -> bool:
        """True once :class:`Closed` was queued."""
        return self._closed

    @property
    def wants_close(self) -> bool:
        return self.connection.wants_close

    def next_message_id(self) -> int:
        """A Message ID no outstanding request of ours uses (PS3.7 9.1.1.1)."""
        for _ in range(0xFFFF):
            self._message_id = self._message_id % 0xFFFF + 1
            if self._message_id not in self._outstanding:
                return self._message_id
        raise LocalProtocolError("every Message ID belongs to an outstanding request")

    def context_for(
        self, abstract_syntax: str, transfer_syntax: str | None = None
    ) -> PresentationContext:
        """An accepted context for ``abstract_syntax`` (and ``transfer_syntax`` if given)."""
        for context in self.contexts.values():
            if context.abstract_syntax == abstract_syntax and (
                transfer_syntax is None or context.transfer_syntax == transfer_syntax
            ):
                return context
        raise LocalProtocolError(f"no accepted presentation context for {abstract_syntax}")

    # --- bytes and time in, events and bytes out ------------------------------------------

    def receive_data(self, data: bytes, now: float) -> None:
        """Feed bytes read from the transport (``b""``: it was closed)."""
        self._now = now
        self.connection.receive_data(data, now)
        self._absorb()

    def data_to_send(self) -> bytes:
        return self.connection.data_to_send()

    def next_event(self) -> DIMSEEvent | None:
        """The next event for the local user, or None."""
        self._absorb()
        return self._events.popleft() if self._events else None

    def next_deadline(self) -> float | None:
        """The earliest of the upper layer's (ARTIM, the PDU limit) and the idle limit, or None."""
        artim = self.connection.next_deadline()
        idle = self._idle_deadline()
        if idle is None or (artim is not None and artim < idle):
            return artim
        return idle

    def handle_timeout(self, now: float) -> None:
        """Abort at the idle limit, or hand ARTIM to the upper layer; no-op when nothing is due."""
        self._now = now
        idle = self._idle_deadline()
        if idle is not None and now >= idle:
            self.idle_expired = True
            self.end_reason = "aborted: idle timeout"
            error = AssociationAborted(f"no PDU for {self.idle_timeout:g} s (idle limit)")
            self._abort(error, now)
            return
        self.connection.handle_timeout(now)
        self._absorb()

    def transport_closed(self) -> None:
        """The transport is gone: make sure a :class:`Closed` was queued."""
        if not self._closed:
            self._on_aborted(Aborted(by_peer_user=False))

    def _idle_deadline(self) -> float | None:
        if self.idle_timeout > 0 and self.connection.state is State.STA6:
            return self._last_pdu + self.idle_timeout
        return None

    # --- the local user's primitives ------------------------------------------------------

    def send(self, context_id: int, message: Message, dataset: bytes | None = None) -> None:
        """Queue one message, fragmented to the peer's maximum PDU length (PS3.8 9.3.5)."""
        command = encode_command(message)
        self.send_pdus(fragment_message(context_id, command, dataset, self.peer_max_pdu))
        self._sent(message)

    def send_command(self, context_id: int, message: Message) -> DatasetFragmenter:
        """Queue the command of a message whose data set follows in pieces.

        Pass what the returned fragmenter makes of each piece to :meth:`send_pdus`.
        """
        self.send(context_id, message)
        return DatasetFragmenter(context_id, self.peer_max_pdu)

    def send_pdus(self, pdus: Iterable[PDataTF]) -> None:
        try:
            for pdu in pdus:
                self.connection.send_data(pdu)
        except LocalProtocolError as error:
            raise AssociationAborted(f"association no longer usable: {error}") from error

    def release(self) -> None:
        """A-RELEASE request; :class:`Closed` follows the peer's answer."""
        self.connection.release()

    def release_response(self, now: float | None = None) -> None:
        """Answer the peer's A-RELEASE (:class:`ReleaseIndicated`); AR-4 starts ARTIM at ``now``."""
        if now is not None:
            self._now = now
        self.connection.release_response(now=now)
        self.end_reason = self.end_reason or "released"
        self._close(None)

    def abort(self, now: float | None = None) -> None:
        """A-ABORT, service-user source (PS3.8 9.3.8): the association ends at once."""
        self.end_reason = self.end_reason or "aborted by local user"
        self._abort(AssociationAborted("aborted by local user"), now)

    def _abort(self, error: AssociationAborted, now: float | None) -> None:
        if now is not None:
            self._now = now
        self._abandon_pending()
        self.connection.abort(now=self._now)
        self._close(error)

    def _sent(self, message: Message) -> None:
        """Book a sent message: a request becomes outstanding, a final response ends its request."""
        self.counts.messages_out += 1
        if isinstance(message, Request):
            self._outstanding[message.message_id] = message
        elif isinstance(message, Response) and is_final(message):
            served = message.message_id_being_responded_to
            self._serving.discard(served)
            self.cancelled.discard(served)

    # --- upper layer events -----------------------------------------------------------------

    def _absorb(self) -> None:
        while (event := self.connection.next_event()) is not None:
            # Every PDU received in Sta6 and Sta7 indicates an event (PS3.8 Table 9-10).
            self._last_pdu = self._now
            handler = _UL_HANDLERS.get(type(event))
            if handler is not None:
                handler(self, event)

    def _on_data(self, event: ULEvent) -> None:
        assert isinstance(event, DataReceived)
        if self._closed:
            return
        try:
            for item in self._assembler.receive(event.pdu):
                if isinstance(item, DatasetFragment):
                    self._on_fragment(item)
                else:
                    self._on_command(item)
        except RemoteProtocolError as error:
            self._protocol_abort(error)

    def _on_fragment(self, item: DatasetFragment) -> None:
        pending = self._pending
        assert pending is not None  # the assembler guarantees a command came first
        sink = pending.sink if pending.sink is not None else pending.memory
        assert sink is not None
        sink.write(item.data)
        if item.is_last:
            self._pending = None
            self._deliver(pending)

    def _on_command(self, item: CommandReceived) -> None:
        context = self.contexts.get(item.context_id)
        if context is None:
            raise RemoteProtocolError(
                f"message on presentation context {item.context_id}, which was not accepted",
                AbortReason.UNEXPECTED_PDU_PARAMETER,
            )
        message = item.message
        if isinstance(message, CCancelRQ):
            # Not delivered: the operation it cancels is running and checks the set.
            if message.message_id_being_responded_to in self._serving:
                self.cancelled.add(message.message_id_being_responded_to)
            return
        if isinstance(message, Request):
            self._serving.add(message.message_id)
        pending = _Pending(context, message, self._match(message))
        if not item.has_dataset:
            self._deliver(pending)
            return
        if self.sink_for is not None:
            pending.sink = self.sink_for(context, message)
        if pending.sink is None:
            pending.memory = _MemorySink()
        self._pending = pending

    def _match(self, message: Message) -> Message | None:
        """The outstanding request ``message`` answers; a final response retires it."""
        if not isinstance(message, Response):
            return None
        message_id = message.message_id_being_responded_to
        request = self._outstanding.get(message_id)
        if request is None or not isinstance(message, RESPONSE_CLASSES[type(request)]):
            return None
        if is_final(message):
            del self._outstanding[message_id]
        return request

    def _deliver(self, pending: _Pending) -> None:
        dataset = b"".join(pending.memory.parts) if pending.memory is not None else None
        self.counts.messages_in += 1
        self._events.append(
            Incoming(pending.context, pending.command, dataset, pending.sink, pending.answers)
        )

    def _on_release_request(self, event: ULEvent) -> None:
        assert isinstance(event, ReleaseRequested)
        if not event.collision:
            self._events.append(ReleaseIndicated())
        elif self.connection.requestor:
            self.connection.release_response()  # AR-9: the requestor answers first
        # The acceptor of a collision answers once its own request is answered (AR-10).

    def _on_release_confirmed(self, event: ULEvent) -> None:
        if self.connection.state is State.STA12:
            self.connection.release_response()  # acceptor side of a collision (AR-4)
        self.end_reason = self.end_reason or "released"
        self._close(None)

    def _on_aborted(self, event: ULEvent) -> None:
        assert isinstance(event, Aborted)
        self._abandon_pending()
        who = "peer" if event.by_peer_user else "provider"
        if event.source is None:
            detail = "connection closed without release"
        else:
            detail = f"A-ABORT source {event.source} reason {event.reason} ({who})"
        if self.connection.last_error is not None:
            # The peer broke PS3.8 and we sent this A-ABORT (AA-8): say what it broke.
            detail = f"{detail}: {self.connection.last_error}"
        self.end_reason = self.end_reason or f"aborted: {detail}"
        self._close(AssociationAborted(detail, event.source, event.reason))

    def _protocol_abort(self, error: RemoteProtocolError) -> None:
        self.end_reason = f"aborted: {error}"
        self._abandon_pending()
        # A DIMSE-level fault is found by the service user (this AE), not the
        # upper layer provider: PS3.8 9.3.8 gives such an abort source 0.
        self.connection.abort(now=self._now)
        self._close(AssociationAborted(str(error), 0, 0), error)

    def _abandon_pending(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None and pending.sink is not None:
            pending.sink.abandon()

    def _close(
        self, error: AssociationAborted | None, protocol_error: RemoteProtocolError | None = None
    ) -> None:
        if not self._closed:
            self._closed = True
            self._events.append(Closed(error, protocol_error))


_UL_HANDLERS: Final[dict[type[ULEvent], Callable[[DIMSEAssociation, ULEvent], None]]] = {
    DataReceived: DIMSEAssociation._on_data,
    ReleaseRequested: DIMSEAssociation._on_release_request,
    ReleaseConfirmed: DIMSEAssociation._on_release_confirmed,
    Aborted: DIMSEAssociation._on_aborted,
}
"""Upper layer event -> what it does here; the A-ASSOCIATE ones cannot follow establishment."""
