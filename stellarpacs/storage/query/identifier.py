"""A C-FIND request identifier as a typed :class:`Query` (PS3.4 C.4.1.1.3.1, C.4.1.2).

The identifier is read with pydicom but its values are decoded here, from the
raw bytes, with the request's Specific Character Set (PS3.4 C.2.2.2: the
character set is never matched, it says how the other keys are encoded).
Working on raw bytes keeps a key such as ``SeriesNumber=*`` or a range in a
DA from going through pydicom's value conversion and validation.

Hierarchical rules (PS3.4 C.4.1.2.2, C.4.1.3.1): the Query/Retrieve Level
must be one of the model's levels; each level above it must be given by its
Unique Key as a single value; a key of a level below the query level is an
error.  Other keys of the levels above are accepted and matched, which is
what an SCU that also sends Patient's Name with a study query expects.

Failures raise :class:`~stellarpacs.storage.errors.InvalidQuery` saying what
is wrong: the level (``MODEL``), the hierarchy (``HIERARCHY``) or a value the
matching rules cannot read (``VALUE``), and the tags at fault; the FIND
service chooses the status.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from pydicom.charset import decode_bytes, python_encoding
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.multival import MultiValue

from stellarpacs.storage.errors import InvalidQuery, QueryProblem
from stellarpacs.storage.query.matching import (
    BINARY_VRS,
    Condition,
    InvalidKeyValue,
    Single,
    Universal,
    parse_condition,
)
from stellarpacs.storage.query.qrmodel import (
    INFORMATION_MODELS,
    KEYS,
    QUERY_RETRIEVE_LEVEL,
    SPECIFIC_CHARACTER_SET,
    UNIQUE_KEYS,
    KeySpec,
    Level,
    Model,
)
from stellarpacs.uids import EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN

__all__ = [
    "Query",
    "RequestKey",
    "decode_identifier",
    "parse_query",
]

# Characters that reset an ISO 2022 code extension (PS3.5 6.1.2.5.3): control characters
# and the backslash everywhere, and the component separators in a PN.
_TEXT_DELIMS: Final = frozenset({0x09, 0x0A, 0x0C, 0x0D, 0x5C})
_PN_DELIMS: Final = _TEXT_DELIMS | {0x5E, 0x3D}
_UNDEFINED: Final = 0xFFFFFFFF
_LITTLE_ENDIAN_SYNTAXES: Final[Mapping[str, bool]] = {
    IMPLICIT_VR_LITTLE_ENDIAN: True,
    EXPLICIT_VR_LITTLE_ENDIAN: False,
}


@dataclass(frozen=True, slots=True)
class RequestKey:
    """One key of the request: matched (its condition) and returned.

    ``spec`` is set when the index answers the key from a column, else the
    stored header does.  For a sequence, ``items`` holds the keys of the query
    item (PS3.4 C.2.2.2.6), or None when the whole sequence is asked for.
    ``supported`` is False when we cannot match on the key; it is then only
    returned, and the responses say so with FF01.
    """

    tag: int
    vr: str
    condition: Condition
    spec: KeySpec | None = None
    items: tuple[RequestKey, ...] | None = None
    supported: bool = True


@dataclass(frozen=True, slots=True)
class Query:
    """A checked C-FIND request: model, level and keys, in tag order."""

    model: Model
    level: Level
    keys: tuple[RequestKey, ...]
    charset: tuple[str, ...] = ()
    fold_names: bool = True

    @property
    def all_supported(self) -> bool:
        """False when a response must be Pending with warning FF01 (PS3.4 C.4.1.1.4)."""
        return all(k.supported and all(i.supported for i in k.items or ()) for k in self.keys)

    def key(self, tag: int) -> RequestKey | None:
        return next((k for k in self.keys if k.tag == tag), None)


def decode_identifier(data: bytes | None, transfer_syntax: str) -> Dataset:
    """The identifier's elements, still raw (values are decoded by :func:`parse_query`)."""
    if data is None:
        raise InvalidQuery(QueryProblem.MODEL, "C-FIND request without identifier")
    implicit = _LITTLE_ENDIAN_SYNTAXES.get(transfer_syntax)
    if implicit is None:
        raise InvalidQuery(QueryProblem.VALUE, f"identifier in unsupported {transfer_syntax}")
    try:
        ds = read_dataset(io.BytesIO(data), implicit, True)
    except Exception as exc:
        raise InvalidQuery(QueryProblem.VALUE, f"identifier cannot be parsed: {exc}") from exc
    for tag in ds.keys():  # noqa: SIM118 (iter(ds) converts; pydicom reads a cut value silently)
        raw = ds.get_item(tag)
        if not isinstance(raw, RawDataElement) or not isinstance(raw.value, bytes):
            continue
        if raw.length not in (len(raw.value), _UNDEFINED):
            raise InvalidQuery(QueryProblem.VALUE, "identifier truncated", (int(tag),))
    return ds


# -- values ------------------------------------------------------------------------------------


def _encodings(ds: Dataset) -> tuple[tuple[str, ...], list[str]]:
    """The request's Specific Character Set terms and the Python codecs they name."""
    raw = ds.get_item(SPECIFIC_CHARACTER_SET)
    if raw is None or not raw.value:
        return (), ["iso8859"]
    value = raw.value
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else _joined(value)
    terms = [t.strip() for t in text.split("\\")]
    if terms and terms[0] == "":
        terms[0] = "ISO_IR 6"  # PS3.5 6.1.2.5.3: an empty first value is the default
    unknown = [t for t in terms if t not in python_encoding]
    if unknown:
        raise InvalidQuery(
            QueryProblem.VALUE,
            f"Specific Character Set {unknown[0]!r} not supported",
            (SPECIFIC_CHARACTER_SET,),
        )
    return tuple(terms), [python_encoding[t] for t in terms]


def _joined(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple | MultiValue):
        return "\\".join(str(v) for v in value)
    return str(value)


def _vr(tag: int, given: str | None) -> str:
    if given and given != "UN":
        return given
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return given or "UN"


def _text(value: Any, vr: str, encodings: list[str]) -> str:
    if isinstance(value, bytes):
        delims = _PN_DELIMS if vr == "PN" else _TEXT_DELIMS
        return decode_bytes(value, encodings, set(delims))
    return _joined(value)


# -- keys ----------------------------------------------------------------------------------------


def _plain_key(tag: int, vr: str, value: Any, encodings: list[str]) -> RequestKey:
    spec = KEYS.get(tag)
    if vr in BINARY_VRS:
        empty = value is None or value in (b"", "") or value == []
        return RequestKey(tag, vr, Universal(), spec, supported=empty)
    text = _text(value, vr, encodings)
    try:
        condition = parse_condition(text, spec.vr if spec else vr)
    except InvalidKeyValue as exc:
        raise InvalidQuery(
            QueryProblem.VALUE, f"({tag >> 16:04X},{tag & 0xFFFF:04X}): {exc}", (tag,)
        ) from exc
    return RequestKey(tag, spec.vr if spec else vr, condition, spec)


def _sequence_key(ds: Dataset, tag: int, encodings: list[str]) -> RequestKey:
    try:
        items = list(ds[tag].value or ())
    except Exception as exc:
        raise InvalidQuery(QueryProblem.VALUE, f"sequence cannot be parsed: {exc}", (tag,)) from exc
    if not items or len(items[0]) == 0:
        return RequestKey(tag, "SQ", Universal(), supported=len(items) <= 1)
    keys = tuple(_item_key(items[0], t, encodings) for t in _tags(items[0]))
    return RequestKey(tag, "SQ", Universal(), items=keys, supported=len(items) == 1)


def _item_key(item: Dataset, tag: int, encodings: list[str]) -> RequestKey:
    """A key inside a sequence item: one level of nesting is matched, deeper only returned."""
    raw = item.get_item(tag)
    vr = _vr(tag, raw.VR)
    if vr != "SQ":
        return _plain_key(tag, vr, raw.value, encodings)
    nested = list(item[tag].value or ())
    deep = any(len(i) for i in nested)
    return RequestKey(tag, "SQ", Universal(), supported=not deep)


def _tags(ds: Dataset) -> Iterable[int]:
    """Data elements of an identifier: no group lengths, no command or meta groups."""
    tags = ds.keys()  # not iter(ds), which would convert every element
    return (int(t) for t in tags if t & 0xFFFF and t >> 16 >= 0x0008)


def _key(ds: Dataset, tag: int, encodings: list[str]) -> RequestKey:
    raw = ds.get_item(tag)
    vr = _vr(tag, raw.VR)
    if vr == "SQ":
        return _sequence_key(ds, tag, encodings)
    return _plain_key(tag, vr, raw.value, encodings)


# -- the request ---------------------------------------------------------------------------------


def _level(ds: Dataset, model: Model) -> Level:
    raw = ds.get_item(QUERY_RETRIEVE_LEVEL)
    text = _text(raw.value, "CS", ["iso8859"]).strip() if raw is not None else ""
    level = Level.__members__.get(text)
    if level is None or level not in model.levels:
        allowed = ", ".join(lv.name for lv in model.levels)
        got = repr(text) if raw is not None else "missing"
        raise InvalidQuery(
            QueryProblem.MODEL,
            f"Query/Retrieve Level {got}: {model.name} has {allowed}",
            (QUERY_RETRIEVE_LEVEL,),
        )
    return level


def _check_hierarchy(model: Model, level: Level, keys: Mapping[int, RequestKey]) -> None:
    """PS3.4 C.4.1.2.2: unique keys above the level as single values, nothing below it."""
    for upper in model.levels[: model.levels.index(level)]:
        tag = UNIQUE_KEYS[upper]
        key = keys.get(tag)
        if key is None or not isinstance(key.condition, Single):
            raise InvalidQuery(
                QueryProblem.HIERARCHY,
                f"a {level.name} query needs the {upper.name} unique key as a single value",
                (tag,),
            )
    below = [k.tag for k in keys.values() if k.spec and model.level_of(k.spec.level) > level]
    if below:
        name = KEYS[below[0]].keyword
        raise InvalidQuery(
            QueryProblem.HIERARCHY,
            f"{name} is below the {level.name} level of this hierarchical query",
            tuple(below),
        )


_NOT_KEYS: Final = frozenset({SPECIFIC_CHARACTER_SET, QUERY_RETRIEVE_LEVEL})


def parse_query(ds: Dataset, model_uid: str, *, fold_names: bool = True) -> Query:
    """Check a decoded identifier against ``model_uid`` and turn it into a :class:`Query`.

    Raises :class:`~stellarpacs.storage.errors.InvalidQuery` saying what is wrong.
    """
    model = INFORMATION_MODELS.get(model_uid)
    if model is None:
        raise InvalidQuery(QueryProblem.MODEL, f"{model_uid} is not a FIND model")
    charset, encodings = _encodings(ds)
    level = _level(ds, model)
    try:
        keys = {t: _key(ds, t, encodings) for t in _tags(ds) if t not in _NOT_KEYS}
    except InvalidQuery:
        raise
    except Exception as exc:  # pydicom found the bytes malformed while reading on
        raise InvalidQuery(QueryProblem.VALUE, f"identifier cannot be parsed: {exc}") from exc
    _check_hierarchy(model, level, keys)
    return Query(model, level, tuple(keys.values()), charset, fold_names)
