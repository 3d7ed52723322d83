"""``python -m stellarpacs find HOST PORT -k Key=Value ...``: a C-FIND SCU (PS3.4 C.4.1).

Keys are given as ``-k Keyword=Value``, ``-k gggg,eeee=Value`` or, inside a
sequence's first item, ``-k Sequence.Keyword=Value``; a key without ``=`` or
with an empty value is a return key (universal matching, PS3.4 C.2.2.2.3).
The usual keys of the level are added as return keys unless ``--no-defaults``.
Matches print as a table, or as a DICOM JSON array (PS3.18 F.2) with
``--json``; ``--limit N`` cancels the query (C-CANCEL) after N matches.
The exit status is 0 when the query ended in Success or Cancel.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from contextlib import aclosing
from typing import Any, Final

from pydicom import config as pydicom_config
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from stellarpacs.cli.common import EXIT_OK, Subparsers, add_peer_flags, connect_peer, run
from stellarpacs.errors import ConfigError
from stellarpacs.uids import PATIENT_ROOT_QR_FIND, PATIENT_STUDY_ONLY_QR_FIND, STUDY_ROOT_QR_FIND

__all__ = ["build_identifier", "parse_key", "register"]

FIND_MODEL_CHOICES: Final = {
    "patient": PATIENT_ROOT_QR_FIND,
    "study": STUDY_ROOT_QR_FIND,
    "psonly": PATIENT_STUDY_ONLY_QR_FIND,
}
LEVELS: Final = ("PATIENT", "STUDY", "SERIES", "IMAGE")
DEFAULT_KEYS: Final[dict[str, tuple[str, ...]]] = {
    "PATIENT": ("PatientName", "PatientID", "PatientBirthDate", "PatientSex"),
    "STUDY": (
        "PatientName",
        "PatientID",
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "ModalitiesInStudy",
        "StudyDescription",
        "StudyInstanceUID",
    ),
    "SERIES": ("SeriesNumber", "Modality", "SeriesDescription", "SeriesInstanceUID"),
    "IMAGE": ("InstanceNumber", "SOPClassUID", "SOPInstanceUID"),
}


def _tag(name: str) -> int:
    """A tag from a keyword, ``gggg,eeee``, ``(gggg,eeee)`` or ``ggggeeee``."""
    text = name.strip().strip("()")
    found = tag_for_keyword(text)
    if found is not None:
        return int(found)
    try:
        if "," in text:
            group, elem = text.split(",")
            return int(Tag(int(group, 16), int(elem, 16)))
        if len(text) == 8:
            return int(Tag(int(text, 16)))
    except ValueError:
        pass
    raise ConfigError(f"unknown attribute {name!r} (a keyword or gggg,eeee)")


def _vr(tag: int) -> str:
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return "LO"  # a private tag: text is the likely intent


def parse_key(text: str) -> tuple[list[int], str]:
    """``'Seq.Keyword=Value'`` -> ([seq tag, tag], value); no ``=`` means an empty value."""
    path, _, value = text.partition("=")
    if not path:
        raise ConfigError(f"-k {text!r}: the attribute is missing")
    return [_tag(part) for part in path.split(".")], value


def _put(ds: Dataset, tags: Sequence[int], value: str) -> None:
    tag, rest = tags[0], tags[1:]
    if rest:
        if tag not in ds:
            ds[tag] = DataElement(tag, "SQ", [Dataset()])
        elif not ds[tag].value:
            ds[tag].value.append(Dataset())
        _put(ds[tag].value[0], rest, value)
        return
    vr = _vr(tag)
    try:
        elem = DataElement(tag, vr, value, validation_mode=pydicom_config.IGNORE)
    except ValueError as exc:
        raise ConfigError(f"value {value!r} is not valid for {vr}: {exc}") from None
    ds[tag] = DataElement(tag, "SQ", []) if vr == "SQ" else elem


def build_identifier(keys: Sequence[str], level: str, *, defaults: bool = True) -> Dataset:
    """The C-FIND identifier: Query/Retrieve Level, the keys, default return keys."""
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for name in DEFAULT_KEYS[level] if defaults else ():
        _put(ds, [_tag(name)], "")
    for key in keys:
        tags, value = parse_key(key)
        _put(ds, tags, value)
    if any(not str(v).isascii() for v in _values(ds)):
        ds.SpecificCharacterSet = "ISO_IR 192"
    return ds


def _values(ds: Dataset) -> list[Any]:
    out: list[Any] = []
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                out.extend(_values(item))
        elif elem.value is not None:
            out.append(elem.value)
    return out


# -- output --------------------------------------------------------------------------------------


def _cell(ds: Dataset, tag: int) -> str:
    elem = ds.get(tag)
    if elem is None or elem.value is None:
        return ""
    if elem.VR == "SQ":
        return f"<{len(elem.value)} items>"
    if elem.VM > 1:
        return "\\".join(str(v) for v in elem.value)
    return str(elem.value)


def _columns(identifier: Dataset) -> list[int]:
    skip = {0x00080005, 0x00080052}
    return [int(e.tag) for e in identifier if int(e.tag) not in skip]


def format_table(identifier: Dataset, matches: Sequence[Dataset]) -> str:
    """The matches as aligned columns, one per key of the request."""
    columns = _columns(identifier)
    names = [identifier[t].keyword or f"({t >> 16:04X},{t & 0xFFFF:04X})" for t in columns]
    rows = [[_cell(m, t) for t in columns] for m in matches]
    widths = [max(len(r[i]) for r in [names, *rows]) for i in range(len(columns))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in [names, *rows]
    ]
    return "\n".join(line.rstrip() for line in lines)


# -- the command ---------------------------------------------------------------------------------


async def _find(args: argparse.Namespace) -> int:
    identifier = build_identifier(args.keys, args.level, defaults=not args.no_defaults)
    model = FIND_MODEL_CHOICES[args.model]
    association = await connect_peer(args, [model])
    matches: list[Dataset] = []
    async with association, aclosing(association.find(model, identifier)) as found:
        async for match in found:
            matches.append(match)
            if args.limit and len(matches) >= args.limit:
                break
    if args.json:
        print(json.dumps([m.to_json_dict() for m in matches], indent=1, ensure_ascii=False))
    else:
        print(format_table(identifier, matches))
    print(f"{len(matches)} matches", file=sys.stderr)
    return EXIT_OK


def cmd_find(args: argparse.Namespace) -> int:
    if args.model == "psonly" and args.level not in ("PATIENT", "STUDY"):
        raise ConfigError("the Patient/Study Only model has the PATIENT and STUDY levels only")
    if args.model == "study" and args.level == "PATIENT":
        raise ConfigError("the Study Root model has no PATIENT level; use --model patient")
    return run(_find(args))


def register(commands: Subparsers) -> None:
    """Add ``find`` to the command line."""
    parser = commands.add_parser("find", help="query a DICOM peer (C-FIND)")
    add_peer_flags(parser)
    parser.add_argument(
        "-k",
        "--key",
        dest="keys",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a matching key, or a return key without value (repeatable)",
    )
    parser.add_argument("--model", choices=sorted(FIND_MODEL_CHOICES), default="study")
    parser.add_argument("--level", choices=LEVELS, default="STUDY", type=str.upper)
    parser.add_argument("--json", action="store_true", help="print DICOM JSON")
    parser.add_argument("--limit", type=int, default=0, help="cancel after N matches")
    parser.add_argument(
        "--no-defaults", action="store_true", help="send only the keys given with -k"
    )
    parser.set_defaults(func=cmd_find)
