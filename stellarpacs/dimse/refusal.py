"""A final failure response to any request, built before any handler sees it.

Used where a request must be refused whatever its service (one the calling
AE may not use, PS3.7 Annex C status 0124 "Refused: Not authorized").  The
response echoes the request's SOP class and instance UIDs only when they are
valid UIDs, so that a request with a malformed one can still be answered.
"""

from __future__ import annotations

from typing import Any

from stellarpacs.dimse.commands import (
    CStoreRQ,
    Message,
    NActionRQ,
    NCreateRQ,
    NDeleteRQ,
    NEventReportRQ,
    NGetRQ,
    NSetRQ,
)
from stellarpacs.dimse.matching import RESPONSE_CLASSES
from stellarpacs.uids import is_valid_uid

__all__ = ["refusal"]


def _uid(value: str | None) -> str | None:
    return value if value and is_valid_uid(value) else None


def _uids(request: Message) -> dict[str, Any]:
    """The SOP class and instance UIDs a response to ``request`` carries (PS3.7 9.3, 10.3)."""
    if isinstance(request, CStoreRQ | NEventReportRQ | NCreateRQ):
        return {
            "affected_sop_class_uid": _uid(request.affected_sop_class_uid),
            "affected_sop_instance_uid": _uid(request.affected_sop_instance_uid),
        }
    if isinstance(request, NGetRQ | NSetRQ | NActionRQ | NDeleteRQ):
        return {
            "affected_sop_class_uid": _uid(request.requested_sop_class_uid),
            "affected_sop_instance_uid": _uid(request.requested_sop_instance_uid),
        }
    return {"affected_sop_class_uid": _uid(getattr(request, "affected_sop_class_uid", None))}


def refusal(request: Message, status: int, comment: str = "") -> Message | None:
    """The final response refusing ``request`` with ``status``; None for C-CANCEL or a response."""
    response = RESPONSE_CLASSES.get(type(request))
    if response is None or not hasattr(request, "message_id"):
        return None
    return response(  # type: ignore[call-arg]
        message_id_being_responded_to=request.message_id,
        status=status,
        error_comment=comment or None,
        **_uids(request),
    )
