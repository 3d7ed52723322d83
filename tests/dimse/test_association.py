"""The sans-I/O DIMSE association, driven as a back-to-back pair with a fake clock.

Every exchange goes through :class:`tests.dimse.pair.DIMSEPair`, which checks
that what one side sends is what the other receives; the tests here check
the association's own bookkeeping on top: Message IDs, response matching,
C-CANCEL, data set routing, release collisions and the idle limit.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stellarpacs.dimse import association as core_module
from stellarpacs.dimse.association import DIMSEAssociation
from stellarpacs.dimse.commands import (
    CCancelRQ,
    CEchoRQ,
    CEchoRSP,
    CFindRQ,
    CFindRSP,
    CStoreRQ,
    CStoreRSP,
    Message,
)
from stellarpacs.dimse.events import Closed, DIMSEEvent, Incoming, ReleaseIndicated
from stellarpacs.dimse.matching import Mismatch, expect_response
from stellarpacs.errors import AssociationAborted
from stellarpacs.uids import IMPLICIT_VR_LITTLE_ENDIAN, VERIFICATION
from stellarpacs.ul.codec import decode_pdu
from stellarpacs.ul.connection import AssociationAccepted, AssociationRequested, Connection
from stellarpacs.ul.fsm import State
from stellarpacs.ul.negotiation import (
    AcceptorPolicy,
    PresentationContext,
    contexts_from_ac,
    negotiate,
)
from stellarpacs.ul.pdus import (
    AAbort,
    AAssociateAC,
    AAssociateRQ,
    PresentationContextRQ,
    UserInformation,
)
from tests.dimse.pair import CT_IMAGE, FIND_MODEL, DIMSEPair, RecordingSink
from tests.ul.pair import random_splitter

ECHO_CONTEXT, STORE_CONTEXT, FIND_CONTEXT = 1, 3, 5
IMPLICIT = IMPLICIT_VR_LITTLE_ENDIAN
IDLE = 10.0
ARTIM = 30.0


class Unexpected(Exception):
    """Raised by the tests' error factory, carrying the verdict."""

    def __init__(self, why: Mismatch) -> None:
        super().__init__(why.value)
        self.why = why


def echo(pair: DIMSEPair) -> CEchoRQ:
    """The requestor sends a C-ECHO-RQ with a fresh Message ID."""
    rq = CEchoRQ(message_id=pair.req.core.next_message_id())
    pair.send(pair.req, ECHO_CONTEXT, rq)
    return rq


def answer(pair: DIMSEPair, rq: CEchoRQ) -> None:
    pair.send(
        pair.acc, ECHO_CONTEXT, CEchoRSP(message_id_being_responded_to=rq.message_id, status=0)
    )


def find(pair: DIMSEPair) -> CFindRQ:
    rq = CFindRQ(message_id=pair.req.core.next_message_id(), affected_sop_class_uid=FIND_MODEL)
    pair.send(pair.req, FIND_CONTEXT, rq, b"\x08\x00\x52\x00\x06\x00\x00\x00STUDY ")
    return rq


def find_rsp(rq: CFindRQ, status: int) -> CFindRSP:
    return CFindRSP(message_id_being_responded_to=rq.message_id, status=status)


def closed(events: list[DIMSEEvent]) -> Closed:
    [end] = [e for e in events if isinstance(e, Closed)]
    return end


def store(uid: str, message_id: int) -> CStoreRQ:
    return CStoreRQ(
        message_id=message_id, affected_sop_class_uid=CT_IMAGE, affected_sop_instance_uid=uid
    )


# --- messages and responses -----------------------------------------------------------------


def test_echo_round_trip_matches_the_response_to_its_request() -> None:
    pair = DIMSEPair()
    rq = echo(pair)
    pair.transfer()
    [incoming] = pair.acc.messages()
    assert incoming.command == rq and incoming.answers is None
    answer(pair, rq)
    pair.transfer()
    [response] = pair.req.messages()
    assert response.answers is rq
    rsp = expect_response(rq, response, CEchoRSP, Unexpected)
    assert rsp.status == 0
    assert (pair.req.core.counts.messages_out, pair.req.core.counts.messages_in) == (1, 1)
    assert (pair.acc.core.counts.messages_in, pair.acc.core.counts.messages_out) == (1, 1)


def test_pending_responses_keep_the_request_outstanding_until_the_final_one() -> None:
    pair = DIMSEPair()
    rq = find(pair)
    pair.transfer()
    pair.acc.take()
    for status in (0xFF00, 0xFF01, 0x0000, 0x0000):  # the last one answers nothing any more
        pair.send(pair.acc, FIND_CONTEXT, find_rsp(rq, status))
    pair.transfer()
    responses = pair.req.messages()
    assert [r.answers for r in responses] == [rq, rq, rq, None]
    for response in responses[:3]:
        expect_response(rq, response, CFindRSP, Unexpected)
    with pytest.raises(Unexpected) as caught:
        expect_response(rq, responses[3], CFindRSP, Unexpected)
    assert caught.value.why is Mismatch.MESSAGE_ID


def test_an_answer_of_the_wrong_class_or_id_answers_nothing() -> None:
    pair = DIMSEPair()
    rq = echo(pair)
    pair.transfer()
    wrong_class = CStoreRSP(message_id_being_responded_to=rq.message_id, status=0)
    wrong_id = CEchoRSP(message_id_being_responded_to=rq.message_id + 1, status=0)
    pair.send(pair.acc, ECHO_CONTEXT, wrong_class)
    pair.send(pair.acc, ECHO_CONTEXT, wrong_id)
    pair.transfer()
    first, second = pair.req.messages()
    assert first.answers is None and second.answers is None
    verdicts = []
    for incoming in (first, second, None):
        with pytest.raises(Unexpected) as caught:
            expect_response(rq, incoming, CEchoRSP, Unexpected)
        verdicts.append(caught.value.why)
    assert verdicts == [Mismatch.KIND, Mismatch.MESSAGE_ID, Mismatch.NO_MESSAGE]
    answer(pair, rq)  # still outstanding: the right answer is matched
    pair.transfer()
    [right] = pair.req.messages()
    assert right.answers is rq


def test_message_ids_skip_those_of_outstanding_requests() -> None:
    pair = DIMSEPair()
    core = pair.req.core
    first = echo(pair)
    assert first.message_id == 1
    assert [core.next_message_id() for _ in range(3)] == [2, 3, 4]
    for _ in range(0xFFFF - 4):
        core.next_message_id()
    assert core.next_message_id() == 2  # wrapped past 65535 and skipped 1 (PS3.7 9.1.1.1)
    pair.transfer()
    answer(pair, first)
    pair.transfer()
    pair.req.take()
    for _ in range(0xFFFF - 2):
        core.next_message_id()
    assert core.next_message_id() == 1  # answered: free again


# --- C-CANCEL --------------------------------------------------------------------------------


def test_a_cancel_is_not_delivered_and_names_the_request_until_its_final_response() -> None:
    pair = DIMSEPair()
    rq = find(pair)
    pair.send(pair.req, FIND_CONTEXT, CCancelRQ(message_id_being_responded_to=rq.message_id))
    pair.transfer()
    [incoming] = pair.acc.messages()
    assert incoming.command == rq
    assert pair.acc.core.cancelled == {rq.message_id}
    pair.send(pair.acc, FIND_CONTEXT, find_rsp(rq, 0xFF00))
    assert pair.acc.core.cancelled == {rq.message_id}  # Pending: still being served
    pair.send(pair.acc, FIND_CONTEXT, find_rsp(rq, 0xFE00))
    assert pair.acc.core.cancelled == set()
    pair.transfer()
    assert [r.answers for r in pair.req.messages()] == [rq, rq]


def test_a_cancel_of_no_running_request_is_ignored() -> None:
    pair = DIMSEPair()
    rq = find(pair)
    pair.transfer()
    pair.send(pair.acc, FIND_CONTEXT, find_rsp(rq, 0x0000))
    pair.transfer()
    pair.send(pair.req, FIND_CONTEXT, CCancelRQ(message_id_being_responded_to=rq.message_id))
    pair.send(pair.req, FIND_CONTEXT, CCancelRQ(message_id_being_responded_to=999))
    pair.transfer()
    assert pair.acc.core.cancelled == set()
    assert pair.acc.state is State.STA6


# --- data sets ------------------------------------------------------------------------------


def test_fragments_go_to_the_sink_the_owner_names() -> None:
    pair = DIMSEPair(sinks=True, max_pdu_length=1024)
    data = bytes(range(256)) * 40
    pair.send(pair.req, STORE_CONTEXT, store("1.2.3", pair.req.core.next_message_id()), data)
    pair.transfer()
    [incoming] = pair.acc.messages()
    [sink] = pair.acc.sinks
    assert incoming.sink is sink and incoming.dataset is None
    assert len(sink.parts) == len(data) // (1024 - 6) + 1  # one per P-DATA-TF, as received


def test_a_data_set_streamed_in_pieces_arrives_whole() -> None:
    pair = DIMSEPair(max_pdu_length=512)
    pieces = [b"a" * 100, b"b" * 2000, b"", b"c" * 7]
    pair.send_stream(pair.req, STORE_CONTEXT, store("1.2.4", 1), pieces)
    pair.transfer()
    [incoming] = pair.acc.messages()
    assert incoming.dataset == b"".join(pieces)


def test_a_data_set_over_the_memory_bound_is_aborted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core_module, "MAX_IN_MEMORY_DATASET", 1000)
    pair = DIMSEPair(max_pdu_length=512)
    rq = CFindRQ(message_id=1, affected_sop_class_uid=FIND_MODEL)
    pair.send(pair.req, FIND_CONTEXT, rq, b"x" * 3000, checked=False)
    pair.transfer()
    end = closed(pair.acc.take())
    assert end.protocol_error is not None and "1000 bytes" in str(end.protocol_error)
    assert end.error is not None and (end.error.source, end.error.reason) == (0, 0)
    assert isinstance(pair.acc.sent_pdus[-1], AAbort)
    assert closed(pair.req.take()).error is not None


def test_an_abort_in_the_middle_of_a_data_set_abandons_its_sink() -> None:
    pair = DIMSEPair(sinks=True, max_pdu_length=512)
    fragmenter = pair.req.core.send_command(STORE_CONTEXT, store("1.2.5", 1))
    pair.req.core.send_pdus(fragmenter.feed(b"y" * 2000))
    pair.transfer()
    [sink] = pair.acc.sinks
    assert sink.parts and not sink.abandoned
    pair.req.core.abort(pair.now)
    pair.transfer()
    assert sink.abandoned
    end = closed(pair.acc.take())
    assert end.error is not None and end.error.source == 0  # A-ABORT, service user
    assert pair.req.core.end_reason == "aborted by local user"


def test_a_message_on_a_context_not_accepted_is_answered_with_a_user_abort() -> None:
    pair = DIMSEPair()
    pair.send(pair.req, 7, CEchoRQ(message_id=1), checked=False)
    pair.transfer()
    end = closed(pair.acc.take())
    assert end.protocol_error is not None
    assert "presentation context 7, which was not accepted" in str(end.protocol_error)
    abort = pair.acc.sent_pdus[-1]
    assert isinstance(abort, AAbort) and abort.source == 0
    assert pair.acc.core.end_reason.startswith("aborted: message on presentation context 7")


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    sizes=st.lists(st.integers(0, 5000), min_size=1, max_size=6),
    max_pdu=st.sampled_from([64, 300, 16384]),
)
def test_messages_survive_any_cutting_of_the_byte_stream(
    seed: int, sizes: list[int], max_pdu: int
) -> None:
    pair = DIMSEPair(max_pdu_length=max_pdu, splitter=random_splitter(random.Random(seed)))
    for n, size in enumerate(sizes, start=1):
        pair.send(pair.req, STORE_CONTEXT, store(f"1.2.{n}", n), bytes([n]) * size)
    pair.transfer()
    assert len(pair.acc.messages()) == len(sizes)  # each compared with what was sent
    assert pair.acc.state is State.STA6


# --- release -----------------------------------------------------------------------------


def test_release_is_indicated_then_answered() -> None:
    pair = DIMSEPair()
    pair.req.core.release()
    pair.transfer()
    assert pair.acc.take() == [ReleaseIndicated()]
    pair.acc.core.release_response(pair.now)
    pair.transfer()
    assert pair.req.take() == [Closed(None)]
    assert pair.acc.take() == [Closed(None)]
    assert pair.req.state is State.STA1 and pair.req.core.wants_close
    assert pair.acc.state is State.STA13  # waiting for the requestor to close (AR-4)
    assert pair.acc.core.next_deadline() == pair.now + ARTIM
    assert pair.req.core.end_reason == pair.acc.core.end_reason == "released"


def test_a_release_collision_is_resolved_without_the_user() -> None:
    pair = DIMSEPair()
    pair.req.core.release()
    pair.acc.core.release()
    pair.transfer()
    assert pair.req.take() == [Closed(None)]  # AR-9, then AR-3
    assert pair.acc.take() == [Closed(None)]  # AR-10, then AR-4 answered here
    assert (pair.req.state, pair.acc.state) == (State.STA1, State.STA13)
    pair.close(pair.req)
    pair.transfer()
    assert pair.acc.state is State.STA1
    assert pair.acc.take() == []  # already over: the close adds nothing


def test_a_lost_transport_ends_both_sides() -> None:
    pair = DIMSEPair(sinks=True)
    fragmenter = pair.req.core.send_command(STORE_CONTEXT, store("1.2.6", 1))
    pair.req.core.send_pdus(fragmenter.feed(b"z" * 100))
    pair.close(pair.req)
    pair.transfer()
    for side in (pair.req, pair.acc):
        end = closed(side.take())
        assert end.error is not None and "connection closed without release" in str(end.error)
    assert pair.acc.sinks[0].abandoned
    pair.acc.core.transport_closed()  # the adapter's connection_lost: nothing more to say
    assert pair.acc.core.next_event() is None


# --- the idle limit -------------------------------------------------------------------------


def test_the_deadline_is_the_idle_limit_from_the_last_complete_pdu() -> None:
    pair = DIMSEPair(idle_timeout=IDLE)
    start = pair.now
    assert pair.acc.core.next_deadline() == start + IDLE
    for _ in range(5):  # a whole PDU every 6 s: never idle
        pair.now += 6
        rq = echo(pair)
        pair.transfer()
        answer(pair, rq)
        pair.transfer()
        pair.advance(0)
        assert pair.acc.core.next_deadline() == pair.now + IDLE
    assert pair.acc.state is State.STA6 and not pair.acc.core.idle_expired


def test_a_peer_trickling_one_byte_a_second_is_aborted_at_the_idle_limit() -> None:
    pair = DIMSEPair(idle_timeout=IDLE)
    start = pair.now
    pair.req.core.send(ECHO_CONTEXT, CEchoRQ(message_id=1))
    blob = pair.req.core.data_to_send()
    for second in range(int(IDLE) - 1):  # one byte a second, never a whole PDU
        pair.feed(pair.acc, blob[second : second + 1])
        pair.advance(1)
        assert pair.acc.state is State.STA6
        assert pair.acc.core.next_deadline() == start + IDLE  # bytes do not move it
    pair.feed(pair.acc, blob[int(IDLE) - 1 : int(IDLE)])
    pair.advance(1)
    assert pair.now == start + IDLE
    end = closed(pair.acc.take())
    assert isinstance(end.error, AssociationAborted) and "idle" in str(end.error)
    assert pair.acc.core.idle_expired
    assert pair.acc.core.end_reason == "aborted: idle timeout"
    abort = decode_pdu(pair.acc.core.data_to_send())
    assert isinstance(abort, AAbort) and abort.source == 0
    assert pair.acc.state is State.STA13
    assert pair.acc.core.next_deadline() == pair.now + ARTIM  # now only ARTIM is left


def test_a_timeout_before_the_deadline_changes_nothing() -> None:
    pair = DIMSEPair(idle_timeout=IDLE)
    pair.advance(IDLE - 0.5)
    assert pair.acc.state is State.STA6 and not pair.acc.take()
    pair.advance(0.5)
    assert closed(pair.acc.take()).error is not None
    assert closed(pair.req.take()).error is not None  # both idle since establishment


def test_without_an_idle_limit_there_is_no_deadline() -> None:
    pair = DIMSEPair()
    assert pair.acc.core.next_deadline() is None
    pair.advance(1e6)
    assert pair.acc.state is State.STA6


# --- taking over from the upper layer -------------------------------------------------------


def test_a_message_right_behind_the_ac_reaches_the_new_association() -> None:
    """The acceptor may send at once; bytes read with the AC are not lost at the handover."""
    rq = AAssociateRQ(
        called_ae_title="STELLAR",
        calling_ae_title="MODALITY",
        presentation_contexts=(
            PresentationContextRQ(1, VERIFICATION, (IMPLICIT_VR_LITTLE_ENDIAN,)),
        ),
        user_information=UserInformation(16384, "1.2.3.4", "TEST_SCU"),
    )
    policy = AcceptorPolicy("STELLAR", {VERIFICATION: (IMPLICIT,)})
    requestor, acceptor = Connection(requestor=True), Connection(requestor=False)
    requestor.request(0.0)
    acceptor.connection_made(0.0)
    requestor.transport_connected(0.0, rq)
    acceptor.receive_data(requestor.data_to_send(), 0.0)
    assert acceptor.next_event() == AssociationRequested(rq)
    ac, contexts = negotiate(rq, policy)
    assert isinstance(ac, AAssociateAC)
    acceptor.accept(ac)
    scp = DIMSEAssociation(acceptor, rq, ac, contexts, now=0.0)
    report: Message = CEchoRQ(message_id=scp.next_message_id())
    scp.send(1, report)
    requestor.receive_data(acceptor.data_to_send(), 0.0)  # AC and P-DATA in one read
    assert requestor.next_event() == AssociationAccepted(ac)
    scu = DIMSEAssociation(requestor, rq, ac, contexts_from_ac(rq, ac), now=0.0)
    event = scu.next_event()
    assert isinstance(event, Incoming) and event.command == report


def test_the_sink_factory_is_asked_once_per_data_set_with_its_context() -> None:
    asked: list[tuple[int, Message]] = []
    pair = DIMSEPair()
    sink = RecordingSink()

    def sink_for(context: PresentationContext, command: Message) -> RecordingSink:
        asked.append((context.context_id, command))
        return sink

    pair.acc.core.sink_for = sink_for
    first, second = store("1.2.7", 1), store("1.2.8", 2)
    pair.send(pair.req, STORE_CONTEXT, first, b"one", checked=False)
    pair.send(pair.req, STORE_CONTEXT, second, b"two", checked=False)
    pair.transfer()
    assert asked == [(STORE_CONTEXT, first), (STORE_CONTEXT, second)]
    assert sink.parts == [b"one", b"two"]
