"""A Maximum Length that cannot carry one PDV is an invalid PDU parameter (PS3.8 D.1, 9.3.5).

A P-DATA-TF holds at least one PDV item: a 4-byte item length, the context
ID, the message control header, and a fragment of at least one byte, so a
peer announcing a Maximum Length of 1 to 6 can receive nothing.  Such an
A-ASSOCIATE-RQ (or -AC) is Evt19: AA-1 in Sta2, AA-8 in Sta5, an A-ABORT
with reason invalid-PDU-parameter-value (PS3.8 Table 9-26).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TypeVar

import pytest

from stellarpacs.errors import AbortReason, AbortSource
from stellarpacs.ul.codec import encode_pdu
from stellarpacs.ul.connection import Aborted, AssociationRequested, Connection
from stellarpacs.ul.fsm import State
from stellarpacs.ul.pdus import AAbort, AAssociateAC, AAssociateRQ, UserInformation
from tests.ul.pair import Pair
from tests.ul.test_connection import AC, ARTIM, RQ, sent_abort

INVALID = AAbort(AbortSource.SERVICE_PROVIDER, AbortReason.INVALID_PDU_PARAMETER_VALUE)


P = TypeVar("P", AAssociateRQ, AAssociateAC)


def with_maximum_length(pdu: P, length: int | None) -> P:
    return replace(pdu, user_information=replace(pdu.user_information, maximum_length=length))


@pytest.mark.parametrize("length", [1, 3, 6])
def test_acceptor_aborts_a_request_it_could_never_answer(length: int) -> None:
    conn = Connection(requestor=False, artim_timeout=ARTIM)
    conn.connection_made(5.0)
    conn.receive_data(encode_pdu(with_maximum_length(RQ, length)), 6.0)
    assert sent_abort(conn) == INVALID  # AA-1, at once
    assert conn.state is State.STA13 and conn.next_deadline() == 6.0 + ARTIM
    assert conn.next_event() is None  # nothing for the user to answer
    assert conn.last_error is not None
    assert f"Maximum Length {length}" in str(conn.last_error)


@pytest.mark.parametrize("length", [None, 0, 7, 16384])
def test_usable_lengths_are_indicated(length: int | None) -> None:
    rq = with_maximum_length(RQ, length)
    conn = Connection(requestor=False)
    conn.connection_made(0.0)
    conn.receive_data(encode_pdu(rq), 0.0)
    assert conn.next_event() == AssociationRequested(rq)
    assert conn.state is State.STA3


def test_requestor_aborts_an_accept_it_could_never_use() -> None:
    pair = Pair(artim_timeout=ARTIM)
    pair.connect(RQ)
    pair.transfer()
    pair.acc.take()
    pair.inject(pair.req, encode_pdu(with_maximum_length(AC, 2)))
    assert pair.req.take() == [Aborted(by_peer_user=False, source=2, reason=6)]  # AA-8
    assert pair.req.state is State.STA13
    assert sent_abort(pair.req.conn) == INVALID


def test_the_rule_is_on_what_is_received_only() -> None:
    """Encoding stays symmetric with decoding (PS3.8 9.3): any 32-bit value goes on the wire."""
    assert UserInformation(maximum_length=3).maximum_length == 3
    encode_pdu(with_maximum_length(RQ, 3))
