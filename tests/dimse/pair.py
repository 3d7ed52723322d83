"""A DIMSE requestor and acceptor back to back in memory, with a fake clock.

Built on :class:`tests.ul.pair.Pair`, which establishes the association (the
A-ASSOCIATE exchange and negotiation, with its own checks); then each side's
upper layer :class:`Connection` is wrapped in a :class:`DIMSEAssociation`
and a wire of the same kind carries the bytes between them.  No sockets, no
sleeps, no asyncio: time moves when a test says so.

Cross-checks made on every exchange:

- every byte a side sends is cut into PDUs that decode and re-encode to the
  very same bytes (:func:`tests.ul.pair.frames`);
- every message a side receives is the next one its peer sent through
  :meth:`DIMSEPair.send`, on the same context, with the same command and the
  same data set bytes (in memory, or in the sink that took them); C-CANCEL-RQs
  are never delivered as messages;
- a response a side receives names, in ``answers``, a request that side sent
  with that Message ID, or nothing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from stellarpacs.dimse.association import DIMSEAssociation
from stellarpacs.dimse.commands import CCancelRQ, CStoreRQ, Message
from stellarpacs.dimse.events import DatasetSink, DIMSEEvent, Incoming
from stellarpacs.dimse.matching import Request, Response
from stellarpacs.uids import EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN, VERIFICATION
from stellarpacs.ul.connection import AssociationAccepted, AssociationRequested
from stellarpacs.ul.fsm import State
from stellarpacs.ul.negotiation import (
    AcceptorPolicy,
    PresentationContext,
    contexts_from_ac,
    negotiate,
)
from stellarpacs.ul.pdus import (
    PDU,
    AAssociateAC,
    AAssociateRQ,
    PresentationContextRQ,
    UserInformation,
)
from tests.ul.pair import Pair, Splitter, frames, split_at_pdus

__all__ = ["CT_IMAGE", "FIND_MODEL", "DIMSEPair", "RecordingSink", "Side"]

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
FIND_MODEL = "1.2.840.10008.5.1.4.1.2.2.1"

POLICY = AcceptorPolicy(
    ae_title="STELLAR",
    abstract_syntaxes={
        VERIFICATION: (IMPLICIT_VR_LITTLE_ENDIAN,),
        CT_IMAGE: (EXPLICIT_VR_LITTLE_ENDIAN,),
        FIND_MODEL: (IMPLICIT_VR_LITTLE_ENDIAN,),
    },
)


def _request(max_pdu_length: int) -> AAssociateRQ:
    return AAssociateRQ(
        called_ae_title="STELLAR",
        calling_ae_title="MODALITY",
        presentation_contexts=(
            PresentationContextRQ(1, VERIFICATION, (IMPLICIT_VR_LITTLE_ENDIAN,)),
            PresentationContextRQ(3, CT_IMAGE, (EXPLICIT_VR_LITTLE_ENDIAN,)),
            PresentationContextRQ(5, FIND_MODEL, (IMPLICIT_VR_LITTLE_ENDIAN,)),
        ),
        user_information=UserInformation(max_pdu_length, "1.2.3.4", "TEST_SCU"),
    )


class RecordingSink:
    """A data set sink that keeps the fragments, and whether it was abandoned."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.abandoned = False

    def write(self, data: bytes) -> None:
        self.parts.append(data)

    def abandon(self) -> None:
        self.abandoned = True


@dataclass
class Side:
    """One end of the pair: its core, what it saw and what it sent."""

    core: DIMSEAssociation
    events: list[DIMSEEvent] = field(default_factory=list)
    unread: list[DIMSEEvent] = field(default_factory=list)
    sent_pdus: list[PDU] = field(default_factory=list)
    #: Chunks on their way to this side; None is the end of stream.
    inbox: deque[bytes | None] = field(default_factory=deque)
    #: Messages sent through the pair and not yet received by the peer (None: not checked).
    in_flight: deque[tuple[int, Message, bytes | None] | None] = field(default_factory=deque)
    requests: dict[int, list[Message]] = field(default_factory=dict)
    sinks: list[RecordingSink] = field(default_factory=list)

    @property
    def state(self) -> State:
        return self.core.state

    def take(self) -> list[DIMSEEvent]:
        """The events seen since the last call."""
        unread, self.unread = self.unread, []
        return unread

    def messages(self) -> list[Incoming]:
        """The messages among the unread events (the others are dropped)."""
        return [e for e in self.take() if isinstance(e, Incoming)]


class DIMSEPair:
    """An established requestor and acceptor, a fake clock and a wire between them.

    With ``sinks`` the acceptor takes every C-STORE data set into a
    :class:`RecordingSink` (its ``sinks`` list), as a storage SCP does.
    """

    def __init__(
        self,
        *,
        idle_timeout: float = 0.0,
        max_pdu_length: int = 16384,
        splitter: Splitter = split_at_pdus,
        sinks: bool = False,
    ) -> None:
        ul = Pair(max_pdu_length=max_pdu_length)
        rq = _request(max_pdu_length)
        ul.connect(rq)
        ul.transfer()
        assert ul.acc.take() == [AssociationRequested(rq)]
        answer, acc_contexts = negotiate(rq, replace(POLICY, max_pdu_length=max_pdu_length))
        assert isinstance(answer, AAssociateAC)
        ul.acc.conn.accept(answer)
        ul.transfer()
        assert ul.req.take() == [AssociationAccepted(answer)]
        self.now = ul.now
        self.splitter = splitter
        self.open = True
        self.req = Side(
            DIMSEAssociation(
                ul.req.conn,
                rq,
                answer,
                contexts_from_ac(rq, answer),
                now=self.now,
                idle_timeout=idle_timeout,
            )
        )
        self.acc = Side(
            DIMSEAssociation(
                ul.acc.conn,
                rq,
                answer,
                acc_contexts,
                now=self.now,
                idle_timeout=idle_timeout,
                sink_for=self._acceptor_sink if sinks else None,
            )
        )

    def peer(self, side: Side) -> Side:
        return self.acc if side is self.req else self.req

    def _acceptor_sink(self, context: PresentationContext, command: Message) -> DatasetSink | None:
        if not isinstance(command, CStoreRQ):
            return None
        sink = RecordingSink()
        self.acc.sinks.append(sink)
        return sink

    # --- sending ------------------------------------------------------------------

    def send(
        self,
        side: Side,
        context_id: int,
        message: Message,
        dataset: bytes | None = None,
        *,
        checked: bool = True,
    ) -> None:
        """``side`` sends a message; the peer must receive exactly it (unless not ``checked``)."""
        side.core.send(context_id, message, dataset)
        self._record(side, context_id, message, dataset, checked)

    def send_stream(
        self, side: Side, context_id: int, message: Message, chunks: Iterable[bytes]
    ) -> None:
        """``side`` sends a message whose data set comes in pieces."""
        parts = list(chunks)
        fragmenter = side.core.send_command(context_id, message)
        for part in parts:
            side.core.send_pdus(fragmenter.feed(part))
        side.core.send_pdus(fragmenter.feed(b"", final=True))
        self._record(side, context_id, message, b"".join(parts), True)

    def _record(
        self, side: Side, context_id: int, message: Message, dataset: bytes | None, checked: bool
    ) -> None:
        if not isinstance(message, CCancelRQ):
            side.in_flight.append((context_id, message, dataset) if checked else None)
        if isinstance(message, Request):
            side.requests.setdefault(message.message_id, []).append(message)

    # --- moving bytes -------------------------------------------------------------

    def flush(self) -> None:
        """Take both sides' output, check it parses, and put it on the wire."""
        for side in (self.req, self.acc):
            blob = side.core.data_to_send()
            if not blob:
                continue
            pdus, ends = frames(blob)
            side.sent_pdus += pdus
            if self.open:
                start = 0
                for cut in self.splitter(blob, ends):
                    self.peer(side).inbox.append(blob[start:cut])
                    start = cut

    def deliver(self, side: Side, limit: int | None = None) -> int:
        """Feed up to ``limit`` queued chunks to ``side``; return how many were fed."""
        count = 0
        while side.inbox and (limit is None or count < limit):
            chunk = side.inbox.popleft()
            side.core.receive_data(chunk or b"", self.now)
            self._collect(side)
            count += 1
        return count

    def transfer(self, max_rounds: int = 100) -> None:
        """Exchange bytes until both sides are quiet."""
        for _ in range(max_rounds):
            self.flush()
            if not (self.req.inbox or self.acc.inbox):
                self._collect(self.req)
                self._collect(self.acc)
                return
            self.deliver(self.req)
            self.deliver(self.acc)
        raise AssertionError("the pair did not go quiet")

    def feed(self, side: Side, data: bytes) -> None:
        """Raw bytes (a hand-made PDU, or part of one) to ``side`` at once, ahead of the wire."""
        side.core.receive_data(data, self.now)
        self._collect(side)

    def close(self, side: Side) -> None:
        """``side`` closes the transport: its last bytes, then end of stream, reach the peer."""
        self.flush()
        self.open = False
        side.inbox.clear()
        self.peer(side).inbox.append(None)
        side.core.receive_data(b"", self.now)  # the adapter's connection_lost
        self._collect(side)

    def advance(self, seconds: float) -> None:
        """Move the fake clock and let both sides see the time."""
        self.now += seconds
        for side in (self.req, self.acc):
            side.core.handle_timeout(self.now)
            self._collect(side)

    # --- events -------------------------------------------------------------------

    def _collect(self, side: Side) -> None:
        while (event := side.core.next_event()) is not None:
            if isinstance(event, Incoming):
                self._check(side, event)
            side.events.append(event)
            side.unread.append(event)

    def _check(self, side: Side, incoming: Incoming) -> None:
        peer = self.peer(side)
        assert peer.in_flight, f"{incoming.command} arrived, but nothing was sent"
        expected = peer.in_flight.popleft()
        if expected is not None:
            context_id, message, dataset = expected
            assert (incoming.context.context_id, incoming.command) == (context_id, message)
            if incoming.sink is None:
                assert incoming.dataset == dataset
            else:
                assert isinstance(incoming.sink, RecordingSink)
                assert b"".join(incoming.sink.parts) == dataset
        if incoming.answers is not None:
            assert isinstance(incoming.command, Response)
            mine = side.requests.get(incoming.command.message_id_being_responded_to, [])
            assert incoming.answers in mine
