"""An established association on asyncio, on either side: the inbox, the futures, the sends.

Everything that is protocol state (Message IDs, response matching, C-CANCEL,
which message a data set belongs to, release collisions, the idle limit)
lives in the sans-I/O :class:`~stellarpacs.dimse.association.DIMSEAssociation`;
this adapter only queues its events for coroutines and paces the sends.

When a command that carries a data set arrives, the owner's *sink factory*
is asked, synchronously, where its fragments should go (a storage handler
answers with a temporary file), and each fragment is written there as it
arrives, inside ``data_received``: no queue, no task switch and no copy per
fragment, so a 2 GB C-STORE never sits in memory.  Without a sink, the data
set is gathered in memory up to a bound (identifiers of C-FIND, C-MOVE...).

Complete messages queue in an inbox that :meth:`Association.receive` reads;
reading from the socket pauses while the inbox is full (back-pressure).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterable, Iterable
from typing import TYPE_CHECKING

from stellarpacs.dimse.association import DIMSEAssociation
from stellarpacs.dimse.commands import Message
from stellarpacs.dimse.events import (
    Closed,
    DatasetSink,
    DIMSEEvent,
    Incoming,
    MessageCounts,
    ReleaseIndicated,
)
from stellarpacs.dimse.fragments import DatasetFragmenter
from stellarpacs.errors import AssociationAborted
from stellarpacs.logtext import printable
from stellarpacs.ul.connection import Connection
from stellarpacs.ul.fsm import State
from stellarpacs.ul.negotiation import PresentationContext
from stellarpacs.ul.pdus import AAssociateAC, AAssociateRQ, PDataTF

if TYPE_CHECKING:
    from stellarpacs.access import User
    from stellarpacs.aio.protocols import SinkFactory
    from stellarpacs.aio.transport import Machine, ULProtocol

__all__ = ["Association"]

log = logging.getLogger("stellarpacs.association")

#: Complete messages waiting before reading pauses.
INBOX_HIGH_WATER = 8
#: Bytes of P-DATA queued on the transport before a sender waits for it to drain.
SEND_BATCH = 256 * 1024


class _End:
    """Inbox marker: the association ended (``error`` None for a release)."""

    def __init__(self, error: AssociationAborted | None) -> None:
        self.error = error


class Association:
    """The DIMSE view of one established association (PS3.7 7, 8), on asyncio."""

    def __init__(
        self,
        connection: Connection,
        request: AAssociateRQ,
        response: AAssociateAC,
        contexts: dict[int, PresentationContext],
        sink_factory: SinkFactory | None = None,
        *,
        idle_timeout: float = 0.0,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self.core = DIMSEAssociation(
            connection,
            request,
            response,
            contexts,
            now=self._loop.time(),
            idle_timeout=idle_timeout,
            sink_for=self._sink_for,
        )
        self.sink_factory = sink_factory
        self._inbox: deque[Incoming | _End] = deque()
        self._inbox_ready = asyncio.Event()
        self._released: asyncio.Future[None] = self._loop.create_future()
        self.protocol: ULProtocol | None = None
        #: The user the acceptor verified (PS3.7 D.3.3.7), for handlers and the audit trail.
        self.user: User | None = None
        #: Service names the peer may use (``[remotes] services``); None: all.
        self.services: frozenset[str] | None = None

    # --- identity, read from the core -------------------------------------------------

    @property
    def connection(self) -> Connection:
        return self.core.connection

    @property
    def request(self) -> AAssociateRQ:
        return self.core.request

    @property
    def response(self) -> AAssociateAC:
        return self.core.response

    @property
    def contexts(self) -> dict[int, PresentationContext]:
        return self.core.contexts

    @property
    def peer_max_pdu(self) -> int:
        return self.core.peer_max_pdu

    @property
    def calling_ae_title(self) -> str:
        return self.core.calling_ae_title

    @property
    def called_ae_title(self) -> str:
        return self.core.called_ae_title

    @property
    def cancelled(self) -> set[int]:
        return self.core.cancelled

    @property
    def stats(self) -> MessageCounts:
        return self.core.counts

    @property
    def end_reason(self) -> str:
        return self.core.end_reason

    @property
    def idle_expired(self) -> bool:
        return self.core.idle_expired

    @property
    def peer(self) -> tuple[str, int]:
        return self.protocol.peer if self.protocol else ("", 0)

    @property
    def is_established(self) -> bool:
        return self.core.state is State.STA6

    def next_message_id(self) -> int:
        return self.core.next_message_id()

    def context_for(
        self, abstract_syntax: str, transfer_syntax: str | None = None
    ) -> PresentationContext:
        return self.core.context_for(abstract_syntax, transfer_syntax)

    # --- events from the core ---------------------------------------------------------

    def _sink_for(self, context: PresentationContext, command: Message) -> DatasetSink | None:
        factory = self.sink_factory  # read at each command: a C-GET swaps it
        return factory(self, context, command) if factory is not None else None

    def _on_event(self, event: DIMSEEvent) -> None:
        if isinstance(event, Incoming):
            self._push(event)
        elif isinstance(event, ReleaseIndicated):
            self._push(_End(None))  # answered when receive() reaches it
        else:
            self._on_closed(event)

    def _on_closed(self, event: Closed) -> None:
        if event.protocol_error is not None:
            log.warning("A-ABORT to %s:%s: %s", *self.peer, printable(event.protocol_error))
        if not self._released.done():
            if event.error is None:
                self._released.set_result(None)
            else:
                self._released.set_exception(event.error)
                self._released.exception()  # mark retrieved: nobody may be waiting
        self._push(_End(event.error))

    def _push(self, item: Incoming | _End) -> None:
        self._inbox.append(item)
        self._inbox_ready.set()
        if len(self._inbox) >= INBOX_HIGH_WATER and self.protocol is not None:
            self.protocol.pause()

    def _pump(self) -> None:
        if self.protocol is not None:
            self.protocol.pump()
        else:
            self._deliver_events()

    def _deliver_events(self) -> None:
        while (event := self.core.next_event()) is not None:
            self._on_event(event)

    # --- receiving ----------------------------------------------------------------------

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
        if isinstance(item, Incoming):
            return item
        self._inbox.appendleft(item)  # stays at the end for later calls
        if item.error is not None:
            raise item.error
        if self.core.state is State.STA8:
            # AR-4 starts ARTIM: time it from now, not from the last PDU.
            self.core.release_response(now=self._loop.time())
            self._pump()
        return None

    # --- sending ------------------------------------------------------------------------

    async def send(self, context_id: int, message: Message, dataset: bytes | None = None) -> None:
        """Send one DIMSE message, fragmented to the peer's maximum PDU length."""
        if dataset is None or len(dataset) <= SEND_BATCH:
            self.core.send(context_id, message, dataset)
            self._pump()
            await self._drain()
            return
        fragmenter = self.core.send_command(context_id, message)
        batches = (dataset[i : i + SEND_BATCH] for i in range(0, len(dataset), SEND_BATCH))
        await self._stream(fragmenter, batches)

    async def send_stream(
        self, context_id: int, message: Message, chunks: AsyncIterable[bytes] | Iterable[bytes]
    ) -> None:
        """Send a message whose data set comes in chunks (a file read piece by piece)."""
        await self._stream(self.core.send_command(context_id, message), chunks)

    async def _stream(
        self, fragmenter: DatasetFragmenter, chunks: AsyncIterable[bytes] | Iterable[bytes]
    ) -> None:
        if isinstance(chunks, AsyncIterable):
            async for chunk in chunks:
                await self._send_pdus(fragmenter.feed(chunk))
        else:
            for chunk in chunks:
                await self._send_pdus(fragmenter.feed(chunk))
        await self._send_pdus(fragmenter.feed(b"", final=True))

    async def _send_pdus(self, pdus: Iterable[PDataTF]) -> None:
        self.core.send_pdus(pdus)
        self._pump()
        await self._drain()

    async def _drain(self) -> None:
        if self.protocol is not None:
            await self.protocol.drain()

    # --- ending ---------------------------------------------------------------------------

    async def release(self, timeout: float = 30.0) -> None:
        """A-RELEASE: ask the peer to end the association and wait for its answer."""
        if self.core.state is not State.STA6:
            raise AssociationAborted(f"cannot release in {self.core.state.name}")
        self.core.release()
        self._pump()
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._released)
        except TimeoutError:
            self.abort()
            raise AssociationAborted("no A-RELEASE-RP within the timeout; aborted") from None

    def abort(self) -> None:
        """A-ABORT (service-user source); the association ends at once."""
        self.core.abort(now=self._loop.time())
        self._pump()

    def attach(self, protocol: ULProtocol) -> None:
        """Take over the bytes, the timer and the end of ``protocol``'s connection."""
        self.protocol = protocol
        core: Machine[DIMSEEvent] = self.core
        protocol.drive(core, self._on_event)
        protocol.on_lost = self._on_lost

    def _on_lost(self) -> None:
        """The transport closed; make sure whoever waits on this association learns it."""
        self.core.transport_closed()
        self._deliver_events()

    async def wait_closed(self) -> None:
        """Wait until the transport connection is closed."""
        if self.protocol is not None:
            await self.protocol.closed
