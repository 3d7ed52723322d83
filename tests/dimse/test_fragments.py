"""Fragmenting and reassembly of DIMSE messages (PS3.8 9.3.5, Annex E; PS3.7 6.3.1)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from io import BytesIO

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pynetdicom import dimse_messages, dimse_primitives
from pynetdicom.pdu_primitives import P_DATA

from stellarpacs.dimse.command_codec import decode_command, encode_command
from stellarpacs.dimse.commands import CEchoRQ, CEchoRSP, CStoreRQ, CStoreRSP, Message
from stellarpacs.dimse.fragments import (
    MAX_COMMAND_SET_LENGTH,
    AssemblerEvent,
    CommandReceived,
    DatasetFragment,
    DatasetFragmenter,
    MessageAssembler,
    fragment_message,
    iter_dataset_pdus,
)
from stellarpacs.errors import AbortReason, LocalProtocolError, RemoteProtocolError
from stellarpacs.ul.pdus import PDataTF, PresentationDataValue
from tests.dimse.strategies import messages

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
STORE = CStoreRQ(
    message_id=1, affected_sop_class_uid=CT_IMAGE_STORAGE, affected_sop_instance_uid="1.2.3"
)
ECHO = CEchoRQ(message_id=2)

max_pdu_lengths = st.one_of(
    st.just(0), st.integers(7, 64), st.integers(65, 2000), st.sampled_from([16384, 16390])
)


def pdu_length(pdu: PDataTF) -> int:
    """The PDU-length field of an encoded P-DATA-TF (PS3.8 Table 9-22)."""
    return sum(4 + 2 + len(pdv.data) for pdv in pdu.pdvs)


def feed_all(assembler: MessageAssembler, pdus: list[PDataTF]) -> list[AssemblerEvent]:
    events: list[AssemblerEvent] = []
    for pdu in pdus:
        events.extend(assembler.receive(pdu))
    return events


def pdv(data: bytes, *, command: bool, last: bool, context_id: int = 1) -> PDataTF:
    return PDataTF((PresentationDataValue(context_id, command, last, data),))


def command_pdv(msg: Message = ECHO, context_id: int = 1) -> PDataTF:
    return pdv(encode_command(msg), command=True, last=True, context_id=context_id)


# --- fragment_message ------------------------------------------------------------------------


@settings(max_examples=200)
@given(messages, st.none() | st.binary(max_size=3000), max_pdu_lengths, st.integers(1, 255))
def test_fragments_reassemble_to_the_same_message(
    msg: Message, dataset: bytes | None, max_pdu: int, context_id: int
) -> None:
    msg = dataclasses.replace(msg, has_dataset=dataset is not None)
    pdus = list(fragment_message(context_id, encode_command(msg), dataset, max_pdu))

    for pdu in pdus:
        assert len(pdu.pdvs) == 1
        assert pdu.pdvs[0].context_id == context_id
        if max_pdu:
            assert pdu_length(pdu) <= max_pdu
    flags = [(p.pdvs[0].is_command, p.pdvs[0].is_last) for p in pdus]
    n_command = sum(is_command for is_command, _ in flags)
    assert flags[:n_command] == [(True, False)] * (n_command - 1) + [(True, True)]
    if dataset is None:
        assert len(flags) == n_command
    else:
        assert flags[n_command:] == [(False, False)] * (len(flags) - n_command - 1) + [
            (False, True)
        ]

    events = feed_all(MessageAssembler(), pdus)
    assert events[0] == CommandReceived(context_id, msg, dataset is not None)
    fragments = events[1:]
    assert all(isinstance(e, DatasetFragment) for e in fragments)
    if dataset is not None:
        assert b"".join(e.data for e in fragments if isinstance(e, DatasetFragment)) == dataset


@pytest.mark.parametrize("max_pdu", [0, 7, 8, 18, 16384])
def test_fragment_count_is_minimal(max_pdu: int) -> None:
    dataset = bytes(range(256)) * 40
    command = encode_command(STORE)
    pdus = list(fragment_message(3, command, dataset, max_pdu))
    payload = max_pdu - 6 if max_pdu else len(dataset) + len(command)
    expected = -(-len(command) // payload) + -(-len(dataset) // payload)
    assert len(pdus) == expected


def test_empty_data_set_is_one_empty_last_fragment() -> None:
    pdus = list(fragment_message(1, encode_command(STORE), b"", 100))
    assert pdus[-1] == pdv(b"", command=False, last=True)


@pytest.mark.parametrize("max_pdu", [1, 5, 6, -1])
def test_max_pdu_without_room_for_data_is_refused(max_pdu: int) -> None:
    with pytest.raises(LocalProtocolError):
        list(fragment_message(1, b"\x00" * 20, None, max_pdu))
    with pytest.raises(LocalProtocolError):
        DatasetFragmenter(1, max_pdu)


# --- streaming a data set from chunks --------------------------------------------------------


@settings(max_examples=200)
@given(st.lists(st.binary(max_size=700), max_size=12), max_pdu_lengths)
def test_streamed_data_set_is_exact_and_bounded(chunks: list[bytes], max_pdu: int) -> None:
    pdus = list(iter_dataset_pdus(5, chunks, max_pdu))
    pdvs = [p.pdvs[0] for p in pdus]
    assert b"".join(v.data for v in pdvs) == b"".join(chunks)
    assert [v.is_last for v in pdvs] == [False] * (len(pdvs) - 1) + [True]
    assert not any(v.is_command for v in pdvs)
    assert all(v.context_id == 5 for v in pdvs)
    if max_pdu:
        assert all(pdu_length(p) <= max_pdu for p in pdus)
    # Only the final PDV may be empty (an empty data set still needs its last fragment).
    assert all(v.data for v in pdvs[:-1])


def test_streaming_holds_back_one_fragment_and_no_more() -> None:
    fragmenter = DatasetFragmenter(1, 106)  # 100-byte PDVs
    first = fragmenter.feed(b"a" * 1000)
    assert len(first) == 9  # the tenth waits: it may be the last
    assert all(not p.pdvs[0].is_last for p in first)
    second = fragmenter.feed(b"b" * 50)
    assert [p.pdvs[0].data for p in second] == [b"a" * 100]
    rest = fragmenter.feed(b"", final=True)
    assert rest == [pdv(b"b" * 50, command=False, last=True)]
    with pytest.raises(LocalProtocolError):
        fragmenter.feed(b"more")


def test_streaming_final_chunk_given_with_the_flag() -> None:
    fragmenter = DatasetFragmenter(1, 0)
    assert fragmenter.feed(b"one") == []
    assert fragmenter.feed(b"two", final=True) == [
        pdv(b"one", command=False, last=False),
        pdv(b"two", command=False, last=True),
    ]


def test_streaming_passes_small_chunks_without_copying() -> None:
    chunk = b"x" * 64
    fragmenter = DatasetFragmenter(1, 1000)
    fragmenter.feed(chunk)
    (last,) = fragmenter.feed(b"", final=True)
    assert last.pdvs[0].data is chunk


def test_streaming_a_generator_is_lazy() -> None:
    produced = []

    def chunks() -> Iterator[bytes]:
        for i in range(1000):
            produced.append(i)
            yield b"z" * 1000

    stream = iter_dataset_pdus(1, chunks(), 1006)
    next(stream)
    assert len(produced) <= 2


# --- the assembler ---------------------------------------------------------------------------


def test_assembler_streams_data_set_fragments_as_they_arrive() -> None:
    assembler = MessageAssembler()
    command = encode_command(STORE)
    assert assembler.receive(pdv(command[:10], command=True, last=False)) == []
    assert assembler.in_progress
    (received,) = assembler.receive(pdv(command[10:], command=True, last=True))
    assert received == CommandReceived(1, STORE, True)
    data = b"\x08\x00\x18\x00" * 4
    (fragment,) = assembler.receive(pdv(data, command=False, last=False))
    assert isinstance(fragment, DatasetFragment)
    assert fragment.data is data  # handed on, not copied
    assert assembler.in_progress
    assert assembler.receive(pdv(b"end", command=False, last=True)) == [
        DatasetFragment(1, b"end", True)
    ]
    assert not assembler.in_progress


def test_assembler_handles_several_messages_and_pdvs_per_pdu() -> None:
    rsp = CStoreRSP(message_id_being_responded_to=1, status=0)
    pdu = PDataTF(
        (
            PresentationDataValue(3, True, True, encode_command(STORE)),
            PresentationDataValue(3, False, True, b"DATA"),
            PresentationDataValue(1, True, True, encode_command(ECHO)),
            PresentationDataValue(5, True, True, encode_command(rsp)),
        )
    )
    assert MessageAssembler().receive(pdu) == [
        CommandReceived(3, STORE, True),
        DatasetFragment(3, b"DATA", True),
        CommandReceived(1, ECHO, False),
        CommandReceived(5, rsp, False),
    ]


def _violation(pdus: list[PDataTF]) -> RemoteProtocolError:
    assembler = MessageAssembler()
    with pytest.raises(RemoteProtocolError) as info:
        feed_all(assembler, pdus)
    return info.value


STORE_CMD = encode_command(STORE)


@pytest.mark.parametrize(
    ("pdus", "reason", "words"),
    [
        pytest.param(
            [pdv(b"DATA", command=False, last=True)],
            AbortReason.UNEXPECTED_PDU_PARAMETER,
            "no command expects one",
            id="data set before any command",
        ),
        pytest.param(
            [command_pdv(ECHO), pdv(b"DATA", command=False, last=True)],
            AbortReason.UNEXPECTED_PDU_PARAMETER,
            "no command expects one",
            id="data set for a command without one",
        ),
        pytest.param(
            [
                pdv(STORE_CMD[:20], command=True, last=False),
                pdv(b"DATA", command=False, last=False),
            ],
            AbortReason.UNEXPECTED_PDU_PARAMETER,
            "before the command set's last fragment",
            id="data set during the command set",
        ),
        pytest.param(
            [command_pdv(STORE), pdv(b"DA", command=False, last=False), command_pdv(ECHO)],
            AbortReason.UNEXPECTED_PDU_PARAMETER,
            "previous message's data set",
            id="new command before the data set ended",
        ),
        pytest.param(
            [command_pdv(STORE), command_pdv(ECHO)],
            AbortReason.UNEXPECTED_PDU_PARAMETER,
            "previous message's data set",
            id="new command instead of the data set",
        ),
        pytest.param(
            [
                pdv(STORE_CMD[:20], command=True, last=False, context_id=1),
                pdv(STORE_CMD[20:], command=True, last=True, context_id=3),
            ],
            AbortReason.UNEXPECTED_PDU_PARAMETER,
            "context 3 in the middle",
            id="context changes within the command set",
        ),
        pytest.param(
            [command_pdv(STORE, 1), pdv(b"DATA", command=False, last=True, context_id=7)],
            AbortReason.UNEXPECTED_PDU_PARAMETER,
            "context 7 in the middle",
            id="context changes before the data set",
        ),
        pytest.param(
            [
                command_pdv(STORE, 1),
                pdv(b"DATA", command=False, last=False),
                pdv(b"DATA", command=False, last=True, context_id=9),
            ],
            AbortReason.UNEXPECTED_PDU_PARAMETER,
            "context 9 in the middle",
            id="context changes within the data set",
        ),
        pytest.param(
            [pdv(b"\x00" * 65536, command=True, last=False)] * 17,
            AbortReason.INVALID_PDU_PARAMETER_VALUE,
            f"longer than {MAX_COMMAND_SET_LENGTH}",
            id="oversized command set",
        ),
        pytest.param(
            [pdv(b"\x00\x00\x00\x01\x02\x00\x00\x00", command=True, last=True)],
            AbortReason.INVALID_PDU_PARAMETER_VALUE,
            "runs past the end",
            id="malformed command set",
        ),
    ],
)
def test_assembler_protocol_violations(
    pdus: list[PDataTF], reason: AbortReason, words: str
) -> None:
    error = _violation(pdus)
    assert error.reason == reason
    assert words in str(error)


def test_oversized_command_set_is_refused_before_it_is_held_whole() -> None:
    assembler = MessageAssembler()
    chunk = pdv(b"\x00" * 65536, command=True, last=False)
    accepted = 0
    with pytest.raises(RemoteProtocolError):
        for _ in range(100):
            assembler.receive(chunk)
            accepted += 1
    assert accepted == MAX_COMMAND_SET_LENGTH // 65536


# --- interoperability with pynetdicom's fragmenting ------------------------------------------


def _to_pdata(primitive: P_DATA) -> PDataTF:
    """pynetdicom's (context, control header + data) pairs as our PDVs (PS3.8 E.2)."""
    return PDataTF(
        tuple(
            PresentationDataValue(ctx, bool(data[0] & 1), bool(data[0] & 2), bytes(data[1:]))
            for ctx, data in primitive.presentation_data_value_list
        )
    )


def _from_pdata(pdu: PDataTF) -> P_DATA:
    primitive = P_DATA()
    for v in pdu.pdvs:
        header = bytes([v.is_command | v.is_last << 1])
        primitive.presentation_data_value_list.append((v.context_id, header + v.data))
    return primitive


DATASET = bytes(range(256)) * 30


@pytest.mark.parametrize("max_pdu", [0, 64, 1000, 16384])
def test_we_reassemble_what_pynetdicom_fragments(max_pdu: int) -> None:
    prim = dimse_primitives.C_STORE()
    prim.MessageID = 1
    prim.AffectedSOPClassUID = CT_IMAGE_STORAGE
    prim.AffectedSOPInstanceUID = "1.2.3"
    prim.Priority = 0
    prim.DataSet = BytesIO(DATASET)
    msg = dimse_messages.C_STORE_RQ()
    msg.primitive_to_message(prim)
    pdus = [_to_pdata(p) for p in msg.encode_msg(7, max_pdu)]
    events = feed_all(MessageAssembler(), pdus)
    assert events[0] == CommandReceived(7, STORE, True)
    assert b"".join(e.data for e in events[1:] if isinstance(e, DatasetFragment)) == DATASET


@pytest.mark.parametrize("max_pdu", [0, 64, 1000, 16384])
def test_pynetdicom_reassembles_what_we_fragment(max_pdu: int) -> None:
    message = dimse_messages.DIMSEMessage()
    done = False
    for pdu in fragment_message(7, encode_command(STORE), DATASET, max_pdu):
        assert not done
        done = message.decode_msg(_from_pdata(pdu))
    assert done
    assert isinstance(message, dimse_messages.C_STORE_RQ)
    assert message.context_id == 7
    assert message.command_set.AffectedSOPInstanceUID == "1.2.3"
    assert isinstance(message.data_set, BytesIO)
    assert message.data_set.getvalue() == DATASET


def test_response_without_data_set_completes_at_the_command() -> None:
    rsp = CEchoRSP(message_id_being_responded_to=2, status=0)
    (pdu,) = fragment_message(1, encode_command(rsp), None, 16384)
    message = dimse_messages.DIMSEMessage()
    assert message.decode_msg(_from_pdata(pdu))
    assert decode_command(pdu.pdvs[0].data) == rsp


_pdv_data = st.one_of(
    st.binary(max_size=40),
    messages.map(encode_command),
    st.sampled_from([STORE_CMD, STORE_CMD[:30], STORE_CMD[30:]]),
)
_pdvs = st.builds(
    PresentationDataValue, st.sampled_from([1, 3]), st.booleans(), st.booleans(), _pdv_data
)


@settings(max_examples=100)
@given(st.lists(_pdvs, max_size=12))
def test_assembler_yields_events_or_remote_errors_only(pdvs: list[PresentationDataValue]) -> None:
    assembler = MessageAssembler()
    try:
        for v in pdvs:
            event = assembler.receive_pdv(v)
            assert event is None or isinstance(event, CommandReceived | DatasetFragment)
    except RemoteProtocolError as error:
        assert error.reason in (
            AbortReason.UNEXPECTED_PDU_PARAMETER,
            AbortReason.INVALID_PDU_PARAMETER_VALUE,
        )
