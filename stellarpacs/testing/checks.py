"""Answers checked against the standard: each helper returns the problems found, [] if none.

Every problem names the rule it breaks, so that a failing test says why the
peer is wrong, not only that it is.
"""

from __future__ import annotations

from stellarpacs.ul.pdus import (
    PDU,
    AAbort,
    AAssociateAC,
    AAssociateRJ,
    AAssociateRQ,
    AReleaseRP,
    ContextResult,
)

__all__ = ["check_abort_reason", "check_associate_ac", "check_associate_rj", "check_release"]

#: PS3.8 Table 9-21: the reasons each source may give.
_RJ_REASONS = {1: {1, 2, 3, 7}, 2: {1, 2}, 3: {1, 2}}
#: PS3.8 Table 9-26: A-ABORT reasons when the source is the service provider (2).
_ABORT_REASONS = {0, 1, 2, 4, 5, 6}
#: Smallest Maximum Length that carries a PDV with one byte of value (PS3.8 D.1, 9.3.5).
_MIN_MAX_LENGTH = 7


def check_associate_ac(rq: AAssociateRQ, ac: AAssociateAC) -> list[str]:
    """What in ``ac`` does not answer ``rq`` as PS3.8 9.3.3 and PS3.7 D.3.3 ask."""
    problems: list[str] = []
    if not ac.protocol_version & 1:
        problems.append(f"protocol version 0x{ac.protocol_version:04X} lacks bit 0 (PS3.8 9.3.3)")
    if ac.application_context_name != rq.application_context_name:
        problems.append(
            f"application context {ac.application_context_name} is not the proposed "
            f"{rq.application_context_name} (PS3.8 9.3.3, PS3.7 A.2.1)"
        )
    problems += _check_contexts(rq, ac)
    problems += _check_user_info(rq, ac)
    return problems


def _check_contexts(rq: AAssociateRQ, ac: AAssociateAC) -> list[str]:
    problems: list[str] = []
    proposed = {pc.context_id: pc for pc in rq.presentation_contexts}
    seen: set[int] = set()
    for pc in ac.presentation_contexts:
        where = f"context {pc.context_id}"
        if pc.context_id in seen:
            problems.append(f"{where} answered twice (PS3.8 9.3.3.2)")
        seen.add(pc.context_id)
        if pc.context_id not in proposed:
            problems.append(f"{where} was not proposed (PS3.8 9.3.3.2)")
            continue
        if int(pc.result) not in range(5):
            problems.append(f"{where}: result {int(pc.result)} is not in 0..4 (PS3.8 Table 9-18)")
        elif pc.result == ContextResult.ACCEPTANCE and (
            pc.transfer_syntax not in proposed[pc.context_id].transfer_syntaxes
        ):
            problems.append(
                f"{where}: accepted transfer syntax {pc.transfer_syntax} was not proposed "
                "(PS3.8 9.3.3.2)"
            )
    for missing in sorted(proposed.keys() - seen):
        problems.append(f"context {missing} was proposed and not answered (PS3.8 9.3.3.2)")
    return problems


def _check_user_info(rq: AAssociateRQ, ac: AAssociateAC) -> list[str]:
    problems: list[str] = []
    info, asked = ac.user_information, rq.user_information
    if info.maximum_length is None:
        problems.append("no Maximum Length sub-item (PS3.8 D.1, mandatory)")
    elif 0 < info.maximum_length < _MIN_MAX_LENGTH:
        problems.append(
            f"Maximum Length {info.maximum_length} is below {_MIN_MAX_LENGTH}: "
            "no PDV fits (PS3.8 D.1)"
        )
    if not info.implementation_class_uid:
        problems.append("no Implementation Class UID sub-item (PS3.7 D.3.3.2, mandatory)")
    if info.asynchronous_operations_window and not asked.asynchronous_operations_window:
        problems.append("Asynchronous Operations Window answered but not proposed (PS3.7 D.3.3.3)")
    proposed_roles = {r.sop_class_uid: r for r in asked.role_selections}
    for role in info.role_selections:
        offer = proposed_roles.get(role.sop_class_uid)
        if offer is None:
            problems.append(f"role selection for {role.sop_class_uid} not proposed (PS3.7 D.3.3.4)")
        elif (role.scu_role and not offer.scu_role) or (role.scp_role and not offer.scp_role):
            problems.append(
                f"role selection for {role.sop_class_uid} grants a role not proposed "
                "(PS3.7 D.3.3.4)"
            )
    if info.user_identity is not None and (
        asked.user_identity is None
        or not getattr(asked.user_identity, "positive_response_requested", False)
    ):
        problems.append("User Identity response without a request for one (PS3.7 D.3.3.7.2)")
    return problems


def check_associate_rj(rj: AAssociateRJ) -> list[str]:
    """Result, source and reason of an A-ASSOCIATE-RJ within PS3.8 Table 9-21."""
    problems: list[str] = []
    if rj.result not in (1, 2):
        problems.append(f"result {rj.result} is neither 1 (permanent) nor 2 (transient)")
    reasons = _RJ_REASONS.get(rj.source)
    if reasons is None:
        problems.append(f"source {rj.source} is not 1, 2 or 3 (PS3.8 Table 9-21)")
    elif rj.reason not in reasons:
        problems.append(
            f"reason {rj.reason} is not defined for source {rj.source}: "
            f"{sorted(reasons)} (PS3.8 Table 9-21)"
        )
    return problems


def check_release(answer: PDU | None) -> list[str]:
    """An A-RELEASE-RQ must be answered by an A-RELEASE-RP (PS3.8 7.2, 9.3.7)."""
    if isinstance(answer, AReleaseRP):
        return []
    got = "nothing" if answer is None else type(answer).__name__
    return [f"A-RELEASE-RQ answered by {got}, not A-RELEASE-RP (PS3.8 7.2)"]


def check_abort_reason(abort: AAbort) -> list[str]:
    """Source and reason of an A-ABORT within PS3.8 Table 9-26."""
    if abort.source not in (0, 2):
        return [f"source {abort.source} is neither 0 (user) nor 2 (provider) (PS3.8 Table 9-26)"]
    if abort.source == 2 and abort.reason not in _ABORT_REASONS:
        return [f"provider reason {abort.reason} is not in 0, 1, 2, 4, 5, 6 (PS3.8 Table 9-26)"]
    return []
