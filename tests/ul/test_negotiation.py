"""Association negotiation: A-ASSOCIATE-RQ + policy -> AC or RJ (PS3.8 7.1, PS3.7 D.3)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stellarpacs.uids import EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN, VERIFICATION
from stellarpacs.ul import negotiation
from stellarpacs.ul.codec import decode_pdu, encode_pdu
from stellarpacs.ul.negotiation import (
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
    AcceptorPolicy,
    PresentationContext,
    Role,
    contexts_from_ac,
    negotiate,
)
from stellarpacs.ul.pdus import (
    APPLICATION_CONTEXT_NAME,
    AAssociateAC,
    AAssociateRJ,
    AAssociateRQ,
    AsynchronousOperationsWindow,
    ContextResult,
    PresentationContextAC,
    PresentationContextRQ,
    RoleSelection,
    UserInformation,
)
from tests.ul import strategies

IMPLICIT = IMPLICIT_VR_LITTLE_ENDIAN
EXPLICIT = EXPLICIT_VR_LITTLE_ENDIAN
BIG_ENDIAN = "1.2.840.10008.1.2.2"
CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
UNKNOWN = "1.2.3.4.5.6.7"

POLICY = AcceptorPolicy(
    ae_title="STELLAR",
    abstract_syntaxes={
        VERIFICATION: (IMPLICIT,),
        CT: (EXPLICIT, IMPLICIT),
        MR: (IMPLICIT, EXPLICIT),
    },
)


def make_rq(*contexts: PresentationContextRQ, **changes: Any) -> AAssociateRQ:
    rq = AAssociateRQ("STELLAR", "MODALITY", contexts, UserInformation(16384, "1.2.3", "SCU"))
    return replace(rq, **changes)


def ctx(context_id: int, abstract: str, *syntaxes: str) -> PresentationContextRQ:
    return PresentationContextRQ(context_id, abstract, syntaxes)


def accept(rq: AAssociateRQ, policy: AcceptorPolicy = POLICY) -> AAssociateAC:
    answer, _ = negotiate(rq, policy)
    assert isinstance(answer, AAssociateAC)
    return answer


def results(ac: AAssociateAC) -> dict[int, tuple[ContextResult, str]]:
    return {pc.context_id: (pc.result, pc.transfer_syntax) for pc in ac.presentation_contexts}


def through_the_wire(rq: AAssociateRQ, ac: AAssociateAC) -> dict[int, PresentationContext]:
    """What the requestor reads: both PDUs encoded and decoded first."""
    rq2, ac2 = decode_pdu(encode_pdu(rq)), decode_pdu(encode_pdu(ac))
    assert isinstance(rq2, AAssociateRQ) and isinstance(ac2, AAssociateAC)
    return contexts_from_ac(rq2, ac2)


# --- presentation contexts ---------------------------------------------------------------


def test_verification_is_accepted_with_implicit_vr_little_endian_only() -> None:
    rq = make_rq(
        ctx(1, VERIFICATION, EXPLICIT, IMPLICIT),
        ctx(3, VERIFICATION, EXPLICIT),
        ctx(5, VERIFICATION, BIG_ENDIAN, EXPLICIT),
    )
    answer, contexts = negotiate(rq, POLICY)
    assert isinstance(answer, AAssociateAC)
    assert results(answer) == {
        1: (ContextResult.ACCEPTANCE, IMPLICIT),
        3: (ContextResult.TRANSFER_SYNTAXES_NOT_SUPPORTED, EXPLICIT),
        5: (ContextResult.TRANSFER_SYNTAXES_NOT_SUPPORTED, BIG_ENDIAN),
    }
    assert contexts == {1: PresentationContext(1, VERIFICATION, IMPLICIT)}


def test_unknown_abstract_syntax_is_refused_with_result_3() -> None:
    answer, contexts = negotiate(make_rq(ctx(7, UNKNOWN, IMPLICIT)), POLICY)
    assert isinstance(answer, AAssociateAC)
    assert results(answer) == {7: (ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED, IMPLICIT)}
    assert contexts == {}


def test_several_abstract_syntaxes_on_one_association() -> None:
    rq = make_rq(
        ctx(1, VERIFICATION, IMPLICIT),
        ctx(3, CT, IMPLICIT),
        ctx(5, MR, EXPLICIT),
        ctx(7, UNKNOWN, IMPLICIT),
    )
    answer, contexts = negotiate(rq, POLICY)
    assert isinstance(answer, AAssociateAC)
    assert [pc.context_id for pc in answer.presentation_contexts] == [1, 3, 5, 7]
    assert {cid: (c.abstract_syntax, c.transfer_syntax) for cid, c in contexts.items()} == {
        1: (VERIFICATION, IMPLICIT),
        3: (CT, IMPLICIT),
        5: (MR, EXPLICIT),
    }


@pytest.mark.parametrize(
    "policy_order, proposal_order, chosen",
    [
        ((EXPLICIT, IMPLICIT), (IMPLICIT, EXPLICIT), EXPLICIT),
        ((EXPLICIT, IMPLICIT), (EXPLICIT, IMPLICIT), EXPLICIT),
        ((IMPLICIT, EXPLICIT), (EXPLICIT, IMPLICIT), IMPLICIT),
        ((BIG_ENDIAN, IMPLICIT), (EXPLICIT, IMPLICIT), IMPLICIT),
    ],
)
def test_policy_preference_order_wins(
    policy_order: tuple[str, ...], proposal_order: tuple[str, ...], chosen: str
) -> None:
    policy = replace(POLICY, abstract_syntaxes={CT: policy_order})
    ac = accept(make_rq(ctx(1, CT, *proposal_order)), policy)
    assert results(ac) == {1: (ContextResult.ACCEPTANCE, chosen)}


def test_a_duplicate_context_id_is_answered_once_for_its_first_proposal() -> None:
    rq = make_rq(ctx(1, VERIFICATION, IMPLICIT), ctx(1, CT, EXPLICIT), ctx(3, CT, EXPLICIT))
    answer, contexts = negotiate(rq, POLICY)
    assert isinstance(answer, AAssociateAC)
    assert results(answer) == {
        1: (ContextResult.ACCEPTANCE, IMPLICIT),
        3: (ContextResult.ACCEPTANCE, EXPLICIT),
    }
    assert len(answer.presentation_contexts) == 2
    assert contexts[1] == PresentationContext(1, VERIFICATION, IMPLICIT)
    assert through_the_wire(rq, answer) == contexts


def test_an_abstract_syntax_with_no_acceptable_transfer_syntax_list() -> None:
    policy = replace(POLICY, abstract_syntaxes={CT: ()})
    ac = accept(make_rq(ctx(1, CT, IMPLICIT)), policy)
    assert results(ac) == {1: (ContextResult.TRANSFER_SYNTAXES_NOT_SUPPORTED, IMPLICIT)}


def test_the_ac_echoes_the_ae_titles() -> None:
    ac = accept(make_rq(ctx(1, VERIFICATION, IMPLICIT)))
    assert (ac.called_ae_title, ac.calling_ae_title) == ("STELLAR", "MODALITY")
    assert ac.application_context_name == APPLICATION_CONTEXT_NAME


# --- rejection ---------------------------------------------------------------------------


def test_called_ae_title_not_ours() -> None:
    rq = make_rq(ctx(1, VERIFICATION, IMPLICIT), called_ae_title="SOMEONE")
    assert negotiate(rq, POLICY) == (AAssociateRJ(1, 1, 7), {})
    answer, contexts = negotiate(rq, replace(POLICY, accept_any_called_ae=True))
    assert isinstance(answer, AAssociateAC) and set(contexts) == {1}
    assert answer.called_ae_title == "SOMEONE"


def test_application_context_not_dicom() -> None:
    rq = make_rq(ctx(1, VERIFICATION, IMPLICIT), application_context_name="1.2.3.4")
    assert negotiate(rq, POLICY) == (AAssociateRJ(1, 1, 2), {})


def test_at_capacity() -> None:
    rq = make_rq(ctx(1, VERIFICATION, IMPLICIT))
    assert negotiate(rq, POLICY, at_capacity=True) == (AAssociateRJ(2, 3, 2), {})


@pytest.mark.parametrize(
    "bad_context, bad_ae, at_capacity, expected",
    [
        (True, True, True, (1, 1, 2)),
        (True, False, True, (1, 1, 2)),
        (False, True, True, (1, 1, 7)),
        (False, False, True, (2, 3, 2)),
        (True, True, False, (1, 1, 2)),
    ],
)
def test_order_of_precedence(
    bad_context: bool, bad_ae: bool, at_capacity: bool, expected: tuple[int, int, int]
) -> None:
    rq = make_rq(ctx(1, VERIFICATION, IMPLICIT))
    if bad_context:
        rq = replace(rq, application_context_name="1.2.3.4")
    if bad_ae:
        rq = replace(rq, called_ae_title="SOMEONE")
    answer, _ = negotiate(rq, POLICY, at_capacity=at_capacity)
    assert answer == AAssociateRJ(*expected)


def test_the_docstring_lists_the_rejections_in_the_order_applied() -> None:
    doc = negotiation.__doc__ or ""
    positions = [doc.index(triple) for triple in ("RJ 1/1/2", "RJ 1/1/7", "RJ 2/3/2")]
    assert positions == sorted(positions)
    assert "in this" in doc and "order" in doc


# --- user information --------------------------------------------------------------------


def test_ac_user_information() -> None:
    ui = accept(make_rq(ctx(1, VERIFICATION, IMPLICIT))).user_information
    assert ui.maximum_length == 16384
    assert ui.implementation_class_uid == IMPLEMENTATION_CLASS_UID == "1.2.826.0.1.3680043.2.914"
    assert ui.implementation_version_name == IMPLEMENTATION_VERSION_NAME == "StellarPACS_1.3"
    assert ui.asynchronous_operations_window is None
    assert ui.role_selections == ()
    assert ui.user_identity is None


def test_maximum_length_is_the_policys() -> None:
    policy = replace(POLICY, max_pdu_length=65536)
    assert accept(make_rq(ctx(1, VERIFICATION, IMPLICIT)), policy).user_information == (
        UserInformation(65536, IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME)
    )


@given(invoked=st.integers(0, 0xFFFF), performed=st.integers(0, 0xFFFF))
@settings(max_examples=50)
def test_asynchronous_window_is_never_above_one(invoked: int, performed: int) -> None:
    window = AsynchronousOperationsWindow(invoked, performed)
    ui = UserInformation(16384, "1.2.3", asynchronous_operations_window=window)
    ac = accept(make_rq(ctx(1, VERIFICATION, IMPLICIT), user_information=ui))
    assert ac.user_information.asynchronous_operations_window == AsynchronousOperationsWindow(1, 1)


# --- role selection ----------------------------------------------------------------------

ROLE_POLICY = replace(POLICY, roles={CT: Role(scu=True, scp=True), MR: Role(scu=False, scp=True)})


def _with_roles(*roles: RoleSelection) -> AAssociateRQ:
    return make_rq(
        ctx(1, VERIFICATION, IMPLICIT),
        ctx(3, CT, EXPLICIT),
        ctx(5, MR, EXPLICIT),
        user_information=UserInformation(16384, "1.2.3", role_selections=roles),
    )


def test_no_role_selection_without_a_proposal() -> None:
    answer, contexts = negotiate(_with_roles(), ROLE_POLICY)
    assert isinstance(answer, AAssociateAC)
    assert answer.user_information.role_selections == ()
    assert all((c.scu_role, c.scp_role) == (True, False) for c in contexts.values())


@pytest.mark.parametrize(
    "proposal, answer",
    [
        (RoleSelection(CT, True, True), RoleSelection(CT, True, True)),
        (RoleSelection(CT, False, True), RoleSelection(CT, False, True)),
        (RoleSelection(CT, True, False), RoleSelection(CT, True, False)),  # not proposed
        (RoleSelection(VERIFICATION, True, True), RoleSelection(VERIFICATION, True, False)),
        (RoleSelection(MR, True, True), RoleSelection(MR, False, True)),
        (RoleSelection(UNKNOWN, True, True), RoleSelection(UNKNOWN, True, False)),
    ],
)
def test_role_selection_answer(proposal: RoleSelection, answer: RoleSelection) -> None:
    rq = _with_roles(proposal)
    ac, contexts = negotiate(rq, ROLE_POLICY)
    assert isinstance(ac, AAssociateAC)
    assert ac.user_information.role_selections == (answer,)
    for context in contexts.values():
        if context.abstract_syntax == proposal.sop_class_uid:
            assert (context.scu_role, context.scp_role) == (answer.scu_role, answer.scp_role)
        else:
            assert (context.scu_role, context.scp_role) == (True, False)
    assert through_the_wire(rq, ac) == contexts


def test_role_selection_is_answered_once_per_sop_class() -> None:
    rq = _with_roles(RoleSelection(CT, False, True), RoleSelection(CT, True, True))
    ac, contexts = negotiate(rq, ROLE_POLICY)
    assert isinstance(ac, AAssociateAC)
    assert ac.user_information.role_selections == (RoleSelection(CT, False, True),)
    assert (contexts[3].scu_role, contexts[3].scp_role) == (False, True)
    assert through_the_wire(rq, ac) == contexts


def test_requestor_ignores_roles_it_did_not_propose() -> None:
    """PS3.7 D.3.3.4: 'The Association-requestor shall ignore the response if it has not
    proposed the role.'"""
    rq = _with_roles(RoleSelection(CT, True, False))
    ac = AAssociateAC(
        "STELLAR",
        "MODALITY",
        (
            PresentationContextAC(3, ContextResult.ACCEPTANCE, EXPLICIT),
            PresentationContextAC(5, ContextResult.ACCEPTANCE, EXPLICIT),
        ),
        UserInformation(
            16384,
            "1.2.3",
            role_selections=(RoleSelection(CT, True, True), RoleSelection(MR, False, True)),
        ),
    )
    contexts = contexts_from_ac(rq, ac)
    assert (contexts[3].scu_role, contexts[3].scp_role) == (True, False)
    assert (contexts[5].scu_role, contexts[5].scp_role) == (True, False)  # MR was not proposed


def test_requestor_leaves_out_a_transfer_syntax_it_did_not_offer() -> None:
    rq = make_rq(ctx(1, VERIFICATION, IMPLICIT), ctx(3, CT, EXPLICIT))
    ac = AAssociateAC(
        "STELLAR",
        "MODALITY",
        (
            PresentationContextAC(1, ContextResult.ACCEPTANCE, IMPLICIT),
            PresentationContextAC(3, ContextResult.ACCEPTANCE, BIG_ENDIAN),
            PresentationContextAC(9, ContextResult.ACCEPTANCE, IMPLICIT),  # never proposed
        ),
    )
    assert set(contexts_from_ac(rq, ac)) == {1}


# --- properties --------------------------------------------------------------------------

_SYNTAX_POOL = (VERIFICATION, CT, MR, UNKNOWN)
_TS_POOL = (IMPLICIT, EXPLICIT, BIG_ENDIAN)


_RANDOM_UIDS = st.integers(0, 10**6).map(lambda n: f"1.2.999.{n}")


def _mixed(pool: tuple[str, ...]) -> st.SearchStrategy[str]:
    """Mostly a few well-known UIDs, so that proposals and policies meet."""
    return st.sampled_from((*pool, "")).flatmap(lambda uid: st.just(uid) if uid else _RANDOM_UIDS)


_contexts_rq = st.builds(
    PresentationContextRQ,
    context_id=st.one_of(st.sampled_from([1, 3, 5]), strategies.context_ids()),
    abstract_syntax=_mixed(_SYNTAX_POOL),
    transfer_syntaxes=st.lists(_mixed(_TS_POOL), min_size=1, max_size=4).map(tuple),
)
_roles_rq = st.builds(RoleSelection, _mixed(_SYNTAX_POOL), st.booleans(), st.booleans())

#: A-ASSOCIATE-RQs whose proposals often meet the policies below.
requests = st.builds(
    AAssociateRQ,
    called_ae_title=st.sampled_from(["STELLAR"] * 3 + ["OTHER"]),
    calling_ae_title=strategies.ae_titles(),
    presentation_contexts=st.lists(_contexts_rq, min_size=1, max_size=6).map(tuple),
    user_information=st.builds(
        UserInformation,
        maximum_length=st.none() | st.integers(0, 0xFFFFFFFF),
        implementation_class_uid=st.none() | _RANDOM_UIDS,
        implementation_version_name=st.none() | strategies.version_names(),
        asynchronous_operations_window=st.none() | strategies.async_windows(),
        role_selections=st.lists(_roles_rq, max_size=4).map(tuple),
        user_identity=st.none() | strategies.user_identities_rq(),
    ),
    application_context_name=st.sampled_from([APPLICATION_CONTEXT_NAME] * 3 + ["1.2.3"]),
)

_policies = st.builds(
    AcceptorPolicy,
    ae_title=st.just("STELLAR"),
    abstract_syntaxes=st.dictionaries(
        _mixed(_SYNTAX_POOL),
        st.lists(_mixed(_TS_POOL), min_size=1, max_size=3).map(tuple),
        min_size=1,
        max_size=4,
    ),
    accept_any_called_ae=st.booleans(),
    max_pdu_length=st.integers(0, 0xFFFFFFFF),
    roles=st.dictionaries(
        _mixed(_SYNTAX_POOL), st.builds(Role, st.booleans(), st.booleans()), min_size=1, max_size=4
    ),
    implementation_class_uid=_RANDOM_UIDS,
    implementation_version_name=strategies.version_names(),
)


def _check_context_answer(
    proposed: PresentationContextRQ, answer: PresentationContextAC, policy: AcceptorPolicy
) -> None:
    allowed = policy.abstract_syntaxes.get(proposed.abstract_syntax)
    if allowed is None:
        assert answer.result == ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED
        return
    offered = [ts for ts in allowed if ts in proposed.transfer_syntaxes]
    if not offered:
        assert answer.result == ContextResult.TRANSFER_SYNTAXES_NOT_SUPPORTED
        return
    assert answer.result == ContextResult.ACCEPTANCE
    assert answer.transfer_syntax == offered[0]  # proposed, allowed, and preferred


def _check_ac(rq: AAssociateRQ, policy: AcceptorPolicy, ac: AAssociateAC) -> None:
    first: dict[int, PresentationContextRQ] = {}
    for pc in rq.presentation_contexts:
        first.setdefault(pc.context_id, pc)
    assert [a.context_id for a in ac.presentation_contexts] == list(first)
    for answer in ac.presentation_contexts:
        _check_context_answer(first[answer.context_id], answer, policy)

    ui = ac.user_information
    assert ui.maximum_length == policy.max_pdu_length
    window = rq.user_information.asynchronous_operations_window
    assert ui.asynchronous_operations_window == (
        None if window is None else AsynchronousOperationsWindow(1, 1)
    )
    asked: dict[str, RoleSelection] = {}
    for item in rq.user_information.role_selections:
        asked.setdefault(item.sop_class_uid, item)
    assert [r.sop_class_uid for r in ui.role_selections] == list(asked)
    for role in ui.role_selections:
        allowed = policy.roles.get(role.sop_class_uid, Role())
        assert role.scu_role <= (asked[role.sop_class_uid].scu_role and allowed.scu)
        assert role.scp_role <= (asked[role.sop_class_uid].scp_role and allowed.scp)


def _check_negotiate(rq: AAssociateRQ, policy: AcceptorPolicy, at_capacity: bool) -> None:
    answer, contexts = negotiate(rq, policy, at_capacity=at_capacity)
    assert decode_pdu(encode_pdu(answer)) == answer
    if isinstance(answer, AAssociateRJ):
        assert contexts == {}
        refused = (
            rq.application_context_name != APPLICATION_CONTEXT_NAME
            or (not policy.accept_any_called_ae and rq.called_ae_title != policy.ae_title)
            or at_capacity
        )
        assert refused
        return
    assert rq.application_context_name == APPLICATION_CONTEXT_NAME and not at_capacity
    _check_ac(rq, policy, answer)
    accepted = {
        a.context_id for a in answer.presentation_contexts if a.result == ContextResult.ACCEPTANCE
    }
    assert set(contexts) == accepted
    assert through_the_wire(rq, answer) == contexts


@settings(max_examples=200, deadline=None)
@given(rq=requests, policy=_policies, at_capacity=st.sampled_from([False] * 3 + [True]))
def test_negotiate_properties(rq: AAssociateRQ, policy: AcceptorPolicy, at_capacity: bool) -> None:
    _check_negotiate(rq, policy, at_capacity)


@settings(max_examples=50, deadline=None)
@given(rq=strategies.a_associate_rq(), policy=_policies, at_capacity=st.booleans())
def test_negotiate_properties_for_any_decodable_request(
    rq: AAssociateRQ, policy: AcceptorPolicy, at_capacity: bool
) -> None:
    """The codec's own strategy: every field at random, also what no sane peer sends."""
    _check_negotiate(replace(rq, application_context_name=APPLICATION_CONTEXT_NAME), policy, False)
    _check_negotiate(rq, policy, at_capacity)


def test_reversed_role_contexts_prefer_the_scp_role_preference() -> None:
    """Where the requestor takes the SCP role (C-GET), uncompressed wins over compressed."""
    ct, rle, explicit = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.1"
    policy = AcceptorPolicy(
        ae_title="ACC",
        abstract_syntaxes={ct: (rle, explicit)},
        roles={ct: Role(scu=True, scp=True)},
        scp_role_preference=(explicit,),
    )
    proposal = (PresentationContextRQ(1, ct, (rle, explicit)),)
    plain = AAssociateRQ("ACC", "REQ", proposal)
    reversed_ = AAssociateRQ(
        "ACC",
        "REQ",
        proposal,
        UserInformation(role_selections=(RoleSelection(ct, scu_role=False, scp_role=True),)),
    )
    assert negotiate(plain, policy)[1][1].transfer_syntax == rle
    assert negotiate(reversed_, policy)[1][1].transfer_syntax == explicit
