"""The DICOM upper layer state machine, PS3.8 9.2, transcribed as data.

Theory of operation
-------------------
PS3.8 Table 9-10 says, for each pair of a state (Sta1-Sta13) and an event
(Evt1-Evt19), which action (AE-n, DT-n, AR-n, AA-n) to take; each action
(Tables 9-6 to 9-9) names the next state.  :data:`TRANSITIONS` is that table,
cell for cell; :data:`ACTIONS` maps each action to a small pure function.
An action never writes to a socket or touches a clock: it returns the next
state and a tuple of *effects* (send this PDU, indicate this primitive to
the user, start or stop ARTIM, open or close the transport) that the owner of
the machine (:class:`stellarpacs.ul.connection.Connection`) carries out.

A pair missing from the table is an event that cannot happen in that state:
for local primitives it is a misuse of the API (:class:`LocalProtocolError`);
received PDUs never miss, since every state with an open transport has a cell
for each of Evt3, Evt4, Evt6, Evt10, Evt12, Evt13, Evt16, Evt19.

Two actions decide their next state: AE-6 rejects a request the service
provider cannot accept (protocol version without bit 0, PS3.8 9.3.2), and
AR-8 goes to Sta9 for the association-requestor and to Sta10 for the acceptor
(release collision, PS3.8 9.2.3 note).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType

from stellarpacs.errors import AbortReason, AbortSource, LocalProtocolError
from stellarpacs.ul.pdus import PDU, AAbort, AAssociateRJ, AAssociateRQ, AReleaseRP, AReleaseRQ

__all__ = [
    "ACTIONS",
    "TRANSITIONS",
    "Action",
    "CloseTransport",
    "Effect",
    "Event",
    "Indicate",
    "Input",
    "OpenTransport",
    "Primitive",
    "SendPDU",
    "StartARTIM",
    "State",
    "StopARTIM",
    "step",
]


class State(Enum):
    """Upper layer states, PS3.8 Tables 9-1 to 9-5."""

    STA1 = "Idle"
    STA2 = "Transport connection open (awaiting A-ASSOCIATE-RQ PDU)"
    STA3 = "Awaiting local A-ASSOCIATE response primitive"
    STA4 = "Awaiting transport connection opening to complete"
    STA5 = "Awaiting A-ASSOCIATE-AC or A-ASSOCIATE-RJ PDU"
    STA6 = "Association established and ready for data transfer"
    STA7 = "Awaiting A-RELEASE-RP PDU"
    STA8 = "Awaiting local A-RELEASE response primitive"
    STA9 = "Release collision requestor side; awaiting A-RELEASE response"
    STA10 = "Release collision acceptor side; awaiting A-RELEASE-RP PDU"
    STA11 = "Release collision requestor side; awaiting A-RELEASE-RP PDU"
    STA12 = "Release collision acceptor side; awaiting A-RELEASE response primitive"
    STA13 = "Awaiting transport connection close indication"


class Event(Enum):
    """Upper layer events, PS3.8 Table 9-10 (rows)."""

    EVT1 = "A-ASSOCIATE request (local user)"
    EVT2 = "Transport connection confirm (local transport service)"
    EVT3 = "A-ASSOCIATE-AC PDU received"
    EVT4 = "A-ASSOCIATE-RJ PDU received"
    EVT5 = "Transport connection indication (local transport service)"
    EVT6 = "A-ASSOCIATE-RQ PDU received"
    EVT7 = "A-ASSOCIATE response primitive (accept)"
    EVT8 = "A-ASSOCIATE response primitive (reject)"
    EVT9 = "P-DATA request primitive"
    EVT10 = "P-DATA-TF PDU received"
    EVT11 = "A-RELEASE request primitive"
    EVT12 = "A-RELEASE-RQ PDU received"
    EVT13 = "A-RELEASE-RP PDU received"
    EVT14 = "A-RELEASE response primitive"
    EVT15 = "A-ABORT request primitive"
    EVT16 = "A-ABORT PDU received"
    EVT17 = "Transport connection closed indication"
    EVT18 = "ARTIM timer expired"
    EVT19 = "Unrecognized or invalid PDU received"


class Action(Enum):
    """Upper layer actions, PS3.8 Tables 9-6 to 9-9."""

    AE1 = "AE-1"
    AE2 = "AE-2"
    AE3 = "AE-3"
    AE4 = "AE-4"
    AE5 = "AE-5"
    AE6 = "AE-6"
    AE7 = "AE-7"
    AE8 = "AE-8"
    DT1 = "DT-1"
    DT2 = "DT-2"
    AR1 = "AR-1"
    AR2 = "AR-2"
    AR3 = "AR-3"
    AR4 = "AR-4"
    AR5 = "AR-5"
    AR6 = "AR-6"
    AR7 = "AR-7"
    AR8 = "AR-8"
    AR9 = "AR-9"
    AR10 = "AR-10"
    AA1 = "AA-1"
    AA2 = "AA-2"
    AA3 = "AA-3"
    AA4 = "AA-4"
    AA5 = "AA-5"
    AA6 = "AA-6"
    AA7 = "AA-7"
    AA8 = "AA-8"


class Primitive(Enum):
    """Service primitives the machine indicates or confirms to its user (PS3.8 7)."""

    A_ASSOCIATE_INDICATION = "A-ASSOCIATE indication"
    A_ASSOCIATE_ACCEPT = "A-ASSOCIATE confirmation (accept)"
    A_ASSOCIATE_REJECT = "A-ASSOCIATE confirmation (reject)"
    P_DATA_INDICATION = "P-DATA indication"
    A_RELEASE_INDICATION = "A-RELEASE indication"
    A_RELEASE_COLLISION = "A-RELEASE indication (release collision)"
    A_RELEASE_CONFIRMATION = "A-RELEASE confirmation"
    A_ABORT_INDICATION = "A-ABORT indication"
    A_P_ABORT_INDICATION = "A-P-ABORT indication"


# --- effects -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendPDU:
    """Write this PDU on the transport connection."""

    pdu: PDU


@dataclass(frozen=True, slots=True)
class Indicate:
    """Hand a primitive to the local user; ``pdu`` is the PDU that carried it, if any."""

    primitive: Primitive
    pdu: PDU | None = None


@dataclass(frozen=True, slots=True)
class StartARTIM:
    """Start, or restart, the ARTIM timer (PS3.8 9.1.5)."""


@dataclass(frozen=True, slots=True)
class StopARTIM:
    """Stop the ARTIM timer if it runs."""


@dataclass(frozen=True, slots=True)
class OpenTransport:
    """Issue a TRANSPORT CONNECT request (AE-1)."""


@dataclass(frozen=True, slots=True)
class CloseTransport:
    """Close the transport connection."""


Effect = SendPDU | Indicate | StartARTIM | StopARTIM | OpenTransport | CloseTransport


@dataclass(frozen=True, slots=True)
class Input:
    """An event with what it carries.

    ``pdu`` is the received PDU (Evt3, 4, 6, 10, 12, 13, 16) or the PDU a
    local primitive asks to send (Evt1 carries the A-ASSOCIATE-RQ, Evt7 the
    AC, Evt8 the RJ, Evt9 the P-DATA-TF, Evt15 the A-ABORT).  ``reason`` is
    the A-ABORT reason for Evt19, taken from the decoder's error.
    """

    event: Event
    pdu: PDU | None = None
    reason: int = AbortReason.UNEXPECTED_PDU


# --- actions -----------------------------------------------------------------

Outcome = tuple[State, tuple[Effect, ...]]
ActionFn = Callable[[Input, bool], Outcome]

_START = StartARTIM()
_STOP = StopARTIM()
_CLOSE = CloseTransport()


def _pdu(inp: Input) -> PDU:
    if inp.pdu is None:
        raise LocalProtocolError(f"{inp.event.name} needs a PDU")
    return inp.pdu


def _provider_abort(inp: Input) -> AAbort:
    """The A-ABORT the provider sends for an unexpected or invalid PDU."""
    reason = inp.reason if inp.event is Event.EVT19 else AbortReason.UNEXPECTED_PDU
    return AAbort(source=AbortSource.SERVICE_PROVIDER, reason=reason)


def _ae1(inp: Input, requestor: bool) -> Outcome:
    return State.STA4, (OpenTransport(),)


def _ae2(inp: Input, requestor: bool) -> Outcome:
    return State.STA5, (SendPDU(_pdu(inp)),)


def _ae3(inp: Input, requestor: bool) -> Outcome:
    return State.STA6, (Indicate(Primitive.A_ASSOCIATE_ACCEPT, inp.pdu),)


def _ae4(inp: Input, requestor: bool) -> Outcome:
    return State.STA1, (Indicate(Primitive.A_ASSOCIATE_REJECT, inp.pdu), _CLOSE)


def _ae5(inp: Input, requestor: bool) -> Outcome:
    return State.STA2, (_START,)


def _ae6(inp: Input, requestor: bool) -> Outcome:
    """Only the protocol version is the provider's to judge (PS3.8 9.3.2, bit 0)."""
    rq = _pdu(inp)
    if isinstance(rq, AAssociateRQ) and rq.protocol_version & 1:
        return State.STA3, (_STOP, Indicate(Primitive.A_ASSOCIATE_INDICATION, rq))
    rj = AAssociateRJ(result=1, source=2, reason=2)  # protocol-version-not-supported
    return State.STA13, (_STOP, SendPDU(rj), _START)


def _ae7(inp: Input, requestor: bool) -> Outcome:
    return State.STA6, (SendPDU(_pdu(inp)),)


def _ae8(inp: Input, requestor: bool) -> Outcome:
    return State.STA13, (SendPDU(_pdu(inp)), _START)


def _dt1(inp: Input, requestor: bool) -> Outcome:
    return State.STA6, (SendPDU(_pdu(inp)),)


def _dt2(inp: Input, requestor: bool) -> Outcome:
    return State.STA6, (Indicate(Primitive.P_DATA_INDICATION, inp.pdu),)


def _ar1(inp: Input, requestor: bool) -> Outcome:
    return State.STA7, (SendPDU(AReleaseRQ()),)


def _ar2(inp: Input, requestor: bool) -> Outcome:
    return State.STA8, (Indicate(Primitive.A_RELEASE_INDICATION, inp.pdu),)


def _ar3(inp: Input, requestor: bool) -> Outcome:
    return State.STA1, (Indicate(Primitive.A_RELEASE_CONFIRMATION, inp.pdu), _CLOSE)


def _ar4(inp: Input, requestor: bool) -> Outcome:
    return State.STA13, (SendPDU(AReleaseRP()), _START)


def _ar5(inp: Input, requestor: bool) -> Outcome:
    return State.STA1, (_STOP,)


def _ar6(inp: Input, requestor: bool) -> Outcome:
    return State.STA7, (Indicate(Primitive.P_DATA_INDICATION, inp.pdu),)


def _ar7(inp: Input, requestor: bool) -> Outcome:
    return State.STA8, (SendPDU(_pdu(inp)),)


def _ar8(inp: Input, requestor: bool) -> Outcome:
    state = State.STA9 if requestor else State.STA10
    return state, (Indicate(Primitive.A_RELEASE_COLLISION, inp.pdu),)


def _ar9(inp: Input, requestor: bool) -> Outcome:
    return State.STA11, (SendPDU(AReleaseRP()),)


def _ar10(inp: Input, requestor: bool) -> Outcome:
    return State.STA12, (Indicate(Primitive.A_RELEASE_CONFIRMATION, inp.pdu),)


def _aa1(inp: Input, requestor: bool) -> Outcome:
    """Send A-ABORT and (re)start ARTIM.

    For Evt15 this is the user's own A-ABORT (service-user source).  In Sta2
    the same action answers an unexpected or invalid PDU; there the abort is
    really the provider's, so it carries source 2 and the reason that fits,
    which tells the peer more than a bare user abort.
    """
    if inp.event is Event.EVT15:
        pdu = inp.pdu if isinstance(inp.pdu, AAbort) else AAbort(AbortSource.SERVICE_USER, 0)
    else:
        pdu = _provider_abort(inp)
    return State.STA13, (SendPDU(pdu), _START)


def _aa2(inp: Input, requestor: bool) -> Outcome:
    return State.STA1, (_STOP, _CLOSE)


def _aa3(inp: Input, requestor: bool) -> Outcome:
    """A-ABORT indication if the peer's user aborted, A-P-ABORT if its provider did."""
    pdu = inp.pdu
    by_user = isinstance(pdu, AAbort) and pdu.source == AbortSource.SERVICE_USER
    primitive = Primitive.A_ABORT_INDICATION if by_user else Primitive.A_P_ABORT_INDICATION
    return State.STA1, (Indicate(primitive, pdu), _CLOSE)


def _aa4(inp: Input, requestor: bool) -> Outcome:
    return State.STA1, (Indicate(Primitive.A_P_ABORT_INDICATION),)


def _aa5(inp: Input, requestor: bool) -> Outcome:
    return State.STA1, (_STOP,)


def _aa6(inp: Input, requestor: bool) -> Outcome:
    return State.STA13, ()


def _aa7(inp: Input, requestor: bool) -> Outcome:
    return State.STA13, (SendPDU(_provider_abort(inp)),)


def _aa8(inp: Input, requestor: bool) -> Outcome:
    abort = _provider_abort(inp)
    return State.STA13, (SendPDU(abort), Indicate(Primitive.A_P_ABORT_INDICATION, abort), _START)


ACTIONS: Mapping[Action, ActionFn] = MappingProxyType(
    {action: globals()["_" + action.name.lower()] for action in Action}
)
"""Each action of PS3.8 Tables 9-6 to 9-9 as a pure function."""


# --- Table 9-10 --------------------------------------------------------------


def _row(cells: str) -> dict[State, Action]:
    """Parse one row of Table 9-10 written as ``"Sta2:AA-1 Sta3:AA-8 ..."``."""
    row: dict[State, Action] = {}
    for cell in cells.split():
        state, action = cell.split(":")
        row[State["STA" + state.removeprefix("Sta")]] = Action[action.replace("-", "")]
    return row


_AA8_STA3_TO_STA12 = "Sta3:AA-8 Sta5:AA-8 Sta6:AA-8 Sta7:AA-8 Sta8:AA-8 Sta9:AA-8 Sta10:AA-8"
_AA8_STA3_TO_STA12 += " Sta11:AA-8 Sta12:AA-8"

# The table as the standard prints it: one line per event, one cell per state.
_TABLE_9_10: dict[Event, str] = {
    Event.EVT1: "Sta1:AE-1",
    Event.EVT2: "Sta4:AE-2",
    Event.EVT3: f"Sta2:AA-1 {_AA8_STA3_TO_STA12} Sta5:AE-3 Sta13:AA-6",
    Event.EVT4: f"Sta2:AA-1 {_AA8_STA3_TO_STA12} Sta5:AE-4 Sta13:AA-6",
    Event.EVT5: "Sta1:AE-5",
    Event.EVT6: f"Sta2:AE-6 {_AA8_STA3_TO_STA12} Sta13:AA-7",
    Event.EVT7: "Sta3:AE-7",
    Event.EVT8: "Sta3:AE-8",
    Event.EVT9: "Sta6:DT-1 Sta8:AR-7",
    Event.EVT10: f"Sta2:AA-1 {_AA8_STA3_TO_STA12} Sta6:DT-2 Sta7:AR-6 Sta13:AA-6",
    Event.EVT11: "Sta6:AR-1",
    Event.EVT12: f"Sta2:AA-1 {_AA8_STA3_TO_STA12} Sta6:AR-2 Sta7:AR-8 Sta13:AA-6",
    Event.EVT13: f"Sta2:AA-1 {_AA8_STA3_TO_STA12} Sta7:AR-3 Sta10:AR-10 Sta11:AR-3 Sta13:AA-6",
    Event.EVT14: "Sta8:AR-4 Sta9:AR-9 Sta12:AR-4",
    Event.EVT15: "Sta3:AA-1 Sta4:AA-2 Sta5:AA-1 Sta6:AA-1 Sta7:AA-1 Sta8:AA-1 Sta9:AA-1"
    " Sta10:AA-1 Sta11:AA-1 Sta12:AA-1",
    Event.EVT16: "Sta2:AA-2 Sta3:AA-3 Sta5:AA-3 Sta6:AA-3 Sta7:AA-3 Sta8:AA-3 Sta9:AA-3"
    " Sta10:AA-3 Sta11:AA-3 Sta12:AA-3 Sta13:AA-2",
    Event.EVT17: "Sta2:AA-5 Sta3:AA-4 Sta4:AA-4 Sta5:AA-4 Sta6:AA-4 Sta7:AA-4 Sta8:AA-4"
    " Sta9:AA-4 Sta10:AA-4 Sta11:AA-4 Sta12:AA-4 Sta13:AR-5",
    Event.EVT18: "Sta2:AA-2 Sta13:AA-2",
    Event.EVT19: f"Sta2:AA-1 {_AA8_STA3_TO_STA12} Sta13:AA-7",
}

TRANSITIONS: Mapping[tuple[State, Event], Action] = MappingProxyType(
    {
        (state, event): action
        for event, cells in _TABLE_9_10.items()
        for state, action in _row(cells).items()
    }
)
"""PS3.8 Table 9-10: (state, event) -> action.  Later cells in a row win, so
each row above lists the AA-8 default first and then its exceptions."""


def step(state: State, inp: Input, requestor: bool) -> Outcome:
    """Apply one event to ``state``; return the next state and the effects.

    ``requestor`` says whether this side requested the association (AR-8).
    """
    action = TRANSITIONS.get((state, inp.event))
    if action is None:
        raise LocalProtocolError(
            f"{inp.event.name} ({inp.event.value}) is not valid in {state.name}"
        )
    return ACTIONS[action](inp, requestor)
