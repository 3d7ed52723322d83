"""Key attribute matching of PS3.4 C.2.2.2, as data: parse once, then SQL or Python.

Theory of operation.  A key's value in a C-FIND identifier is parsed into one
:data:`Condition` (universal, single value, wild card, list, range); the kind
follows from the value and the VR exactly as C.2.2.2.1 to C.2.2.2.5 decide it.
A condition is then either rendered as a parameterised SQL predicate over an
index column (:func:`to_sql`) or evaluated in Python over stored values
(:func:`matches`); both read the same tables, and the tests check they agree.

* Wild card matching (C.2.2.2.4) is SQLite ``GLOB``: ``*`` and ``?`` mean
  what DICOM means, ``%`` and ``_`` are ordinary characters, and the only
  GLOB metacharacter DICOM lacks, ``[``, is escaped as ``[[]``.  A literal
  prefix is also given as a range so that an index serves it.
* Person names may be compared case-folded (``str.casefold``, the folding
  the index applies to its ``*_folded`` columns): C.2.2.2.1 allows PN
  matching insensitive to case.
* Dates, times and date-times (C.2.2.2.5) are compared as fixed-width
  strings: a value with fewer components stands for the whole period it
  names, so ``1015`` as an upper bound means 10:15:59.999999.  Time zone
  offsets of DT values are not applied (both sides are taken as local).
* A value with backslashes is a list (C.2.2.2.2 for UIDs); for other VRs we
  match when any of the listed values matches, which Modalities in Study
  needs and which is harmless elsewhere.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, TypeAlias

__all__ = [
    "BINARY_VRS",
    "RANGE_VRS",
    "WILDCARD_VRS",
    "AnyOf",
    "Column",
    "Condition",
    "InvalidKeyValue",
    "Range",
    "Single",
    "Universal",
    "Wildcard",
    "da_key",
    "dt_key",
    "glob_escape",
    "matches",
    "parse_condition",
    "tm_key",
    "to_sql",
]

#: VRs on which ``*`` and ``?`` are wild cards (PS3.4 C.2.2.2.4).
WILDCARD_VRS: Final = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
#: VRs with range matching (PS3.4 C.2.2.2.5).
RANGE_VRS: Final = frozenset({"DA", "TM", "DT"})
#: VRs whose values we do not match (only universal matching is supported on them).
BINARY_VRS: Final = frozenset(
    {"OB", "OD", "OF", "OL", "OV", "OW", "UN", "US", "SS", "UL", "SL", "UV", "SV", "FL", "FD"}
    | {"AT", "US or SS", "OB or OW", "US or OW", "US or SS or OW"}
)
_TEXT_VRS: Final = frozenset({"LT", "ST", "UT"})  # VM 1: a backslash is just a character
_INTEGER_VRS: Final = frozenset({"IS", "SL", "SS", "UL", "US"})


class InvalidKeyValue(ValueError):
    """A key value that is not a valid date, time or date-time (range) for its VR."""


@dataclass(frozen=True, slots=True)
class Universal:
    """Zero-length value, or ``*`` (PS3.4 C.2.2.2.3, C.2.2.2.4): everything matches."""


@dataclass(frozen=True, slots=True)
class Single:
    """Single value matching (PS3.4 C.2.2.2.1)."""

    value: str


@dataclass(frozen=True, slots=True)
class Wildcard:
    """Wild card matching (PS3.4 C.2.2.2.4); ``pattern`` uses DICOM's ``*`` and ``?``."""

    pattern: str


@dataclass(frozen=True, slots=True)
class Range:
    """Range matching (PS3.4 C.2.2.2.5) on normalised keys; ``None`` is an open end.

    A single date or time is the range of the period it names; ``span`` tells
    a value written as a range (with ``-``) from such a single value.
    """

    vr: str
    low: str | None
    high: str | None
    span: bool = False


@dataclass(frozen=True, slots=True)
class AnyOf:
    """A list of values (PS3.4 C.2.2.2.2): matches when one of them matches."""

    items: tuple[Single | Wildcard | Range, ...]


Condition: TypeAlias = Universal | Single | Wildcard | Range | AnyOf


# -- dates and times --------------------------------------------------------------------------

_DA = re.compile(r"(\d{4})(\d{2})(\d{2})")
_TM = re.compile(r"(\d{2})(\d{2})?(\d{2})?(?:\.(\d{1,6}))?")
_DT = re.compile(r"(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,6}))?([+-]\d{4})?")
_LOW_FILL: Final = ("01", "01", "00", "00", "00")  # month, day, hour, minute, second
_HIGH_FILL: Final = ("12", "31", "23", "59", "59")


def _filled(parts: Sequence[str | None], fill: Sequence[str]) -> str:
    return "".join(p if p is not None else f for p, f in zip(parts, fill, strict=True))


def _fraction(frac: str | None, *, high: bool) -> str:
    return "." + (frac or "").ljust(6, "9" if high else "0")


def da_key(value: str, *, high: bool = False) -> str | None:
    """``YYYYMMDD`` of a DA (the ACR-NEMA ``YYYY.MM.DD`` form too); None when invalid."""
    text = value.strip()
    if len(text) == 10 and text[4] == "." and text[7] == ".":
        text = text.replace(".", "")
    return text if _DA.fullmatch(text) else None


def tm_key(value: str, *, high: bool = False) -> str | None:
    """``HHMMSS.FFFFFF`` of a TM, missing components filled low (or high); None if invalid."""
    m = _TM.fullmatch(value.strip().replace(":", ""))
    if m is None:
        return None
    hour, minute, second, frac = m.groups()
    fill = _HIGH_FILL if high else _LOW_FILL
    return hour + _filled((minute, second), fill[3:]) + _fraction(frac, high=high)


def dt_key(value: str, *, high: bool = False) -> str | None:
    """``YYYYMMDDHHMMSS.FFFFFF`` of a DT (offset ignored); None when invalid."""
    m = _DT.fullmatch(value.strip())
    if m is None:
        return None
    year, *parts, frac, _offset = m.groups()
    return year + _filled(parts, _HIGH_FILL if high else _LOW_FILL) + _fraction(frac, high=high)


_KEYS: Final[dict[str, Callable[..., str | None]]] = {"DA": da_key, "TM": tm_key, "DT": dt_key}


def _valid_offset(text: str) -> bool:
    """A DT time zone offset such as ``-0500``: hours up to 14, minutes below 60."""
    return int(text[1:3]) <= 14 and int(text[3:5]) < 60


def _split_range(text: str, vr: str) -> tuple[str, str] | None:
    """``(low, high)`` texts of a range value, or None when ``text`` is a single value.

    A DT may carry a ``-HHMM`` offset, so a DT with a valid offset is a single
    value, and otherwise the split is the first ``-`` that leaves two valid sides.
    """
    if "-" not in text:
        return None
    if vr != "DT":
        low, _, high = text.partition("-")
        return low, high
    m = _DT.fullmatch(text)
    if m is not None and m.group(8) and _valid_offset(m.group(8)):
        return None
    for i, char in enumerate(text):
        low, high = text[:i], text[i + 1 :]
        if char == "-" and all(not s or dt_key(s) is not None for s in (low, high)):
            return low, high
    raise InvalidKeyValue(f"{text!r} is not a DT range")


def _bound(text: str, vr: str, *, high: bool) -> str | None:
    if not text:
        return None
    key = _KEYS[vr](text, high=high)
    if key is None:
        raise InvalidKeyValue(f"{text!r} is not a valid {vr}")
    return key


def _range(text: str, vr: str) -> Range:
    split = _split_range(text, vr)
    low, high = split if split is not None else (text, text)
    if split is not None and not low and not high:
        raise InvalidKeyValue("a range needs at least one end")
    return Range(vr, _bound(low, vr, high=False), _bound(high, vr, high=True), split is not None)


# -- parsing --------------------------------------------------------------------------------


def _one(text: str, vr: str) -> Single | Wildcard | Range:
    if vr in RANGE_VRS:
        return _range(text, vr)
    if vr in WILDCARD_VRS and ("*" in text or "?" in text):
        return Wildcard(text)
    return Single(text)


def parse_condition(value: str, vr: str) -> Condition:
    """The matching a key value asks for (PS3.4 C.2.2.2), decided from value and VR.

    Raises :class:`InvalidKeyValue` for a malformed date, time or date-time.
    """
    text = value.rstrip(" \0") if vr in _TEXT_VRS else value.strip(" \0")
    if not text or (vr in WILDCARD_VRS and text.strip("*") == ""):
        return Universal()
    if "\\" in text and vr not in _TEXT_VRS:
        items = tuple(_one(p.strip(" \0"), vr) for p in text.split("\\") if p.strip(" \0"))
        if not items:
            return Universal()
        return items[0] if len(items) == 1 else AnyOf(items)
    return _one(text, vr)


# -- Python evaluation ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _regex(pattern: str, *, fold: bool) -> re.Pattern[str]:
    body = "".join(
        ".*" if c == "*" else "." if c == "?" else re.escape(c)
        for c in (pattern.casefold() if fold else pattern)
    )
    return re.compile(body, re.DOTALL)


def _int(text: str) -> int | None:
    try:
        return int(text.strip())
    except ValueError:
        return None


def _single(cond: Single, value: str, vr: str, fold: bool) -> bool:
    if vr in _INTEGER_VRS:
        wanted = _int(cond.value)
        return wanted is not None and wanted == _int(value)
    if fold:
        return value.casefold() == cond.value.casefold()
    return value == cond.value


def _one_matches(cond: Single | Wildcard | Range, value: str, vr: str, fold: bool) -> bool:
    if isinstance(cond, Single):
        return _single(cond, value, vr, fold)
    if isinstance(cond, Wildcard):
        found = _regex(cond.pattern, fold=fold).fullmatch(value.casefold() if fold else value)
        return found is not None
    key = _KEYS[cond.vr](value)
    if key is None:
        return False
    return (cond.low is None or cond.low <= key) and (cond.high is None or key <= cond.high)


def matches(cond: Condition, values: Sequence[str], vr: str, *, fold: bool = False) -> bool:
    """Whether stored ``values`` (all values of one attribute) satisfy ``cond``.

    A multi-valued attribute matches when any of its values does; an absent or
    empty attribute matches only universal matching (PS3.4 C.2.2.2.3).
    """
    if isinstance(cond, Universal):
        return True
    items = cond.items if isinstance(cond, AnyOf) else (cond,)
    return any(_one_matches(c, v, vr, fold) for c in items for v in values if v != "")


# -- SQL rendering -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Column:
    """An SQL expression a condition can be put on.

    ``folded`` is the same value case-folded (PN columns); ``integer`` makes
    single values compare as numbers (IS columns and computed counts).
    """

    sql: str
    vr: str
    folded: str | None = None
    integer: bool = False


_LITERAL_END = "\U0010ffff"  # sorts after every character a prefix can be followed by


def glob_escape(pattern: str) -> str:
    """A DICOM wild card pattern as a GLOB pattern: ``[`` is the only character to quote."""
    return pattern.replace("[", "[[]")


def _literal_prefix(pattern: str) -> str:
    return re.split(r"[*?]", pattern, maxsplit=1)[0]


_RANGE_SQL: Final = {"DA": "{}", "TM": "sp_tm({})", "DT": "sp_dt({})"}


def _sql_one(cond: Single | Wildcard | Range, col: Column, fold: bool, params: list[object]) -> str:
    expr = col.folded if fold and col.folded else col.sql
    casefold = fold and col.folded is not None
    if isinstance(cond, Single):
        if col.integer:
            params.append(_int(cond.value))
        else:
            params.append(cond.value.casefold() if casefold else cond.value)
        return f"{expr} = ?"
    if isinstance(cond, Wildcard):
        pattern = cond.pattern.casefold() if casefold else cond.pattern
        prefix = _literal_prefix(pattern)
        params.append(glob_escape(pattern))
        if not prefix:
            return f"{expr} GLOB ?"
        params.extend((prefix, prefix + _LITERAL_END))
        return f"({expr} GLOB ? AND {expr} >= ? AND {expr} < ?)"
    value = _RANGE_SQL[cond.vr].format(col.sql)
    terms = [f"{col.sql} <> ''"]
    for op, bound in ((">=", cond.low), ("<=", cond.high)):
        if bound is not None:
            params.append(bound)
            terms.append(f"{value} {op} ?")
    return "(" + " AND ".join(terms) + ")"


def to_sql(cond: Condition, col: Column, *, fold: bool = False) -> tuple[str, list[object]] | None:
    """A WHERE predicate for ``cond`` on ``col`` with its parameters; None for universal.

    Values are always parameters: nothing from the request becomes SQL text.
    """
    params: list[object] = []
    if isinstance(cond, Universal):
        return None
    if isinstance(cond, AnyOf):
        singles = [c.value for c in cond.items if isinstance(c, Single)]
        if len(singles) == len(cond.items) and not col.integer:
            # one parameter however long the list (PS3.4 C.2.2.2.2 puts no bound on it)
            casefold = fold and col.folded is not None
            expr = col.folded if casefold else col.sql
            params.append(json.dumps([v.casefold() if casefold else v for v in singles]))
            return f"{expr} IN (SELECT value FROM json_each(?))", params
        return "(" + " OR ".join(_sql_one(c, col, fold, params) for c in cond.items) + ")", params
    return _sql_one(cond, col, fold, params), params
