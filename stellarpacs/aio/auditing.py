"""The association events of the audit trail, as the server sees them (issue 12, item 4).

Kept out of :mod:`stellarpacs.aio.server` so that the acceptor reads as
negotiation and dispatch; each function builds one typed event from the
association and hands it to the auditor the server was given.
"""

from __future__ import annotations

from stellarpacs.aio.association import Association
from stellarpacs.audit import Auditor
from stellarpacs.audit.events import (
    REJECT_REASONS,
    AssociationAborted,
    AssociationAccepted,
    AssociationRejected,
    AssociationReleased,
)
from stellarpacs.ul.pdus import AAssociateRJ, AAssociateRQ

__all__ = ["aborted_by", "audit_end", "audit_opened", "audit_rejected"]


def audit_rejected(
    auditor: Auditor, rq: AAssociateRQ, answer: AAssociateRJ, peer: tuple[str, int]
) -> None:
    """A-ASSOCIATE-RJ sent: the triple and its meaning (PS3.8 Table 9-21)."""
    if not auditor.enabled:
        return
    text = REJECT_REASONS.get((answer.source, answer.reason), "unknown reason")
    auditor.record(
        AssociationRejected(
            calling_ae=rq.calling_ae_title,
            called_ae=rq.called_ae_title,
            peer_host=peer[0],
            peer_port=peer[1],
            result=answer.result,
            source=answer.source,
            reason=answer.reason,
            reason_text=text,
        )
    )


def audit_opened(auditor: Auditor, association: Association, peer: tuple[str, int]) -> None:
    """A-ASSOCIATE-AC sent: who, from where, and the abstract syntaxes accepted."""
    if not auditor.enabled:
        return
    syntaxes = tuple(dict.fromkeys(c.abstract_syntax for c in association.contexts.values()))
    auditor.record(
        AssociationAccepted(
            calling_ae=association.calling_ae_title,
            called_ae=association.called_ae_title,
            peer_host=peer[0],
            peer_port=peer[1],
            contexts=syntaxes,
            user=_user(association),
        )
    )


def _user(association: Association) -> str | None:
    """The user the association negotiated (PS3.7 D.3.3.7), if any."""
    return association.user.name if association.user is not None else None


def aborted_by(end_reason: str) -> str:
    """Who ended an aborted association, read from its end reason: peer, provider or local."""
    if "(peer)" in end_reason or "connection closed" in end_reason:
        return "peer"
    if "(provider)" in end_reason:
        return "provider"
    return "local"  # our A-ABORT: the idle limit, a protocol error, a server close


def audit_end(auditor: Auditor, association: Association, duration: float) -> None:
    """Released or aborted, with the duration and the number of requests."""
    if not auditor.enabled:
        return
    reason = association.end_reason or "closed"
    host, port = association.peer
    calling, called = association.calling_ae_title, association.called_ae_title
    requests = association.stats.messages_in
    if reason == "released":
        auditor.record(
            AssociationReleased(
                calling,
                called,
                host,
                port,
                duration=duration,
                requests=requests,
                user=_user(association),
            )
        )
        return
    detail = reason.removeprefix("aborted: ").removeprefix("aborted ")
    auditor.record(
        AssociationAborted(
            calling,
            called,
            host,
            port,
            by=aborted_by(reason),
            reason=detail,
            duration=duration,
            requests=requests,
            user=_user(association),
        )
    )
