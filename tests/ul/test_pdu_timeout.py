# The state changes behind mypy's back (through method calls), as in test_connection.
# mypy: disable-error-code="comparison-overlap"
"""The PDU limit: from the first byte of a PDU to its last (issue 12, defect 3).

The idle limit counts between whole PDUs, so a peer that starts a P-DATA-TF
and sends one byte a second would hold the association until then; the
upper layer itself bounds how long one PDU may take to arrive and answers a
slower one as a PDU that cannot be read: A-ABORT, source 2 (service
provider), reason 0 (not specified, PS3.8 Table 9-26), AA-8 in Sta6.
"""

from __future__ import annotations

import pytest

from stellarpacs.errors import AbortReason, AbortSource
from stellarpacs.ul.codec import decode_pdu, encode_pdu
from stellarpacs.ul.connection import Aborted, AssociationRequested, Connection, DataReceived
from stellarpacs.ul.fsm import State
from stellarpacs.ul.pdus import AAbort
from tests.ul.test_connection import AC, ARTIM, RQ, pdata

LIMIT = 5.0
SLOW = AAbort(AbortSource.SERVICE_PROVIDER, AbortReason.NOT_SPECIFIED)


def established(pdu_timeout: float = LIMIT) -> Connection:
    conn = Connection(requestor=False, artim_timeout=ARTIM, pdu_timeout=pdu_timeout)
    conn.connection_made(0.0)
    conn.receive_data(encode_pdu(RQ), 0.0)
    assert isinstance(conn.next_event(), AssociationRequested)
    conn.accept(AC)
    conn.data_to_send()
    assert conn.state is State.STA6 and conn.next_deadline() is None
    return conn


def test_a_trickled_pdu_is_aborted_at_the_limit() -> None:
    conn = established()
    raw = encode_pdu(pdata(b"\x00" * 100))
    for second in range(4):  # one byte a second, as the defect's peer does
        conn.receive_data(raw[second : second + 1], 10.0 + second)
        assert conn.next_deadline() == 10.0 + LIMIT  # from the first byte, not the last
    conn.handle_timeout(14.9)
    assert conn.state is State.STA6 and conn.data_to_send() == b""
    conn.handle_timeout(15.0)
    assert decode_pdu(conn.data_to_send()) == SLOW  # AA-8
    assert conn.next_event() == Aborted(by_peer_user=False, source=2, reason=0)
    assert conn.state is State.STA13 and conn.next_deadline() == 15.0 + ARTIM
    assert conn.last_error is not None and "pdu_timeout" in str(conn.last_error)
    conn.receive_data(raw[4:], 16.0)  # the rest is not read any more
    assert conn.next_event() is None


def test_each_pdu_gets_its_own_limit() -> None:
    conn = established()
    raw = encode_pdu(pdata(b"\x00" * 100))
    conn.receive_data(raw[:10], 0.0)
    conn.receive_data(raw[10:] + raw[:3], 4.0)  # the first ends, a second begins at 4 s
    assert isinstance(conn.next_event(), DataReceived)
    assert conn.next_deadline() == 4.0 + LIMIT
    conn.receive_data(raw[3:], 8.5)
    assert isinstance(conn.next_event(), DataReceived)
    assert conn.next_deadline() is None  # nothing begun: the DIMSE idle limit's business
    conn.handle_timeout(100.0)
    assert conn.state is State.STA6


def test_a_partial_header_counts_as_a_begun_pdu() -> None:
    conn = established()
    conn.receive_data(b"\x04\x00", 1.0)
    assert conn.next_deadline() == 1.0 + LIMIT


@pytest.mark.parametrize("limit", [0.0])
def test_zero_means_no_limit(limit: float) -> None:
    conn = established(limit)
    conn.receive_data(encode_pdu(pdata())[:5], 1.0)
    assert conn.next_deadline() is None
    conn.handle_timeout(1e9)
    assert conn.state is State.STA6


def test_a_slow_request_meets_whichever_of_artim_and_the_limit_is_first() -> None:
    conn = Connection(requestor=False, artim_timeout=ARTIM, pdu_timeout=LIMIT)
    conn.connection_made(0.0)
    assert conn.next_deadline() == ARTIM
    conn.receive_data(encode_pdu(RQ)[:20], 1.0)
    assert conn.next_deadline() == 1.0 + LIMIT and conn.artim_deadline == ARTIM
    conn.handle_timeout(1.0 + LIMIT)
    assert decode_pdu(conn.data_to_send()) == SLOW  # AA-1, provider source as for Evt19
    assert conn.state is State.STA13 and conn.next_event() is None
