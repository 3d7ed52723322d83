"""The query and retrieve records of the audit trail (PS3.15 A.5.3.10, A.5.3.7).

What the Q/R services tell the audit trail about an identifier: its level
and its keys, read from the identifier as the peer sent it (keyword, value as
text; an empty value is a return key), at most :data:`MAX_ITEMS` of them; the
auditor's sinks escape and bound every value, so nothing here trusts them.
"""

from __future__ import annotations

from typing import Final

from pydicom.datadict import keyword_for_tag
from pydicom.dataset import Dataset

from stellarpacs.aio.protocols import AssociationLike
from stellarpacs.audit import Auditor
from stellarpacs.audit.events import (
    MAX_ITEMS,
    MAX_TEXT,
    QueryPerformed,
    RetrievePerformed,
    outcome_of_status,
)
from stellarpacs.datasets import decode_dataset
from stellarpacs.dimse.commands import CFindRQ, CGetRQ, CMoveRQ
from stellarpacs.dimse.events import Incoming
from stellarpacs.storage.api import InstanceRecord, InvalidQuery, decode_identifier

__all__ = ["audit_query", "audit_retrieve", "audited_keys", "audited_level"]

_QUERY_RETRIEVE_LEVEL: Final = 0x00080052


def _value(ds: Dataset, tag: int) -> str:
    try:
        element = ds[tag]
        if element.VR == "SQ":
            return f"[sequence of {len(element.value)} items]"
        value = element.value
    except Exception:  # a malformed value is still audited, as unreadable
        return "[unreadable]"
    return "" if value is None else str(value)[: MAX_TEXT * 2]


def audited_keys(ds: Dataset | None) -> tuple[tuple[str, str], ...]:
    """(keyword or tag, value) of each top-level element of ``ds``, in order."""
    if ds is None:
        return ()
    keys = []
    for tag in list(ds.keys())[:MAX_ITEMS]:
        keyword = keyword_for_tag(tag)
        keys.append((keyword or f"({tag.group:04X},{tag.element:04X})", _value(ds, tag)))
    return tuple(keys)


def audited_level(ds: Dataset | None) -> str:
    """The Query/Retrieve Level (0008,0052) asked, or "" when absent or unreadable."""
    if ds is None or _QUERY_RETRIEVE_LEVEL not in ds:
        return ""
    return _value(ds, _QUERY_RETRIEVE_LEVEL).strip()


def audit_query(
    auditor: Auditor, association: AssociationLike, incoming: Incoming, status: int, sent: int
) -> None:
    """One query record: the model, the level and the keys asked."""
    request = incoming.command
    assert isinstance(request, CFindRQ)
    try:
        ds: Dataset | None = decode_identifier(incoming.dataset, incoming.context.transfer_syntax)
    except InvalidQuery:
        ds = None
    auditor.record(
        QueryPerformed(
            calling_ae=association.calling_ae_title,
            called_ae=association.called_ae_title,
            sop_class_uid=request.affected_sop_class_uid,
            level=audited_level(ds),
            keys=audited_keys(ds),
            matches=sent,
            status=status,
            identifier=incoming.dataset or b"",
            transfer_syntax_uid=incoming.context.transfer_syntax,
            outcome=outcome_of_status(status),
        )
    )


def audit_retrieve(
    auditor: Auditor,
    association: AssociationLike,
    incoming: Incoming,
    records: list[InstanceRecord],
    counts: tuple[int, int, int],
    status: int,
) -> None:
    """One retrieve record: what was asked, where it went, (completed, failed, warning)."""
    request = incoming.command
    assert isinstance(request, CMoveRQ | CGetRQ)
    try:
        ds: Dataset | None = decode_dataset(
            incoming.dataset or b"", incoming.context.transfer_syntax
        )
    except Exception:  # unreadable: audited without its keys
        ds = None
    studies = tuple(dict.fromkeys(r.study_instance_uid for r in records))
    auditor.record(
        RetrievePerformed(
            calling_ae=association.calling_ae_title,
            called_ae=association.called_ae_title,
            operation="C-MOVE" if isinstance(request, CMoveRQ) else "C-GET",
            sop_class_uid=request.affected_sop_class_uid,
            level=audited_level(ds),
            keys=audited_keys(ds),
            destination=request.move_destination
            if isinstance(request, CMoveRQ)
            else association.calling_ae_title,
            studies=studies[:MAX_ITEMS],
            completed=counts[0],
            failed=counts[1],
            warning=counts[2],
            status=status,
            outcome=outcome_of_status(status),
        )
    )
