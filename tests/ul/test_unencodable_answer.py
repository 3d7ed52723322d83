"""An A-ASSOCIATE-AC that the wire cannot carry is never committed (PS3.8 9.3.3, 9.3.4).

1,586 role selection items fit in the requestor's user information item but
not in ours, which adds our implementation class UID and version name: its
length would pass the 16-bit item length (PS3.8 9.3.3.3).  Negotiation finds
that out before anything is sent and answers A-ASSOCIATE-RJ 1/1/1.
"""

from __future__ import annotations

from dataclasses import replace

from stellarpacs.ul.codec import encode_pdu
from stellarpacs.ul.connection import AssociationDeclined, AssociationRequested
from stellarpacs.ul.fsm import State
from stellarpacs.ul.negotiation import negotiate
from stellarpacs.ul.pdus import AAssociateRJ, AAssociateRQ, RoleSelection, UserInformation
from tests.ul.pair import Pair
from tests.ul.test_connection import ARTIM, POLICY, RQ


def role_selections(count: int = 1586, long: int = 470) -> tuple[RoleSelection, ...]:
    """``count`` distinct SOP classes, ``long`` of them with a 34-character UID, the rest 33."""
    prefix = "1.2.826.0.1.3680043.9."
    return tuple(
        RoleSelection(prefix + str((10**11 if n < long else 10**10) + n), True, True)
        for n in range(count)
    )


def too_many_roles(rq: AAssociateRQ = RQ) -> AAssociateRQ:
    ui = UserInformation(16384, "1.2.3.4", "TEST_SCU", role_selections=role_selections())
    return replace(rq, user_information=ui)


NO_REASON_GIVEN = AAssociateRJ(result=1, source=1, reason=1)


def test_the_request_itself_is_encodable() -> None:
    assert len(encode_pdu(too_many_roles())) > 65535  # the PDU, not any one item


def test_negotiate_rejects_what_it_cannot_encode() -> None:
    answer, contexts = negotiate(too_many_roles(), POLICY)
    assert answer == NO_REASON_GIVEN  # rejected-permanent, service-user, no-reason-given
    assert contexts == {}


def test_a_few_roles_less_are_accepted() -> None:
    ui = UserInformation(16384, "1.2.3.4", "TEST_SCU", role_selections=role_selections(1500))
    answer, contexts = negotiate(replace(RQ, user_information=ui), POLICY)
    assert not isinstance(answer, AAssociateRJ) and contexts
    encode_pdu(answer)


def test_the_requestor_learns_it_from_an_rj() -> None:
    pair = Pair(artim_timeout=ARTIM)
    rq = too_many_roles()
    pair.connect(rq)
    pair.transfer()
    assert pair.acc.take() == [AssociationRequested(rq)]
    answer, _ = negotiate(rq, POLICY)
    assert isinstance(answer, AAssociateRJ)
    pair.acc.conn.reject(answer, now=pair.now)
    pair.transfer()
    assert pair.req.take() == [AssociationDeclined(NO_REASON_GIVEN)]
    assert pair.req.state is State.STA1 and pair.acc.state is State.STA13
