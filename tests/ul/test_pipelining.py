# The states asserted here change behind mypy's back (through method calls on the
# connection), so its narrowing of one assert would flag the next one as impossible.
# mypy: disable-error-code="comparison-overlap"
"""PDUs that follow an A-ASSOCIATE-RQ before it is answered (PS3.8 9.2, Table 9-10).

A requestor in Sta5 may only send an A-ABORT; an eager one pipelines its
A-RELEASE-RQ (or more) behind the RQ, in the same TCP segment.  The acceptor
holds those bytes while it awaits its user's response (Sta3) and reads them
once the response is issued, so they meet the state the peer meant.  An
A-ABORT is the one PDU read at once: it is valid in Sta3 (AA-3).  A response
issued after the attempt ended that way is not an error (PS3.8 9.2).
"""

from __future__ import annotations

import pytest

from stellarpacs.errors import LocalProtocolError
from stellarpacs.ul.codec import decode_pdu, encode_pdu
from stellarpacs.ul.connection import (
    Aborted,
    AssociationRequested,
    Connection,
    ConnectionEvent,
    DataReceived,
    ReleaseRequested,
)
from stellarpacs.ul.fsm import State
from stellarpacs.ul.pdus import PDU, AAbort, AReleaseRP, AReleaseRQ
from tests.ul.pair import Pair
from tests.ul.test_connection import AC, ARTIM, RJ, RQ, pdata

RELEASE = encode_pdu(AReleaseRQ())
USER_ABORT = encode_pdu(AAbort(source=0, reason=0))


def acceptor(*chunks: bytes, now: float = 10.0) -> Connection:
    """An acceptor in Sta2 fed ``chunks``, one read each."""
    conn = Connection(requestor=False, artim_timeout=ARTIM)
    conn.connection_made(now)
    for chunk in chunks:
        conn.receive_data(chunk, now)
    return conn


def events(conn: Connection) -> list[ConnectionEvent]:
    out = []
    while (event := conn.next_event()) is not None:
        out.append(event)
    return out


def sent(conn: Connection) -> list[PDU]:
    """The PDUs the connection has to send, decoded."""
    blob, pdus, pos = conn.data_to_send(), [], 0
    while pos < len(blob):
        end = pos + 6 + int.from_bytes(blob[pos + 2 : pos + 6], "big")
        pdus.append(decode_pdu(blob[pos:end]))
        pos = end
    return pdus


# --- held while the user decides ---------------------------------------------------------


@pytest.mark.parametrize("split", ["one read", "byte by byte"])
def test_release_pipelined_behind_the_request_is_a_normal_release(split: str) -> None:
    wire = encode_pdu(RQ) + RELEASE
    chunks = [wire] if split == "one read" else [bytes([b]) for b in wire]
    conn = acceptor(*chunks)
    assert events(conn) == [AssociationRequested(RQ)]
    assert conn.state is State.STA3 and sent(conn) == []  # held, not AA-8
    conn.accept(AC)
    assert events(conn) == [ReleaseRequested(collision=False)]  # AR-2 in Sta6
    assert conn.state is State.STA8
    conn.release_response(now=11.0)
    assert sent(conn) == [AC, AReleaseRP()]
    assert conn.state is State.STA13 and conn.next_deadline() == 11.0 + ARTIM  # AR-4


def test_data_and_release_pipelined_are_read_in_order_after_the_accept() -> None:
    data = pdata(b"\x00echo")
    conn = acceptor(encode_pdu(RQ) + encode_pdu(data) + RELEASE)
    assert events(conn) == [AssociationRequested(RQ)]
    conn.accept(AC)
    assert events(conn) == [DataReceived(data), ReleaseRequested()]
    assert conn.state is State.STA8


def test_second_request_pipelined_is_aa8_once_established() -> None:
    conn = acceptor(encode_pdu(RQ) * 2)
    assert events(conn) == [AssociationRequested(RQ)] and conn.state is State.STA3
    conn.accept(AC)
    assert events(conn) == [Aborted(by_peer_user=False, source=2, reason=2)]  # AA-8 in Sta6
    assert sent(conn) == [AC, AAbort(source=2, reason=2)]
    assert conn.state is State.STA13 and conn.last_error is None


def test_pipelined_release_after_a_reject_is_ignored() -> None:
    conn = acceptor(encode_pdu(RQ) + RELEASE)
    events(conn)
    conn.reject(RJ, now=12.0)
    assert events(conn) == []  # AA-6 in Sta13
    assert sent(conn) == [RJ]
    assert conn.state is State.STA13 and conn.next_deadline() == 12.0 + ARTIM


def test_bytes_of_later_reads_are_held_too() -> None:
    conn = acceptor(encode_pdu(RQ) + RELEASE[:3])
    conn.receive_data(RELEASE[3:], 10.0)
    conn.receive_data(USER_ABORT, 10.0)  # behind the release: read after it
    assert events(conn) == [AssociationRequested(RQ)] and conn.state is State.STA3
    conn.accept(AC)
    assert events(conn) == [ReleaseRequested(), Aborted(by_peer_user=True, source=0, reason=0)]
    assert conn.state is State.STA1 and conn.wants_close


def test_garbage_pipelined_is_answered_once_established() -> None:
    conn = acceptor(encode_pdu(RQ) + b"\xff" * 12)
    assert events(conn) == [AssociationRequested(RQ)] and sent(conn) == []
    conn.accept(AC)
    assert events(conn) == [Aborted(by_peer_user=False, source=2, reason=1)]  # AA-8
    assert sent(conn) == [AC, AAbort(source=2, reason=1)]
    assert conn.last_error is not None


# --- the attempt ends before the answer --------------------------------------------------


@pytest.mark.parametrize("separate", [False, True], ids=["same read", "later read"])
def test_abort_behind_the_request_is_read_at_once(separate: bool) -> None:
    chunks = [encode_pdu(RQ), USER_ABORT] if separate else [encode_pdu(RQ) + USER_ABORT]
    conn = acceptor(*chunks)
    assert events(conn) == [AssociationRequested(RQ), Aborted(True, 0, 0)]  # AA-3
    assert conn.state is State.STA1 and conn.wants_close


@pytest.mark.parametrize("respond", ["accept", "reject"])
def test_a_response_after_the_peer_aborted_is_a_no_op(respond: str) -> None:
    conn = acceptor(encode_pdu(RQ) + USER_ABORT)
    events(conn)
    if respond == "accept":
        conn.accept(AC)
    else:
        conn.reject(RJ)
    assert sent(conn) == [] and events(conn) == []
    assert conn.state is State.STA1 and conn.next_deadline() is None


def test_a_response_after_the_transport_closed_is_a_no_op() -> None:
    conn = acceptor(encode_pdu(RQ) + RELEASE)
    events(conn)
    conn.receive_data(b"", 11.0)  # AA-4: the held release dies with the transport
    assert events(conn) == [Aborted(by_peer_user=False)]
    conn.accept(AC)
    assert sent(conn) == [] and events(conn) == [] and conn.state is State.STA1


def test_answering_twice_is_still_a_misuse() -> None:
    conn = acceptor(encode_pdu(RQ) + USER_ABORT)
    events(conn)
    conn.accept(AC)  # overtaken by the abort: ignored
    with pytest.raises(LocalProtocolError):
        conn.accept(AC)
    live = acceptor(encode_pdu(RQ))
    live.accept(AC)
    with pytest.raises(LocalProtocolError):
        live.reject(RJ)


def test_pair_requestor_aborting_in_the_same_segment_as_its_request() -> None:
    """Back to back: the RQ and the A-ABORT reach the acceptor in one read."""
    pair = Pair(artim_timeout=ARTIM, splitter=lambda blob, ends: [len(blob)])
    pair.connect(RQ)
    pair.req.conn.abort(now=pair.now)  # AA-1 in Sta5
    pair.transfer()
    assert pair.acc.take() == [AssociationRequested(RQ), Aborted(True, 0, 0)]
    pair.acc.conn.accept(AC)  # the server's answer, overtaken: ignored
    pair.transfer()
    assert pair.acc.sent == [] and pair.acc.state is State.STA1
    pair.close(pair.acc)
    pair.transfer()
    assert pair.req.state is State.STA1  # AR-5: the requestor's ARTIM wait ends
