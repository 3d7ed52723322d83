"""PS3.8 Table 9-10, cell by cell, and the actions of Tables 9-6 to 9-9."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stellarpacs.errors import AbortReason, AbortSource, LocalProtocolError
from stellarpacs.ul.fsm import (
    ACTIONS,
    TRANSITIONS,
    Action,
    CloseTransport,
    Event,
    Indicate,
    Input,
    OpenTransport,
    Primitive,
    SendPDU,
    StartARTIM,
    State,
    StopARTIM,
    step,
)
from stellarpacs.ul.pdus import (
    PDU,
    AAbort,
    AAssociateAC,
    AAssociateRJ,
    AAssociateRQ,
    AReleaseRP,
    AReleaseRQ,
    PDataTF,
    PresentationDataValue,
)

# Table 9-10 transcribed a second time, independently of the module, as the
# standard prints it: rows are events, columns Sta1..Sta13, "." is an empty cell.
GRID = """
        1     2     3     4     5     6     7     8     9     10    11    12    13
Evt1    AE-1  .     .     .     .     .     .     .     .     .     .     .     .
Evt2    .     .     .     AE-2  .     .     .     .     .     .     .     .     .
Evt3    .     AA-1  AA-8  .     AE-3  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-6
Evt4    .     AA-1  AA-8  .     AE-4  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-6
Evt5    AE-5  .     .     .     .     .     .     .     .     .     .     .     .
Evt6    .     AE-6  AA-8  .     AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-7
Evt7    .     .     AE-7  .     .     .     .     .     .     .     .     .     .
Evt8    .     .     AE-8  .     .     .     .     .     .     .     .     .     .
Evt9    .     .     .     .     .     DT-1  .     AR-7  .     .     .     .     .
Evt10   .     AA-1  AA-8  .     AA-8  DT-2  AR-6  AA-8  AA-8  AA-8  AA-8  AA-8  AA-6
Evt11   .     .     .     .     .     AR-1  .     .     .     .     .     .     .
Evt12   .     AA-1  AA-8  .     AA-8  AR-2  AR-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-6
Evt13   .     AA-1  AA-8  .     AA-8  AA-8  AR-3  AA-8  AA-8  AR-10 AR-3  AA-8  AA-6
Evt14   .     .     .     .     .     .     .     AR-4  AR-9  .     .     AR-4  .
Evt15   .     .     AA-1  AA-2  AA-1  AA-1  AA-1  AA-1  AA-1  AA-1  AA-1  AA-1  .
Evt16   .     AA-2  AA-3  .     AA-3  AA-3  AA-3  AA-3  AA-3  AA-3  AA-3  AA-3  AA-2
Evt17   .     AA-5  AA-4  AA-4  AA-4  AA-4  AA-4  AA-4  AA-4  AA-4  AA-4  AA-4  AR-5
Evt18   .     AA-2  .     .     .     .     .     .     .     .     .     .     AA-2
Evt19   .     AA-1  AA-8  .     AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-7
"""


def _grid() -> dict[tuple[State, Event], Action]:
    lines = [line.split() for line in GRID.strip().splitlines()[1:]]
    cells = {}
    for row in lines:
        event = Event["EVT" + row[0].removeprefix("Evt")]
        for number, cell in enumerate(row[1:], start=1):
            if cell != ".":
                cells[(State[f"STA{number}"], event)] = Action[cell.replace("-", "")]
    return cells


EXPECTED = _grid()
ALL_CELLS = [(s, e) for s in State for e in Event]

RQ = AAssociateRQ("ACCEPTOR", "REQUESTOR", ())
AC = AAssociateAC("ACCEPTOR", "REQUESTOR", ())
RJ = AAssociateRJ(1, 1, 7)
PDATA = PDataTF((PresentationDataValue(1, True, True, b"\x00\x01"),))
USER_ABORT = AAbort(0, 0)
PROVIDER_ABORT = AAbort(2, 2)

PAYLOADS: dict[Event, PDU] = {
    Event.EVT2: RQ,
    Event.EVT3: AC,
    Event.EVT4: RJ,
    Event.EVT6: RQ,
    Event.EVT7: AC,
    Event.EVT8: RJ,
    Event.EVT9: PDATA,
    Event.EVT10: PDATA,
    Event.EVT12: AReleaseRQ(),
    Event.EVT13: AReleaseRP(),
    Event.EVT15: USER_ABORT,
    Event.EVT16: USER_ABORT,
}

# Next state of each action (PS3.8 Tables 9-6 to 9-9); AE-6 and AR-8 are conditional.
NEXT_STATE = {
    "AE-1": State.STA4, "AE-2": State.STA5, "AE-3": State.STA6, "AE-4": State.STA1,
    "AE-5": State.STA2, "AE-7": State.STA6, "AE-8": State.STA13, "DT-1": State.STA6,
    "DT-2": State.STA6, "AR-1": State.STA7, "AR-2": State.STA8, "AR-3": State.STA1,
    "AR-4": State.STA13, "AR-5": State.STA1, "AR-6": State.STA7, "AR-7": State.STA8,
    "AR-9": State.STA11, "AR-10": State.STA12, "AA-1": State.STA13, "AA-2": State.STA1,
    "AA-3": State.STA1, "AA-4": State.STA1, "AA-5": State.STA1, "AA-6": State.STA13,
    "AA-7": State.STA13, "AA-8": State.STA13,
}  # fmt: skip


def _inp(event: Event) -> Input:
    return Input(event, PAYLOADS.get(event), reason=AbortReason.UNRECOGNIZED_PDU)


def test_table_matches_independent_transcription() -> None:
    assert dict(TRANSITIONS) == EXPECTED
    assert len(TRANSITIONS) == 123


def test_every_action_has_a_function() -> None:
    assert set(ACTIONS) == set(Action)
    assert {a for a in TRANSITIONS.values()} == set(Action)


@pytest.mark.parametrize(("state", "event"), ALL_CELLS, ids=lambda x: x.name)
def test_every_cell(state: State, event: Event) -> None:
    """Each of the 13 x 19 cells: the table's action and its next state, or a local error."""
    expected = EXPECTED.get((state, event))
    if expected is None:
        with pytest.raises(LocalProtocolError):
            step(state, _inp(event), requestor=True)
        return
    next_state, effects = step(state, _inp(event), requestor=True)
    if expected is Action.AR8:
        assert next_state is State.STA9
    elif expected is Action.AE6:
        assert next_state is State.STA3
    else:
        assert next_state is NEXT_STATE[expected.value]
    assert all(
        isinstance(e, SendPDU | Indicate | StartARTIM | StopARTIM | OpenTransport | CloseTransport)
        for e in effects
    )


def _kinds(effects: tuple[object, ...]) -> list[str]:
    out = []
    for e in effects:
        if isinstance(e, SendPDU):
            out.append("send:" + type(e.pdu).__name__)
        elif isinstance(e, Indicate):
            out.append("ind:" + e.primitive.name)
        else:
            out.append(type(e).__name__)
    return out


@pytest.mark.parametrize(
    ("state", "event", "effects"),
    [
        (State.STA1, Event.EVT1, ["OpenTransport"]),
        (State.STA4, Event.EVT2, ["send:AAssociateRQ"]),
        (State.STA5, Event.EVT3, ["ind:A_ASSOCIATE_ACCEPT"]),
        (State.STA5, Event.EVT4, ["ind:A_ASSOCIATE_REJECT", "CloseTransport"]),
        (State.STA1, Event.EVT5, ["StartARTIM"]),
        (State.STA2, Event.EVT6, ["StopARTIM", "ind:A_ASSOCIATE_INDICATION"]),
        (State.STA3, Event.EVT7, ["send:AAssociateAC"]),
        (State.STA3, Event.EVT8, ["send:AAssociateRJ", "StartARTIM"]),
        (State.STA6, Event.EVT9, ["send:PDataTF"]),
        (State.STA6, Event.EVT10, ["ind:P_DATA_INDICATION"]),
        (State.STA6, Event.EVT11, ["send:AReleaseRQ"]),
        (State.STA6, Event.EVT12, ["ind:A_RELEASE_INDICATION"]),
        (State.STA7, Event.EVT13, ["ind:A_RELEASE_CONFIRMATION", "CloseTransport"]),
        (State.STA13, Event.EVT17, ["StopARTIM"]),
        (State.STA7, Event.EVT10, ["ind:P_DATA_INDICATION"]),
        (State.STA8, Event.EVT9, ["send:PDataTF"]),
        (State.STA7, Event.EVT12, ["ind:A_RELEASE_COLLISION"]),
        (State.STA9, Event.EVT14, ["send:AReleaseRP"]),
        (State.STA10, Event.EVT13, ["ind:A_RELEASE_CONFIRMATION"]),
        (State.STA8, Event.EVT14, ["send:AReleaseRP", "StartARTIM"]),
        (State.STA6, Event.EVT15, ["send:AAbort", "StartARTIM"]),
        (State.STA4, Event.EVT15, ["StopARTIM", "CloseTransport"]),
        (State.STA6, Event.EVT16, ["ind:A_ABORT_INDICATION", "CloseTransport"]),
        (State.STA6, Event.EVT17, ["ind:A_P_ABORT_INDICATION"]),
        (State.STA2, Event.EVT17, ["StopARTIM"]),
        (State.STA13, Event.EVT3, []),
        (State.STA13, Event.EVT6, ["send:AAbort"]),
        (State.STA6, Event.EVT19, ["send:AAbort", "ind:A_P_ABORT_INDICATION", "StartARTIM"]),
        (State.STA2, Event.EVT18, ["StopARTIM", "CloseTransport"]),
    ],
)
def test_action_effects(state: State, event: Event, effects: list[str]) -> None:
    assert _kinds(step(state, _inp(event), requestor=True)[1]) == effects


def test_ae6_rejects_unsupported_protocol_version() -> None:
    """A request without bit 0 of the protocol version: RJ 1/2/2, then Sta13 (PS3.8 9.3.2)."""
    rq = AAssociateRQ("A", "B", (), protocol_version=2)
    state, effects = step(State.STA2, Input(Event.EVT6, rq), requestor=False)
    assert state is State.STA13
    sent = [e.pdu for e in effects if isinstance(e, SendPDU)]
    assert sent == [AAssociateRJ(1, 2, 2)]
    assert isinstance(effects[-1], StartARTIM)


def test_ar8_depends_on_role() -> None:
    """Release collision: the requestor goes to Sta9, the acceptor to Sta10."""
    assert step(State.STA7, _inp(Event.EVT12), requestor=True)[0] is State.STA9
    assert step(State.STA7, _inp(Event.EVT12), requestor=False)[0] is State.STA10


def test_aa8_carries_the_decoder_reason() -> None:
    inp = Input(Event.EVT19, reason=AbortReason.INVALID_PDU_PARAMETER_VALUE)
    _, effects = step(State.STA6, inp, requestor=False)
    assert effects[0] == SendPDU(AAbort(AbortSource.SERVICE_PROVIDER, 6))
    _, effects = step(State.STA6, Input(Event.EVT3, AC), requestor=False)
    assert effects[0] == SendPDU(AAbort(AbortSource.SERVICE_PROVIDER, AbortReason.UNEXPECTED_PDU))


def test_aa1_sends_user_abort_for_evt15_and_provider_abort_in_sta2() -> None:
    _, effects = step(State.STA6, Input(Event.EVT15, AAbort(0, 0)), requestor=True)
    assert effects[0] == SendPDU(AAbort(0, 0))
    _, effects = step(State.STA2, Input(Event.EVT10, PDATA), requestor=False)
    assert effects[0] == SendPDU(AAbort(2, AbortReason.UNEXPECTED_PDU))


def test_aa3_tells_user_abort_from_provider_abort() -> None:
    _, user = step(State.STA6, Input(Event.EVT16, USER_ABORT), requestor=True)
    _, provider = step(State.STA6, Input(Event.EVT16, PROVIDER_ABORT), requestor=True)
    assert user[0] == Indicate(Primitive.A_ABORT_INDICATION, USER_ABORT)
    assert provider[0] == Indicate(Primitive.A_P_ABORT_INDICATION, PROVIDER_ABORT)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(list(Event)), max_size=40), st.booleans())
def test_any_event_sequence_stays_in_the_table(events: list[Event], requestor: bool) -> None:
    """Whatever arrives, the machine only moves along table cells or refuses locally."""
    state = State.STA1
    for event in events:
        try:
            new_state, _ = step(state, _inp(event), requestor)
        except LocalProtocolError:
            assert (state, event) not in TRANSITIONS
            continue
        assert (state, event) in TRANSITIONS
        state = new_state
