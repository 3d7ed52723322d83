"""C-FIND matching over the index: parsing of key values, the SQL translation, the streaming.

A small corpus is indexed through the SQLiteIndex API (rows built from pydicom data
sets, so the header JSON is real); requests are encoded with pydicom and go
through the same decoding as on the wire.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

from stellarpacs.storage.errors import InvalidQuery, QueryProblem
from stellarpacs.storage.files.header import row_from_dataset
from stellarpacs.storage.index.catalog import _FUNCTIONS, SQLiteCatalog
from stellarpacs.storage.index.instances import SQLiteIndex
from stellarpacs.storage.query.findplan import plan
from stellarpacs.storage.query.identifier import Query, decode_identifier, parse_query
from stellarpacs.storage.query.matching import (
    AnyOf,
    Column,
    InvalidKeyValue,
    Range,
    Single,
    Universal,
    Wildcard,
    dt_key,
    matches,
    parse_condition,
    tm_key,
    to_sql,
)
from stellarpacs.uids import (
    IMPLICIT_VR_LITTLE_ENDIAN,
    PATIENT_ROOT_QR_FIND,
    PATIENT_STUDY_ONLY_QR_FIND,
    STUDY_ROOT_QR_FIND,
)

CT, MR = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4"

# (sop, study, series, patient id, patient name, study date, study time, modality, extra)
CORPUS: list[tuple[str, str, str, str, str, str, str, str, dict[str, Any]]] = [
    ("9.1.1.1", "9.1", "9.1.1", "P1", "Doe^John", "20240105", "101500", "CT", {}),
    ("9.1.2.1", "9.1", "9.1.2", "P1", "Doe^John", "20240105", "101500", "MR", {}),
    ("9.1.2.2", "9.1", "9.1.2", "P1", "Doe^John", "20240105", "101500", "MR", {}),
    ("9.2.1.1", "9.2", "9.2.1", "P2", "Müller^Jürgen", "20240201", "2300", "CT", {}),
    ("9.3.1.1", "9.3", "9.3.1", "P3", "50%_off^Sale", "20240202", "0300", "US", {}),
    ("9.4.1.1", "9.4", "9.4.1", "P4", "50xoff^Sale", "20240301", "", "CT", {}),
    ("9.5.1.1", "9.5", "9.5.1", "P5", "A[1]^Bracket", "", "", "OT", {}),
    ("9.6.1.1", "9.6", "9.6.1", "p_6", "DOE^JANE", "20231231", "235959", "MR", {}),
]


def dataset(
    sop: str,
    study: str,
    series: str,
    pid: str,
    name: str,
    date: str,
    time: str,
    modality: str,
    extra: dict[str, Any],
) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = MR if modality == "MR" else CT
    ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID = sop, study, series
    ds.PatientID, ds.PatientName, ds.Modality = pid, name, modality
    ds.StudyDate, ds.StudyTime = date, time
    ds.AccessionNumber = f"ACC{study[-1]}"
    ds.SeriesNumber = series[-1]
    ds.InstanceNumber = sop[-1]
    ds.InstitutionName = "Big%Hospital" if pid == "P1" else "Small_Clinic"
    ds.AcquisitionDateTime = f"{date or '20000101'}{time or '120000'}"
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator = f"C{pid}", "LOCAL"
    code.CodeMeaning = "Head" if pid == "P1" else "Chest"
    ds.ProcedureCodeSequence = [code]
    for key, value in extra.items():
        setattr(ds, key, value)
    return ds


@pytest.fixture
async def catalog(tmp_path: Path) -> AsyncIterator[SQLiteCatalog]:
    path = tmp_path / "index.sqlite3"
    async with SQLiteIndex(path, durable=False) as index:
        rows = [
            row_from_dataset(
                dataset(*entry),
                sop_instance_uid=entry[0],
                sop_class_uid=MR if entry[7] == "MR" else CT,
                transfer_syntax_uid=IMPLICIT_VR_LITTLE_ENDIAN,
                size=100,
                received_at="2024-01-01T00:00:00.000+00:00",
                calling_ae="TEST",
            )
            for entry in CORPUS
        ]
        await index.add(rows)
    async with SQLiteCatalog(path) as opened:
        yield opened


def identifier(level: str, charset: str | None = None, **keys: Any) -> bytes:
    ds = Dataset()
    if charset:
        ds.SpecificCharacterSet = charset
    ds.QueryRetrieveLevel = level
    for key, value in keys.items():
        setattr(ds, key, value)
    fp = DicomBytesIO()
    fp.is_implicit_VR, fp.is_little_endian = True, True
    write_dataset(fp, ds)
    return fp.getvalue()


def make_query(
    level: str,
    model: str = STUDY_ROOT_QR_FIND,
    *,
    fold: bool = True,
    charset: str | None = None,
    **keys: Any,
) -> Query:
    data = identifier(level, charset, **keys)
    return parse_query(decode_identifier(data, IMPLICIT_VR_LITTLE_ENDIAN), model, fold_names=fold)


async def found(catalog: SQLiteCatalog, query: Query) -> list[Dataset]:
    return [m.dataset() async for m in catalog.find(query, retrieve_ae_title="SCP")]


async def studies(catalog: SQLiteCatalog, fold: bool = True, **keys: Any) -> set[str]:
    query = make_query("STUDY", fold=fold, **({"StudyInstanceUID": ""} | keys))
    return {str(m.StudyInstanceUID) for m in await found(catalog, query)}


# -- parsing key values (PS3.4 C.2.2.2) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "vr", "expected"),
    [
        ("", "PN", Universal()),
        ("*", "PN", Universal()),
        ("**", "LO", Universal()),
        ("*", "UI", Single("*")),  # no wild cards on UI
        ("Doe*", "PN", Wildcard("Doe*")),
        ("D?e", "SH", Wildcard("D?e")),
        ("50%_off", "LO", Single("50%_off")),
        ("1.2\\1.3", "UI", AnyOf((Single("1.2"), Single("1.3")))),
        ("1.2\\", "UI", Single("1.2")),
        ("CT\\MR*", "CS", AnyOf((Single("CT"), Wildcard("MR*")))),
        ("a\\b", "LT", Single("a\\b")),  # LT has VM 1: the backslash is text
        ("  ACC1  ", "SH", Single("ACC1")),
        ("5*", "IS", Single("5*")),  # no wild cards on IS
        ("20240101", "DA", Range("DA", "20240101", "20240101")),
        ("2024.01.01", "DA", Range("DA", "20240101", "20240101")),
        ("20240101-", "DA", Range("DA", "20240101", None, True)),
        ("-20240101", "DA", Range("DA", None, "20240101", True)),
        ("20240101-20240131", "DA", Range("DA", "20240101", "20240131", True)),
        ("1015", "TM", Range("TM", "101500.000000", "101559.999999")),
        ("10-1130.5", "TM", Range("TM", "100000.000000", "113059.599999", True)),
        ("10:15:00", "TM", Range("TM", "101500.000000", "101500.999999")),
        ("2024-2025", "DT", Range("DT", "20240101000000.000000", "20251231235959.999999", True)),
        (
            "20240101120000-0500",
            "DT",
            Range("DT", "20240101120000.000000", "20240101120000.999999"),
        ),
        ("20240101-0500-", "DT", Range("DT", "20240101000000.000000", None, True)),
    ],
)
def test_parse_condition(value: str, vr: str, expected: object) -> None:
    assert parse_condition(value, vr) == expected


@pytest.mark.parametrize(
    ("value", "vr"), [("2024", "DA"), ("20240101-x", "DA"), ("-", "DA"), ("1x", "DT"), ("1", "TM")]
)
def test_malformed_dates_and_times_are_refused(value: str, vr: str) -> None:
    with pytest.raises(InvalidKeyValue):
        parse_condition(value, vr)


def test_time_and_datetime_keys_fill_missing_components() -> None:
    assert tm_key("10") == "100000.000000"
    assert tm_key("10", high=True) == "105959.999999"
    assert tm_key("101530.12") == "101530.120000"
    assert dt_key("202402", high=True) == "20240231235959.999999"
    assert dt_key("20240101120000+0100") == "20240101120000.000000"
    assert tm_key("nonsense") is None


# -- the SQL translation, against the index -----------------------------------------------------


async def test_universal_matching_returns_every_study(catalog: SQLiteCatalog) -> None:
    assert await studies(catalog) == {"9.1", "9.2", "9.3", "9.4", "9.5", "9.6"}
    assert await studies(catalog, PatientName="*") == await studies(catalog)


async def test_single_value_matching(catalog: SQLiteCatalog) -> None:
    assert await studies(catalog, PatientID="P1") == {"9.1"}
    assert await studies(catalog, AccessionNumber="ACC2") == {"9.2"}
    assert await studies(catalog, AccessionNumber="acc2") == set()  # case-sensitive except PN
    assert await studies(catalog, PatientName="doe^john") == {"9.1"}


async def test_wildcard_matching(catalog: SQLiteCatalog) -> None:
    assert await studies(catalog, PatientName="Doe^*") == {"9.1", "9.6"}
    assert await studies(catalog, PatientName="*ller*") == {"9.2"}
    assert await studies(catalog, PatientName="M?ller^J?rgen") == {"9.2"}  # ? is one character
    assert await studies(catalog, PatientName="M?ler*") == set()
    assert await studies(catalog, PatientID="P?") == {"9.1", "9.2", "9.3", "9.4", "9.5"}


async def test_percent_and_underscore_are_literal(catalog: SQLiteCatalog) -> None:
    assert await studies(catalog, PatientName="50%*") == {"9.3"}
    assert await studies(catalog, PatientName="50_*") == set()
    assert await studies(catalog, PatientName="50%_off^Sale") == {"9.3"}
    assert await studies(catalog, PatientName="*_*") == {"9.3"}
    assert await studies(catalog, PatientID="p_6") == {"9.6"}
    assert await studies(catalog, PatientID="p_?") == {"9.6"}
    assert await studies(catalog, PatientID="p%6") == set()


async def test_glob_brackets_are_literal(catalog: SQLiteCatalog) -> None:
    assert await studies(catalog, PatientName="A[1]^Bracket") == {"9.5"}
    assert await studies(catalog, PatientName="A[1*") == {"9.5"}
    assert await studies(catalog, PatientName="[ad]*") == set()


async def test_values_never_become_sql(catalog: SQLiteCatalog) -> None:
    hostile = "x' OR '1'='1"
    query = make_query("STUDY", PatientID=hostile, StudyInstanceUID="")
    assert hostile not in plan(query).sql
    assert await found(catalog, query) == []
    assert await studies(catalog, PatientName="*'; DROP TABLE study; --*") == set()
    assert len(await studies(catalog)) == 6


async def test_list_of_uids(catalog: SQLiteCatalog) -> None:
    assert await studies(catalog, StudyInstanceUID="9.1\\9.3\\9.99") == {"9.1", "9.3"}
    many = "\\".join(f"9.{i}" for i in range(2, 5000))
    assert await studies(catalog, StudyInstanceUID=many) == {"9.2", "9.3", "9.4", "9.5", "9.6"}


async def test_date_ranges(catalog: SQLiteCatalog) -> None:
    assert await studies(catalog, StudyDate="20240105") == {"9.1"}
    assert await studies(catalog, StudyDate="20240201-") == {"9.2", "9.3", "9.4"}
    assert await studies(catalog, StudyDate="-20240105") == {"9.1", "9.6"}  # never the empty one
    assert await studies(catalog, StudyDate="20240101-20240201") == {"9.1", "9.2"}


async def test_time_ranges(catalog: SQLiteCatalog) -> None:
    assert await studies(catalog, StudyTime="1015") == {"9.1"}
    assert await studies(catalog, StudyTime="2200-") == {"9.2", "9.6"}
    assert await studies(catalog, StudyTime="-0300") == {"9.3"}


async def test_study_date_and_time_combined_range(catalog: SQLiteCatalog) -> None:
    # the night from 1 to 2 February: 23:00 on the 1st and 03:00 on the 2nd
    assert await studies(catalog, StudyDate="20240201-20240202", StudyTime="2200-0400") == {
        "9.2",
        "9.3",
    }
    # open start: everything up to 5 January 10:00 (9.1 is at 10:15)
    assert await studies(catalog, StudyDate="-20240105", StudyTime="-1000") == {"9.6"}
    # a study without a time stands for its whole day
    assert await studies(catalog, StudyDate="20240301-20240302", StudyTime="2300-0100") == {"9.4"}


async def test_person_names_case_switch(catalog: SQLiteCatalog) -> None:
    assert await studies(catalog, PatientName="doe*") == {"9.1", "9.6"}
    assert await studies(catalog, fold=False, PatientName="doe*") == set()
    assert await studies(catalog, fold=False, PatientName="Doe*") == {"9.1"}
    assert await studies(catalog, fold=False, PatientName="DOE^JANE") == {"9.6"}
    assert await studies(catalog, PatientName="MÜLLER^JÜRGEN") == {"9.2"}


@pytest.mark.parametrize("charset", ["ISO_IR 100", "ISO_IR 192"])
async def test_non_ascii_names_in_either_character_set(
    catalog: SQLiteCatalog, charset: str
) -> None:
    query = make_query("STUDY", charset=charset, PatientName="Mü*", StudyInstanceUID="")
    matches = await found(catalog, query)
    assert [str(m.PatientName) for m in matches] == ["Müller^Jürgen"]


async def test_modalities_in_study(catalog: SQLiteCatalog) -> None:
    assert await studies(catalog, ModalitiesInStudy="MR") == {"9.1", "9.6"}
    assert await studies(catalog, ModalitiesInStudy="US\\OT") == {"9.3", "9.5"}
    query = make_query("STUDY", StudyInstanceUID="9.1", ModalitiesInStudy="")
    (match,) = await found(catalog, query)
    assert list(match.ModalitiesInStudy) == ["CT", "MR"]


async def test_computed_counts(catalog: SQLiteCatalog) -> None:
    keys: dict[str, Any] = dict(
        NumberOfStudyRelatedSeries="",
        NumberOfStudyRelatedInstances="",
        NumberOfPatientRelatedStudies="",
        NumberOfPatientRelatedSeries="",
        NumberOfPatientRelatedInstances="",
        SOPClassesInStudy="",
    )
    (match,) = await found(catalog, make_query("STUDY", StudyInstanceUID="9.1", **keys))
    assert (match.NumberOfStudyRelatedSeries, match.NumberOfStudyRelatedInstances) == (2, 3)
    assert match.NumberOfPatientRelatedStudies == 1
    assert (match.NumberOfPatientRelatedSeries, match.NumberOfPatientRelatedInstances) == (2, 3)
    assert sorted(match.SOPClassesInStudy) == [CT, MR]
    query = make_query(
        "SERIES", StudyInstanceUID="9.1", NumberOfSeriesRelatedInstances="2", SeriesInstanceUID=""
    )
    assert [m.SeriesInstanceUID for m in await found(catalog, query)] == ["9.1.2"]


async def test_levels_of_the_three_models(catalog: SQLiteCatalog) -> None:
    patients = make_query("PATIENT", PATIENT_ROOT_QR_FIND, PatientID="", PatientName="DOE*")
    assert sorted(m.PatientID for m in await found(catalog, patients)) == ["P1", "p_6"]
    psonly = make_query("STUDY", PATIENT_STUDY_ONLY_QR_FIND, PatientID="P1", StudyInstanceUID="")
    assert [m.StudyInstanceUID for m in await found(catalog, psonly)] == ["9.1"]
    images = make_query(
        "IMAGE",
        PATIENT_ROOT_QR_FIND,
        PatientID="P1",
        StudyInstanceUID="9.1",
        SeriesInstanceUID="9.1.2",
        SOPInstanceUID="",
        InstanceNumber="",
    )
    got = {(m.SOPInstanceUID, m.InstanceNumber) for m in await found(catalog, images)}
    assert got == {("9.1.2.1", 1), ("9.1.2.2", 2)}


async def test_response_holds_the_requested_keys_level_and_retrieve_ae(
    catalog: SQLiteCatalog,
) -> None:
    query = make_query("STUDY", StudyInstanceUID="9.2", PatientName="", StudyDescription="")
    (match,) = await found(catalog, query)
    assert match.QueryRetrieveLevel == "STUDY"
    assert match.RetrieveAETitle == "SCP"
    assert match.StudyDescription in ("", None)  # requested, not stored: present and empty
    assert set(match.keys()) == {0x00080052, 0x00080054, 0x00100010, 0x0020000D, 0x00081030}


async def test_other_keys_come_from_the_stored_header(catalog: SQLiteCatalog) -> None:
    assert await studies(catalog, InstitutionName="Big%*") == {"9.1"}
    others = {"9.2", "9.3", "9.4", "9.5", "9.6"}
    assert await studies(catalog, InstitutionName="Small_Clinic") == others
    query = make_query("STUDY", StudyInstanceUID="9.1", InstitutionName="", OperatorsName="")
    (match,) = await found(catalog, query)
    assert match.InstitutionName == "Big%Hospital"
    assert 0x00081070 in match and not match.OperatorsName


async def test_datetime_range_on_a_header_key(catalog: SQLiteCatalog) -> None:
    query = make_query(
        "IMAGE",
        AcquisitionDateTime="20240201-20240202",
        StudyInstanceUID="9.2",
        SeriesInstanceUID="9.2.1",
        SOPInstanceUID="",
    )
    assert [m.SOPInstanceUID for m in await found(catalog, query)] == ["9.2.1.1"]


async def test_sequence_matching_one_level(catalog: SQLiteCatalog) -> None:
    item = Dataset()
    item.CodeValue, item.CodeMeaning = "CP1", ""
    query = make_query("STUDY", StudyInstanceUID="", ProcedureCodeSequence=[item])
    (match,) = await found(catalog, query)
    assert match.StudyInstanceUID == "9.1"
    (returned,) = match.ProcedureCodeSequence
    assert (returned.CodeValue, returned.CodeMeaning) == ("CP1", "Head")
    assert "CodingSchemeDesignator" not in returned  # only the keys of the query item
    whole = make_query("STUDY", StudyInstanceUID="9.2", ProcedureCodeSequence=[])
    (match,) = await found(catalog, whole)
    assert match.ProcedureCodeSequence[0].CodingSchemeDesignator == "LOCAL"


async def test_streamed_not_gathered(catalog: SQLiteCatalog) -> None:
    """``stop`` is asked per row: after two answers, no further row is read."""
    asked = 0

    def stop() -> bool:
        nonlocal asked
        asked += 1
        return asked > 2

    query = make_query("STUDY", StudyInstanceUID="")
    got = [m async for m in catalog.find(query, stop=stop)]
    assert len(got) == 2 and asked == 3


# -- hierarchical rules (PS3.4 C.4.1.2.2) -------------------------------------------------------


MODEL, HIERARCHY, VALUE = QueryProblem.MODEL, QueryProblem.HIERARCHY, QueryProblem.VALUE
# The statuses C-FIND answers for these are checked in tests/services/test_query.py.
NOT_FITTING: list[tuple[str, str | None, dict[str, str], QueryProblem]] = [
    (STUDY_ROOT_QR_FIND, None, {"PatientName": ""}, MODEL),
    (STUDY_ROOT_QR_FIND, "PATIENT", {"PatientName": ""}, MODEL),
    (STUDY_ROOT_QR_FIND, "WHATEVER", {}, MODEL),
    (
        PATIENT_STUDY_ONLY_QR_FIND,
        "SERIES",
        {"PatientID": "P1", "StudyInstanceUID": "9.1"},
        MODEL,
    ),
    (PATIENT_ROOT_QR_FIND, "STUDY", {"StudyInstanceUID": ""}, HIERARCHY),
    (PATIENT_ROOT_QR_FIND, "STUDY", {"PatientID": "P*"}, HIERARCHY),
    (STUDY_ROOT_QR_FIND, "SERIES", {"StudyInstanceUID": "9.1\\9.2"}, HIERARCHY),
    (STUDY_ROOT_QR_FIND, "STUDY", {"Modality": "CT"}, HIERARCHY),
    (STUDY_ROOT_QR_FIND, "STUDY", {"SOPInstanceUID": ""}, HIERARCHY),
    (PATIENT_ROOT_QR_FIND, "PATIENT", {"StudyDate": ""}, HIERARCHY),
    (STUDY_ROOT_QR_FIND, "STUDY", {"StudyDate": "2024-01-01"}, VALUE),
    (STUDY_ROOT_QR_FIND, "STUDY", {"SpecificCharacterSet": "ISO_IR 999"}, VALUE),
]


@pytest.mark.parametrize(("model", "level", "keys", "problem"), NOT_FITTING)
def test_requests_that_do_not_fit_the_model(
    model: str, level: str | None, keys: dict[str, str], problem: QueryProblem
) -> None:
    ds = Dataset()
    if level is not None:
        ds.QueryRetrieveLevel = level
    for key, value in keys.items():
        setattr(ds, key, value)
    fp = DicomBytesIO()
    fp.is_implicit_VR, fp.is_little_endian = True, True
    write_dataset(fp, ds)
    with pytest.raises(InvalidQuery) as caught:
        parse_query(decode_identifier(fp.getvalue(), IMPLICIT_VR_LITTLE_ENDIAN), model)
    assert caught.value.problem is problem
    assert caught.value.tags or problem is not VALUE


def test_upper_level_keys_other_than_unique_keys_are_matched() -> None:
    query = make_query(
        "SERIES",
        PATIENT_ROOT_QR_FIND,
        PatientID="P1",
        StudyInstanceUID="9.1",
        PatientName="Doe*",
        Modality="",
    )
    assert query.key(0x00100010) is not None and "patient_name_folded" in plan(query).sql


def test_unsupported_keys_are_flagged_for_ff01() -> None:
    supported = make_query("STUDY", StudyInstanceUID="")
    assert supported.all_supported
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.add_new(0x00280010, "US", 512)  # Rows: a binary VR, not matchable
    fp = DicomBytesIO()
    fp.is_implicit_VR, fp.is_little_endian = True, True
    write_dataset(fp, ds)
    query = parse_query(
        decode_identifier(fp.getvalue(), IMPLICIT_VR_LITTLE_ENDIAN), STUDY_ROOT_QR_FIND
    )
    assert not query.all_supported


def test_garbage_identifier_is_unable_to_process() -> None:
    with pytest.raises(InvalidQuery) as caught:
        ds = decode_identifier(b"\x08\x00\x52\x00\xff\xff\x00\x00STUDY", IMPLICIT_VR_LITTLE_ENDIAN)
        parse_query(ds, STUDY_ROOT_QR_FIND)
    assert caught.value.problem in (MODEL, HIERARCHY, VALUE)  # C-FIND: A900 or C001


# -- SQL and Python agree (property) ------------------------------------------------------------

_ALPHABET = st.sampled_from(list("aAbB%_[]^*?üÜ ."))
_PATTERN_ALPHABET = st.sampled_from(list("aAbB%_[]^*?üÜ"))


def _sql_matches(values: Sequence[str], value: str, vr: str, fold: bool) -> set[int]:
    db = sqlite3.connect(":memory:")
    for name, arity, func in _FUNCTIONS:
        db.create_function(name, arity, func, deterministic=True)
    db.execute("CREATE TABLE t (pk INTEGER PRIMARY KEY, v TEXT, f TEXT)")
    db.executemany("INSERT INTO t (v, f) VALUES (?, ?)", [(v, v.casefold()) for v in values])
    col = Column("v", vr, folded="f" if vr == "PN" else None)
    predicate = to_sql(parse_condition(value, vr), col, fold=fold)
    sql = "SELECT pk FROM t" + (f" WHERE {predicate[0]}" if predicate else "")
    rows = db.execute(sql, predicate[1] if predicate else ()).fetchall()
    db.close()
    return {int(r[0]) - 1 for r in rows}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.lists(st.text(_ALPHABET, min_size=1, max_size=6), min_size=1, max_size=8),
    pattern=st.text(_PATTERN_ALPHABET, max_size=5),
    vr=st.sampled_from(["PN", "LO", "SH"]),
    fold=st.booleans(),
)
def test_sql_and_python_matching_agree(
    values: list[str], pattern: str, vr: str, fold: bool
) -> None:
    values = [v.strip(" ") or "x" for v in values]
    condition = parse_condition(pattern, vr)
    expected = {
        i for i, v in enumerate(values) if matches(condition, [v], vr, fold=fold and vr == "PN")
    }
    assert _sql_matches(values, pattern, vr, fold) == expected


@settings(max_examples=100, deadline=None)
@given(
    stored=st.lists(
        st.from_regex(r"\A([01]\d|2[0-3])([0-5]\d([0-5]\d)?)?\Z"), min_size=1, max_size=6
    ),
    low=st.from_regex(r"\A([01]\d|2[0-3])([0-5]\d)?\Z"),
    high=st.from_regex(r"\A([01]\d|2[0-3])([0-5]\d)?\Z"),
)
def test_time_ranges_agree(stored: list[str], low: str, high: str) -> None:
    condition = parse_condition(f"{low}-{high}", "TM")
    expected = {i for i, v in enumerate(stored) if matches(condition, [v], "TM")}
    assert _sql_matches(stored, f"{low}-{high}", "TM", False) == expected


# -- response identifiers: our writer and pydicom's give the same bytes --------------------------


def _pydicom_bytes(ds: Dataset, ts: str, charset: str | None) -> bytes:
    if charset:
        ds.SpecificCharacterSet = charset.split("\\") if "\\" in charset else charset
    fp = DicomBytesIO()
    fp.is_implicit_VR, fp.is_little_endian = ts == IMPLICIT_VR_LITTLE_ENDIAN, True
    write_dataset(fp, ds)
    return fp.getvalue()


@pytest.mark.parametrize("ts", [IMPLICIT_VR_LITTLE_ENDIAN, "1.2.840.10008.1.2.1"])
@pytest.mark.parametrize(
    ("charset", "name"),
    [
        (None, "Doe^John"),
        ("ISO_IR 100", "Müller^Jürgen"),
        ("ISO_IR 192", "Ōtani^Shōhei=大谷^翔平"),
        ("ISO 2022 IR 6\\ISO 2022 IR 87", "Yamada^Tarou=山田^太郎"),
    ],
)
async def test_match_encoding_is_what_pydicom_writes(
    catalog: SQLiteCatalog, ts: str, charset: str | None, name: str
) -> None:
    query = make_query(
        "STUDY",
        StudyInstanceUID="9.1",
        PatientName="",
        ModalitiesInStudy="",
        NumberOfStudyRelatedInstances="",
        ProcedureCodeSequence=[],
        InstitutionName="",
        StudyDescription="",
    )
    (match,) = [m async for m in catalog.find(query, retrieve_ae_title="SCP")]
    match.elements = [(t, vr, name if t == 0x00100010 else v) for t, vr, v in match.elements]
    assert match.encode(ts, charset) == _pydicom_bytes(match.dataset(), ts, charset)
