"""Association negotiation as pure functions: compute, then commit (PS3.8 7.1, PS3.7 D.3).

The acceptor calls :func:`negotiate` with the received A-ASSOCIATE-RQ and its
:class:`AcceptorPolicy`; it gets back the A-ASSOCIATE-AC or -RJ it would send,
which it may inspect or change before handing it to the connection.  The
requestor calls :func:`contexts_from_ac` on the AC it received.  Both sides
end up with the same table of :class:`PresentationContext` objects.

What this module decides (and the conformance statement repeats):

- The association is refused on the first of these that applies, in this
  order (the protocol version was already checked by the state machine,
  AE-6, RJ 1/2/2):

  1. Application context other than the DICOM one: RJ 1/1/2.
  2. Called AE title not ours (unless any is accepted): RJ 1/1/7.
  3. What the access rules decided (:class:`Admission`, made by
     :mod:`stellarpacs.access`): RJ 1/1/3 or 1/1/1.
  4. Too many associations at once: RJ 2/3/2 (transient, local limit exceeded).
  5. The AC would not fit on the wire (an item over 65,535 bytes, e.g. a
     user information item answering 1,586 role selections): RJ 1/1/1.

- A presentation context ID proposed twice is answered once, for its first
  proposal; both sides read it that way.
- Each presentation context is accepted if its abstract syntax is served and
  one of its transfer syntaxes is acceptable, choosing by our preference
  order; otherwise result 3 (abstract syntax) or 4 (transfer syntaxes).
  Contexts for several abstract syntaxes on one association are accepted.
  A context for a service the :class:`Admission` does not allow gets result
  1, user rejection (PS3.8 9.3.3.2), before its transfer syntaxes are looked at.
- Asynchronous operations are never granted beyond one at a time.
- SCP/SCU role selection is answered once per SOP class the requestor
  proposed it for, granting a proposed role only where the policy allows it;
  a role that was not proposed is never granted (PS3.7 D.3.3.4).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType

from stellarpacs.errors import LocalProtocolError, RejectResult, RejectSource
from stellarpacs.ul.codec import encode_pdu
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
    UserIdentityAC,
    UserInformation,
)

__all__ = [
    "IMPLEMENTATION_CLASS_UID",
    "IMPLEMENTATION_VERSION_NAME",
    "AcceptorPolicy",
    "Admission",
    "PresentationContext",
    "RejectReason",
    "Role",
    "contexts_from_ac",
    "negotiate",
]

IMPLEMENTATION_CLASS_UID = "1.2.826.0.1.3680043.2.914"
IMPLEMENTATION_VERSION_NAME = "StellarPACS_1.3"


class RejectReason(Enum):
    """The A-ASSOCIATE-RJ triples this acceptor sends (PS3.8 Table 9-21)."""

    APPLICATION_CONTEXT_NOT_SUPPORTED = (RejectResult.PERMANENT, RejectSource.SERVICE_USER, 2)
    CALLED_AE_NOT_RECOGNIZED = (RejectResult.PERMANENT, RejectSource.SERVICE_USER, 7)
    LOCAL_LIMIT_EXCEEDED = (RejectResult.TRANSIENT, RejectSource.SERVICE_PROVIDER_PRESENTATION, 2)
    #: The answer cannot be encoded.  Permanent: the same request gets the same
    #: answer.  Service-user: the AC is what this AE computed, not the ACSE
    #: provider's doing.  Table 9-21 names no reason that fits, hence reason 1.
    NO_REASON_GIVEN = (RejectResult.PERMANENT, RejectSource.SERVICE_USER, 1)
    #: The access rules (stellarpacs.access): an unknown calling AE, or the wrong host.
    CALLING_AE_NOT_RECOGNIZED = (RejectResult.PERMANENT, RejectSource.SERVICE_USER, 3)

    def pdu(self) -> AAssociateRJ:
        """The A-ASSOCIATE-RJ PDU carrying this reason."""
        result, source, reason = self.value
        return AAssociateRJ(result=int(result), source=int(source), reason=reason)


@dataclass(frozen=True, slots=True)
class Role:
    """Which roles the *requestor* may take for one abstract syntax (PS3.7 D.3.3.4)."""

    scu: bool = True
    scp: bool = False


@dataclass(frozen=True, slots=True)
class AcceptorPolicy:
    """What an acceptor serves and how it chooses.

    ``abstract_syntaxes`` maps each served abstract syntax to the transfer
    syntaxes it accepts there, in preference order: for a context the first
    of these that the requestor offers is chosen.  ``roles`` says which roles
    a requestor may ask for per abstract syntax through role selection; a
    syntax not listed allows only the default (requestor SCU).

    ``scp_role_preference`` goes first on contexts where the requestor took
    the SCP role (C-GET sub-operations, PS3.4 C.4.3.3): there *we* send, and
    an uncompressed syntax can carry any stored instance, decoded if need be,
    where a compressed one could carry only instances stored that way.
    """

    ae_title: str
    abstract_syntaxes: Mapping[str, tuple[str, ...]]
    accept_any_called_ae: bool = False
    max_pdu_length: int = 16384
    roles: Mapping[str, Role] = field(default_factory=lambda: MappingProxyType({}))
    implementation_class_uid: str = IMPLEMENTATION_CLASS_UID
    implementation_version_name: str = IMPLEMENTATION_VERSION_NAME
    scp_role_preference: tuple[str, ...] = ()
    #: The service (``store``, ``find``...) each abstract syntax belongs to, for :class:`Admission`.
    service_names: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    #: The service a requestor's SCP role serves on a syntax (``get`` for storage classes).
    scp_role_services: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class Admission:
    """What the access rules decided about one requestor, before negotiation.

    ``rejection`` refuses the association; ``services`` are the service names
    it may use (None: all); ``user_identity`` is the AC sub-item answering a
    user identity that asked for a positive response (PS3.7 D.3.3.7.2).
    """

    rejection: RejectReason | None = None
    services: frozenset[str] | None = None
    user_identity: UserIdentityAC | None = None

    def permits(self, policy: AcceptorPolicy, abstract_syntax: str) -> tuple[bool, bool]:
        """May the requestor use ``abstract_syntax`` as (SCU, SCP by role selection)?"""
        if self.services is None:
            return True, True
        scu = policy.service_names.get(abstract_syntax)
        scp = policy.scp_role_services.get(abstract_syntax)
        return scu is None or scu in self.services, scp is not None and scp in self.services


_ADMIT_ALL = Admission()


@dataclass(frozen=True, slots=True)
class PresentationContext:
    """An accepted presentation context, as both sides see it after negotiation.

    ``scu_role`` and ``scp_role`` are the roles of the *requestor*: the
    default (no role selection) is SCU only.
    """

    context_id: int
    abstract_syntax: str
    transfer_syntax: str
    scu_role: bool = True
    scp_role: bool = False


def _choose(
    proposed: PresentationContextRQ,
    policy: AcceptorPolicy,
    reversed_role: bool = False,
    admission: Admission = _ADMIT_ALL,
) -> PresentationContextAC:
    accepted = policy.abstract_syntaxes.get(proposed.abstract_syntax)
    scu, scp = admission.permits(policy, proposed.abstract_syntax)
    if accepted is not None and not (scu or (reversed_role and scp)):
        fallback = proposed.transfer_syntaxes[0] if proposed.transfer_syntaxes else ""
        return PresentationContextAC(proposed.context_id, ContextResult.USER_REJECTION, fallback)
    if accepted is not None and reversed_role and policy.scp_role_preference:
        first = tuple(ts for ts in policy.scp_role_preference if ts in accepted)
        accepted = first + tuple(ts for ts in accepted if ts not in first)
    fallback = proposed.transfer_syntaxes[0] if proposed.transfer_syntaxes else ""
    if accepted is None:
        return PresentationContextAC(
            proposed.context_id, ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED, fallback
        )
    offered = set(proposed.transfer_syntaxes)
    for syntax in accepted:
        if syntax in offered:
            return PresentationContextAC(proposed.context_id, ContextResult.ACCEPTANCE, syntax)
    return PresentationContextAC(
        proposed.context_id, ContextResult.TRANSFER_SYNTAXES_NOT_SUPPORTED, fallback
    )


def _first_per_class(items: tuple[RoleSelection, ...]) -> dict[str, RoleSelection]:
    first: dict[str, RoleSelection] = {}
    for item in items:
        first.setdefault(item.sop_class_uid, item)
    return first


def _answer_roles(
    proposals: tuple[RoleSelection, ...], policy: AcceptorPolicy, admission: Admission
) -> tuple[RoleSelection, ...]:
    """Role selection items for the AC: one per SOP class the requestor asked about.

    PS3.7 D.3.3.4 allows one item per SOP class; should a requestor send
    more, the first is the one answered (and the one :func:`contexts_from_ac`
    reads).
    """
    answers = []
    for item in _first_per_class(proposals).values():
        allowed = policy.roles.get(item.sop_class_uid, Role())
        scu, scp = admission.permits(policy, item.sop_class_uid)
        answers.append(
            RoleSelection(
                item.sop_class_uid,
                scu_role=item.scu_role and allowed.scu and scu,
                scp_role=item.scp_role and allowed.scp and scp,
            )
        )
    return tuple(answers)


def _user_information(
    rq: AAssociateRQ, policy: AcceptorPolicy, admission: Admission
) -> UserInformation:
    requested = rq.user_information
    window = None
    if requested.asynchronous_operations_window is not None:
        window = AsynchronousOperationsWindow(invoked=1, performed=1)
    return UserInformation(
        maximum_length=policy.max_pdu_length,
        implementation_class_uid=policy.implementation_class_uid,
        implementation_version_name=policy.implementation_version_name,
        asynchronous_operations_window=window,
        role_selections=_answer_roles(requested.role_selections, policy, admission),
        user_identity=admission.user_identity,
    )


def _check_request(
    rq: AAssociateRQ, policy: AcceptorPolicy, at_capacity: bool, admission: Admission
) -> AAssociateRJ | None:
    if rq.application_context_name != APPLICATION_CONTEXT_NAME:
        return RejectReason.APPLICATION_CONTEXT_NOT_SUPPORTED.pdu()
    if not policy.accept_any_called_ae and rq.called_ae_title != policy.ae_title:
        return RejectReason.CALLED_AE_NOT_RECOGNIZED.pdu()
    if admission.rejection is not None:
        return admission.rejection.pdu()
    if at_capacity:
        return RejectReason.LOCAL_LIMIT_EXCEEDED.pdu()
    return None


def negotiate(
    rq: AAssociateRQ,
    policy: AcceptorPolicy,
    *,
    at_capacity: bool = False,
    admission: Admission = _ADMIT_ALL,
) -> tuple[AAssociateAC | AAssociateRJ, dict[int, PresentationContext]]:
    """Compute the answer to ``rq`` and the accepted contexts (empty when rejected).

    Nothing is committed: the caller sends the PDU through its connection.
    A context ID proposed twice is answered once, for its first proposal.
    """
    rejection = _check_request(rq, policy, at_capacity, admission)
    if rejection is not None:
        return rejection, {}
    answers: list[PresentationContextAC] = []
    seen: set[int] = set()
    user_information = _user_information(rq, policy, admission)
    reversed_roles = {r.sop_class_uid for r in user_information.role_selections if r.scp_role}
    for proposed in rq.presentation_contexts:
        if proposed.context_id in seen:
            continue
        seen.add(proposed.context_id)
        reversed_role = proposed.abstract_syntax in reversed_roles
        answers.append(_choose(proposed, policy, reversed_role, admission))
    ac = AAssociateAC(
        called_ae_title=rq.called_ae_title,
        calling_ae_title=rq.calling_ae_title,
        presentation_contexts=tuple(answers),
        user_information=user_information,
    )
    if not _encodable(ac):
        return RejectReason.NO_REASON_GIVEN.pdu(), {}
    return ac, contexts_from_ac(rq, ac)


def _encodable(ac: AAssociateAC) -> bool:
    """Whether the wire can carry ``ac`` (PS3.8 9.3.3: 16-bit item lengths).

    Checked here, before anything is committed, so that the answer is an RJ
    rather than a response primitive the connection refuses.
    """
    try:
        encode_pdu(ac)
    except LocalProtocolError:
        return False
    return True


def contexts_from_ac(rq: AAssociateRQ, ac: AAssociateAC) -> dict[int, PresentationContext]:
    """The accepted presentation contexts, keyed by ID, with the negotiated roles.

    Used by both sides, so that requestor and acceptor read one AC the same
    way.  A context ID proposed twice means its first proposal, as in
    :func:`negotiate`.  A context accepted with a transfer syntax the
    requestor did not offer is not usable and is left out.  Roles follow
    PS3.7 D.3.3.4: without a role selection answer the requestor is SCU
    only; an answer counts only for a SOP class the requestor proposed role
    selection for, and grants only the roles it proposed.
    """
    proposed: dict[int, PresentationContextRQ] = {}
    for item in rq.presentation_contexts:
        proposed.setdefault(item.context_id, item)
    asked = _first_per_class(rq.user_information.role_selections)
    answered = _first_per_class(ac.user_information.role_selections)
    contexts: dict[int, PresentationContext] = {}
    for answer in ac.presentation_contexts:
        pc = proposed.get(answer.context_id)
        if (
            pc is None
            or answer.result != ContextResult.ACCEPTANCE
            or answer.transfer_syntax not in pc.transfer_syntaxes
            or answer.context_id in contexts
        ):
            continue
        scu, scp = _roles(asked.get(pc.abstract_syntax), answered.get(pc.abstract_syntax))
        contexts[answer.context_id] = PresentationContext(
            context_id=answer.context_id,
            abstract_syntax=pc.abstract_syntax,
            transfer_syntax=answer.transfer_syntax,
            scu_role=scu,
            scp_role=scp,
        )
    return contexts


def _roles(asked: RoleSelection | None, answer: RoleSelection | None) -> tuple[bool, bool]:
    """The requestor's (SCU, SCP) roles for one SOP class (PS3.7 D.3.3.4)."""
    if asked is None or answer is None:
        return True, False
    return asked.scu_role and answer.scu_role, asked.scp_role and answer.scp_role
