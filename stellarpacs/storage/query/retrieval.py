"""Which stored instances a C-MOVE or C-GET identifier names (PS3.4 C.4.2.2.1, C.4.3.2.1).

A retrieve identifier holds the Query/Retrieve Level and the unique keys of
that level and the levels above it (hierarchical retrieve, C.4.2.2.1): a
single value above the level, a single value or a list of UIDs at it.  Other
attributes are ignored.  :class:`RetrieveKeys` names each level's key by its
index column (:mod:`qrmodel`); the index backend turns them into one query.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.dataset import Dataset

from stellarpacs.storage.errors import InvalidQuery, QueryProblem
from stellarpacs.storage.query.qrmodel import (
    INFORMATION_MODELS,
    KEYS,
    QUERY_RETRIEVE_LEVEL,
    UNIQUE_KEYS,
    Level,
)
from stellarpacs.uids import (
    PATIENT_ROOT_QR_FIND,
    PATIENT_ROOT_QR_GET,
    PATIENT_ROOT_QR_MOVE,
    PATIENT_STUDY_ONLY_QR_FIND,
    PATIENT_STUDY_ONLY_QR_GET,
    PATIENT_STUDY_ONLY_QR_MOVE,
    STUDY_ROOT_QR_FIND,
    STUDY_ROOT_QR_GET,
    STUDY_ROOT_QR_MOVE,
)

__all__ = ["LEVELS", "RetrieveKeys", "retrieve_keys"]

#: Each retrieve SOP class and the information model (and so the levels) it shares
#: with its FIND sibling (PS3.4 C.6).
_FIND_SIBLING = {
    PATIENT_ROOT_QR_MOVE: PATIENT_ROOT_QR_FIND,
    PATIENT_ROOT_QR_GET: PATIENT_ROOT_QR_FIND,
    STUDY_ROOT_QR_MOVE: STUDY_ROOT_QR_FIND,
    STUDY_ROOT_QR_GET: STUDY_ROOT_QR_FIND,
    PATIENT_STUDY_ONLY_QR_MOVE: PATIENT_STUDY_ONLY_QR_FIND,
    PATIENT_STUDY_ONLY_QR_GET: PATIENT_STUDY_ONLY_QR_FIND,
}

#: The levels of each retrieve information model, top first.
LEVELS: dict[str, tuple[str, ...]] = {
    uid: tuple(level.name for level in INFORMATION_MODELS[find].levels)
    for uid, find in _FIND_SIBLING.items()
}


@dataclass(frozen=True, slots=True)
class RetrieveKeys:
    """The unique keys of a retrieve: (column, values) per level down to the retrieve level."""

    level: str
    conditions: tuple[tuple[str, tuple[str, ...]], ...]


def _values(ds: Dataset, keyword: str) -> tuple[str, ...]:
    element = ds.get(keyword)
    if element is None or element == "":
        return ()
    raw = element if isinstance(element, str) else "\\".join(str(v) for v in element)
    return tuple(v.strip() for v in str(raw).split("\\") if v.strip())


def retrieve_keys(ds: Dataset, model: str) -> RetrieveKeys:
    """Check the identifier against ``model`` and extract its unique keys.

    A missing or unknown Query/Retrieve Level is a ``MODEL`` problem; a
    missing unique key, or a list above the retrieve level, a ``HIERARCHY``
    one (:class:`~stellarpacs.storage.errors.InvalidQuery`).
    """
    levels = LEVELS[model]
    level = str(ds.get("QueryRetrieveLevel", "")).strip().upper()
    if level not in levels:
        raise InvalidQuery(
            QueryProblem.MODEL,
            f"Query/Retrieve Level {level or '(missing)'} is not one of {', '.join(levels)}",
            (QUERY_RETRIEVE_LEVEL,),
        )
    conditions = []
    for current in levels[: levels.index(level) + 1]:
        tag = UNIQUE_KEYS[Level[current]]
        key = KEYS[tag]  # the unique key and its index column
        keyword, column = key.keyword, key.column.sql
        values = _values(ds, keyword)
        if current == "PATIENT" and current != level and not values:
            continue  # Patient ID above the level narrows, but a UID below identifies
        if not values:
            message = f"{keyword} is required at level {level}"
            raise InvalidQuery(QueryProblem.HIERARCHY, message, (tag,))
        if current != level and len(values) > 1:
            message = f"{keyword} must be single-valued"
            raise InvalidQuery(QueryProblem.HIERARCHY, message, (tag,))
        conditions.append((column, values))
    return RetrieveKeys(level, tuple(conditions))
