"""A requestor and an acceptor connected back to back in memory, with a fake clock.

The idea of h11's ``ConnectionPair`` and aioquic's ``client_and_server``: two
sans-I/O :class:`Connection` objects, a float ``now`` moved by hand, and a
wire that carries what one side's ``data_to_send()`` returns into the other
side's ``receive_data()``.  No sockets, no sleeps, no asyncio.

Cross-checks made on every exchange, so that each test gets them for free:

- every byte a side sends is cut into PDUs and each PDU decodes with
  :func:`decode_pdu` and encodes back to the very same bytes;
- a chunk of bytes that completes *n* PDUs yields at most *n* events, and
  when it completes exactly one, the event agrees with the state the
  receiver is in right after it (PS3.8 Table 9-10: e.g. a P-DATA indication
  leaves the machine in Sta6 or Sta7);
- events only reach the side they belong to (an A-ASSOCIATE indication only
  the acceptor, a confirmation only the requestor).

The transport is modelled as one TCP connection: closing it (:meth:`Pair.close`)
delivers what the closing side wrote, then an end of stream to the peer; bytes
still travelling toward the closing side, and anything written afterwards,
are lost.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from stellarpacs.ul.codec import decode_pdu, encode_pdu
from stellarpacs.ul.connection import (
    Aborted,
    AssociationAccepted,
    AssociationDeclined,
    AssociationRequested,
    Connection,
    ConnectionEvent,
    DataReceived,
    ReleaseConfirmed,
    ReleaseRequested,
)
from stellarpacs.ul.fsm import State
from stellarpacs.ul.pdus import PDU, AAssociateRQ

__all__ = ["Pair", "Side", "allowed_states", "frames", "random_splitter", "split_at_pdus"]

#: Given a blob and the offsets where its PDUs end, return the offsets to cut it at.
Splitter = Callable[[bytes, list[int]], list[int]]


def split_at_pdus(blob: bytes, ends: list[int]) -> list[int]:
    """One chunk per PDU."""
    return ends


def random_splitter(rng: random.Random) -> Splitter:
    """Cut anywhere: inside headers, inside bodies, or several PDUs in one chunk."""

    def split(blob: bytes, ends: list[int]) -> list[int]:
        cuts = {end for end in ends if rng.random() < 0.5}
        cuts |= {rng.randrange(1, len(blob) + 1) for _ in range(rng.randrange(4))}
        cuts.add(len(blob))
        return sorted(cuts)

    return split


def allowed_states(event: ConnectionEvent, requestor: bool) -> frozenset[State]:
    """The states a machine may be in right after indicating ``event`` (PS3.8 Table 9-10)."""
    match event:
        case AssociationRequested():
            return frozenset() if requestor else frozenset({State.STA3})  # AE-6
        case AssociationAccepted():
            return frozenset({State.STA6}) if requestor else frozenset()  # AE-3
        case AssociationDeclined():
            return frozenset({State.STA1}) if requestor else frozenset()  # AE-4
        case DataReceived():
            return frozenset({State.STA6, State.STA7})  # DT-2, AR-6
        case ReleaseRequested(collision=False):
            return frozenset({State.STA8})  # AR-2
        case ReleaseRequested(collision=True):
            return frozenset({State.STA9 if requestor else State.STA10})  # AR-8
        case ReleaseConfirmed():
            # AR-3 (Sta7, Sta11), and AR-10 on the acceptor side of a collision.
            return frozenset({State.STA1} if requestor else {State.STA1, State.STA12})
        case Aborted():
            return frozenset({State.STA1, State.STA13})  # AA-3, AA-4; AA-8
    raise AssertionError(f"not an event: {event!r}")  # pragma: no cover


def frames(blob: bytes) -> tuple[list[PDU], list[int]]:
    """Cut a side's output into PDUs (each must decode and re-encode identically)."""
    pdus: list[PDU] = []
    ends: list[int] = []
    pos = 0
    while pos < len(blob):
        assert len(blob) - pos >= 6, "a PDU header was cut short"
        end = pos + 6 + int.from_bytes(blob[pos + 2 : pos + 6], "big")
        assert end <= len(blob), "a PDU body was cut short"
        frame = blob[pos:end]
        pdu = decode_pdu(frame)
        assert encode_pdu(pdu) == frame
        pdus.append(pdu)
        ends.append(end)
        pos = end
    return pdus, ends


@dataclass
class Side:
    """One end of the pair: its connection, what it saw and what it sent."""

    conn: Connection
    events: list[ConnectionEvent] = field(default_factory=list)
    sent: list[PDU] = field(default_factory=list)
    #: Chunks on their way to this side, each with the number of PDUs it completes;
    #: None is the end of stream.
    inbox: deque[tuple[bytes, int] | None] = field(default_factory=deque)
    unread: list[ConnectionEvent] = field(default_factory=list)

    @property
    def state(self) -> State:
        return self.conn.state

    def take(self) -> list[ConnectionEvent]:
        """The events seen since the last call."""
        unread, self.unread = self.unread, []
        return unread


class Pair:
    """A requestor and an acceptor, a fake clock and a wire between them."""

    def __init__(
        self,
        *,
        max_pdu_length: int = 16384,
        artim_timeout: float = 30.0,
        splitter: Splitter = split_at_pdus,
    ) -> None:
        self.now = 1000.0
        self.artim_timeout = artim_timeout
        self.splitter = splitter
        self.req, self.acc = (
            Side(
                Connection(requestor=r, max_pdu_length=max_pdu_length, artim_timeout=artim_timeout)
            )
            for r in (True, False)
        )
        self.open = False

    def peer(self, side: Side) -> Side:
        return self.acc if side is self.req else self.req

    # --- transport ----------------------------------------------------------------

    def connect(self, rq: AAssociateRQ) -> None:
        """A-ASSOCIATE request, transport connect on both ends, the RQ written."""
        self.req.conn.request(self.now)
        assert self.req.state is State.STA4 and self.req.conn.wants_open
        self.acc.conn.connection_made(self.now)
        self.req.conn.transport_connected(self.now, rq)
        self.open = True

    def close(self, side: Side) -> None:
        """``side`` closes the transport: its last bytes, then end of stream, reach the peer."""
        assert self.open
        self.flush()
        self.open = False
        side.inbox.clear()
        self.peer(side).inbox.append(None)
        side.conn.receive_data(b"", self.now)  # the adapter's connection_lost
        self._drain(side, 1)

    # --- moving bytes -------------------------------------------------------------

    def flush(self) -> None:
        """Take both sides' output, check it parses, and put it on the wire."""
        for side in (self.req, self.acc):
            blob = side.conn.data_to_send()
            if not blob:
                continue
            pdus, ends = frames(blob)
            side.sent += pdus
            if self.open:
                self._queue(self.peer(side), blob, ends)

    def _queue(self, to: Side, blob: bytes, ends: list[int]) -> None:
        start = 0
        for cut in self.splitter(blob, ends):
            completed = sum(1 for end in ends if start < end <= cut)
            to.inbox.append((blob[start:cut], completed))
            start = cut

    def deliver(self, side: Side, limit: int | None = None) -> int:
        """Feed up to ``limit`` queued chunks to ``side``; return how many were fed."""
        count = 0
        while side.inbox and (limit is None or count < limit):
            item = side.inbox.popleft()
            count += 1
            if item is None:
                side.conn.receive_data(b"", self.now)
                self._drain(side, 1)
                continue
            chunk, completed = item
            side.conn.receive_data(chunk, self.now)
            self._drain(side, completed)
        return count

    def transfer(self, max_rounds: int = 100) -> None:
        """Exchange bytes until both sides are quiet."""
        for _ in range(max_rounds):
            self.flush()
            if not (self.req.inbox or self.acc.inbox):
                return
            self.deliver(self.req)
            self.deliver(self.acc)
        raise AssertionError("the pair did not go quiet")

    def inject(self, side: Side, data: bytes) -> None:
        """Feed raw bytes (garbage, a hand-made PDU) to ``side`` at once, ahead of the wire.

        Whatever they hold, the machine may answer them with at most one event:
        one PDU, or one Evt19 after which the stream is ignored.
        """
        side.conn.receive_data(data, self.now)
        self._drain(side, 1)

    def advance(self, seconds: float) -> None:
        """Move the fake clock and let both sides see the time."""
        self.now += seconds
        for side in (self.req, self.acc):
            side.conn.handle_timeout(self.now)
            self._drain(side, 0)  # ARTIM expiry (AA-2) indicates nothing

    # --- events -------------------------------------------------------------------

    def _drain(self, side: Side, completed: int) -> None:
        new: list[ConnectionEvent] = []
        while (event := side.conn.next_event()) is not None:
            new.append(event)
        assert len(new) <= completed, f"{len(new)} events from {completed} PDUs: {new}"
        requestor = side.conn.requestor
        for event in new:
            assert allowed_states(event, requestor), f"{event} reached the wrong side"
        if completed == 1 and new:
            (event,) = new
            assert side.state in allowed_states(event, requestor), (event, side.state)
        side.events += new
        side.unread += new
