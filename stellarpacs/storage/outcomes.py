"""How a store that went wrong is told: the outcome of an exception, for the C-STORE service.

The service answers each :class:`~stellarpacs.storage.records.StoreResult`
with its status; the comment is sized for an Error Comment (LO, 64 characters,
PS3.7 C.4.2.1.2), so that it goes on the wire as it is.
"""

from __future__ import annotations

from stellarpacs.part10 import Part10Error
from stellarpacs.storage.errors import MismatchedDataSet, UnreadableDataSet
from stellarpacs.storage.files.inflate import InflationLimit
from stellarpacs.storage.records import StoreOutcome, StoreResult

__all__ = ["failure_outcome"]


def failure_outcome(exc: BaseException) -> StoreOutcome:
    """What went wrong as an outcome; the comment is sized for an Error Comment (LO).

    A deflated header over the inflation limit is refused for our resources
    (``NOT_STORED``), not as unreadable: the data set may well be valid.
    """
    if isinstance(exc, InflationLimit):
        return StoreOutcome(StoreResult.NOT_STORED, None, error_comment=str(exc)[:64])
    if isinstance(exc, MismatchedDataSet):
        comment = str(exc)[:64]
        return StoreOutcome(StoreResult.UNREADABLE, None, error_comment=comment, mismatch=exc.which)
    if isinstance(exc, UnreadableDataSet | Part10Error):
        return StoreOutcome(StoreResult.UNREADABLE, None, error_comment=str(exc)[:64])
    return StoreOutcome(StoreResult.NOT_STORED, None, error_comment=_comment(exc))


def _comment(exc: BaseException) -> str:
    # Error Comment is LO: at most 64 characters (PS3.7 C.4.2.1.2)
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return f"cannot store: {text or type(exc).__name__}"[:64]
