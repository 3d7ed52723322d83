# The states asserted here change behind mypy's back (through method calls on the
# pair), so its narrowing of one assert would flag the next one as impossible.
# mypy: disable-error-code="comparison-overlap"
"""The sans-I/O connection, driven as a back-to-back pair with a fake clock (PS3.8 9.2).

Every exchange goes through :class:`tests.ul.pair.Pair`, which parses all
that one side sends and checks each event against the state it leaves the
receiver in; the tests here check the life cycles of PS3.8 9.2 on top.
"""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stellarpacs.errors import AbortReason, AbortSource, LocalProtocolError
from stellarpacs.uids import EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN, VERIFICATION
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
from stellarpacs.ul.fsm import TRANSITIONS, State
from stellarpacs.ul.fsm import Event as FsmEvent
from stellarpacs.ul.negotiation import AcceptorPolicy, negotiate
from stellarpacs.ul.pdus import (
    AAbort,
    AAssociateAC,
    AAssociateRJ,
    AAssociateRQ,
    AReleaseRP,
    AReleaseRQ,
    PDataTF,
    PresentationContextRQ,
    PresentationDataValue,
    UserInformation,
)
from tests.ul.pair import Pair, Side, random_splitter

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
ARTIM = 30.0

POLICY = AcceptorPolicy(
    ae_title="STELLAR",
    abstract_syntaxes={
        VERIFICATION: (IMPLICIT_VR_LITTLE_ENDIAN,),
        CT_IMAGE_STORAGE: (EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN),
    },
)
RQ = AAssociateRQ(
    called_ae_title="STELLAR",
    calling_ae_title="MODALITY",
    presentation_contexts=(
        PresentationContextRQ(1, VERIFICATION, (IMPLICIT_VR_LITTLE_ENDIAN,)),
        PresentationContextRQ(
            3, CT_IMAGE_STORAGE, (IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN)
        ),
    ),
    user_information=UserInformation(16384, "1.2.3.4", "TEST_SCU"),
)
_ANSWER, _ = negotiate(RQ, POLICY)
assert isinstance(_ANSWER, AAssociateAC)
AC: AAssociateAC = _ANSWER
RJ = AAssociateRJ(result=2, source=3, reason=2)


def pdata(data: bytes = b"\x01\x02", context_id: int = 1) -> PDataTF:
    return PDataTF(
        (
            PresentationDataValue(context_id, True, False, data[:1]),
            PresentationDataValue(context_id, True, True, data[1:]),
        )
    )


def associated(max_pdu_length: int = 16384) -> Pair:
    """A pair in Sta6 on both sides, every event of the establishment consumed."""
    pair = Pair(artim_timeout=ARTIM, max_pdu_length=max_pdu_length)
    pair.connect(RQ)
    pair.transfer()
    assert pair.acc.take() == [AssociationRequested(RQ)]
    pair.acc.conn.accept(AC)
    pair.transfer()
    assert pair.req.take() == [AssociationAccepted(AC)]
    assert pair.req.state is pair.acc.state is State.STA6
    return pair


def sent_abort(conn: Connection) -> AAbort:
    """The one PDU the connection has to send, which must be an A-ABORT."""
    pdu = decode_pdu(conn.data_to_send())
    assert isinstance(pdu, AAbort)
    return pdu


# --- life cycles -------------------------------------------------------------------------


def test_full_life_cycle() -> None:
    pair = Pair(artim_timeout=ARTIM)
    pair.connect(RQ)
    assert pair.req.state is State.STA5
    assert pair.acc.state is State.STA2
    assert pair.acc.conn.next_deadline() == pair.now + ARTIM  # AE-5 starts ARTIM

    pair.now += 1
    pair.transfer()
    assert pair.acc.take() == [AssociationRequested(RQ)]
    assert pair.acc.state is State.STA3
    assert pair.acc.conn.next_deadline() is None  # AE-6 stops it

    answer, contexts = negotiate(RQ, POLICY)
    assert isinstance(answer, AAssociateAC)
    assert {c.context_id: c.transfer_syntax for c in contexts.values()} == {
        1: IMPLICIT_VR_LITTLE_ENDIAN,
        3: EXPLICIT_VR_LITTLE_ENDIAN,
    }
    pair.acc.conn.accept(answer)
    assert pair.acc.conn.is_established
    pair.transfer()
    assert pair.req.take() == [AssociationAccepted(answer)]
    assert pair.req.conn.is_established and pair.acc.conn.is_established

    to_acceptor, to_requestor = pdata(b"\x00command"), pdata(b"\x01dataset", context_id=3)
    pair.req.conn.send_data(to_acceptor)
    pair.acc.conn.send_data(to_requestor)
    pair.transfer()
    assert pair.acc.take() == [DataReceived(to_acceptor)]
    assert pair.req.take() == [DataReceived(to_requestor)]

    pair.req.conn.release()
    assert pair.req.state is State.STA7
    pair.transfer()
    assert pair.acc.take() == [ReleaseRequested(collision=False)]
    assert pair.acc.state is State.STA8

    pair.now += 5
    pair.acc.conn.release_response(now=pair.now)
    assert pair.acc.state is State.STA13
    assert pair.acc.conn.next_deadline() == pair.now + ARTIM  # AR-4
    pair.transfer()
    assert pair.req.take() == [ReleaseConfirmed()]
    assert pair.req.state is State.STA1 and pair.req.conn.is_closed
    assert pair.req.conn.wants_close  # AR-3: the requestor closes
    assert pair.acc.state is State.STA13 and not pair.acc.conn.wants_close

    pair.close(pair.req)
    pair.transfer()
    assert pair.acc.state is State.STA1  # AR-5
    assert pair.acc.conn.next_deadline() is None
    assert pair.acc.take() == [] and pair.req.take() == []

    assert pair.req.sent == [RQ, to_acceptor, AReleaseRQ()]
    assert pair.acc.sent == [answer, to_requestor, AReleaseRP()]


def test_several_pdus_in_one_read_and_byte_by_byte() -> None:
    pair = associated()
    pdus = [pdata(bytes([n, n])) for n in range(3)]
    wire = b"".join(encode_pdu(p) for p in pdus)
    pair.acc.conn.receive_data(wire, pair.now)
    assert [pair.acc.conn.next_event() for _ in range(4)] == [*map(DataReceived, pdus), None]
    for byte in wire:
        pair.acc.conn.receive_data(bytes([byte]), pair.now)
    assert [pair.acc.conn.next_event() for _ in range(4)] == [*map(DataReceived, pdus), None]


def test_data_flows_while_a_release_is_pending() -> None:
    """AR-7 and AR-6: the side asked to release may still send P-DATA (PS3.8 9.2.2)."""
    pair = associated()
    pair.req.conn.release()
    pair.transfer()
    assert pair.acc.take() == [ReleaseRequested()]
    late = pdata(b"\x02late")
    pair.acc.conn.send_data(late)
    assert pair.acc.state is State.STA8
    pair.transfer()
    assert pair.req.take() == [DataReceived(late)]
    assert pair.req.state is State.STA7
    pair.acc.conn.release_response(now=pair.now)
    pair.transfer()
    assert pair.req.take() == [ReleaseConfirmed()]


def test_acceptor_initiated_release() -> None:
    pair = associated()
    pair.acc.conn.release()
    pair.transfer()
    assert pair.req.take() == [ReleaseRequested()]
    pair.req.conn.release_response(now=pair.now)
    assert pair.req.state is State.STA13
    pair.transfer()
    assert pair.acc.take() == [ReleaseConfirmed()]
    assert pair.acc.state is State.STA1 and pair.acc.conn.wants_close
    pair.close(pair.acc)
    pair.transfer()
    assert pair.req.state is State.STA1


def test_reject_then_artim_when_the_requestor_never_closes() -> None:
    pair = Pair(artim_timeout=ARTIM)
    pair.connect(RQ)
    pair.transfer()
    assert pair.acc.take() == [AssociationRequested(RQ)]
    answer, contexts = negotiate(RQ, POLICY, at_capacity=True)
    assert answer == RJ and contexts == {}

    pair.now += 2
    pair.acc.conn.reject(RJ, now=pair.now)
    assert pair.acc.state is State.STA13
    deadline = pair.now + ARTIM
    assert pair.acc.conn.next_deadline() == deadline  # AE-8
    pair.transfer()
    assert pair.req.take() == [AssociationDeclined(RJ)]
    assert pair.req.state is State.STA1 and pair.req.conn.wants_close  # AE-4

    pair.advance(ARTIM - 0.5)
    assert pair.acc.state is State.STA13 and not pair.acc.conn.wants_close
    pair.advance(0.5)
    assert pair.now == deadline
    assert pair.acc.state is State.STA1 and pair.acc.conn.wants_close  # AA-2
    assert pair.acc.conn.next_deadline() is None
    assert pair.acc.conn.data_to_send() == b"" and pair.acc.take() == []


def test_provider_rejects_a_protocol_version_without_bit_0() -> None:
    """AE-6: RJ 1/2/2 (protocol version not supported), no indication (PS3.8 9.3.2)."""
    pair = Pair(artim_timeout=ARTIM)
    pair.connect(replace(RQ, protocol_version=2))
    pair.transfer()
    assert pair.acc.take() == []
    assert pair.acc.state is State.STA13
    assert pair.req.take() == [AssociationDeclined(AAssociateRJ(1, 2, 2))]


# --- ARTIM -------------------------------------------------------------------------------


def test_artim_acceptor_that_hears_nothing() -> None:
    conn = Connection(requestor=False, artim_timeout=ARTIM)
    conn.connection_made(100.0)
    assert conn.state is State.STA2
    assert conn.next_deadline() == 100.0 + ARTIM
    conn.handle_timeout(100.0 + ARTIM - 0.001)
    assert conn.state is State.STA2 and not conn.wants_close
    assert conn.next_deadline() == 100.0 + ARTIM
    conn.handle_timeout(100.0 + ARTIM)
    assert conn.state is State.STA1 and conn.wants_close  # AA-2: close, no PDU
    assert conn.next_deadline() is None
    assert conn.data_to_send() == b"" and conn.next_event() is None
    conn.handle_timeout(1e9)  # a stale timer is harmless
    assert conn.state is State.STA1


def test_artim_after_release_response_when_the_peer_never_closes() -> None:
    pair = associated()
    pair.req.conn.release()
    pair.transfer()
    pair.now += 10
    pair.acc.conn.release_response(now=pair.now)
    pair.transfer()
    assert pair.req.take() == [ReleaseConfirmed()]
    pair.advance(ARTIM - 1)
    assert pair.acc.state is State.STA13
    pair.advance(1)
    assert pair.acc.state is State.STA1 and pair.acc.conn.wants_close


def test_artim_runs_from_the_last_time_seen_when_no_time_is_given() -> None:
    pair = associated()
    pair.req.conn.release()
    pair.transfer()
    seen = pair.now
    pair.acc.conn.release_response()
    assert pair.acc.conn.next_deadline() == seen + ARTIM


def test_artim_is_stopped_when_the_association_request_arrives() -> None:
    pair = Pair(artim_timeout=ARTIM)
    pair.connect(RQ)
    pair.transfer()
    pair.advance(10 * ARTIM)  # an acceptor waiting for its user is not timed out
    assert pair.acc.state is State.STA3


# --- release collision -------------------------------------------------------------------


def test_release_collision() -> None:
    """PS3.8 9.2.3 and Table 9-10: Sta7 -> Sta9 -> Sta11 -> Sta1 and Sta7 -> Sta10 -> Sta12."""
    pair = associated()
    pair.req.conn.release()
    pair.acc.conn.release()
    assert pair.req.state is pair.acc.state is State.STA7
    pair.flush()
    pair.deliver(pair.req)
    pair.deliver(pair.acc)
    assert pair.req.take() == [ReleaseRequested(collision=True)]
    assert pair.acc.take() == [ReleaseRequested(collision=True)]
    assert pair.req.state is State.STA9  # AR-8, requestor
    assert pair.acc.state is State.STA10  # AR-8, acceptor

    with pytest.raises(LocalProtocolError):
        pair.acc.conn.release_response()  # the acceptor waits for the requestor's RP
    assert pair.acc.state is State.STA10

    pair.req.conn.release_response(now=pair.now)
    assert pair.req.state is State.STA11  # AR-9
    pair.transfer()
    assert pair.acc.take() == [ReleaseConfirmed()]  # AR-10
    assert pair.acc.state is State.STA12
    assert pair.req.state is State.STA11 and pair.req.take() == []

    pair.acc.conn.release_response(now=pair.now)
    assert pair.acc.state is State.STA13  # AR-4
    assert pair.acc.conn.next_deadline() == pair.now + ARTIM
    pair.transfer()
    assert pair.req.take() == [ReleaseConfirmed()]  # AR-3
    assert pair.req.state is State.STA1 and pair.req.conn.wants_close
    pair.close(pair.req)
    pair.transfer()
    assert pair.acc.state is State.STA1
    assert pair.req.sent[1:] == [AReleaseRQ(), AReleaseRP()]
    assert pair.acc.sent[1:] == [AReleaseRQ(), AReleaseRP()]


# --- abort -------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["req", "acc"])
def test_user_abort_reaches_the_peer_as_a_user_abort(who: str) -> None:
    pair = associated()
    side: Side = getattr(pair, who)
    other = pair.peer(side)
    pair.now += 3
    side.conn.abort(now=pair.now)
    assert side.state is State.STA13  # AA-1
    assert side.conn.next_deadline() == pair.now + ARTIM
    pair.transfer()
    assert side.sent[-1] == AAbort(source=AbortSource.SERVICE_USER, reason=0)
    assert other.take() == [Aborted(by_peer_user=True, source=0, reason=0)]  # AA-3
    assert other.state is State.STA1 and other.conn.wants_close
    assert side.take() == []
    pair.close(other)
    pair.transfer()
    assert side.state is State.STA1 and side.conn.next_deadline() is None  # AR-5


def test_abort_by_the_requestor_before_the_answer() -> None:
    pair = Pair(artim_timeout=ARTIM)
    pair.connect(RQ)
    pair.transfer()
    assert pair.acc.take() == [AssociationRequested(RQ)]
    pair.req.conn.abort()
    pair.transfer()
    assert pair.acc.take() == [Aborted(by_peer_user=True, source=0, reason=0)]
    assert pair.acc.state is State.STA1


def test_abort_before_the_transport_is_connected() -> None:
    conn = Connection(requestor=True)
    conn.request(0.0)
    conn.abort()
    assert conn.state is State.STA1 and conn.wants_close  # AA-2
    assert conn.data_to_send() == b""


def test_acceptor_abort_before_the_request_drops_the_connection() -> None:
    pair = Pair(artim_timeout=ARTIM)
    pair.connect(RQ)
    pair.acc.conn.abort()
    assert pair.acc.state is State.STA2 and pair.acc.conn.wants_close
    pair.transfer()  # the RQ arrives after the decision: ignored
    assert pair.acc.take() == [] and pair.acc.state is State.STA2
    pair.close(pair.acc)
    pair.transfer()
    assert pair.acc.state is State.STA1  # AA-5
    assert pair.req.take() == [Aborted(by_peer_user=False)]  # AA-4
    assert pair.req.state is State.STA1


def test_provider_abort_from_the_peer() -> None:
    pair = associated()
    abort = AAbort(source=AbortSource.SERVICE_PROVIDER, reason=AbortReason.UNEXPECTED_PDU)
    pair.inject(pair.acc, encode_pdu(abort))
    assert pair.acc.take() == [Aborted(by_peer_user=False, source=2, reason=2)]  # AA-3
    assert pair.acc.state is State.STA1 and pair.acc.conn.wants_close
    assert pair.acc.conn.data_to_send() == b""  # no answer to an A-ABORT


def test_abort_after_the_association_is_gone_is_a_no_op() -> None:
    pair = associated()
    pair.req.conn.abort()
    pair.transfer()
    for side in (pair.req, pair.acc):
        side.conn.abort()  # Sta13 and Sta1
    assert pair.req.conn.data_to_send() == pair.acc.conn.data_to_send() == b""
    assert pair.req.state is State.STA13 and pair.acc.state is State.STA1


# --- protocol errors from the peer -------------------------------------------------------


def _rq_with_an_ac_item() -> bytes:
    """An A-ASSOCIATE-RQ carrying an AC presentation context item (0x21)."""
    wire = bytearray(encode_pdu(AC))
    wire[0] = 0x01
    return bytes(wire)


MALFORMED = {
    "unknown PDU type": (b"\x09\x00\x00\x00\x00\x04\x00\x00\x00\x00", 1),
    "noise": (b"\xff" + bytes(range(40)), 1),
    "A-RELEASE-RQ of length 5": (b"\x05\x00\x00\x00\x00\x05" + bytes(5), 6),
    "PDV item of length 1": (b"\x04\x00\x00\x00\x00\x05\x00\x00\x00\x01\x01", 6),
    "RQ with an AC item": (_rq_with_an_ac_item(), 5),
}


@pytest.mark.parametrize("raw, reason", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_pdu_in_sta2(raw: bytes, reason: int) -> None:
    conn = Connection(requestor=False, artim_timeout=ARTIM)
    conn.connection_made(0.0)
    conn.receive_data(raw, 1.0)
    assert sent_abort(conn) == AAbort(source=AbortSource.SERVICE_PROVIDER, reason=reason)
    assert conn.last_error is not None and conn.last_error.reason == reason
    assert conn.state is State.STA13  # AA-1
    assert conn.next_deadline() == 1.0 + ARTIM
    assert conn.next_event() is None  # nobody to tell yet
    conn.receive_data(encode_pdu(RQ), 2.0)  # the stream lost its framing: ignored
    assert conn.state is State.STA13 and conn.next_event() is None
    assert conn.data_to_send() == b""


@pytest.mark.parametrize("raw, reason", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_pdu_in_sta6(raw: bytes, reason: int) -> None:
    pair = associated()
    pair.inject(pair.acc, raw)
    assert pair.acc.take() == [Aborted(by_peer_user=False, source=2, reason=reason)]  # AA-8
    assert pair.acc.state is State.STA13
    assert pair.acc.conn.last_error is not None
    assert pair.acc.conn.last_error.reason == reason
    pair.inject(pair.acc, encode_pdu(AAbort(0, 0)))  # would be AA-2 if it were read
    assert pair.acc.state is State.STA13
    pair.transfer()
    assert pair.acc.sent[-1] == AAbort(source=2, reason=reason)
    assert pair.req.take() == [Aborted(by_peer_user=False, source=2, reason=reason)]
    assert pair.req.state is State.STA1


def test_malformed_pdu_split_across_reads() -> None:
    pair = associated()
    raw = MALFORMED["A-RELEASE-RQ of length 5"][0]
    pair.inject(pair.acc, raw[:3])
    assert pair.acc.state is State.STA6 and pair.acc.take() == []
    pair.inject(pair.acc, raw[3:])
    assert pair.acc.take() == [Aborted(False, 2, 6)]


def test_oversize_p_data_is_refused_from_its_header() -> None:
    pair = associated(max_pdu_length=16384)
    big = PDataTF((PresentationDataValue(1, False, True, bytes(16380)),))
    raw = encode_pdu(big)
    assert int.from_bytes(raw[2:6], "big") == 16386
    pair.inject(pair.acc, raw[:10])
    assert pair.acc.take() == [Aborted(by_peer_user=False, source=2, reason=6)]
    assert pair.acc.conn.last_error is not None
    assert pair.acc.conn.last_error.reason == AbortReason.INVALID_PDU_PARAMETER_VALUE


def test_p_data_of_exactly_the_maximum_length_is_accepted() -> None:
    pair = associated(max_pdu_length=16384)
    fits = PDataTF((PresentationDataValue(1, False, True, bytes(16378)),))
    assert len(encode_pdu(fits)) == 6 + 16384
    pair.acc.conn.send_data(fits)  # the acceptor's own limit is on what it receives
    pair.req.conn.send_data(fits)
    pair.transfer()
    assert pair.acc.take() == [DataReceived(fits)]
    assert pair.req.take() == [DataReceived(fits)]


@pytest.mark.parametrize("pdu", [AC, RQ, AAssociateRJ(1, 1, 1)], ids=["AC", "RQ", "RJ"])
def test_unexpected_pdu_in_sta6(pdu: AAssociateAC | AAssociateRQ | AAssociateRJ) -> None:
    pair = associated()
    pair.inject(pair.acc, encode_pdu(pdu))
    assert pair.acc.take() == [Aborted(by_peer_user=False, source=2, reason=2)]  # AA-8
    assert pair.acc.state is State.STA13
    assert pair.acc.conn.last_error is None  # well formed, just out of place
    assert sent_abort(pair.acc.conn) == AAbort(source=2, reason=AbortReason.UNEXPECTED_PDU)


@pytest.mark.parametrize(
    "pdu", [pdata(), AReleaseRQ(), AReleaseRP(), AC], ids=["P-DATA", "RL-RQ", "RL-RP", "AC"]
)
def test_unexpected_pdu_in_sta2(pdu: PDataTF | AReleaseRQ | AReleaseRP | AAssociateAC) -> None:
    conn = Connection(requestor=False)
    conn.connection_made(0.0)
    conn.receive_data(encode_pdu(pdu), 0.0)
    assert conn.state is State.STA13  # AA-1
    assert sent_abort(conn) == AAbort(source=2, reason=2)
    assert conn.next_event() is None


def test_unexpected_p_data_at_the_requestor_awaiting_the_answer() -> None:
    pair = Pair(artim_timeout=ARTIM)
    pair.connect(RQ)
    pair.inject(pair.req, encode_pdu(pdata()))
    assert pair.req.take() == [Aborted(by_peer_user=False, source=2, reason=2)]  # AA-8
    assert pair.req.state is State.STA13


def test_pdus_after_one_that_ends_the_association_are_not_read() -> None:
    pair = associated()
    wire = encode_pdu(AAbort(0, 0)) + encode_pdu(pdata())
    pair.acc.conn.receive_data(wire, pair.now)
    assert pair.acc.conn.next_event() == Aborted(True, 0, 0)
    assert pair.acc.conn.next_event() is None


# --- the transport -----------------------------------------------------------------------


def test_connection_lost_in_sta6() -> None:
    pair = associated()
    pair.close(pair.req)
    pair.transfer()
    for side in (pair.req, pair.acc):
        assert side.take() == [Aborted(by_peer_user=False, source=None, reason=None)]  # AA-4
        assert side.state is State.STA1


def test_close_indication_in_sta1_is_ignored() -> None:
    """After our own close the adapter's connection_lost still reports it."""
    pair = associated()
    pair.req.conn.abort()
    pair.transfer()
    assert pair.acc.state is State.STA1
    pair.acc.conn.receive_data(b"", pair.now)
    pair.acc.conn.receive_data(b"", pair.now)
    assert pair.acc.state is State.STA1 and pair.acc.conn.next_event() is None


def test_bytes_in_sta1_are_ignored() -> None:
    conn = Connection(requestor=False)
    conn.receive_data(encode_pdu(RQ), 0.0)
    assert conn.state is State.STA1 and conn.next_event() is None
    assert conn.data_to_send() == b""


# --- local misuse ------------------------------------------------------------------------


def _fresh_requestor() -> Connection:
    return Connection(requestor=True)


def _sta6_acceptor() -> Connection:
    return associated().acc.conn


def _sta3_acceptor() -> Connection:
    pair = Pair()
    pair.connect(RQ)
    pair.transfer()
    return pair.acc.conn


MISUSE = {
    "send_data in Sta1": (_fresh_requestor, lambda c: c.send_data(pdata())),
    "release in Sta1": (_fresh_requestor, lambda c: c.release()),
    "release_response in Sta1": (_fresh_requestor, lambda c: c.release_response()),
    "accept in Sta1": (_fresh_requestor, lambda c: c.accept(AC)),
    "connection_made on a requestor": (_fresh_requestor, lambda c: c.connection_made(0.0)),
    "transport_connected before request": (
        _fresh_requestor,
        lambda c: c.transport_connected(0.0, RQ),
    ),
    "accept in Sta6": (_sta6_acceptor, lambda c: c.accept(AC)),
    "reject in Sta6": (_sta6_acceptor, lambda c: c.reject(RJ)),
    "release_response in Sta6": (_sta6_acceptor, lambda c: c.release_response()),
    "request on an acceptor": (_sta6_acceptor, lambda c: c.request(0.0)),
    "send_data in Sta3": (_sta3_acceptor, lambda c: c.send_data(pdata())),
    "unencodable AC in Sta3": (
        _sta3_acceptor,
        lambda c: c.accept(replace(AC, called_ae_title="SEVENTEEN_CHARS_X")),
    ),
    "unencodable P-DATA in Sta6": (
        _sta6_acceptor,
        lambda c: c.send_data(PDataTF((PresentationDataValue(2, True, True, b""),))),
    ),
}


@pytest.mark.parametrize("make, misuse", MISUSE.values(), ids=MISUSE.keys())
def test_local_misuse_changes_nothing(make, misuse) -> None:  # type: ignore[no-untyped-def]
    conn = make()
    conn.data_to_send()
    before = (conn.state, conn.next_deadline(), conn.wants_close, conn.wants_open)
    with pytest.raises(LocalProtocolError):
        misuse(conn)
    assert (conn.state, conn.next_deadline(), conn.wants_close, conn.wants_open) == before
    assert conn.data_to_send() == b"" and conn.next_event() is None


# --- random interleavings ----------------------------------------------------------------

# The user's primitives and the event each one is (PS3.8 Table 9-10).
USER_OPS = {
    "accept": FsmEvent.EVT7,
    "reject": FsmEvent.EVT8,
    "send": FsmEvent.EVT9,
    "release": FsmEvent.EVT11,
    "release_response": FsmEvent.EVT14,
    "abort": FsmEvent.EVT15,
}
# "act" picks a primitive the table allows in the current state, weighted by
# repeats; "release" (often, to provoke collisions) and "abort" (seldom, so
# that most runs get to release) are tried in any state; "misuse" picks any
# primitive, allowed or not.
_ACT_CHOICES = ["accept"] * 3 + ["send"] * 3 + ["release_response"] * 3 + ["reject", "release"]
OPS = st.tuples(
    st.sampled_from(
        ["act"] * 8 + ["deliver"] * 10 + ["release"] * 2 + ["misuse", "close", "tick", "abort"]
    ),
    st.sampled_from(["req", "acc"]),
    st.integers(1, 40),
)


def _choose(kind: str, side: Side, arg: int) -> str:
    if kind == "misuse":
        return list(USER_OPS)[arg % len(USER_OPS)]
    if kind != "act":
        return kind
    allowed = [op for op in _ACT_CHOICES if (side.state, USER_OPS[op]) in TRANSITIONS]
    return allowed[arg % len(allowed)] if allowed else "nothing"


def _run(pair: Pair, name: str, side: Side, arg: int) -> None:
    conn = side.conn
    match name:
        case "accept":
            conn.accept(AC)
        case "reject":
            conn.reject(RJ, now=pair.now)
        case "send":
            conn.send_data(pdata(bytes([arg]) * arg))
        case "release":
            conn.release()
        case "release_response":
            conn.release_response(now=pair.now)
        case "abort":
            conn.abort(now=pair.now)
        case "deliver":
            pair.deliver(side, 1 + arg % 4)
        case "close":
            if pair.open:
                pair.close(side)
        case "tick":
            pair.advance(arg)


def _check_invariants(side: Side) -> None:
    conn = side.conn
    assert isinstance(conn.state, State)
    # ARTIM runs exactly while waiting for a request (Sta2) or for the close (Sta13).
    assert (conn.next_deadline() is not None) == (conn.state in (State.STA2, State.STA13))
    if conn.wants_close:
        assert conn.state in (State.STA1, State.STA2)


_FINAL = (Aborted, AssociationDeclined)


def _check_event_sequence(events: list[ConnectionEvent], requestor: bool) -> None:
    opening = AssociationAccepted if requestor else AssociationRequested
    established = False
    release_seen = False
    for index, event in enumerate(events):
        assert not any(isinstance(e, _FINAL) for e in events[:index]), events
        if isinstance(event, opening):
            assert index == 0
            established = True
        elif isinstance(event, DataReceived):
            assert established and not release_seen, events
        elif isinstance(event, ReleaseRequested | ReleaseConfirmed):
            assert established, events
            release_seen = True


def _settle(pair: Pair) -> None:
    """Whatever happened, both sides can be brought back to Sta1."""
    pair.transfer()
    for side in (pair.req, pair.acc):
        side.conn.abort(now=pair.now)
    pair.transfer()
    for side in (pair.req, pair.acc):
        if pair.open and side.conn.wants_close:
            pair.close(side)
    pair.transfer()
    pair.advance(ARTIM)


@settings(max_examples=200, deadline=None)
@given(
    established=st.sampled_from([True, True, True, False]),
    ops=st.lists(OPS, min_size=10, max_size=50),
    rng=st.randoms(use_true_random=False),
)
def test_random_interleavings(
    established: bool, ops: list[tuple[str, str, int]], rng: random.Random
) -> None:
    pair = Pair(artim_timeout=ARTIM, splitter=random_splitter(rng))
    pair.connect(RQ)
    if established:  # most runs start in Sta6 to spend their steps on data and release
        pair.transfer()
        pair.acc.conn.accept(AC)
        pair.transfer()
    for kind, who, arg in ops:
        side: Side = getattr(pair, who)
        pair.flush()
        before = (side.state, side.conn.next_deadline())
        try:
            _run(pair, _choose(kind, side, arg), side, arg)
        except LocalProtocolError:
            assert kind == "misuse" or kind in USER_OPS
            assert (side.state, side.conn.next_deadline()) == before
            assert side.conn.data_to_send() == b""
        for each in (pair.req, pair.acc):
            _check_invariants(each)

    _settle(pair)
    for side in (pair.req, pair.acc):
        assert side.state is State.STA1
        assert side.conn.next_deadline() is None
        _check_event_sequence(side.events, side.conn.requestor)
        # What arrived is what the peer sent, in order, with nothing invented.
        received = [e.pdu for e in side.events if isinstance(e, DataReceived)]
        sent = [p for p in pair.peer(side).sent if isinstance(p, PDataTF)]
        assert received == sent[: len(received)]
