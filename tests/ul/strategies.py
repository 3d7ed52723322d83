"""Hypothesis strategies for every upper-layer item and PDU (PS3.8 9.3, PS3.7 Annex D).

Values are canonical, i.e. what ``decode(encode(x))`` gives back unchanged:
AE titles without leading or trailing spaces, UIDs without padding.  Other
test modules (state machine, negotiation, DIMSE) reuse these.
"""

from __future__ import annotations

import string

from hypothesis import strategies as st

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

__all__ = [
    "a_abort",
    "a_associate_ac",
    "a_associate_rj",
    "a_associate_rq",
    "a_release_rp",
    "a_release_rq",
    "ae_titles",
    "any_pdu",
    "async_windows",
    "common_extended_negotiations",
    "context_ids",
    "extended_negotiations",
    "p_data_tf",
    "pdvs",
    "presentation_contexts_ac",
    "presentation_contexts_rq",
    "role_selections",
    "uids",
    "user_identities_ac",
    "user_identities_rq",
    "user_information_ac",
    "user_information_rq",
    "version_names",
]

_AE_CHARS = "".join(c for c in string.printable[:95] if c != "\\")
_VERSION_CHARS = string.ascii_letters + string.digits + "_.-"


def ae_titles() -> st.SearchStrategy[str]:
    """1..16 printable ASCII characters, no backslash, no leading/trailing space (PS3.5 6.2)."""
    return st.text(_AE_CHARS, min_size=1, max_size=16).filter(lambda s: s == s.strip())


@st.composite
def uids(draw: st.DrawFn) -> str:
    """Dotted numeric UIDs of 1 to 64 characters, first component 1 or 2 (PS3.5 9.1)."""
    parts = [draw(st.sampled_from(["1", "2"]))]
    for _ in range(draw(st.integers(0, 12))):
        component = str(draw(st.integers(0, 10**8)))
        if len(".".join(parts)) + 1 + len(component) > 64:
            break
        parts.append(component)
    return ".".join(parts)


def context_ids() -> st.SearchStrategy[int]:
    """Odd presentation context IDs 1..255 (PS3.8 9.3.2.2)."""
    return st.integers(0, 127).map(lambda n: 2 * n + 1)


def version_names() -> st.SearchStrategy[str]:
    """Implementation version names of 1 to 16 characters (PS3.7 D.3.3.2.3)."""
    return st.text(_VERSION_CHARS, min_size=1, max_size=16)


def presentation_contexts_rq() -> st.SearchStrategy[PresentationContextRQ]:
    return st.builds(
        PresentationContextRQ,
        context_id=context_ids(),
        abstract_syntax=uids(),
        transfer_syntaxes=st.lists(uids(), min_size=1, max_size=4).map(tuple),
    )


def presentation_contexts_ac() -> st.SearchStrategy[PresentationContextAC]:
    return st.builds(
        PresentationContextAC,
        context_id=context_ids(),
        result=st.sampled_from(ContextResult),
        transfer_syntax=uids(),
    )


def async_windows() -> st.SearchStrategy[AsynchronousOperationsWindow]:
    return st.builds(AsynchronousOperationsWindow, st.integers(0, 0xFFFF), st.integers(0, 0xFFFF))


def role_selections() -> st.SearchStrategy[RoleSelection]:
    return st.builds(RoleSelection, uids(), st.booleans(), st.booleans())


def extended_negotiations() -> st.SearchStrategy[SOPClassExtendedNegotiation]:
    return st.builds(SOPClassExtendedNegotiation, uids(), st.binary(max_size=32))


def common_extended_negotiations() -> st.SearchStrategy[SOPClassCommonExtendedNegotiation]:
    return st.builds(
        SOPClassCommonExtendedNegotiation,
        uids(),
        uids(),
        st.lists(uids(), max_size=3).map(tuple),
    )


def user_identities_rq() -> st.SearchStrategy[UserIdentityRQ]:
    identity_type = st.one_of(st.sampled_from(UserIdentityType), st.integers(6, 255))
    return st.builds(
        UserIdentityRQ,
        identity_type,
        st.booleans(),
        st.binary(min_size=1, max_size=64),
        st.binary(max_size=64),
    )


def user_identities_ac() -> st.SearchStrategy[UserIdentityAC]:
    return st.builds(UserIdentityAC, st.binary(max_size=64))


def _user_information(rq: bool) -> st.SearchStrategy[UserInformation]:
    common = st.lists(common_extended_negotiations(), max_size=2).map(tuple) if rq else st.just(())
    identity = user_identities_rq() if rq else user_identities_ac()
    return st.builds(
        UserInformation,
        maximum_length=st.none() | st.integers(0, 0xFFFFFFFF),
        implementation_class_uid=st.none() | uids(),
        implementation_version_name=st.none() | version_names(),
        asynchronous_operations_window=st.none() | async_windows(),
        role_selections=st.lists(role_selections(), max_size=3).map(tuple),
        extended_negotiations=st.lists(extended_negotiations(), max_size=2).map(tuple),
        common_extended_negotiations=common,
        user_identity=st.none() | identity,
    )


def user_information_rq() -> st.SearchStrategy[UserInformation]:
    """User information as an A-ASSOCIATE-RQ may carry it (PS3.8 9.3.2.3)."""
    return _user_information(rq=True)


def user_information_ac() -> st.SearchStrategy[UserInformation]:
    """User information as an A-ASSOCIATE-AC may carry it (PS3.8 9.3.3.3)."""
    return _user_information(rq=False)


def a_associate_rq(
    user_information: st.SearchStrategy[UserInformation] | None = None,
) -> st.SearchStrategy[AAssociateRQ]:
    return st.builds(
        AAssociateRQ,
        called_ae_title=ae_titles(),
        calling_ae_title=ae_titles(),
        presentation_contexts=st.lists(presentation_contexts_rq(), max_size=4).map(tuple),
        user_information=user_information_rq() if user_information is None else user_information,
        application_context_name=uids(),
        protocol_version=st.integers(0, 0xFFFF),
    )


def a_associate_ac(
    user_information: st.SearchStrategy[UserInformation] | None = None,
) -> st.SearchStrategy[AAssociateAC]:
    return st.builds(
        AAssociateAC,
        called_ae_title=ae_titles(),
        calling_ae_title=ae_titles(),
        presentation_contexts=st.lists(presentation_contexts_ac(), max_size=4).map(tuple),
        user_information=user_information_ac() if user_information is None else user_information,
        application_context_name=uids(),
        protocol_version=st.integers(0, 0xFFFF),
    )


def a_associate_rj() -> st.SearchStrategy[AAssociateRJ]:
    byte = st.integers(0, 255)
    return st.builds(AAssociateRJ, byte, byte, byte)


def pdvs(max_data: int = 256) -> st.SearchStrategy[PresentationDataValue]:
    return st.builds(
        PresentationDataValue,
        context_ids(),
        st.booleans(),
        st.booleans(),
        st.binary(max_size=max_data),
    )


def p_data_tf(max_data: int = 256) -> st.SearchStrategy[PDataTF]:
    return st.lists(pdvs(max_data), min_size=1, max_size=4).map(lambda p: PDataTF(tuple(p)))


def a_release_rq() -> st.SearchStrategy[AReleaseRQ]:
    return st.just(AReleaseRQ())


def a_release_rp() -> st.SearchStrategy[AReleaseRP]:
    return st.just(AReleaseRP())


def a_abort() -> st.SearchStrategy[AAbort]:
    return st.builds(AAbort, st.integers(0, 255), st.integers(0, 255))


def any_pdu() -> st.SearchStrategy[PDU]:
    """Any of the seven PDUs."""
    return st.one_of(
        a_associate_rq(),
        a_associate_ac(),
        a_associate_rj(),
        p_data_tf(),
        a_release_rq(),
        a_release_rp(),
        a_abort(),
    )
