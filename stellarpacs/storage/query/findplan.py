"""The SELECT of one C-FIND and how its rows become response identifiers (PS3.4 C.4.1.3).

:func:`plan` turns a checked :class:`~stellarpacs.storage.query.identifier.Query`
into one SELECT over the query level's entity joined to the levels above it
(:data:`~stellarpacs.storage.query.qrmodel.FROM`): every key the index keeps as a
column becomes a WHERE predicate (:func:`~stellarpacs.storage.query.matching.to_sql`,
values always as parameters) and a selected expression; every other key is
answered, and matched, in Python from the stored header of the entity (its
first instance's DICOM JSON, PS3.18 F.2), which is selected only when needed.
There is no ORDER BY, so SQLite hands rows over as its index walk finds them.

Study Date with Study Time, both given as ranges, are matched as one
date-time range (PS3.4 C.2.2.2.5.1, the combined matching that extended
negotiation would select): ``20240101-20240102`` with ``2200-0600`` is the
night between the two days, not two unrelated conditions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from stellarpacs.storage.query.identifier import Query, RequestKey
from stellarpacs.storage.query.matches import Match
from stellarpacs.storage.query.matching import Range, Universal, matches, to_sql
from stellarpacs.storage.query.qrmodel import (
    FROM,
    HEADER,
    INSTANCE_AVAILABILITY,
    QUERY_RETRIEVE_LEVEL,
    RETRIEVE_AE_TITLE,
)

__all__ = ["Plan", "plan"]

_STUDY_DATE, _STUDY_TIME = 0x00080020, 0x00080030

Header: TypeAlias = dict[str, Any]


# -- values from the stored header (DICOM JSON, PS3.18 F.2) -------------------------------------


def _pn_text(value: Any) -> str:
    if not isinstance(value, dict):
        return str(value)
    groups = [str(value.get(k, "")) for k in ("Alphabetic", "Ideographic", "Phonetic")]
    return "=".join(groups).rstrip("=")


def _strings(elem: Header | None) -> list[str]:
    """The values of one stored element as the strings matching compares."""
    if not elem:
        return []
    values = elem.get("Value") or []
    if elem.get("vr") == "PN":
        return [_pn_text(v) for v in values]
    return ["" if v is None else str(v) for v in values]


def _key_matches(key: RequestKey, stored: Header, fold: bool) -> bool:
    elem = stored.get(f"{key.tag:08X}")
    if key.vr == "SQ":
        return not _filters(key) or bool(_matching_items(key, elem, fold))
    return matches(key.condition, _strings(elem), key.vr, fold=fold and key.vr == "PN")


def _filters(key: RequestKey) -> bool:
    """Whether ``key`` restricts the matches (not universal and matchable)."""
    if not key.supported:
        return False
    if key.vr == "SQ":
        return any(_filters(k) for k in key.items or ())
    return not isinstance(key.condition, Universal)


def _matching_items(key: RequestKey, elem: Header | None, fold: bool) -> list[Header]:
    """Items of a stored sequence matching every key of the query item (PS3.4 C.2.2.2.6)."""
    items = [i for i in (elem or {}).get("Value") or () if isinstance(i, dict)]
    keys = key.items or ()
    return [i for i in items if all(_key_matches(k, i, fold) for k in keys if k.supported)]


def _reduced(item: Header, keys: Sequence[RequestKey]) -> Header:
    """A stored item cut down to the keys of the query item, absent ones empty."""
    return {f"{k.tag:08X}": item.get(f"{k.tag:08X}", {"vr": k.vr}) for k in keys}


def _element(tag: int, vr: str, elem: Header | None) -> DataElement | None:
    """A response element from its stored JSON; None (empty) when the header lacks it."""
    if not elem:
        return None
    value_key = next((k for k in ("Value", "InlineBinary", "BulkDataURI") if k in elem), None)
    if value_key == "BulkDataURI":
        return None
    stored_vr = str(elem.get("vr") or vr)
    value = elem.get(value_key) if value_key else None
    return DataElement.from_json(Dataset, f"{tag:08X}", stored_vr, value, value_key)


# -- outputs: how one selected row becomes one response identifier ------------------------------


@dataclass(frozen=True, slots=True)
class _Column:
    tag: int
    vr: str
    index: int
    multi: bool

    def fill(self, match: Match, row: Sequence[Any], header: Header | None, fold: bool) -> None:
        value = row[self.index]
        if value is None or value == "":
            match.add(self.tag, self.vr, None)
        elif self.multi:
            match.add(self.tag, self.vr, sorted(v for v in str(value).split(",") if v))
        else:
            match.add(self.tag, self.vr, value if isinstance(value, int) else str(value))


@dataclass(frozen=True, slots=True)
class _Stored:
    key: RequestKey

    def fill(self, match: Match, row: Sequence[Any], header: Header | None, fold: bool) -> None:
        tag, vr = self.key.tag, self.key.vr
        elem = (header or {}).get(f"{tag:08X}")
        if vr == "SQ" and self.key.items is not None and elem:
            items = [_reduced(i, self.key.items) for i in _matching_items(self.key, elem, fold)]
            elem = {"vr": "SQ", "Value": items}
        match.add(tag, vr, _element(tag, vr, elem))


@dataclass(frozen=True, slots=True)
class _Constant:
    tag: int
    vr: str
    value: str

    def fill(self, match: Match, row: Sequence[Any], header: Header | None, fold: bool) -> None:
        match.add(self.tag, self.vr, self.value)


_Output: TypeAlias = _Column | _Stored | _Constant


@dataclass(frozen=True, slots=True)
class Plan:
    """The SELECT for a query and how to turn its rows into response identifiers."""

    sql: str
    params: tuple[object, ...]
    outputs: tuple[_Output, ...]
    header_index: int | None
    filters: tuple[RequestKey, ...]
    fold: bool

    def answer(self, row: Sequence[Any]) -> Match | None:
        """The response identifier for ``row``, or None when a header key does not match."""
        header: Header | None = None
        if self.header_index is not None:
            text = row[self.header_index]
            header = json.loads(text) if text else {}
            if not all(_key_matches(k, header, self.fold) for k in self.filters):
                return None
        match = Match()
        for out in self.outputs:
            out.fill(match, row, header, self.fold)
        return match


@dataclass(slots=True)
class _Builder:
    select: list[str] = field(default_factory=list)
    where: list[str] = field(default_factory=list)
    params: list[object] = field(default_factory=list)
    outputs: list[_Output] = field(default_factory=list)
    filters: list[RequestKey] = field(default_factory=list)

    def column(self, sql: str) -> int:
        self.select.append(sql)
        return len(self.select) - 1

    def condition(self, predicate: tuple[str, list[object]] | None) -> None:
        if predicate is not None:
            self.where.append(predicate[0])
            self.params.extend(predicate[1])


def _predicate(key: RequestKey, fold: bool) -> tuple[str, list[object]] | None:
    spec = key.spec
    assert spec is not None
    if spec.exists is not None and spec.exists_column is not None:
        inner = to_sql(key.condition, spec.exists_column)
        return None if inner is None else (spec.exists.format(inner[0]), inner[1])
    return to_sql(key.condition, spec.column, fold=fold and spec.vr == "PN")


def _combined(query: Query) -> tuple[str, list[object]] | None:
    """Study Date + Study Time ranges as one date-time range (PS3.4 C.2.2.2.5.1)."""
    date, time = query.key(_STUDY_DATE), query.key(_STUDY_TIME)
    if date is None or time is None:
        return None
    d, t = date.condition, time.condition
    if not (isinstance(d, Range) and isinstance(t, Range) and d.span and t.span):
        return None
    low = None if d.low is None else d.low + (t.low or "000000.000000")
    high = None if d.high is None else d.high + (t.high or "235959.999999")
    terms, params = ["st.study_date <> ''"], list[object]()
    for op, bound in ((">=", d.low), ("<=", d.high)):
        if bound is not None:
            terms.append(f"st.study_date {op} ?")
            params.append(bound)
    terms.append("sp_dt_in(st.study_date, st.study_time, ?, ?)")
    params.extend((low, high))
    return "(" + " AND ".join(terms) + ")", params


def _constant(key: RequestKey, retrieve_ae_title: str) -> _Constant | None:
    if key.tag == RETRIEVE_AE_TITLE:
        return _Constant(key.tag, "AE", retrieve_ae_title)
    if key.tag == INSTANCE_AVAILABILITY:
        return _Constant(key.tag, "CS", "ONLINE")  # every indexed instance is on disk
    return None


def plan(query: Query, *, retrieve_ae_title: str = "") -> Plan:
    """The SELECT answering ``query`` (PS3.4 C.4.1.3.1.1 over the index)."""
    b = _Builder()
    b.outputs.append(_Constant(QUERY_RETRIEVE_LEVEL, "CS", query.level.name))
    if retrieve_ae_title and query.key(RETRIEVE_AE_TITLE) is None:
        b.outputs.append(_Constant(RETRIEVE_AE_TITLE, "AE", retrieve_ae_title))
    combined = _combined(query)
    b.condition(combined)
    for key in query.keys:
        constant = _constant(key, retrieve_ae_title)
        if constant is not None:
            b.outputs.append(constant)
        elif key.spec is not None:
            b.outputs.append(
                _Column(key.tag, key.vr, b.column(key.spec.column.sql), key.spec.multi)
            )
            if combined is None or key.tag not in (_STUDY_DATE, _STUDY_TIME):
                b.condition(_predicate(key, query.fold_names))
        else:
            b.outputs.append(_Stored(key))
            if _filters(key):
                b.filters.append(key)
    stored = any(isinstance(o, _Stored) for o in b.outputs)
    header_index = b.column(HEADER[query.level]) if stored else None
    where = f" WHERE {' AND '.join(b.where)}" if b.where else ""
    sql = f"SELECT {', '.join(b.select) or '1'} {FROM[query.level]}{where}"
    return Plan(
        sql, tuple(b.params), tuple(b.outputs), header_index, tuple(b.filters), query.fold_names
    )
