"""Negotiation under an Admission: what the access rules refuse (PS3.8 9.3.3.2, 9.3.4).

Sans-I/O: the policy, the request and the admission in, the AC or RJ out.
"""

from __future__ import annotations

from types import MappingProxyType

from stellarpacs.uids import (
    IMPLICIT_VR_LITTLE_ENDIAN,
    STUDY_ROOT_QR_FIND,
    STUDY_ROOT_QR_GET,
    VERIFICATION,
)
from stellarpacs.ul.negotiation import AcceptorPolicy, Admission, RejectReason, Role, negotiate
from stellarpacs.ul.pdus import (
    AAssociateAC,
    AAssociateRQ,
    ContextResult,
    PresentationContextRQ,
    RoleSelection,
    UserIdentityAC,
    UserInformation,
)

IMPLICIT = IMPLICIT_VR_LITTLE_ENDIAN
CT = "1.2.840.10008.5.1.4.1.1.2"
SYNTAXES = (VERIFICATION, CT, STUDY_ROOT_QR_FIND, STUDY_ROOT_QR_GET)
POLICY = AcceptorPolicy(
    ae_title="STELLAR",
    abstract_syntaxes=MappingProxyType(dict.fromkeys(SYNTAXES, (IMPLICIT,))),
    roles=MappingProxyType({CT: Role(scu=True, scp=True)}),
    service_names=MappingProxyType(
        {VERIFICATION: "echo", CT: "store", STUDY_ROOT_QR_FIND: "find", STUDY_ROOT_QR_GET: "get"}
    ),
    scp_role_services=MappingProxyType({CT: "get"}),
)


def _rq(*roles: RoleSelection, identity: bool = False) -> AAssociateRQ:
    contexts = tuple(
        PresentationContextRQ(2 * i + 1, s, (IMPLICIT,)) for i, s in enumerate(SYNTAXES)
    )
    user = UserInformation(16384, "1.2.3", role_selections=roles)
    return AAssociateRQ("STELLAR", "MODALITY", contexts, user)


def _results(answer: object) -> dict[int, ContextResult]:
    assert isinstance(answer, AAssociateAC)
    return {pc.context_id: pc.result for pc in answer.presentation_contexts}


def test_default_admission_changes_nothing() -> None:
    assert negotiate(_rq(), POLICY) == negotiate(_rq(), POLICY, admission=Admission())


def test_refused_services_get_user_rejection() -> None:
    answer, contexts = negotiate(_rq(), POLICY, admission=Admission(services=frozenset({"find"})))
    assert _results(answer) == {
        1: ContextResult.USER_REJECTION,
        3: ContextResult.USER_REJECTION,
        5: ContextResult.ACCEPTANCE,
        7: ContextResult.USER_REJECTION,
    }
    assert [c.abstract_syntax for c in contexts.values()] == [STUDY_ROOT_QR_FIND]


def test_unserved_syntax_is_still_abstract_syntax_not_supported() -> None:
    rq = _rq()
    rq = AAssociateRQ(
        rq.called_ae_title, rq.calling_ae_title,
        (*rq.presentation_contexts, PresentationContextRQ(9, "1.2.3.4", (IMPLICIT,))),
        rq.user_information,
    )  # fmt: skip
    answer, _ = negotiate(rq, POLICY, admission=Admission(services=frozenset()))
    assert _results(answer)[9] == ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED


def test_get_only_keeps_storage_contexts_for_the_scp_role_alone() -> None:
    both = RoleSelection(CT, scu_role=True, scp_role=True)
    answer, contexts = negotiate(
        _rq(both), POLICY, admission=Admission(services=frozenset({"get"}))
    )
    assert isinstance(answer, AAssociateAC)
    assert answer.user_information.role_selections == (RoleSelection(CT, False, True),)
    ct = next(c for c in contexts.values() if c.abstract_syntax == CT)
    assert (ct.scu_role, ct.scp_role) == (False, True)
    # Without role selection the same AE cannot use the storage context at all.
    assert _results(negotiate(_rq(), POLICY, admission=Admission(services=frozenset({"get"})))[0])[
        3
    ] == (ContextResult.USER_REJECTION)


def test_store_only_is_not_granted_the_scp_role() -> None:
    both = RoleSelection(CT, scu_role=True, scp_role=True)
    answer, _ = negotiate(_rq(both), POLICY, admission=Admission(services=frozenset({"store"})))
    assert isinstance(answer, AAssociateAC)
    assert answer.user_information.role_selections == (RoleSelection(CT, True, False),)


def test_rejection_comes_after_the_called_ae_and_before_capacity() -> None:
    admission = Admission(rejection=RejectReason.CALLING_AE_NOT_RECOGNIZED)
    answer, contexts = negotiate(_rq(), POLICY, at_capacity=True, admission=admission)
    assert answer == RejectReason.CALLING_AE_NOT_RECOGNIZED.pdu() and not contexts
    assert (answer.result, answer.source, answer.reason) == (1, 1, 3)
    wrong_called = AAssociateRQ("OTHER", "MODALITY", _rq().presentation_contexts)
    answer, _ = negotiate(wrong_called, POLICY, admission=admission)
    assert answer == RejectReason.CALLED_AE_NOT_RECOGNIZED.pdu()


def test_user_identity_answer_goes_into_the_ac() -> None:
    answer, _ = negotiate(_rq(), POLICY, admission=Admission(user_identity=UserIdentityAC(b"")))
    assert isinstance(answer, AAssociateAC)
    assert answer.user_information.user_identity == UserIdentityAC(b"")
