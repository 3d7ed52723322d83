"""Command set codec (PS3.7 6.3.1, Annex E): golden bytes, pynetdicom cross-checks, properties."""

from __future__ import annotations

import contextlib
import struct
from io import BytesIO
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pynetdicom import dimse_messages, dimse_primitives
from pynetdicom.dsutils import decode, encode

from stellarpacs.dimse.command_codec import NO_DATASET, decode_command, encode_command
from stellarpacs.dimse.commands import (
    COMMAND_CLASSES,
    COMMAND_NAMES,
    CCancelRQ,
    CEchoRQ,
    CEchoRSP,
    CFindRQ,
    CFindRSP,
    CGetRSP,
    CMoveRQ,
    CMoveRSP,
    CStoreRQ,
    CStoreRSP,
    Message,
    NActionRQ,
    NEventReportRQ,
    NGetRQ,
    NSetRSP,
    Priority,
    is_request,
)
from stellarpacs.errors import AbortReason, LocalProtocolError, RemoteProtocolError
from tests.dimse.strategies import messages, messages_of

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STORAGE_COMMITMENT = "1.2.840.10008.1.20.1"
STORAGE_COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"

# C-ECHO-RQ, Message ID 7, assembled by hand from PS3.7 Table 9.3-12 and E.1-1.
C_ECHO_RQ_GOLDEN = bytes.fromhex(
    "0000 0000 04000000 38000000"  # (0000,0000) UL 4: Command Group Length = 56
    "0000 0200 12000000"  # (0000,0002) UI 18: Affected SOP Class UID
    "312e322e3834302e31303030382e312e3100"  # "1.2.840.10008.1.1" + NUL pad
    "0000 0001 02000000 3000"  # (0000,0100) US 2: Command Field = 0x0030 C-ECHO-RQ
    "0000 1001 02000000 0700"  # (0000,0110) US 2: Message ID = 7
    "0000 0008 02000000 0101"  # (0000,0800) US 2: Command Data Set Type = 0x0101 (none)
)


def test_c_echo_rq_golden_bytes() -> None:
    assert encode_command(CEchoRQ(message_id=7)) == C_ECHO_RQ_GOLDEN
    assert decode_command(C_ECHO_RQ_GOLDEN) == CEchoRQ(message_id=7)


# --- cross-check against pynetdicom ----------------------------------------------------------


def _pynetdicom_command(message: str, primitive: str, **attrs: Any) -> bytes:
    """The command set pynetdicom encodes for one of its primitives."""
    prim = getattr(dimse_primitives, primitive)()
    for name, value in attrs.items():
        setattr(prim, name, value)
    msg = getattr(dimse_messages, message)()
    msg.primitive_to_message(prim)
    raw = encode(msg.command_set, True, True)
    assert raw is not None
    return raw


CROSS_CHECKS: list[tuple[Message, str, str, dict[str, Any]]] = [
    (
        CEchoRQ(message_id=7),
        "C_ECHO_RQ",
        "C_ECHO",
        {"MessageID": 7, "AffectedSOPClassUID": "1.2.840.10008.1.1"},
    ),
    (
        CEchoRSP(
            message_id_being_responded_to=7, status=0, affected_sop_class_uid="1.2.840.10008.1.1"
        ),
        "C_ECHO_RSP",
        "C_ECHO",
        {"MessageIDBeingRespondedTo": 7, "Status": 0, "AffectedSOPClassUID": "1.2.840.10008.1.1"},
    ),
    (
        CStoreRQ(
            message_id=12,
            affected_sop_class_uid=CT_IMAGE_STORAGE,
            affected_sop_instance_uid="1.2.3.4.5",
            priority=Priority.LOW,
            move_originator_ae_title="MOVESCU",
            move_originator_message_id=3,
        ),
        "C_STORE_RQ",
        "C_STORE",
        {
            "MessageID": 12,
            "AffectedSOPClassUID": CT_IMAGE_STORAGE,
            "AffectedSOPInstanceUID": "1.2.3.4.5",
            "Priority": 2,
            "MoveOriginatorApplicationEntityTitle": "MOVESCU",
            "MoveOriginatorMessageID": 3,
            "DataSet": BytesIO(b"\x08\x00\x18\x00"),
        },
    ),
    (
        CStoreRSP(
            message_id_being_responded_to=12,
            status=0xB000,
            affected_sop_class_uid=CT_IMAGE_STORAGE,
            affected_sop_instance_uid="1.2.3.4.5",
        ),
        "C_STORE_RSP",
        "C_STORE",
        {
            "MessageIDBeingRespondedTo": 12,
            "Status": 0xB000,
            "AffectedSOPClassUID": CT_IMAGE_STORAGE,
            "AffectedSOPInstanceUID": "1.2.3.4.5",
        },
    ),
    (
        CFindRSP(
            message_id_being_responded_to=5,
            status=0xFF00,
            affected_sop_class_uid=STUDY_ROOT_FIND,
            has_dataset=True,
        ),
        "C_FIND_RSP",
        "C_FIND",
        {
            "MessageIDBeingRespondedTo": 5,
            "Status": 0xFF00,
            "AffectedSOPClassUID": STUDY_ROOT_FIND,
            "Identifier": BytesIO(b"\x08\x00\x52\x00"),
        },
    ),
    (
        CMoveRQ(
            message_id=9,
            affected_sop_class_uid=STUDY_ROOT_MOVE,
            move_destination="STORESCP",
            priority=Priority.HIGH,
        ),
        "C_MOVE_RQ",
        "C_MOVE",
        {
            "MessageID": 9,
            "AffectedSOPClassUID": STUDY_ROOT_MOVE,
            "MoveDestination": "STORESCP",
            "Priority": 1,
            "Identifier": BytesIO(b"\x08\x00\x52\x00"),
        },
    ),
    (
        CMoveRSP(
            message_id_being_responded_to=9,
            status=0xFF00,
            affected_sop_class_uid=STUDY_ROOT_MOVE,
            number_of_remaining_suboperations=10,
            number_of_completed_suboperations=2,
            number_of_failed_suboperations=1,
            number_of_warning_suboperations=0,
        ),
        "C_MOVE_RSP",
        "C_MOVE",
        {
            "MessageIDBeingRespondedTo": 9,
            "Status": 0xFF00,
            "AffectedSOPClassUID": STUDY_ROOT_MOVE,
            "NumberOfRemainingSuboperations": 10,
            "NumberOfCompletedSuboperations": 2,
            "NumberOfFailedSuboperations": 1,
            "NumberOfWarningSuboperations": 0,
        },
    ),
    (
        CCancelRQ(message_id_being_responded_to=5),
        "C_CANCEL_RQ",
        "C_CANCEL",
        {"MessageIDBeingRespondedTo": 5},
    ),
    (
        NActionRQ(
            message_id=4,
            requested_sop_class_uid=STORAGE_COMMITMENT,
            requested_sop_instance_uid=STORAGE_COMMITMENT_INSTANCE,
            action_type_id=1,
            has_dataset=True,
        ),
        "N_ACTION_RQ",
        "N_ACTION",
        {
            "MessageID": 4,
            "RequestedSOPClassUID": STORAGE_COMMITMENT,
            "RequestedSOPInstanceUID": STORAGE_COMMITMENT_INSTANCE,
            "ActionTypeID": 1,
            "ActionInformation": BytesIO(b"\x08\x00\x18\x00"),
        },
    ),
    (
        NEventReportRQ(
            message_id=6,
            affected_sop_class_uid=STORAGE_COMMITMENT,
            affected_sop_instance_uid=STORAGE_COMMITMENT_INSTANCE,
            event_type_id=2,
            has_dataset=True,
        ),
        "N_EVENT_REPORT_RQ",
        "N_EVENT_REPORT",
        {
            "MessageID": 6,
            "AffectedSOPClassUID": STORAGE_COMMITMENT,
            "AffectedSOPInstanceUID": STORAGE_COMMITMENT_INSTANCE,
            "EventTypeID": 2,
            "EventInformation": BytesIO(b"\x08\x00\x18\x00"),
        },
    ),
    (
        NGetRQ(
            message_id=8,
            requested_sop_class_uid="1.2.840.10008.5.1.1.16",
            requested_sop_instance_uid="1.2.840.10008.5.1.1.17",
            attribute_identifier_list=(0x21100010, 0x21100030),
        ),
        "N_GET_RQ",
        "N_GET",
        {
            "MessageID": 8,
            "RequestedSOPClassUID": "1.2.840.10008.5.1.1.16",
            "RequestedSOPInstanceUID": "1.2.840.10008.5.1.1.17",
            "AttributeIdentifierList": [0x21100010, 0x21100030],
        },
    ),
]


@pytest.mark.parametrize(("ours", "message", "primitive", "attrs"), CROSS_CHECKS)
def test_encoding_matches_pynetdicom(
    ours: Message, message: str, primitive: str, attrs: dict[str, Any]
) -> None:
    theirs = _pynetdicom_command(message, primitive, **attrs)
    assert encode_command(ours) == theirs
    assert decode_command(theirs) == ours


@pytest.mark.parametrize(("ours", "message", "primitive", "attrs"), CROSS_CHECKS)
def test_pynetdicom_decodes_ours(
    ours: Message, message: str, primitive: str, attrs: dict[str, Any]
) -> None:
    ds = decode(BytesIO(encode_command(ours)), True, True)
    assert ds.CommandField == ours.command_field
    assert (ds.CommandDataSetType != NO_DATASET) == ours.has_dataset
    for keyword, value in attrs.items():
        if not isinstance(value, BytesIO):
            assert ds[keyword].value == value, keyword


def test_cmove_rsp_suboperation_counts_from_pynetdicom() -> None:
    raw = _pynetdicom_command(
        "C_GET_RSP",
        "C_GET",
        MessageIDBeingRespondedTo=3,
        Status=0xB000,
        NumberOfRemainingSuboperations=0,
        NumberOfCompletedSuboperations=7,
        NumberOfFailedSuboperations=2,
        NumberOfWarningSuboperations=1,
    )
    msg = decode_command(raw)
    assert isinstance(msg, CGetRSP)
    assert (
        msg.number_of_remaining_suboperations,
        msg.number_of_completed_suboperations,
        msg.number_of_failed_suboperations,
        msg.number_of_warning_suboperations,
    ) == (0, 7, 2, 1)
    assert msg.status == 0xB000
    assert not msg.has_dataset


# --- properties ------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", COMMAND_CLASSES.values(), ids=lambda cls: cls.__name__)
@settings(max_examples=30)
@given(data=st.data())
def test_round_trip_every_message_class(cls: type[Message], data: st.DataObject) -> None:
    msg = data.draw(messages_of(cls))
    assert decode_command(encode_command(msg)) == msg


@settings(max_examples=200)
@given(messages)
def test_encoding_is_ordered_even_and_self_consistent(msg: Message) -> None:
    raw = encode_command(msg)
    tags = []
    offset = 0
    while offset < len(raw):
        group, elem, length = struct.unpack_from("<HHI", raw, offset)
        assert group == 0
        assert length % 2 == 0
        tags.append(elem)
        offset += 8 + length
    assert offset == len(raw)
    assert tags == sorted(set(tags))
    assert struct.unpack_from("<I", raw, 8)[0] == len(raw) - 12


@settings(max_examples=200)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_decode_or_raise_remote_error(data: bytes) -> None:
    try:
        msg = decode_command(data)
    except RemoteProtocolError as exc:
        assert exc.reason == AbortReason.INVALID_PDU_PARAMETER_VALUE
    else:
        assert type(msg) in COMMAND_CLASSES.values()


@settings(max_examples=200)
@given(messages, st.data())
def test_mutated_command_sets_decode_or_raise_remote_error(
    msg: Message, data: st.DataObject
) -> None:
    raw = bytearray(encode_command(msg))
    index = data.draw(st.integers(0, len(raw) - 1))
    raw[index] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    with contextlib.suppress(RemoteProtocolError):
        decode_command(bytes(raw[:cut]))


# --- malformed command sets ------------------------------------------------------------------


def _element(elem: int, value: bytes, group: int = 0) -> bytes:
    return struct.pack("<HHI", group, elem, len(value)) + value


def _us(elem: int, value: int) -> bytes:
    return _element(elem, struct.pack("<H", value))


ECHO_BODY = _us(0x0100, 0x0030) + _us(0x0110, 1) + _us(0x0800, 0x0101)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "Command Field"),
        (_us(0x0110, 1), "Command Field"),
        (_us(0x0100, 0x0031) + _us(0x0110, 1), "unknown Command Field 0x0031"),
        (ECHO_BODY[:-1], "runs past the end"),
        (ECHO_BODY + b"\x00\x00", "truncated"),
        (ECHO_BODY + _element(0x0010, b"XX", group=0x0008), "outside group 0000"),
        (ECHO_BODY + _us(0x0110, 2), "repeats"),
        (_element(0x0000, struct.pack("<I", 99)) + ECHO_BODY, "Group Length"),
        (_us(0x0100, 0x0030) + _us(0x0800, 0x0101), "lacks message_id"),
        (_us(0x0100, 0x0030) + _element(0x0110, b"\x01\x00\x00\x00"), "(0000,0110)"),
        (ECHO_BODY[:-10] + _element(0x0800, b"\x01"), "Command Data Set Type"),
        (
            _us(0x0100, 0x8001) + _us(0x0120, 1) + _us(0x0900, 0) + _element(0x0901, b"\x10\x00"),
            "(0000,0901)",
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_malformed_command_sets_raise_remote_error(data: bytes, fragment: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_command(data)
    assert info.value.reason == AbortReason.INVALID_PDU_PARAMETER_VALUE
    assert fragment in str(info.value)


def test_decoding_is_liberal_about_order_unknown_elements_and_padding() -> None:
    data = (
        _us(0x0800, 0x0101)
        + _element(0x0010, b"RETIRED ")  # (0000,0010) Command Recognition Code, retired
        + _us(0x0110, 1)
        + _us(0x0100, 0x0030)
        + _element(0x0002, b"1.2.840.10008.1.1 ")  # space-padded UID, as some peers send
    )
    assert decode_command(data) == CEchoRQ(message_id=1)


def test_missing_data_set_type_means_none_and_any_other_value_means_present() -> None:
    without = _us(0x0100, 0x0020) + _us(0x0110, 1) + _element(0x0002, STUDY_ROOT_FIND.encode())
    assert decode_command(without) == CFindRQ(
        message_id=1, affected_sop_class_uid=STUDY_ROOT_FIND, has_dataset=False
    )
    dcmtk_style = without + _us(0x0800, 0x0102)
    assert decode_command(dcmtk_style).has_dataset


@pytest.mark.parametrize(
    "msg",
    [
        CEchoRQ(message_id=0x10000),
        CEchoRQ(message_id=-1),
        CEchoRQ(message_id=1, affected_sop_class_uid="1.2.é"),
        NSetRSP(message_id_being_responded_to=1, status=0, offending_element=(1 << 32,)),
    ],
)
def test_unencodable_values_raise_local_error(msg: Message) -> None:
    with pytest.raises(LocalProtocolError):
        encode_command(msg)


def test_registry_covers_every_command_field_of_ps3_7() -> None:
    expected = {
        0x0001: "C-STORE-RQ", 0x0010: "C-GET-RQ", 0x0020: "C-FIND-RQ", 0x0021: "C-MOVE-RQ",
        0x0030: "C-ECHO-RQ", 0x0100: "N-EVENT-REPORT-RQ", 0x0110: "N-GET-RQ",
        0x0120: "N-SET-RQ", 0x0130: "N-ACTION-RQ", 0x0140: "N-CREATE-RQ", 0x0150: "N-DELETE-RQ",
    }  # fmt: skip
    expected |= {field | 0x8000: name.replace("-RQ", "-RSP") for field, name in expected.items()}
    expected[0x0FFF] = "C-CANCEL-RQ"
    assert dict(COMMAND_NAMES) == expected
    for field, cls in COMMAND_CLASSES.items():
        kind, *words, direction = COMMAND_NAMES[field].split("-")
        assert cls.command_field == field
        assert cls.__name__ == kind + "".join(w.title() for w in words) + direction


def test_is_request() -> None:
    assert is_request(CEchoRQ(message_id=1))
    assert is_request(CCancelRQ(message_id_being_responded_to=1))
    assert not is_request(CEchoRSP(message_id_being_responded_to=1, status=0))


def test_requests_default_has_dataset_per_service() -> None:
    store = CStoreRQ(message_id=1, affected_sop_class_uid="1.2", affected_sop_instance_uid="1.3")
    assert store.has_dataset
    assert not CEchoRQ(message_id=1).has_dataset
    assert not CStoreRSP(message_id_being_responded_to=1, status=0).has_dataset
