"""One upper layer connection, sans-I/O: bytes and time in, events and bytes out.

The interface follows h11 and aioquic:

- ``receive_data(data, now)`` feeds bytes read from the transport (``b""``
  means the peer closed it); ``next_event()`` then returns what the local
  user must learn, one :class:`ConnectionEvent` at a time.
- The user's own primitives are methods: :meth:`accept`, :meth:`reject`,
  :meth:`send_data`, :meth:`release`, :meth:`release_response`,
  :meth:`abort`, and for the requestor :meth:`request` and
  :meth:`transport_connected`.
- ``data_to_send()`` returns the bytes to write; ``wants_close`` says the
  transport should be closed once they are written.
- ``next_deadline()`` is when ARTIM fires, or None; ``handle_timeout(now)``
  is called when that time has come.  The primitives that may start ARTIM
  (:meth:`reject`, :meth:`release_response`, :meth:`abort`) take an optional
  ``now``; without it the last time passed in is used.

A local primitive is all or nothing: its PDU is encoded before the state
changes, so a :class:`LocalProtocolError` (wrong state, unencodable PDU)
leaves the connection as it was.

A malformed PDU is turned into Evt19 here, the one place where the peer's
:class:`RemoteProtocolError` becomes an A-ABORT (PS3.8 9.2, AA-8).  So is
an A-ASSOCIATE-RQ or -AC whose Maximum Length (1 to 6) cannot hold one PDV:
the codec carries any 32-bit value both ways, but no message could ever be
sent to such a peer (PS3.8 D.1, 9.3.5), so it is answered like any invalid
PDU parameter (AA-1 in Sta2, AA-8 in Sta5), at once, instead of an AC that
promises an association nobody can use and an RJ that has no fitting reason.

Pipelined PDUs: while the acceptor awaits its user's A-ASSOCIATE response
(Sta3), received bytes are kept, not read, as h11 pauses between cycles.  A
requestor in Sta5 may only send an A-ABORT (Table 9-10, Evt15), so whatever
else follows its RQ was sent ahead of the answer it expects; read once the
response is issued, an A-RELEASE-RQ meets Sta6 (AR-2) and a second RQ gets
AA-8 there, instead of all of them getting AA-8 in Sta3 before the user could
answer.  An A-ABORT at the head of the kept bytes is read at once: it is
valid in Sta3 (AA-3) and tells the user not to bother.

A response primitive issued after the attempt ended that way (A-ABORT
received, AA-3, or the transport closed, AA-4) is ignored: PS3.8 9.2 has the
A-ABORT or A-P-ABORT indication end the association, so there is nothing
left to answer, and the user learns it from the :class:`Aborted` event
already queued.  A second response to the same indication is still a misuse.

The PDU limit (``pdu_timeout``): the idle limit of the DIMSE layer counts
from one whole PDU to the next, so it cannot see a peer that starts a PDU
and trickles it a byte at a time.  The reader knows when a PDU has begun and
not ended; from the first byte of a PDU to its last at most ``pdu_timeout``
may pass (0: no limit), else it is handled as a PDU that cannot be read
(Evt19): an A-ABORT with source 2, the service provider, which detected it
below the DIMSE user, and reason 0, not specified, since PS3.8 Table 9-26
lists no reason for a PDU that is too slow.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from stellarpacs.errors import AbortReason, LocalProtocolError, RemoteProtocolError
from stellarpacs.ul import fsm
from stellarpacs.ul.codec import encode_pdu
from stellarpacs.ul.fsm import Event as FsmEvent
from stellarpacs.ul.fsm import Input, Primitive, State
from stellarpacs.ul.pdus import (
    PDU,
    AAbort,
    AAssociateAC,
    AAssociateRJ,
    AAssociateRQ,
    AReleaseRP,
    AReleaseRQ,
    PDataTF,
    PDUType,
)
from stellarpacs.ul.reader import PDUReader

__all__ = [
    "MIN_MAXIMUM_LENGTH",
    "Aborted",
    "AssociationAccepted",
    "AssociationDeclined",
    "AssociationRequested",
    "Connection",
    "ConnectionEvent",
    "DataReceived",
    "ReleaseConfirmed",
    "ReleaseRequested",
]


# --- events for the local user -------------------------------------------------


@dataclass(frozen=True, slots=True)
class AssociationRequested:
    """A-ASSOCIATE indication: the peer asks for an association (acceptor)."""

    request: AAssociateRQ


@dataclass(frozen=True, slots=True)
class AssociationAccepted:
    """A-ASSOCIATE confirmation (accept) (requestor)."""

    response: AAssociateAC


@dataclass(frozen=True, slots=True)
class AssociationDeclined:
    """A-ASSOCIATE confirmation (reject) (requestor)."""

    response: AAssociateRJ


@dataclass(frozen=True, slots=True)
class DataReceived:
    """P-DATA indication."""

    pdu: PDataTF


@dataclass(frozen=True, slots=True)
class ReleaseRequested:
    """A-RELEASE indication; ``collision`` when both sides asked at once (PS3.8 9.2.3)."""

    collision: bool = False


@dataclass(frozen=True, slots=True)
class ReleaseConfirmed:
    """A-RELEASE confirmation: the association is released."""


@dataclass(frozen=True, slots=True)
class Aborted:
    """A-ABORT (``by_peer_user``) or A-P-ABORT indication: the association is gone.

    ``source`` and ``reason`` are those of the A-ABORT PDU received or sent,
    or None when the transport closed without one.
    """

    by_peer_user: bool
    source: int | None = None
    reason: int | None = None


ConnectionEvent = (
    AssociationRequested
    | AssociationAccepted
    | AssociationDeclined
    | DataReceived
    | ReleaseRequested
    | ReleaseConfirmed
    | Aborted
)

_PDU_EVENTS: dict[type[object], FsmEvent] = {
    AAssociateAC: FsmEvent.EVT3,
    AAssociateRJ: FsmEvent.EVT4,
    AAssociateRQ: FsmEvent.EVT6,
    PDataTF: FsmEvent.EVT10,
    AReleaseRQ: FsmEvent.EVT12,
    AReleaseRP: FsmEvent.EVT13,
    AAbort: FsmEvent.EVT16,
}


#: The smallest usable Maximum Length: a PDV item's 4-byte length, its context
#: ID and message control header, and one byte of fragment (PS3.8 9.3.5.1, D.1).
MIN_MAXIMUM_LENGTH = 7


def _check_usable(pdu: PDU) -> None:
    """Refuse an RQ or AC announcing a Maximum Length too small for any PDV (PS3.8 D.1).

    0 means no limit; an absent sub-item is read the same way.
    """
    if isinstance(pdu, AAssociateRQ | AAssociateAC):
        length = pdu.user_information.maximum_length
        if length and length < MIN_MAXIMUM_LENGTH:
            name = "A-ASSOCIATE-RQ" if isinstance(pdu, AAssociateRQ) else "A-ASSOCIATE-AC"
            raise RemoteProtocolError(
                f"{name} announces Maximum Length {length}, too small for any P-DATA-TF "
                f"(at least {MIN_MAXIMUM_LENGTH}, PS3.8 D.1)",
                AbortReason.INVALID_PDU_PARAMETER_VALUE,
            )


def _indication(effect: fsm.Indicate) -> ConnectionEvent:
    """Translate an indicated primitive into the event the user sees."""
    pdu = effect.pdu
    match effect.primitive:
        case Primitive.A_ASSOCIATE_INDICATION if isinstance(pdu, AAssociateRQ):
            return AssociationRequested(pdu)
        case Primitive.A_ASSOCIATE_ACCEPT if isinstance(pdu, AAssociateAC):
            return AssociationAccepted(pdu)
        case Primitive.A_ASSOCIATE_REJECT if isinstance(pdu, AAssociateRJ):
            return AssociationDeclined(pdu)
        case Primitive.P_DATA_INDICATION if isinstance(pdu, PDataTF):
            return DataReceived(pdu)
        case Primitive.A_RELEASE_INDICATION:
            return ReleaseRequested(collision=False)
        case Primitive.A_RELEASE_COLLISION:
            return ReleaseRequested(collision=True)
        case Primitive.A_RELEASE_CONFIRMATION:
            return ReleaseConfirmed()
        case Primitive.A_ABORT_INDICATION | Primitive.A_P_ABORT_INDICATION:
            by_user = effect.primitive is Primitive.A_ABORT_INDICATION
            if isinstance(pdu, AAbort):
                return Aborted(by_user, pdu.source, pdu.reason)
            return Aborted(by_user)
    raise AssertionError(f"unexpected indication {effect}")  # pragma: no cover


class Connection:
    """The upper layer of one transport connection (PS3.8 9), without I/O.

    ``max_pdu_length`` is the largest P-DATA-TF we accept (what we advertise
    in the Maximum Length sub-item); a longer one is answered with A-ABORT.
    ``artim_timeout`` and ``pdu_timeout`` (see the module docstring) are in
    the same unit as the ``now`` values passed in.
    """

    def __init__(
        self,
        *,
        requestor: bool,
        max_pdu_length: int = 16384,
        artim_timeout: float = 30.0,
        pdu_timeout: float = 0.0,
    ) -> None:
        self.requestor = requestor
        self.state = State.STA1
        self.artim_timeout = artim_timeout
        self.pdu_timeout = pdu_timeout
        #: When the first byte of the PDU still arriving came, or None.
        self._pdu_started: float | None = None
        self._reader = PDUReader(max_pdata_length=max_pdu_length)
        self._events: deque[ConnectionEvent] = deque()
        self._out: list[bytes] = []
        self._deadline: float | None = None
        self._now = 0.0
        self.wants_close = False
        self.wants_open = False
        self.last_error: RemoteProtocolError | None = None
        self._discard_input = False
        #: An A-ASSOCIATE indication was given and not yet answered.
        self._answer_due = False

    # --- driving the machine ---------------------------------------------------

    def _handle(self, inp: Input) -> None:
        """Compute, then commit: nothing changes if the step or an encoding fails."""
        state, effects = fsm.step(self.state, inp, self.requestor)
        wire = [encode_pdu(e.pdu) for e in effects if isinstance(e, fsm.SendPDU)]
        self.state = state
        self._out.extend(wire)
        for effect in effects:
            self._apply(effect)

    def _apply(self, effect: fsm.Effect) -> None:
        """Carry out one effect other than SendPDU (already queued by :meth:`_handle`)."""
        if isinstance(effect, fsm.Indicate):
            self._answer_due |= effect.primitive is Primitive.A_ASSOCIATE_INDICATION
            self._events.append(_indication(effect))
        elif isinstance(effect, fsm.StartARTIM):
            self._deadline = self._now + self.artim_timeout
        elif isinstance(effect, fsm.StopARTIM):
            self._deadline = None
        elif isinstance(effect, fsm.CloseTransport):
            self.wants_close = True
        elif isinstance(effect, fsm.OpenTransport):
            self.wants_open = True

    # --- transport side ----------------------------------------------------------

    def _check_role(self, requestor: bool, what: str) -> None:
        if self.requestor is not requestor:
            side = "association-requestor" if requestor else "association-acceptor"
            raise LocalProtocolError(f"{what} is for the {side} only")

    def _set_now(self, now: float | None) -> None:
        if now is not None:
            self._now = now

    def connection_made(self, now: float) -> None:
        """Transport connection indication, acceptor side (Evt5)."""
        self._check_role(False, "connection_made")
        self._now = now
        self._handle(Input(FsmEvent.EVT5))

    def transport_connected(self, now: float, request: AAssociateRQ) -> None:
        """Transport connection confirm, requestor side (Evt2): send the RQ."""
        self._check_role(True, "transport_connected")
        self._now = now
        self._handle(Input(FsmEvent.EVT2, request))

    def receive_data(self, data: bytes, now: float) -> None:
        """Feed bytes from the transport; ``b""`` means it was closed (Evt17).

        In Sta1 the transport is already gone (we closed it ourselves, or the
        association ended), so a late close indication is ignored.  In Sta3
        the bytes are kept for after the response (see the module docstring);
        a close indication is not kept: with no transport no answer can go out.
        """
        self._now = now
        if not data:
            if self.state is not State.STA1:
                self._handle(Input(FsmEvent.EVT17))
            return
        if self._discard_input or self.state in (State.STA1, State.STA4):
            return  # no transport yet, or a stream that lost its framing
        self._reader.feed(data)
        self._read_pdus()
        if not self._reader.incomplete:
            self._pdu_started = None
        elif self._pdu_started is None:
            self._pdu_started = now

    def _read_pdus(self) -> None:
        """Hand each whole PDU to the machine; in Sta3 only an A-ABORT is read."""
        try:
            while not self.is_closed and (
                self.state is not State.STA3 or self._reader.next_type() == PDUType.A_ABORT
            ):
                pdu = self._reader.next_pdu()
                if pdu is None:
                    return
                self._pdu_started = None
                _check_usable(pdu)
                self._handle(Input(_PDU_EVENTS[type(pdu)], pdu))
        except RemoteProtocolError as error:
            self.last_error = error
            self._discard_input = True
            self._handle(Input(FsmEvent.EVT19, reason=error.reason))

    @property
    def artim_deadline(self) -> float | None:
        """When ARTIM expires, or None while it is not running."""
        return self._deadline

    def _pdu_deadline(self) -> float | None:
        if self.pdu_timeout <= 0 or self._pdu_started is None or self._discard_input:
            return None
        return self._pdu_started + self.pdu_timeout

    def next_deadline(self) -> float | None:
        """The earlier of ARTIM and the PDU limit, or None while neither runs."""
        deadlines = [d for d in (self._deadline, self._pdu_deadline()) if d is not None]
        return min(deadlines, default=None)

    def handle_timeout(self, now: float) -> None:
        """Evt18 when ARTIM has expired, Evt19 when a PDU took too long; else a no-op."""
        self._now = now
        pdu_deadline = self._pdu_deadline()
        if pdu_deadline is not None and now >= pdu_deadline and not self.is_closed:
            self._pdu_started = None
            self.last_error = RemoteProtocolError(
                f"a PDU took over {self.pdu_timeout:g} s to arrive "
                f"({self._reader.buffered} bytes so far; pdu_timeout)",
                AbortReason.NOT_SPECIFIED,
            )
            self._discard_input = True
            self._handle(Input(FsmEvent.EVT19, reason=AbortReason.NOT_SPECIFIED))
        if self._deadline is not None and now >= self._deadline:
            self._deadline = None
            self._handle(Input(FsmEvent.EVT18))

    def data_to_send(self) -> bytes:
        """Bytes the transport must write, in order; empties the buffer."""
        out = b"".join(self._out)
        self._out.clear()
        return out

    def next_event(self) -> ConnectionEvent | None:
        """The next event for the local user, or None."""
        return self._events.popleft() if self._events else None

    # --- the local user's primitives --------------------------------------------

    def request(self, now: float) -> None:
        """A-ASSOCIATE request (Evt1): the adapter must then open the transport."""
        self._check_role(True, "request")
        self._now = now
        self._handle(Input(FsmEvent.EVT1))

    def accept(self, ac: AAssociateAC) -> None:
        """A-ASSOCIATE response, accept (Evt7); then the PDUs kept in Sta3 are read."""
        self._respond(Input(FsmEvent.EVT7, ac))

    def reject(self, rj: AAssociateRJ, now: float | None = None) -> None:
        """A-ASSOCIATE response, reject (Evt8); ARTIM then waits for the peer to close."""
        self._set_now(now)
        self._respond(Input(FsmEvent.EVT8, rj))

    def _respond(self, inp: Input) -> None:
        """Issue a response primitive, unless the peer ended the attempt first (PS3.8 9.2)."""
        if self._answer_due and self.state is not State.STA3:
            self._answer_due = False  # the queued Aborted event said it all
            return
        self._handle(inp)
        self._answer_due = False
        if not self._discard_input:
            self._read_pdus()

    def send_data(self, pdu: PDataTF) -> None:
        """P-DATA request (Evt9)."""
        self._handle(Input(FsmEvent.EVT9, pdu))

    def release(self) -> None:
        """A-RELEASE request (Evt11)."""
        self._handle(Input(FsmEvent.EVT11))

    def release_response(self, now: float | None = None) -> None:
        """A-RELEASE response (Evt14); AR-4 then starts ARTIM while the peer closes."""
        self._set_now(now)
        self._handle(Input(FsmEvent.EVT14))

    def abort(self, reason: int = 0, now: float | None = None) -> None:
        """A-ABORT request (Evt15), service-user source (PS3.8 9.3.8, AA-1).

        Table 9-10 has no Evt15 cell for Sta1, Sta2 and Sta13.  In Sta2 there is
        no association to abort yet: the transport is to be closed and what
        still arrives is ignored.  In Sta1 and Sta13 nothing is left to do.
        """
        self._set_now(now)
        if self.state in (State.STA1, State.STA2, State.STA13):
            if self.state is State.STA2:  # no association yet: just drop the connection
                self.wants_close = True
                self._discard_input = True
            return
        self._handle(Input(FsmEvent.EVT15, AAbort(source=0, reason=reason)))

    @property
    def is_established(self) -> bool:
        """True in Sta6, where DIMSE messages may flow both ways."""
        return self.state is State.STA6

    @property
    def is_closed(self) -> bool:
        """True once the association is gone and the transport should be closed."""
        return self.state is State.STA1
