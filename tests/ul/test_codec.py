"""Tests for the PDU codec (PS3.8 9.3, PS3.7 Annex D): golden bytes, round trips, fuzzing."""

from __future__ import annotations

import itertools
import re
import struct
import time
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stellarpacs.errors import AbortReason, LocalProtocolError, RemoteProtocolError
from stellarpacs.ul.codec import decode_pdu, encode_pdu
from stellarpacs.ul.pdus import (
    PDU,
    AAbort,
    AAssociateAC,
    AAssociateRJ,
    AAssociateRQ,
    AReleaseRP,
    AReleaseRQ,
    AsynchronousOperationsWindow,
    ContextResult,
    PDataTF,
    PresentationContextAC,
    PresentationContextRQ,
    PresentationDataValue,
    RoleSelection,
    SOPClassCommonExtendedNegotiation,
    SOPClassExtendedNegotiation,
    UserIdentityAC,
    UserIdentityRQ,
    UserIdentityType,
    UserInformation,
)
from stellarpacs.ul.reader import PDUReader
from tests.ul import strategies as S

VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
OUR_UID = "1.2.826.0.1.3680043.2.914"


def unhex(text: str) -> bytes:
    """Bytes from commented hex: everything after '#' on a line is ignored."""
    return bytes.fromhex(re.sub(r"#.*", "", text))


def ascii_hex(text: str) -> str:
    return text.encode("ascii").hex()


# ------------------------------------------------------------------------ golden fixtures

RQ_BYTES = unhex(
    f"""
    01 00 000000cb                       # A-ASSOCIATE-RQ, PDU-length 203
    0001 0000                            # protocol version 1, reserved
    {ascii_hex("ANY-SCP         ")}      # called AE title, space padded to 16
    {ascii_hex("ECHOSCU         ")}      # calling AE title
    {"00" * 32}                          # reserved
    10 00 0015 {ascii_hex("1.2.840.10008.3.1.1.1")}   # application context item, 21 bytes
    20 00 002e 01 00 00 00               # presentation context RQ, length 46, id 1
      30 00 0011 {ascii_hex(VERIFICATION)}   # abstract syntax: Verification
      40 00 0011 {ascii_hex(IMPLICIT_LE)}    # transfer syntax: Implicit VR Little Endian
    50 00 0038                           # user information, length 56
      51 00 0004 00004000                # maximum length 16384
      52 00 0019 {ascii_hex(OUR_UID)}    # implementation class UID, 25 bytes
      55 00 000f {ascii_hex("StellarPACS_1.3")}   # implementation version name, 15 bytes
    """
)
RQ = AAssociateRQ(
    called_ae_title="ANY-SCP",
    calling_ae_title="ECHOSCU",
    presentation_contexts=(PresentationContextRQ(1, VERIFICATION, (IMPLICIT_LE,)),),
    user_information=UserInformation(
        maximum_length=16384,
        implementation_class_uid=OUR_UID,
        implementation_version_name="StellarPACS_1.3",
    ),
)

AC_BYTES = unhex(
    f"""
    02 00 000000ca                       # A-ASSOCIATE-AC, PDU-length 202
    0001 0000                            # protocol version 1, reserved
    {ascii_hex("ANY-SCP         ")}      # called AE title (echoed from the RQ)
    {ascii_hex("ECHOSCU         ")}      # calling AE title
    {"00" * 32}                          # reserved
    10 00 0015 {ascii_hex("1.2.840.10008.3.1.1.1")}   # application context item
    21 00 0019 01 00 00 00               # presentation context AC, id 1, result 0 accepted
      40 00 0011 {ascii_hex(IMPLICIT_LE)}    # transfer syntax: Implicit VR Little Endian
    21 00 0008 03 00 03 00               # presentation context AC, id 3, result 3 refused
      40 00 0000                         # empty transfer syntax, not significant
    50 00 0040                           # user information, length 64
      51 00 0004 00000000                # maximum length 0: unlimited
      52 00 0019 {ascii_hex(OUR_UID)}    # implementation class UID
      55 00 000f {ascii_hex("StellarPACS_1.3")}   # implementation version name
      59 00 0004 0002 6f6b               # user identity AC: server response "ok"
    """
)
AC = AAssociateAC(
    called_ae_title="ANY-SCP",
    calling_ae_title="ECHOSCU",
    presentation_contexts=(
        PresentationContextAC(1, ContextResult.ACCEPTANCE, IMPLICIT_LE),
        PresentationContextAC(3, ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED, ""),
    ),
    user_information=UserInformation(
        maximum_length=0,
        implementation_class_uid=OUR_UID,
        implementation_version_name="StellarPACS_1.3",
        user_identity=UserIdentityAC(b"ok"),
    ),
)

RJ_BYTES = unhex("03 00 00000004  00 01 01 07  # permanent, service-user, called AE unknown")
RJ = AAssociateRJ(result=1, source=1, reason=7)

PDATA_BYTES = unhex(
    """
    04 00 00000018                       # P-DATA-TF, PDU-length 24
    0000000a 01 03 0102030405060708      # PDV: length 10, context 1, command + last, 8 bytes
    00000006 01 00 aabbccdd              # PDV: length 6, context 1, data set, not last
    """
)
PDATA = PDataTF(
    (
        PresentationDataValue(1, is_command=True, is_last=True, data=bytes(range(1, 9))),
        PresentationDataValue(1, is_command=False, is_last=False, data=b"\xaa\xbb\xcc\xdd"),
    )
)

RELEASE_RQ_BYTES = unhex("05 00 00000004 00000000")
RELEASE_RP_BYTES = unhex("06 00 00000004 00000000")
ABORT_BYTES = unhex("07 00 00000004  00 00 02 06  # provider, invalid PDU parameter value")
ABORT = AAbort(source=2, reason=6)

GOLDEN: list[tuple[PDU, bytes]] = [
    (RQ, RQ_BYTES),
    (AC, AC_BYTES),
    (RJ, RJ_BYTES),
    (PDATA, PDATA_BYTES),
    (AReleaseRQ(), RELEASE_RQ_BYTES),
    (AReleaseRP(), RELEASE_RP_BYTES),
    (ABORT, ABORT_BYTES),
]
GOLDEN_IDS = [type(pdu).__name__ for pdu, _ in GOLDEN]


@pytest.mark.parametrize(("pdu", "wire"), GOLDEN, ids=GOLDEN_IDS)
def test_golden_encode(pdu: PDU, wire: bytes) -> None:
    assert encode_pdu(pdu) == wire


@pytest.mark.parametrize(("pdu", "wire"), GOLDEN, ids=GOLDEN_IDS)
def test_golden_decode(pdu: PDU, wire: bytes) -> None:
    assert decode_pdu(wire) == pdu
    assert decode_pdu(bytearray(wire)) == pdu
    assert decode_pdu(memoryview(wire)) == pdu


# ------------------------------------------------------------------------ pynetdicom interop


def _pynetdicom_rq_bytes() -> bytes:
    from pynetdicom.pdu import A_ASSOCIATE_RQ
    from pynetdicom.pdu_primitives import (
        A_ASSOCIATE,
        ImplementationClassUIDNotification,
        ImplementationVersionNameNotification,
        MaximumLengthNotification,
        SCP_SCU_RoleSelectionNegotiation,
        UserIdentityNegotiation,
    )
    from pynetdicom.presentation import build_context

    primitive = A_ASSOCIATE()
    primitive.application_context_name = "1.2.840.10008.3.1.1.1"
    primitive.calling_ae_title = "ECHOSCU"
    primitive.called_ae_title = "ANY-SCP"
    verification = build_context(VERIFICATION, [IMPLICIT_LE, EXPLICIT_LE])
    verification.context_id = 1
    ct = build_context(CT_STORAGE, [EXPLICIT_LE])
    ct.context_id = 3
    primitive.presentation_context_definition_list = [verification, ct]
    max_length = MaximumLengthNotification()
    max_length.maximum_length_received = 16382
    impl_uid = ImplementationClassUIDNotification()
    impl_uid.implementation_class_uid = "1.2.826.0.1.3680043.9.3811.3.0.4"
    version = ImplementationVersionNameNotification()
    version.implementation_version_name = "PYNETDICOM_304"
    role = SCP_SCU_RoleSelectionNegotiation()
    role.sop_class_uid = CT_STORAGE
    role.scu_role = False
    role.scp_role = True
    identity = UserIdentityNegotiation()
    identity.user_identity_type = 2
    identity.positive_response_requested = True
    identity.primary_field = b"user"
    identity.secondary_field = b"secret"
    primitive.user_information = [max_length, impl_uid, version, role, identity]
    wire: bytes = A_ASSOCIATE_RQ(primitive).encode()
    return wire


def test_decodes_pynetdicom_associate_rq() -> None:
    pdu = decode_pdu(_pynetdicom_rq_bytes())
    assert pdu == AAssociateRQ(
        called_ae_title="ANY-SCP",
        calling_ae_title="ECHOSCU",
        presentation_contexts=(
            PresentationContextRQ(1, VERIFICATION, (IMPLICIT_LE, EXPLICIT_LE)),
            PresentationContextRQ(3, CT_STORAGE, (EXPLICIT_LE,)),
        ),
        user_information=UserInformation(
            maximum_length=16382,
            implementation_class_uid="1.2.826.0.1.3680043.9.3811.3.0.4",
            implementation_version_name="PYNETDICOM_304",
            role_selections=(RoleSelection(CT_STORAGE, scu_role=False, scp_role=True),),
            user_identity=UserIdentityRQ(
                UserIdentityType.USERNAME_AND_PASSCODE, True, b"user", b"secret"
            ),
        ),
    )


def test_pynetdicom_decodes_our_associate_rq() -> None:
    from pynetdicom.pdu import A_ASSOCIATE_RQ

    theirs = A_ASSOCIATE_RQ()
    theirs.decode(RQ_BYTES)
    assert theirs.called_ae_title == "ANY-SCP"
    assert theirs.calling_ae_title == "ECHOSCU"
    [context] = theirs.presentation_context
    assert (context.context_id, context.abstract_syntax) == (1, VERIFICATION)
    assert context.transfer_syntax == [IMPLICIT_LE]
    user_info = theirs.user_information
    assert user_info is not None
    assert user_info.maximum_length == 16384
    assert user_info.implementation_class_uid == OUR_UID
    assert user_info.implementation_version_name == "StellarPACS_1.3"


def test_pynetdicom_decodes_our_p_data_tf() -> None:
    from pynetdicom.pdu import P_DATA_TF

    theirs = P_DATA_TF()
    theirs.decode(PDATA_BYTES)
    values = theirs.to_primitive().presentation_data_value_list
    assert values == [(1, b"\x03" + bytes(range(1, 9))), (1, b"\x00\xaa\xbb\xcc\xdd")]


# ------------------------------------------------------------------------ round trips


@settings(max_examples=200)
@given(S.any_pdu())
def test_round_trip_any_pdu(pdu: PDU) -> None:
    assert decode_pdu(encode_pdu(pdu)) == pdu


@pytest.mark.parametrize(
    "strategy",
    [
        S.a_associate_rq(),
        S.a_associate_ac(),
        S.a_associate_rj(),
        S.p_data_tf(),
        S.a_release_rq(),
        S.a_release_rp(),
        S.a_abort(),
    ],
    ids=["RQ", "AC", "RJ", "P-DATA-TF", "RELEASE-RQ", "RELEASE-RP", "ABORT"],
)
@settings(max_examples=60)
@given(data=st.data())
def test_round_trip_each_pdu_type(strategy: st.SearchStrategy[PDU], data: st.DataObject) -> None:
    pdu = data.draw(strategy)
    assert decode_pdu(encode_pdu(pdu)) == pdu


_SUB_ITEMS_RQ: dict[str, st.SearchStrategy[Any]] = {
    "maximum_length": st.integers(0, 0xFFFFFFFF),
    "implementation_class_uid": S.uids(),
    "implementation_version_name": S.version_names(),
    "asynchronous_operations_window": S.async_windows(),
    "role_selections": st.lists(S.role_selections(), min_size=1, max_size=3).map(tuple),
    "extended_negotiations": st.lists(S.extended_negotiations(), min_size=1, max_size=3).map(tuple),
    "common_extended_negotiations": st.lists(
        S.common_extended_negotiations(), min_size=1, max_size=3
    ).map(tuple),
    "user_identity": S.user_identities_rq(),
}
_SUB_ITEMS_AC = {
    **{k: v for k, v in _SUB_ITEMS_RQ.items() if k != "common_extended_negotiations"},
    "user_identity": S.user_identities_ac(),
}


@pytest.mark.parametrize("field", sorted(_SUB_ITEMS_RQ))
@settings(max_examples=40)
@given(data=st.data())
def test_round_trip_each_sub_item_in_rq(field: str, data: st.DataObject) -> None:
    user_info = UserInformation(**{"maximum_length": None, field: data.draw(_SUB_ITEMS_RQ[field])})
    pdu = data.draw(S.a_associate_rq(st.just(user_info)))
    assert decode_pdu(encode_pdu(pdu)) == pdu


@pytest.mark.parametrize("field", sorted(_SUB_ITEMS_AC))
@settings(max_examples=40)
@given(data=st.data())
def test_round_trip_each_sub_item_in_ac(field: str, data: st.DataObject) -> None:
    user_info = UserInformation(**{"maximum_length": None, field: data.draw(_SUB_ITEMS_AC[field])})
    pdu = data.draw(S.a_associate_ac(st.just(user_info)))
    assert decode_pdu(encode_pdu(pdu)) == pdu


def test_sub_items_are_written_in_item_type_order() -> None:
    user_info = UserInformation(
        maximum_length=1,
        implementation_class_uid="1.2",
        implementation_version_name="V",
        asynchronous_operations_window=AsynchronousOperationsWindow(1, 1),
        role_selections=(RoleSelection("1.3", True, False),),
        extended_negotiations=(SOPClassExtendedNegotiation("1.4", b"\x01"),),
        common_extended_negotiations=(SOPClassCommonExtendedNegotiation("1.5", "1.6", ("1.7",)),),
        user_identity=UserIdentityRQ(UserIdentityType.USERNAME, False, b"u"),
    )
    wire = encode_pdu(AAssociateRQ("A", "B", (), user_info))
    ui_start = wire.index(b"\x50\x00", 6 + 68 + 25)
    types = []
    pos = ui_start + 4
    while pos < len(wire):
        types.append(wire[pos])
        pos += 4 + struct.unpack_from(">H", wire, pos + 2)[0]
    assert types == [0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58]


# ------------------------------------------------------------------------ decoding rules


def _with_user_info(body: bytes, pdu_type: int = 0x01) -> bytes:
    """An association PDU with the fixed fields, an application context and ``body`` items."""
    fixed = b"\x00\x01\x00\x00" + b"A".ljust(16) + b"B".ljust(16) + bytes(32)
    app = b"\x10\x00\x00\x15" + b"1.2.840.10008.3.1.1.1"
    payload = fixed + app + body
    return struct.pack(">BxI", pdu_type, len(payload)) + payload


def _item(item_type: int, body: bytes) -> bytes:
    return struct.pack(">BxH", item_type, len(body)) + body


def test_rq_without_user_information_item() -> None:
    pdu = decode_pdu(_with_user_info(b""))
    assert isinstance(pdu, AAssociateRQ)
    assert pdu.user_information == UserInformation(maximum_length=None)
    assert pdu.presentation_contexts == ()


def test_user_information_without_mandatory_sub_items_is_none() -> None:
    pdu = decode_pdu(_with_user_info(_item(0x50, _item(0x55, b"X"))))
    assert isinstance(pdu, AAssociateRQ)
    ui = pdu.user_information
    assert ui.maximum_length is None
    assert ui.implementation_class_uid is None
    assert ui.implementation_version_name == "X"


def test_unknown_user_information_sub_item_is_skipped() -> None:
    body = _item(0x51, b"\x00\x00\x40\x00") + _item(0x5F, b"whatever") + _item(0x52, b"1.2.3")
    pdu = decode_pdu(_with_user_info(_item(0x50, body)))
    assert isinstance(pdu, AAssociateRQ)
    assert pdu.user_information == UserInformation(16384, "1.2.3")


def test_unknown_top_level_item_is_skipped() -> None:
    pc = _item(0x20, b"\x01\x00\x00\x00" + _item(0x30, b"1.2") + _item(0x40, b"1.3"))
    pc_with_unknown_sub = _item(
        0x20, b"\x03\x00\x00\x00" + _item(0x30, b"1.4") + _item(0x77, b"zz") + _item(0x40, b"1.5")
    )
    pdu = decode_pdu(_with_user_info(_item(0x11, b"??") + pc + pc_with_unknown_sub))
    assert isinstance(pdu, AAssociateRQ)
    assert pdu.presentation_contexts == (
        PresentationContextRQ(1, "1.2", ("1.3",)),
        PresentationContextRQ(3, "1.4", ("1.5",)),
    )


def test_uid_padding_and_ae_title_padding_are_stripped() -> None:
    wire = bytearray(_with_user_info(_item(0x50, _item(0x52, b"1.2.3\x00"))))
    wire[10:26] = b"  PADDED        "
    pdu = decode_pdu(bytes(wire))
    assert isinstance(pdu, AAssociateRQ)
    assert pdu.called_ae_title == "PADDED"
    assert pdu.user_information.implementation_class_uid == "1.2.3"


def test_unknown_user_identity_type_is_kept_as_int() -> None:
    identity = _item(0x58, b"\x63\x00\x00\x01u\x00\x00")
    pdu = decode_pdu(_with_user_info(_item(0x50, identity)))
    assert isinstance(pdu, AAssociateRQ)
    assert pdu.user_information.user_identity == UserIdentityRQ(99, False, b"u", b"")


def _reason(wire: bytes) -> AbortReason:
    with pytest.raises(RemoteProtocolError) as info:
        decode_pdu(wire)
    return AbortReason(info.value.reason)


def test_malformed_pdus_carry_the_fitting_abort_reason() -> None:
    invalid = AbortReason.INVALID_PDU_PARAMETER_VALUE
    unexpected = AbortReason.UNEXPECTED_PDU_PARAMETER
    assert _reason(b"\x09\x00\x00\x00\x00\x04\x00\x00\x00\x00") == AbortReason.UNRECOGNIZED_PDU
    assert _reason(b"\x05\x00\x00\x00\x00\x05\x00\x00\x00\x00") == invalid  # length disagrees
    assert _reason(b"\x05\x00\x00\x00\x00\x03\x00\x00\x00") == invalid  # fixed length is 4
    assert _reason(b"\x05\x00") == invalid  # short header
    assert _reason(b"\x04\x00\x00\x00\x00\x00") == invalid  # P-DATA-TF without PDV
    assert _reason(unhex("04 00 0000000b  00000001 01  00000002 01 00")) == invalid  # PDV len 1
    assert _reason(b"\x04\x00\x00\x00\x00\x06\x00\x00\x00\x02\x02\x00") == invalid  # even id
    assert _reason(b"\x04\x00\x00\x00\x00\x06\x00\x00\x00\x09\x01\x00") == invalid  # overrun
    # A presentation context item with an even ID, and one whose result is undefined.
    even = _item(0x20, b"\x02\x00\x00\x00" + _item(0x30, b"1.2") + _item(0x40, b"1.3"))
    assert _reason(_with_user_info(even)) == invalid
    bad_result = _item(0x21, b"\x01\x00\x07\x00" + _item(0x40, b"1.3"))
    assert _reason(_with_user_info(bad_result, pdu_type=0x02)) == invalid
    # An item overrunning its parent, a UID that is too long or not ASCII.
    assert _reason(_with_user_info(b"\x50\x00\x00\x09\x51\x00\x00\x04\x00")) == invalid
    assert _reason(_with_user_info(_item(0x50, _item(0x52, b"1" * 65)))) == invalid
    assert _reason(_with_user_info(_item(0x50, _item(0x52, b"1.\xff")))) == invalid
    assert _reason(_with_user_info(_item(0x50, _item(0x51, b"\x00\x00\x40")))) == invalid
    # Known items in places the standard does not allow them.
    ac_context_in_rq = _item(0x21, b"\x01\x00\x00\x00" + _item(0x40, b"1.3"))
    assert _reason(_with_user_info(ac_context_in_rq)) == unexpected
    identity_ac_in_rq = _item(0x50, _item(0x59, b"\x00\x00"))
    assert _reason(_with_user_info(identity_ac_in_rq)) == unexpected
    two_user_infos = _item(0x50, b"") + _item(0x50, b"")
    assert _reason(_with_user_info(two_user_infos)) == unexpected
    two_max_lengths = _item(0x50, _item(0x51, bytes(4)) * 2)
    assert _reason(_with_user_info(two_max_lengths)) == unexpected


def test_missing_application_context_is_refused() -> None:
    wire = bytearray(_with_user_info(b""))
    del wire[6 + 68 :]
    wire[2:6] = struct.pack(">I", 68)
    assert _reason(bytes(wire)) == AbortReason.INVALID_PDU_PARAMETER_VALUE


# ------------------------------------------------------------------------ encoding errors


@pytest.mark.parametrize(
    "pdu",
    [
        replace(RQ, called_ae_title="A" * 17),
        replace(RQ, calling_ae_title="ÉCHO"),
        replace(RQ, application_context_name="1." * 33),
        replace(RQ, application_context_name="1.2.é"),
        replace(RQ, presentation_contexts=(PresentationContextRQ(2, VERIFICATION, ()),)),
        replace(RQ, presentation_contexts=(PresentationContextRQ(1, "", ()),)),
        replace(RQ, user_information=UserInformation(implementation_version_name="V" * 17)),
        replace(RQ, user_information=UserInformation(user_identity=UserIdentityAC(b""))),
        replace(RQ, presentation_contexts=(AC.presentation_contexts[0],)),  # type: ignore[arg-type]
        replace(AC, presentation_contexts=(PresentationContextAC(1, ContextResult(0), ""),)),
        replace(AC, user_information=UserInformation(user_identity=UserIdentityRQ(1, True, b""))),
        PDataTF((PresentationDataValue(0, True, True, b""),)),
        AAbort(source=256),
    ],
)
def test_encoder_refuses_what_the_wire_cannot_carry(pdu: PDU) -> None:
    with pytest.raises(LocalProtocolError):
        encode_pdu(pdu)


def test_p_data_tf_fast_path_keeps_the_data_intact() -> None:
    data = bytes(range(256)) * 64  # 16 KiB
    wire = encode_pdu(PDataTF((PresentationDataValue(5, False, True, data),)))
    assert wire[:12] == unhex("04 00 00004006 00004002 05 02")
    assert wire[12:] == data
    assert decode_pdu(wire) == PDataTF((PresentationDataValue(5, False, True, data),))


# ------------------------------------------------------------------------ PDUReader


def test_reader_returns_none_until_a_pdu_is_complete() -> None:
    reader = PDUReader()
    assert reader.next_pdu() is None
    for i, byte in enumerate(RQ_BYTES[:-1]):
        reader.feed(bytes([byte]))
        assert reader.next_pdu() is None
        assert reader.buffered == i + 1
    reader.feed(RQ_BYTES[-1:])
    assert reader.next_pdu() == RQ
    assert reader.buffered == 0
    assert reader.next_pdu() is None


def test_reader_yields_many_pdus_from_one_feed_in_order() -> None:
    reader = PDUReader()
    pdus = [pdu for pdu, _ in GOLDEN]
    reader.feed(b"".join(wire for _, wire in GOLDEN) + RQ_BYTES[:10])
    got = [reader.next_pdu() for _ in pdus]
    assert got == pdus
    assert reader.next_pdu() is None
    assert reader.buffered == 10


def test_reader_refuses_oversize_p_data_from_its_header_alone() -> None:
    reader = PDUReader(max_pdata_length=16384)
    reader.feed(struct.pack(">BxI", 0x04, 16385))  # the header, no body yet
    with pytest.raises(RemoteProtocolError) as info:
        reader.next_pdu()
    assert info.value.reason == AbortReason.INVALID_PDU_PARAMETER_VALUE
    assert "16385" in str(info.value) and "16384" in str(info.value)


def test_reader_accepts_p_data_at_the_limit_and_unlimited_when_zero() -> None:
    pdu = PDataTF((PresentationDataValue(1, False, False, bytes(16378)),))
    wire = encode_pdu(pdu)
    assert len(wire) == 6 + 16384
    for limit in (16384, 0):
        reader = PDUReader(max_pdata_length=limit)
        reader.feed(wire)
        assert reader.next_pdu() == pdu
    big = encode_pdu(PDataTF((PresentationDataValue(1, False, False, bytes(100_000)),)))
    reader = PDUReader(max_pdata_length=0)
    reader.feed(big)
    assert reader.next_pdu() is not None


def test_reader_refuses_other_oversize_pdus_and_unknown_types_from_the_header() -> None:
    reader = PDUReader(max_other_length=1000)
    reader.feed(struct.pack(">BxI", 0x01, 1001))
    with pytest.raises(RemoteProtocolError):
        reader.next_pdu()
    reader = PDUReader()
    reader.feed(b"\x42\x00\x00\x00\x00\x04")
    with pytest.raises(RemoteProtocolError) as info:
        reader.next_pdu()
    assert info.value.reason == AbortReason.UNRECOGNIZED_PDU


def test_reader_streams_16k_p_data_in_64k_chunks_in_linear_time() -> None:
    pdu = PDataTF((PresentationDataValue(1, False, False, bytes(16378)),))
    wire = encode_pdu(pdu)
    stream = wire * 2000  # about 32 MiB
    reader = PDUReader()
    count = 0
    started = time.perf_counter()
    for offset in range(0, len(stream), 65536):
        reader.feed(stream[offset : offset + 65536])
        while (got := reader.next_pdu()) is not None:
            assert got.pdvs[0].data == pdu.pdvs[0].data  # type: ignore[union-attr]
            count += 1
        assert reader.buffered < 65536 + len(wire)
    elapsed = time.perf_counter() - started
    assert count == 2000
    assert reader.buffered == 0
    assert elapsed < 10.0  # quadratic copying would take minutes


# ------------------------------------------------------------------------ fuzz invariants


def _decode_or_remote_error(wire: bytes) -> PDU | None:
    """Decode ``wire``; only RemoteProtocolError may escape, and results must re-encode."""
    try:
        pdu = decode_pdu(wire)
    except RemoteProtocolError as exc:
        assert isinstance(exc.reason, int)
        return None
    assert decode_pdu(encode_pdu(pdu)) == pdu
    return pdu


def _read_all(reader: PDUReader, chunks: list[bytes]) -> list[PDU]:
    out: list[PDU] = []
    try:
        for chunk in chunks:
            reader.feed(chunk)
            while (pdu := reader.next_pdu()) is not None:
                out.append(pdu)
    except RemoteProtocolError:
        pass
    return out


def _chunked(wire: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(wire) + 1) for c in cuts} | {0, len(wire)})
    return [wire[a:b] for a, b in itertools.pairwise(points)]


@settings(max_examples=200)
@given(st.binary(max_size=300))
def test_fuzz_arbitrary_bytes(wire: bytes) -> None:
    _decode_or_remote_error(wire)


@settings(max_examples=200)
@given(st.sampled_from([0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07]), st.binary(max_size=300))
def test_fuzz_arbitrary_bodies_with_a_consistent_header(pdu_type: int, body: bytes) -> None:
    _decode_or_remote_error(struct.pack(">BxI", pdu_type, len(body)) + body)


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    wire = bytearray(encode_pdu(draw(S.any_pdu())))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "set"]))
        pos = draw(st.integers(0, max(len(wire) - 1, 0)))
        if op == "flip" and wire:
            wire[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            wire[pos:pos] = draw(st.binary(min_size=1, max_size=4))
        elif op == "delete" and wire:
            del wire[pos : pos + draw(st.integers(1, 4))]
        elif wire:
            wire[pos] = draw(st.integers(0, 255))
    return bytes(wire)


@settings(max_examples=200)
@given(_mutated())
def test_fuzz_mutated_valid_encodings(wire: bytes) -> None:
    _decode_or_remote_error(wire)


@settings(max_examples=100)
@given(st.one_of(_mutated(), st.binary(max_size=200)), st.lists(st.integers(0, 400)))
def test_fuzz_reader_whole_bytewise_and_chunked_agree(wire: bytes, cuts: list[int]) -> None:
    whole = _read_all(PDUReader(), [wire])
    bytewise = _read_all(PDUReader(), [wire[i : i + 1] for i in range(len(wire))])
    chunked = _read_all(PDUReader(), _chunked(wire, cuts))
    assert whole == bytewise == chunked


@settings(max_examples=100)
@given(st.lists(S.any_pdu(), min_size=1, max_size=5), st.lists(st.integers(0, 5000)))
def test_reader_recovers_any_pdu_sequence_under_any_chunking(
    pdus: list[PDU], cuts: list[int]
) -> None:
    stream = b"".join(encode_pdu(pdu) for pdu in pdus)
    reader = PDUReader(max_pdata_length=0)
    assert _read_all(reader, _chunked(stream, cuts)) == pdus
    assert reader.buffered == 0
