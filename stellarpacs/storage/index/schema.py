"""The SQLite schema of the instance index, its migrations and the statements that fill it.

Patient / study / series / instance tables hold the query keys of PS3.4
C.6.1.1 as indexed columns and each instance's header as DICOM JSON (PS3.18
F.2). Higher levels are filled by the first instance that names them; a
later instance only fills attributes that are still empty
(:func:`_fill_empty_upsert`). Every statement takes its values as
parameters. The schema version is PRAGMA user_version; :data:`MIGRATIONS`
brings any older file up to date, in one transaction.

A row is added by :func:`insert_plan`, a generator of statements with no I/O
(see :mod:`threads`), so the writer thread and the aiosqlite connection run
the same description.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import aiosqlite

from stellarpacs.storage.errors import SchemaTooNew
from stellarpacs.storage.index.threads import Plan
from stellarpacs.storage.records import HeaderSummary, InstanceRow

__all__ = [
    "DELETE_STUDY",
    "GET_INSTANCE",
    "HAS_INSTANCE",
    "LIST_STUDIES",
    "MIGRATIONS",
    "SELECT_RECORD",
    "insert_plan",
    "migrate",
]

log = logging.getLogger(__name__)

_SCHEMA_V1 = (
    """CREATE TABLE patient (
        pk INTEGER PRIMARY KEY,
        patient_id TEXT NOT NULL UNIQUE,
        patient_name TEXT NOT NULL DEFAULT '',
        patient_name_folded TEXT NOT NULL DEFAULT '',
        patient_birth_date TEXT NOT NULL DEFAULT '',
        patient_sex TEXT NOT NULL DEFAULT '')""",
    "CREATE INDEX patient_name_ix ON patient (patient_name)",
    "CREATE INDEX patient_name_folded_ix ON patient (patient_name_folded)",
    """CREATE TABLE study (
        pk INTEGER PRIMARY KEY,
        study_uid TEXT NOT NULL UNIQUE,
        patient_pk INTEGER NOT NULL REFERENCES patient (pk),
        study_date TEXT NOT NULL DEFAULT '',
        study_time TEXT NOT NULL DEFAULT '',
        accession_number TEXT NOT NULL DEFAULT '',
        study_id TEXT NOT NULL DEFAULT '',
        study_description TEXT NOT NULL DEFAULT '',
        referring_physician_name TEXT NOT NULL DEFAULT '')""",
    "CREATE INDEX study_patient_ix ON study (patient_pk)",
    "CREATE INDEX study_date_ix ON study (study_date)",
    "CREATE INDEX study_accession_ix ON study (accession_number)",
    """CREATE TABLE series (
        pk INTEGER PRIMARY KEY,
        series_uid TEXT NOT NULL UNIQUE,
        study_pk INTEGER NOT NULL REFERENCES study (pk),
        modality TEXT NOT NULL DEFAULT '',
        series_number INTEGER,
        series_description TEXT NOT NULL DEFAULT '',
        body_part_examined TEXT NOT NULL DEFAULT '')""",
    "CREATE INDEX series_study_ix ON series (study_pk)",
    "CREATE INDEX series_modality_ix ON series (modality)",
    """CREATE TABLE instance (
        pk INTEGER PRIMARY KEY,
        sop_instance_uid TEXT NOT NULL UNIQUE,
        series_pk INTEGER NOT NULL REFERENCES series (pk),
        sop_class_uid TEXT NOT NULL,
        instance_number INTEGER,
        transfer_syntax_uid TEXT NOT NULL,
        specific_character_set TEXT NOT NULL DEFAULT '',
        path TEXT NOT NULL,
        size INTEGER NOT NULL,
        received_at TEXT NOT NULL,
        calling_ae TEXT NOT NULL DEFAULT '',
        header_json TEXT NOT NULL DEFAULT '{}')""",
    "CREATE INDEX instance_series_ix ON instance (series_pk)",
    "CREATE INDEX instance_path_ix ON instance (path)",
)

MIGRATIONS: list[Sequence[str]] = [_SCHEMA_V1]
"""Statements that bring the schema from version ``i`` to ``i + 1`` (PRAGMA user_version)."""


def _fill_empty_upsert(table: str, key: str, columns: Sequence[str]) -> str:
    """INSERT ... ON CONFLICT that only fills columns still empty (first value wins)."""
    names = (key, *columns)
    updates = ", ".join(
        f"{c} = CASE WHEN {table}.{c} IS NULL OR {table}.{c} = '' "
        f"THEN excluded.{c} ELSE {table}.{c} END"
        for c in columns
    )
    return (
        f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))}) "
        f"ON CONFLICT ({key}) DO UPDATE SET {updates} RETURNING pk"
    )


# Named as the fields of HeaderSummary that fill them (see _header_values).
_PATIENT_COLUMNS = ("patient_name", "patient_name_folded", "patient_birth_date", "patient_sex")
_STUDY_COLUMNS = (
    "study_date",
    "study_time",
    "accession_number",
    "study_id",
    "study_description",
    "referring_physician_name",
)
_SERIES_COLUMNS = ("modality", "series_number", "series_description", "body_part_examined")
_UPSERT_PATIENT = _fill_empty_upsert("patient", "patient_id", _PATIENT_COLUMNS)
_UPSERT_STUDY = _fill_empty_upsert("study", "study_uid", ("patient_pk", *_STUDY_COLUMNS))
_UPSERT_SERIES = _fill_empty_upsert("series", "series_uid", ("study_pk", *_SERIES_COLUMNS))
_INSERT_INSTANCE = (
    "INSERT INTO instance (sop_instance_uid, series_pk, sop_class_uid, instance_number, "
    "transfer_syntax_uid, specific_character_set, path, size, received_at, calling_ae, "
    "header_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
SELECT_RECORD = (
    "SELECT i.sop_instance_uid, i.sop_class_uid, i.transfer_syntax_uid, p.patient_id, "
    "st.study_uid, se.series_uid, i.path, i.size, i.received_at, i.calling_ae "
    "FROM instance i JOIN series se ON se.pk = i.series_pk "
    "JOIN study st ON st.pk = se.study_pk JOIN patient p ON p.pk = st.patient_pk"
)
LIST_STUDIES = (
    "SELECT st.study_uid, p.patient_id, p.patient_name, st.study_date, st.study_time, "
    "st.accession_number, st.study_description, group_concat(DISTINCT se.modality), "
    "COUNT(DISTINCT se.pk), COUNT(i.pk), COALESCE(SUM(i.size), 0) "
    "FROM study st JOIN patient p ON p.pk = st.patient_pk "
    "LEFT JOIN series se ON se.study_pk = st.pk LEFT JOIN instance i ON i.series_pk = se.pk "
    "GROUP BY st.pk ORDER BY st.study_date, st.study_uid"
)
DELETE_STUDY = (
    "DELETE FROM instance WHERE series_pk IN (SELECT se.pk FROM series se "
    "JOIN study st ON st.pk = se.study_pk WHERE st.study_uid = ?)",
    "DELETE FROM series WHERE study_pk IN (SELECT pk FROM study WHERE study_uid = ?)",
    "DELETE FROM study WHERE study_uid = ?",
    "DELETE FROM patient WHERE NOT EXISTS "
    "(SELECT 1 FROM study WHERE study.patient_pk = patient.pk)",
)


HAS_INSTANCE = "SELECT 1 FROM instance WHERE sop_instance_uid = ?"
GET_INSTANCE = SELECT_RECORD + " WHERE i.sop_instance_uid = ?"


def _header_values(header: HeaderSummary, columns: Sequence[str]) -> tuple[object, ...]:
    """The values of ``columns``, which bear the names of HeaderSummary's fields."""
    return tuple(
        header.patient_name.casefold() if c == "patient_name_folded" else getattr(header, c)
        for c in columns
    )


def insert_plan(row: InstanceRow) -> Plan:
    """The statements that add one row; each is sent back the rows its predecessor returned.

    Sans-I/O, so one description serves the writer thread and aiosqlite alike.
    Returns False, writing nothing, when the SOP instance is already indexed.
    """
    rec, hdr = row.record, row.header
    if (yield HAS_INSTANCE, (rec.sop_instance_uid,)):
        return False
    patient = yield _UPSERT_PATIENT, (rec.patient_id, *_header_values(hdr, _PATIENT_COLUMNS))
    study_values = _header_values(hdr, _STUDY_COLUMNS)
    study = yield _UPSERT_STUDY, (rec.study_instance_uid, patient[0][0], *study_values)
    series_values = _header_values(hdr, _SERIES_COLUMNS)
    series = yield _UPSERT_SERIES, (rec.series_instance_uid, study[0][0], *series_values)
    yield (
        _INSERT_INSTANCE,
        (
            rec.sop_instance_uid,
            series[0][0],
            rec.sop_class_uid,
            hdr.instance_number,
            rec.transfer_syntax_uid,
            hdr.specific_character_set,
            rec.path,
            rec.size,
            rec.received_at,
            rec.calling_ae,
            hdr.header_json,
        ),
    )
    return True


async def _user_version(db: aiosqlite.Connection) -> int:
    async with db.execute("PRAGMA user_version") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def migrate(db: aiosqlite.Connection) -> None:
    """Bring the schema to ``len(MIGRATIONS)``, all steps in one transaction."""
    target = len(MIGRATIONS)
    if await _user_version(db) == target:
        return
    await db.execute("BEGIN IMMEDIATE")  # re-read under the lock: another process may migrate
    try:
        version = await _user_version(db)
        if version > target:
            raise SchemaTooNew(f"index schema v{version} is newer than this program (v{target})")
        for step in range(version, target):
            for statement in MIGRATIONS[step]:
                await db.execute(statement)
            log.info("index schema migrated to v%d", step + 1)
        await db.execute(f"PRAGMA user_version = {int(target)}")
        await db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            await db.execute("ROLLBACK")
        raise
