"""An established association, on either side: DIMSE messages in and out.

Received P-DATA goes through the sans-I/O :class:`MessageAssembler`.  When a
command that carries a data set arrives, the owner's *sink factory* is asked,
synchronously, where its fragments should go (a storage handler answers with
a temporary file), and each fragment is written there as it arrives, inside
``data_received``: no queue, no task switch and no copy per fragment, so a
2 GB C-STORE never sits in memory.  Without a sink, the data set is gathered
in memory up to a bound (identifiers of C-FIND, C-MOVE, N-ACTION...).

Complete messages queue in an inbox that :meth:`Association.receive` reads;
reading from the socket pauses while the inbox is full (back-pressure).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from stellarpacs.dimse.command_codec import encode_command
from stellarpacs.dimse.commands import CCancelRQ, Message
from stellarpacs.dimse.fragments import (
    CommandReceived,
    DatasetFragment,
    DatasetFragmenter,
    MessageAssembler,
    fragment_message,
)
from stellarpacs.errors import (
    AbortReason,
    AssociationAborted,
    LocalProtocolError,
    RemoteProtocolError,
)
from stellarpacs.logtext import printable
from stellarpacs.ul.connection import (
    Aborted,
    Connection,
    ConnectionEvent,
    DataReceived,
    ReleaseConfirmed,
    ReleaseRequested,
)
from stellarpacs.ul.fsm import State
from stellarpacs.ul.negotiation import PresentationContext
from stellarpacs.ul.pdus import AAssociateAC, AAssociateRQ, PDataTF

if TYPE_CHECKING:
    from stellarpacs.aio.transport import ULProtocol

__all__ = ["Association", "DatasetSink", "Incoming", "SinkFactory"]

log = logging.getLogger("stellarpacs.association")

#: Largest data set gathered in memory when no sink takes it.
MAX_IN_MEMORY_DATASET = 64 * 1024 * 1024
#: Complete messages waiting before reading pauses.
INBOX_HIGH_WATER = 8
#: Bytes of P-DATA queued on the transport before a sender waits for it to drain.
SEND_BATCH = 256 * 1024


class DatasetSink(Protocol):
    """Where the fragments of one received data set go, in order."""

    def write(self, data: bytes) -> None:
        """Take one fragment; called on the event loop, so it must not block long."""

    def abandon(self) -> None:
        """The association ended before the last fragment: drop what was written."""


SinkFactory = Callable[["Association", PresentationContext, Message], DatasetSink | None]


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


@dataclass(slots=True)
class Incoming:
    """One received DIMSE message.

    ``dataset`` holds the data set when it was gathered in memory; when a
    sink took the fragments, ``sink`` is that sink and ``dataset`` is None.
    """

    context: PresentationContext
    command: Message
    dataset: bytes | None = None
    sink: DatasetSink | None = None


@dataclass(slots=True)
class _Pending:
    context: PresentationContext
    command: Message
    sink: DatasetSink | None
    memory: _MemorySink | None = None


class _End:
    """Inbox marker: the association ended (``error`` None for a release)."""

    def __init__(self, error: AssociationAborted | None) -> None:
        self.error = error


@dataclass(slots=True)
class _Stats:
    started: float = field(default_factory=time.monotonic)
    messages_in: int = 0
    messages_out: int = 0


class Association:
    """The DIMSE view of one established association (PS3.7 7, 8)."""

    def __init__(
        self,
        connection: Connection,
        request: AAssociateRQ,
        response: AAssociateAC,
        contexts: dict[int, PresentationContext],
        sink_factory: SinkFactory | None = None,
    ) -> None:
        self.connection = connection
        self.request = request
        self.response = response
        self.contexts = contexts
        self.sink_factory = sink_factory
        peer_info = response.user_information if connection.requestor else request.user_information
        #: The peer's Maximum Length (PS3.8 D.1); 0 means no limit.
        self.peer_max_pdu = peer_info.maximum_length or 0
        self.stats = _Stats()
        self._assembler = MessageAssembler()
        self._pending: _Pending | None = None
        self._inbox: deque[Incoming | _End] = deque()
        self._inbox_ready = asyncio.Event()
        self._released: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._message_id = 0
        #: Message IDs of requests the peer asked to cancel (C-CANCEL, PS3.7 9.3.2.3).
        self.cancelled: set[int] = set()
        self.end_reason = ""
        self.protocol: ULProtocol | None = None

    # --- identity -----------------------------------------------------------------

    @property
    def calling_ae_title(self) -> str:
        return self.request.calling_ae_title

    @property
    def called_ae_title(self) -> str:
        return self.request.called_ae_title

    @property
    def peer(self) -> tuple[str, int]:
        return self.protocol.peer if self.protocol else ("", 0)

    @property
    def is_established(self) -> bool:
        return self.connection.state is State.STA6

    def next_message_id(self) -> int:
        """A fresh Message ID (PS3.7 9.1.1.1: unique among outstanding requests)."""
        self._message_id = self._message_id % 0xFFFF + 1
        return self._message_id

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

    # --- events from the upper layer ----------------------------------------------

    def handle_event(self, event: ConnectionEvent) -> None:
        """Called by the transport pump for every upper layer event after establishment."""
        if isinstance(event, DataReceived):
            try:
                for item in self._assembler.receive(event.pdu):
                    self._on_dimse(item)
            except RemoteProtocolError as error:
                self._protocol_abort(error)
        elif isinstance(event, ReleaseRequested):
            self._on_release_request(event)
        elif isinstance(event, ReleaseConfirmed):
            self._on_release_confirmed()
        elif isinstance(event, Aborted):
            self._on_aborted(event)

    def _on_dimse(self, item: CommandReceived | DatasetFragment) -> None:
        if isinstance(item, DatasetFragment):
            pending = self._pending
            assert pending is not None  # the assembler guarantees a command came first
            sink = pending.sink if pending.sink is not None else pending.memory
            assert sink is not None
            sink.write(item.data)
            if item.is_last:
                self._pending = None
                self._deliver(pending)
            return
        context = self.contexts.get(item.context_id)
        if context is None:
            raise RemoteProtocolError(
                f"message on presentation context {item.context_id}, which was not accepted",
                AbortReason.UNEXPECTED_PDU_PARAMETER,
            )
        if isinstance(item.message, CCancelRQ):
            # Not queued: the operation it cancels is running and checks this set.
            self.cancelled.add(item.message.message_id_being_responded_to)
            return
        pending = _Pending(context, item.message, None)
        if not item.has_dataset:
            self._deliver(pending)
            return
        if self.sink_factory is not None:
            pending.sink = self.sink_factory(self, context, item.message)
        if pending.sink is None:
            pending.memory = _MemorySink()
        self._pending = pending

    def _deliver(self, pending: _Pending) -> None:
        dataset = b"".join(pending.memory.parts) if pending.memory is not None else None
        self.stats.messages_in += 1
        self._push(Incoming(pending.context, pending.command, dataset, pending.sink))

    def _push(self, item: Incoming | _End) -> None:
        self._inbox.append(item)
        self._inbox_ready.set()
        if len(self._inbox) >= INBOX_HIGH_WATER and self.protocol is not None:
            self.protocol.pause()

    def _on_release_request(self, event: ReleaseRequested) -> None:
        if event.collision and self.connection.requestor:
            self.connection.release_response()  # AR-9: the requestor answers first
            return
        if not event.collision:
            self._push(_End(None))

    def _on_release_confirmed(self) -> None:
        if self.connection.state is State.STA12:
            self.connection.release_response()  # acceptor side of a collision (AR-4)
        self.end_reason = self.end_reason or "released"
        if not self._released.done():
            self._released.set_result(None)
        self._push(_End(None))

    def _abandon_pending(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None and pending.sink is not None:
            pending.sink.abandon()

    def _on_aborted(self, event: Aborted) -> None:
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
        error = AssociationAborted(detail, event.source, event.reason)
        if not self._released.done():
            self._released.set_exception(error)
            self._released.exception()  # mark retrieved: nobody may be waiting
        self._push(_End(error))

    def _protocol_abort(self, error: RemoteProtocolError) -> None:
        log.warning("A-ABORT to %s:%s: %s", *self.peer, printable(error))
        self.end_reason = f"aborted: {error}"
        self._abandon_pending()
        # A DIMSE-level fault is found by the service user (this AE), not the
        # upper layer provider: PS3.8 9.3.8 gives such an abort source 0.
        self.connection.abort()
        self._push(_End(AssociationAborted(str(error), 0, 0)))

    # --- receiving ------------------------------------------------------------------

    async def receive(self) -> Incoming | None:
        """The next message; None once the peer released (we answered A-RELEASE-RP).

        Raises :class:`AssociationAborted` when the association was aborted.
        """
        while not self._inbox:
            self._inbox_ready.clear()
            await self._inbox_ready.wait()
        item = self._inbox.popleft()
        if len(self._inbox) < INBOX_HIGH_WATER // 2 and self.protocol is not None:
            self.protocol.resume()
        if isinstance(item, _End):
            self._inbox.appendleft(item)  # stays at the end for later calls
            if item.error is not None:
                raise item.error
            if self.connection.state is State.STA8:
                # AR-4 starts ARTIM: time it from now, not from the last PDU.
                self.connection.release_response(now=asyncio.get_running_loop().time())
                self.end_reason = self.end_reason or "released"
                self._pump()
            return None
        return item

    # --- sending --------------------------------------------------------------------

    def _pump(self) -> None:
        if self.protocol is not None:
            self.protocol.pump()

    def _send_pdus(self, pdus: Iterable[PDataTF]) -> None:
        try:
            for pdu in pdus:
                self.connection.send_data(pdu)
        except LocalProtocolError as error:
            raise AssociationAborted(f"association no longer usable: {error}") from error

    async def send(self, context_id: int, message: Message, dataset: bytes | None = None) -> None:
        """Send one DIMSE message, fragmented to the peer's maximum PDU length."""
        command = encode_command(message)
        self.stats.messages_out += 1
        if dataset is None or len(dataset) <= SEND_BATCH:
            self._send_pdus(fragment_message(context_id, command, dataset, self.peer_max_pdu))
            self._pump()
            await self._drain()
            return
        self._send_pdus(fragment_message(context_id, command, None, self.peer_max_pdu))
        await self._stream(
            context_id, (dataset[i : i + SEND_BATCH] for i in range(0, len(dataset), SEND_BATCH))
        )

    async def send_stream(
        self, context_id: int, message: Message, chunks: AsyncIterable[bytes] | Iterable[bytes]
    ) -> None:
        """Send a message whose data set comes in chunks (a file read piece by piece)."""
        self.stats.messages_out += 1
        self._send_pdus(
            fragment_message(context_id, encode_command(message), None, self.peer_max_pdu)
        )
        await self._stream(context_id, chunks)

    async def _stream(
        self, context_id: int, chunks: AsyncIterable[bytes] | Iterable[bytes]
    ) -> None:
        fragmenter = DatasetFragmenter(context_id, self.peer_max_pdu)
        if isinstance(chunks, AsyncIterable):
            async for chunk in chunks:
                self._send_pdus(fragmenter.feed(chunk))
                self._pump()
                await self._drain()
        else:
            for chunk in chunks:
                self._send_pdus(fragmenter.feed(chunk))
                self._pump()
                await self._drain()
        self._send_pdus(fragmenter.feed(b"", final=True))
        self._pump()
        await self._drain()

    async def _drain(self) -> None:
        if self.protocol is not None:
            await self.protocol.drain()

    # --- ending -----------------------------------------------------------------------

    async def release(self, timeout: float = 30.0) -> None:
        """A-RELEASE: ask the peer to end the association and wait for its answer."""
        if self.connection.state is not State.STA6:
            raise AssociationAborted(f"cannot release in {self.connection.state.name}")
        self.connection.release()
        self._pump()
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._released)
        except TimeoutError:
            self.abort()
            raise AssociationAborted("no A-RELEASE-RP within the timeout; aborted") from None

    def abort(self) -> None:
        """A-ABORT (service-user source); the association ends at once."""
        self.end_reason = self.end_reason or "aborted by local user"
        self._abandon_pending()
        self.connection.abort(now=asyncio.get_running_loop().time())
        self._pump()
        if not self._released.done():
            self._released.set_exception(AssociationAborted("aborted by local user"))
            self._released.exception()
        self._push(_End(AssociationAborted("aborted by local user")))

    def attach(self, protocol: ULProtocol) -> None:
        """Take over the events, idle limit and end of ``protocol``'s connection."""
        self.protocol = protocol
        protocol.on_event = self.handle_event
        protocol.on_idle = self.abort
        protocol.on_lost = self._on_lost

    def _on_lost(self) -> None:
        """The transport closed; make sure whoever waits on this association learns it."""
        if not self._released.done():
            self._on_aborted(Aborted(by_peer_user=False))
        elif not self._inbox or not isinstance(self._inbox[-1], _End):
            self._push(_End(None))

    async def wait_closed(self) -> None:
        """Wait until the transport connection is closed."""
        if self.protocol is not None:
            await self.protocol.closed
