from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stellarpacs.fileio import uid_component
from stellarpacs.storage.files.layout import Layout, instance_relpath

HOSTILE = [
    "",
    ".",
    "..",
    "../../etc/passwd",
    "/etc/passwd",
    "1.2/../../x",
    "1.2\\..\\x",
    "C:\\windows",
    "1.2\x00.3",
    "\x00",
    "ü.1.2",
    "1..2",
    "1.2.",
    ".1.2",
    " 1.2",
    "1.2 ",
    "~",
    "1" * 65,
    "1." * 100 + "1",
    "a" * 200,
    "\udcff",
]


def test_a_real_uid_is_used_verbatim() -> None:
    assert uid_component("1.2.840.10008.5.1.4.1.1.2") == "1.2.840.10008.5.1.4.1.1.2"
    assert uid_component("1" * 64) == "1" * 64


@pytest.mark.parametrize("uid", HOSTILE)
def test_a_hostile_uid_becomes_a_hash(uid: str) -> None:
    component = uid_component(uid)
    assert component.startswith("x")
    assert len(component) == 65
    assert all(c in "0123456789abcdef" for c in component[1:])


@pytest.mark.parametrize("uid", HOSTILE)
def test_instance_path_stays_below_the_studies_directory(tmp_path: Path, uid: str) -> None:
    layout = Layout(tmp_path)
    path = layout.absolute(instance_relpath(uid, uid, uid)).resolve()
    assert path.is_relative_to(layout.studies_dir.resolve())
    assert len(path.relative_to(layout.studies_dir.resolve()).parts) == 3


@settings(max_examples=200)
@given(st.text(max_size=120))
def test_any_text_gives_one_safe_component(uid: str) -> None:
    component = uid_component(uid)
    assert component not in ("", ".", "..")
    assert not set(component) & {"/", "\\", "\0", ":"}
    assert len(component) <= 65


@settings(max_examples=200)
@given(st.text(max_size=70), st.text(max_size=70))
def test_different_uids_never_share_a_component(a: str, b: str) -> None:
    if a != b:
        assert uid_component(a) != uid_component(b)


@pytest.mark.parametrize("relpath", ["", "/etc/passwd", "studies/../../x", "..", "a\\..\\b"])
def test_layout_refuses_index_paths_leading_outside(tmp_path: Path, relpath: str) -> None:
    with pytest.raises(ValueError):
        Layout(tmp_path).absolute(relpath)
