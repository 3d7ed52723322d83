"""The answer checks name each rule an answer breaks; cut and message_pdus cut as asked."""

from __future__ import annotations

from dataclasses import replace

import pytest

from stellarpacs.dimse.command_codec import decode_command, encode_command
from stellarpacs.dimse.commands import CEchoRQ
from stellarpacs.testing import (
    check_abort_reason,
    check_associate_ac,
    check_associate_rj,
    check_release,
    cut,
    message_pdus,
)
from stellarpacs.uids import IMPLICIT_VR_LITTLE_ENDIAN
from stellarpacs.ul.pdus import (
    AAbort,
    AAssociateAC,
    AAssociateRJ,
    AReleaseRP,
    AReleaseRQ,
    ContextResult,
    PresentationContextAC,
    RoleSelection,
    UserInformation,
)
from tests.integration.peers import associate_rq

RQ = associate_rq("SCP")
GOOD_AC = AAssociateAC(
    called_ae_title="SCP",
    calling_ae_title="RAWPEER",
    presentation_contexts=(
        PresentationContextAC(1, ContextResult.ACCEPTANCE, IMPLICIT_VR_LITTLE_ENDIAN),
    ),
    user_information=UserInformation(implementation_class_uid="1.2.3"),
)


def test_a_good_ac_has_no_problem() -> None:
    assert check_associate_ac(RQ, GOOD_AC) == []


@pytest.mark.parametrize(
    ("contexts", "problem"),
    [
        ((PresentationContextAC(1, 7, IMPLICIT_VR_LITTLE_ENDIAN),), "result 7 is not in 0..4"),  # type: ignore[arg-type]
        ((PresentationContextAC(1, ContextResult.ACCEPTANCE, "1.2.3"),), "1.2.3 was not proposed"),
        (
            (PresentationContextAC(3, ContextResult.ACCEPTANCE, "1.2.3"),),
            "context 3 was not proposed",
        ),
        ((), "context 1 was proposed and not answered"),
    ],
)
def test_context_problems(contexts: tuple[PresentationContextAC, ...], problem: str) -> None:
    problems = check_associate_ac(RQ, replace(GOOD_AC, presentation_contexts=contexts))
    assert any(problem in p for p in problems), problems


@pytest.mark.parametrize(
    ("info", "problem"),
    [
        (
            UserInformation(maximum_length=3, implementation_class_uid="1.2"),
            "Maximum Length 3 is below 7",
        ),
        (UserInformation(maximum_length=None, implementation_class_uid="1.2"), "no Maximum Length"),
        (UserInformation(), "no Implementation Class UID"),
        (
            UserInformation(
                implementation_class_uid="1.2",
                role_selections=(RoleSelection("1.2.9", True, True),),
            ),
            "role selection for 1.2.9 not proposed",
        ),
    ],
)
def test_user_information_problems(info: UserInformation, problem: str) -> None:
    problems = check_associate_ac(RQ, replace(GOOD_AC, user_information=info))
    assert any(problem in p for p in problems), problems


def test_protocol_version_and_application_context() -> None:
    bad = replace(GOOD_AC, protocol_version=2, application_context_name="1.2.3")
    problems = check_associate_ac(RQ, bad)
    assert len(problems) == 2 and "bit 0" in problems[0] and "application context" in problems[1]


@pytest.mark.parametrize(
    ("rj", "count"),
    [
        (AAssociateRJ(1, 1, 7), 0),
        (AAssociateRJ(3, 1, 7), 1),
        (AAssociateRJ(1, 2, 3), 1),
        (AAssociateRJ(1, 4, 1), 1),
    ],
)
def test_rj(rj: AAssociateRJ, count: int) -> None:
    assert len(check_associate_rj(rj)) == count


def test_release_and_abort() -> None:
    assert check_release(AReleaseRP()) == []
    assert "not A-RELEASE-RP" in check_release(AReleaseRQ())[0]
    assert "nothing" in check_release(None)[0]
    assert check_abort_reason(AAbort(2, 6)) == []
    assert check_abort_reason(AAbort(1, 0))
    assert check_abort_reason(AAbort(2, 3))


def test_cut() -> None:
    assert cut(b"abcdefg", 3) == [b"abc", b"def", b"g"]
    assert cut(b"abcdefg", [1, 2]) == [b"a", b"bc", b"de", b"fg"]
    assert cut(b"", 3) == [b""]
    with pytest.raises(ValueError):
        cut(b"abc", [0])


def test_message_pdus_mix_command_and_data_set() -> None:
    message = CEchoRQ(message_id=9, has_dataset=True)
    pdus = message_pdus(1, message, b"12345", command_sizes=40, dataset_sizes=2, pdvs_per_pdu=2)
    pdvs = [pdv for pdu in pdus for pdv in pdu.pdvs]
    assert [(p.is_command, p.is_last) for p in pdvs] == [
        (True, False), (True, True), (False, False), (False, False), (False, True),
    ]  # fmt: skip
    assert [len(p.pdvs) for p in pdus] == [2, 2, 1]
    assert decode_command(pdvs[0].data + pdvs[1].data) == message
    assert b"".join(p.data for p in pdvs[2:]) == b"12345"
    assert len(encode_command(message)) > 40
