"""The UID tables against the 1.3 conformance statement and PS3.5/PS3.6."""

from __future__ import annotations

import ast
import dataclasses
import inspect

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom._uid_dict import UID_dictionary

from stellarpacs import uids

# Table 2 of the StellarPACS 1.3 conformance statement, as printed there.
STATEMENT_TABLE2 = """\
CR Image Storage\t1.2.840.10008.5.1.4.1.1.1
CT Image Storage\t1.2.840.10008.5.1.4.1.1.2
MR Image Storage\t1.2.840.10008.5.1.4.1.1.4
NM Image Storage\t1.2.840.10008.5.1.4.1.1.20
US Image Storage\t1.2.840.10008.5.1.4.1.1.6.1
US Multi Image Storage\t1.2.840.10008.5.1.4.1.1.3.1
SC Image Storage\t1.2.840.10008.5.1.4.1.1.7
RT Image Storage\t1.2.840.10008.5.1.4.1.1.481.1
RT Dose Storage\t1.2.840.10008.5.1.4.1.1.481.2
RT Structure Set Storage\t1.2.840.10008.5.1.4.1.1.481.3
RT Treatment Record Storage\t1.2.840.10008.5.1.4.1.1.481.4
RT Plan Storage\t1.2.840.10008.5.1.4.1.1.481.5
X-Ray Angiographic Image Storage\t1.2.840.10008.5.1.4.1.1.12.1
X-Ray Radiofluoroscopic Image Storage\t1.2.840.10008.5.1.4.1.1.12.2
X-Ray Angiographic Bi-Plane Image Storage\t1.2.840.10008.5.1.4.1.1.12.3
Standalone Overlay Storage\t1.2.840.10008.5.1.4.1.1.8
Standalone Curve Storage\t1.2.840.10008.5.1.4.1.1.9
Standalone Modality LUT Storage\t1.2.840.10008.5.1.4.1.1.10
Standalone VOI LUT Storage\t1.2.840.10008.5.1.4.1.1.11
Positron Emission Tomography (PET) Storage\t1.2.840.10008.5.1.4.1.1.128
PET Curve Storage\t1.2.840.10008.5.1.4.1.1.129
Digital Xray (DX) Presented Image Storage\t1.2.840.10008.5.1.4.1.1.1.1
Digital Xray (DX) Processed Image Storage\t1.2.840.10008.5.1.4.1.1.1.1.1
Digital Mammography (MG) Presented Image Storage\t1.2.840.10008.5.1.4.1.1.1.2
Digital Mammography (MG) Processed Image Storage\t1.2.840.10008.5.1.4.1.1.1.2.1
Digital Intra-Oral (IO) Presented Image Storage\t1.2.840.10008.5.1.4.1.1.1.3
Digital Intra-Oral (IO) Processed Image Storage\t1.2.840.10008.5.1.4.1.1.1.3.1
Visible Light Endoscopy (ES) Image Storage\t1.2.840.10008.5.1.4.1.1.77.1.1
Visible Light Microscopy (GM) Image Storage\t1.2.840.10008.5.1.4.1.1.77.1.2
Visible Light Slide Microscopy (SM) Image Storage\t1.2.840.10008.5.1.4.1.1.77.1.3
Visible Light Photography (XC) Image Storage\t1.2.840.10008.5.1.4.1.1.77.1.4
"""

# Table 4 of the statement.
STATEMENT_TABLE4 = (
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.2",
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.5",
)

LOSSY = {
    uids.JPEG_BASELINE,
    uids.JPEG_EXTENDED,
    uids.JPEG_LS_NEAR_LOSSLESS,
    uids.JPEG_2000,
    uids.JPEG_2000_MC,
    uids.HTJ2K,
}
VIDEO_PREFIX = "1.2.840.10008.1.2.4.10"


def statement_rows() -> list[tuple[str, str]]:
    rows = [line.split("\t") for line in STATEMENT_TABLE2.splitlines()]
    return [(uid, name) for name, uid in rows]


def independent_uid_check(uid: str) -> bool:
    """PS3.5 9.1 restated without a regular expression."""
    parts = uid.split(".")
    return (
        len(uid) <= 64
        and all(p and all(c in "0123456789" for c in p) for p in parts)
        and all(p == "0" or not p.startswith("0") for p in parts)
    )


def every_uid() -> set[str]:
    found = {v for k, v in vars(uids).items() if k.isupper() and isinstance(v, str)}
    found.discard(uids.IMPLEMENTATION_VERSION_NAME)
    found |= set(uids.SOP_CLASSES) | set(uids.TRANSFER_SYNTAXES)
    found |= {sop.uid for sop in uids.TABLE2_STORAGE}
    for name in ("STORAGE_SOP_CLASSES", "NON_PATIENT_STORAGE_SOP_CLASSES", "QR_FIND_MODELS"):
        found |= set(getattr(uids, name))
    return found


# --- Table 2 ----------------------------------------------------------------------


def test_table2_is_the_statement_table_with_its_names() -> None:
    assert len(uids.TABLE2_STORAGE) == 31
    assert [(sop.uid, sop.name) for sop in uids.TABLE2_STORAGE] == statement_rows()


def test_table2_uids_are_all_storage_sop_classes() -> None:
    storage = set(uids.STORAGE_SOP_CLASSES)
    missing = [sop.uid for sop in uids.TABLE2_STORAGE if sop.uid not in storage]
    assert missing == []


def test_table2_retired_flags_follow_the_standard() -> None:
    retired = {sop.uid for sop in uids.TABLE2_STORAGE if sop.retired}
    assert retired == {
        "1.2.840.10008.5.1.4.1.1.8",
        "1.2.840.10008.5.1.4.1.1.9",
        "1.2.840.10008.5.1.4.1.1.10",
        "1.2.840.10008.5.1.4.1.1.11",
        "1.2.840.10008.5.1.4.1.1.12.3",
        "1.2.840.10008.5.1.4.1.1.129",
    }


# --- Storage SOP classes --------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "STORAGE_SOP_CLASSES",
        "NON_PATIENT_STORAGE_SOP_CLASSES",
        "STORAGE_TRANSFER_SYNTAXES",
        "TABLE4_TRANSFER_SYNTAXES",
        "QR_FIND_MODELS",
        "QR_MOVE_MODELS",
        "QR_GET_MODELS",
    ],
)
def test_no_duplicates(name: str) -> None:
    values = getattr(uids, name)
    assert len(values) == len(set(values))


def test_table_rows_have_no_duplicate_uids() -> None:
    rows = uids._STORAGE_ROWS + uids._RETIRED_STORAGE_ROWS + uids._NON_PATIENT_STORAGE_ROWS
    all_uids = [uid for uid, _ in rows] + [sop.uid for sop in uids._OTHER_SOP_CLASSES]
    assert len(all_uids) == len(set(all_uids))
    assert len({sop.uid for sop in uids.TABLE2_STORAGE}) == 31


def test_storage_sop_classes_cover_the_current_standard() -> None:
    storage = set(uids.STORAGE_SOP_CLASSES)
    expected = {
        "1.2.840.10008.5.1.4.1.1.2.1": "Enhanced CT Image Storage",
        "1.2.840.10008.5.1.4.1.1.4.1": "Enhanced MR Image Storage",
        "1.2.840.10008.5.1.4.1.1.130": "Enhanced PET Image Storage",
        "1.2.840.10008.5.1.4.1.1.66.4": "Segmentation Storage",
        "1.2.840.10008.5.1.4.1.1.88.11": "Basic Text SR Storage",
        "1.2.840.10008.5.1.4.1.1.88.22": "Enhanced SR Storage",
        "1.2.840.10008.5.1.4.1.1.88.33": "Comprehensive SR Storage",
        "1.2.840.10008.5.1.4.1.1.88.59": "Key Object Selection Document Storage",
        "1.2.840.10008.5.1.4.1.1.104.1": "Encapsulated PDF Storage",
        "1.2.840.10008.5.1.4.1.1.104.2": "Encapsulated CDA Storage",
        "1.2.840.10008.5.1.4.1.1.104.3": "Encapsulated STL Storage",
        "1.2.840.10008.5.1.4.1.1.481.8": "RT Ion Plan Storage",
        "1.2.840.10008.5.1.4.1.1.77.1.6": "VL Whole Slide Microscopy Image Storage",
        "1.2.840.10008.5.1.4.1.1.13.1.3": "Breast Tomosynthesis Image Storage",
    }
    for uid, name in expected.items():
        assert uid in storage
        assert uids.SOP_CLASS_NAMES[uid] == name


def test_non_storage_classes_are_not_storage() -> None:
    storage = set(uids.STORAGE_SOP_CLASSES) | set(uids.NON_PATIENT_STORAGE_SOP_CLASSES)
    for uid in (
        uids.STORAGE_COMMITMENT_PUSH,
        "1.2.840.10008.1.20.2",  # Storage Commitment Pull
        "1.2.840.10008.1.3.10",  # Media Storage Directory Storage
        "1.2.840.10008.4.2",  # Storage Service Class
        uids.VERIFICATION,
        uids.MPPS,
        *uids.QR_FIND_MODELS,
    ):
        assert uid not in storage


def test_non_patient_classes_are_kept_apart() -> None:
    assert set(uids.NON_PATIENT_STORAGE_SOP_CLASSES).isdisjoint(uids.STORAGE_SOP_CLASSES)
    assert "1.2.840.10008.5.1.4.38.1" in uids.NON_PATIENT_STORAGE_SOP_CLASSES  # Hanging Protocol
    assert len(uids.NON_PATIENT_STORAGE_SOP_CLASSES) == 9


def test_storage_sop_classes_are_in_uid_order() -> None:
    keys = [tuple(int(p) for p in uid.split(".")) for uid in uids.STORAGE_SOP_CLASSES]
    assert keys == sorted(keys)


def test_every_sop_class_is_one_of_pydicom_dictionary() -> None:
    for uid, sop in uids.SOP_CLASSES.items():
        entry = UID_dictionary[uid]
        assert entry[1] == "SOP Class"
        assert bool(entry[3]) == sop.retired, uid


def test_standard_names_match_pydicom_for_storage_rows() -> None:
    rows = uids._STORAGE_ROWS + uids._RETIRED_STORAGE_ROWS + uids._NON_PATIENT_STORAGE_ROWS
    assert all(UID_dictionary[uid][0] == name for uid, name in rows)


def test_uids_module_does_not_import_pydicom() -> None:
    tree = ast.parse(inspect.getsource(uids))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
    assert not any(name.split(".")[0] == "pydicom" for name in imported)


# --- UID syntax -------------------------------------------------------------------------


def test_every_uid_is_syntactically_valid() -> None:
    found = every_uid()
    assert len(found) > 250
    bad = sorted(uid for uid in found if not independent_uid_check(uid))
    assert bad == []
    assert all(uids.is_valid_uid(uid) for uid in found)


@pytest.mark.parametrize(
    "uid",
    [
        "",
        ".",
        "1.",
        ".1",
        "1..2",
        "01.2",
        "1.02",
        "1.2a",
        "1 .2",
        "1.2\n",
        "\uff11.2",
        "1." + "1" * 63,
    ],
)
def test_invalid_uids_are_rejected(uid: str) -> None:
    assert not uids.is_valid_uid(uid)


@pytest.mark.parametrize("uid", ["0", "1.0.3", "1.2.840.10008.1.2", "1." + "1" * 62])
def test_valid_uids_are_accepted(uid: str) -> None:
    assert uids.is_valid_uid(uid)


components = st.one_of(st.just("0"), st.integers(1, 10**12).map(str))


@settings(max_examples=200)
@given(st.lists(components, min_size=1, max_size=12))
def test_uid_check_agrees_with_its_definition(parts: list[str]) -> None:
    uid = ".".join(parts)
    assert uids.is_valid_uid(uid) == (len(uid) <= 64)


@settings(max_examples=200)
@given(st.text(alphabet="0123456789.", max_size=70))
def test_uid_check_matches_independent_check(uid: str) -> None:
    assert uids.is_valid_uid(uid) == (bool(uid) and independent_uid_check(uid))


# --- Transfer syntaxes ------------------------------------------------------------------


def test_table4_is_the_statement_table() -> None:
    assert uids.TABLE4_TRANSFER_SYNTAXES == STATEMENT_TABLE4


def test_storage_transfer_syntaxes_extend_table4() -> None:
    preferred = uids.STORAGE_TRANSFER_SYNTAXES
    assert set(STATEMENT_TABLE4) <= set(preferred)
    for uid in (
        uids.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
        uids.JPEG_LS_LOSSLESS,
        uids.JPEG_LS_NEAR_LOSSLESS,
        uids.JPEG_2000_LOSSLESS,
        uids.JPEG_2000,
        uids.HTJ2K_LOSSLESS,
        uids.HTJ2K_LOSSLESS_RPCL,
        uids.HTJ2K,
    ):
        assert uid in preferred
    assert all(uid in uids.TRANSFER_SYNTAXES for uid in preferred)


def test_storage_preference_never_puts_lossy_before_lossless() -> None:
    order = uids.STORAGE_TRANSFER_SYNTAXES
    assert order[0] == uids.JPEG_LOSSLESS_SV1  # a lossless offer is kept as offered
    explicit = order.index(uids.EXPLICIT_VR_LITTLE_ENDIAN)
    assert order[explicit + 1] == uids.IMPLICIT_VR_LITTLE_ENDIAN
    assert all(uids.TRANSFER_SYNTAXES[uid].compressed for uid in order[:explicit])
    lossy = [i for i, uid in enumerate(order) if uid in LOSSY or uid.startswith(VIDEO_PREFIX)]
    lossless = [i for i, uid in enumerate(order) if i not in lossy]
    last_lossless = max(i for i in lossless if order[i] != uids.EXPLICIT_VR_BIG_ENDIAN)
    assert last_lossless < min(lossy)
    assert order[-1] == uids.EXPLICIT_VR_BIG_ENDIAN


def test_jpip_is_known_but_not_accepted_by_default() -> None:
    jpip = "1.2.840.10008.1.2.4.94"
    assert uids.TRANSFER_SYNTAXES[jpip].compressed is False
    assert jpip not in uids.STORAGE_TRANSFER_SYNTAXES


@pytest.mark.parametrize(
    ("uid", "explicit_vr", "little_endian", "compressed", "deflated"),
    [
        (uids.IMPLICIT_VR_LITTLE_ENDIAN, False, True, False, False),
        (uids.EXPLICIT_VR_LITTLE_ENDIAN, True, True, False, False),
        (uids.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, True, True, False, True),
        (uids.EXPLICIT_VR_BIG_ENDIAN, True, False, False, False),
        (uids.JPEG_BASELINE, True, True, True, False),
        (uids.JPEG_LOSSLESS_SV1, True, True, True, False),
        (uids.JPEG_LS_LOSSLESS, True, True, True, False),
        (uids.JPEG_2000, True, True, True, False),
        (uids.HTJ2K_LOSSLESS_RPCL, True, True, True, False),
        (uids.RLE_LOSSLESS, True, True, True, False),
        ("1.2.840.10008.1.2.4.107", True, True, True, False),
    ],
)
def test_transfer_syntax_properties(
    uid: str, explicit_vr: bool, little_endian: bool, compressed: bool, deflated: bool
) -> None:
    ts = uids.TRANSFER_SYNTAXES[uid]
    assert (ts.explicit_vr, ts.little_endian, ts.compressed, ts.deflated) == (
        explicit_vr,
        little_endian,
        compressed,
        deflated,
    )


def test_transfer_syntax_names_and_retirement_match_the_standard() -> None:
    for uid, ts in uids.TRANSFER_SYNTAXES.items():
        name, kind, _, retired, _ = UID_dictionary[uid]
        assert kind == "Transfer Syntax"
        assert ts.name == name
        assert ts.retired == bool(retired)


# --- Well-known UIDs and names ------------------------------------------------------------


def test_well_known_uids() -> None:
    assert uids.VERIFICATION == "1.2.840.10008.1.1"
    assert uids.IMPLEMENTATION_CLASS_UID == "1.2.826.0.1.3680043.2.914"
    assert uids.IMPLEMENTATION_VERSION_NAME == "StellarPACS_1.3"
    assert len(uids.IMPLEMENTATION_VERSION_NAME) <= 16  # PS3.7 D.3.3.2
    assert uids.STORAGE_COMMITMENT_PUSH == "1.2.840.10008.1.20.1"
    assert uids.STORAGE_COMMITMENT_PUSH_INSTANCE == "1.2.840.10008.1.20.1.1"
    assert uids.MPPS == "1.2.840.10008.3.1.2.3.3"
    assert uids.TRANSFER_SYNTAXES[uids.HTJ2K].uid == "1.2.840.10008.1.2.4.203"
    assert uids.RLE_LOSSLESS == "1.2.840.10008.1.2.5"


def test_query_retrieve_models() -> None:
    base = "1.2.840.10008.5.1.4.1.2."
    find, move, get = uids.QR_FIND_MODELS, uids.QR_MOVE_MODELS, uids.QR_GET_MODELS
    assert find == (base + "1.1", base + "2.1", base + "3.1")
    assert move == (base + "1.2", base + "2.2", base + "3.2")
    assert get == (base + "1.3", base + "2.3", base + "3.3")


def test_name_of() -> None:
    assert uids.name_of("1.2.840.10008.5.1.4.1.1.2") == "CT Image Storage"
    assert uids.name_of(uids.VERIFICATION) == "Verification SOP Class"
    assert uids.name_of(uids.IMPLICIT_VR_LITTLE_ENDIAN) == "Implicit VR Little Endian"
    assert uids.name_of(uids.EXPLICIT_VR_BIG_ENDIAN) == "Explicit VR Big Endian (Retired)"
    assert uids.name_of("1.2.840.10008.5.1.4.1.1.6") == "Ultrasound Image Storage (Retired)"
    assert uids.name_of("1.2.840.10008.5.1.4.1.1.6.1") == "Ultrasound Image Storage"
    assert uids.name_of(uids.STUDY_ROOT_QR_MOVE).endswith("- MOVE")
    assert uids.name_of("1.2.3.4") == "1.2.3.4"


def test_sop_class_names_cover_every_known_sop_class() -> None:
    assert set(uids.SOP_CLASS_NAMES) == set(uids.SOP_CLASSES)
    assert set(uids.STORAGE_SOP_CLASSES) <= set(uids.SOP_CLASS_NAMES)


def test_tables_are_read_only() -> None:
    with pytest.raises(TypeError):
        uids.TRANSFER_SYNTAXES["1.2.3"] = uids.TRANSFER_SYNTAXES[uids.RLE_LOSSLESS]  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        uids.TABLE2_STORAGE[0].name = "x"  # type: ignore[misc]
