"""Hypothesis strategies for DIMSE messages, built from the message classes' own fields."""

from __future__ import annotations

from dataclasses import Field, fields
from typing import Any

from hypothesis import strategies as st

from stellarpacs.dimse.commands import COMMAND_CLASSES, Message

# UIDs: dotted numeric components without leading zeros (PS3.5 9.1), at most 64 characters.
uids = st.from_regex(r"[1-9][0-9]{0,7}(\.(0|[1-9][0-9]{0,7})){1,6}", fullmatch=True)
# Default character repertoire without backslash (the value delimiter); no edge spaces,
# since those are padding and are stripped on decode.
_TEXT = r"[!-\[\]-~]"
ae_titles = st.from_regex(rf"{_TEXT}([ -\[\]-~]{{0,14}}{_TEXT})?", fullmatch=True)
long_strings = st.from_regex(rf"{_TEXT}([ -\[\]-~]{{0,62}}{_TEXT})?", fullmatch=True)
us_values = st.integers(min_value=0, max_value=0xFFFF)
tags = st.integers(min_value=0, max_value=0xFFFF_FFFF)
tag_lists = st.lists(tags, min_size=1, max_size=8).map(tuple)

_BY_FIELD: dict[str, st.SearchStrategy[Any]] = {
    "affected_sop_class_uid": uids,
    "requested_sop_class_uid": uids,
    "affected_sop_instance_uid": uids,
    "requested_sop_instance_uid": uids,
    "move_destination": ae_titles,
    "move_originator_ae_title": ae_titles,
    "error_comment": long_strings,
    "offending_element": tag_lists,
    "attribute_identifier_list": tag_lists,
    "has_dataset": st.booleans(),
}


def _field_strategy(f: Field[Any]) -> st.SearchStrategy[Any]:
    """Optional fields (default None) may be absent; the rest always get a value."""
    strategy = _BY_FIELD.get(f.name, us_values)
    return st.none() | strategy if f.default is None else strategy


def messages_of(cls: type[Message]) -> st.SearchStrategy[Message]:
    """Any valid instance of ``cls``."""
    return st.builds(cls, **{f.name: _field_strategy(f) for f in fields(cls)})


messages: st.SearchStrategy[Message] = st.one_of(
    [messages_of(cls) for cls in COMMAND_CLASSES.values()]
)
