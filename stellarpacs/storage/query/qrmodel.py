"""The Query/Retrieve information models of PS3.4 C.6, as tables over the index.

Three FIND models share one index: Patient Root (C.6.1: PATIENT, STUDY,
SERIES, IMAGE), Study Root (C.6.2: STUDY, SERIES, IMAGE, with the patient's
attributes at the study level) and Patient/Study Only (C.6.3, retired:
PATIENT, STUDY).  Each key the index keeps as a column is one
:class:`KeySpec` naming its native level and the SQL that returns it and
matches on it; a key that is not in :data:`KEYS` is answered from the stored
header of the entity's first instance.  Table aliases: ``p`` patient,
``st`` study, ``se`` series, ``i`` instance.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from types import MappingProxyType
from typing import Final

from stellarpacs.storage.query.matching import Column
from stellarpacs.uids import PATIENT_ROOT_QR_FIND, PATIENT_STUDY_ONLY_QR_FIND, STUDY_ROOT_QR_FIND

__all__ = [
    "FROM",
    "HEADER",
    "INFORMATION_MODELS",
    "INSTANCE_AVAILABILITY",
    "KEYS",
    "QUERY_RETRIEVE_LEVEL",
    "RETRIEVE_AE_TITLE",
    "SPECIFIC_CHARACTER_SET",
    "UNIQUE_KEYS",
    "KeySpec",
    "Level",
    "Model",
]

SPECIFIC_CHARACTER_SET: Final = 0x00080005
QUERY_RETRIEVE_LEVEL: Final = 0x00080052
RETRIEVE_AE_TITLE: Final = 0x00080054
INSTANCE_AVAILABILITY: Final = 0x00080056


class Level(IntEnum):
    """Query/Retrieve Level (0008,0052), top down (PS3.4 C.6.1.1)."""

    PATIENT = 0
    STUDY = 1
    SERIES = 2
    IMAGE = 3


@dataclass(frozen=True, slots=True)
class Model:
    """One FIND information model: its SOP class and its levels, top first."""

    uid: str
    name: str
    levels: tuple[Level, ...]

    def level_of(self, native: Level) -> Level:
        """Where a key of ``native`` level sits here: Study Root folds PATIENT into STUDY."""
        return max(native, self.levels[0])


INFORMATION_MODELS: Final[Mapping[str, Model]] = MappingProxyType(
    {
        m.uid: m
        for m in (
            Model(PATIENT_ROOT_QR_FIND, "Patient Root", tuple(Level)),
            Model(STUDY_ROOT_QR_FIND, "Study Root", (Level.STUDY, Level.SERIES, Level.IMAGE)),
            Model(PATIENT_STUDY_ONLY_QR_FIND, "Patient/Study Only", (Level.PATIENT, Level.STUDY)),
        )
    }
)

#: The Unique Key of each level (PS3.4 C.6.1.1.2 to C.6.1.1.5).
UNIQUE_KEYS: Final[Mapping[Level, int]] = MappingProxyType(
    {
        Level.PATIENT: 0x00100020,  # Patient ID
        Level.STUDY: 0x0020000D,  # Study Instance UID
        Level.SERIES: 0x0020000E,  # Series Instance UID
        Level.IMAGE: 0x00080018,  # SOP Instance UID
    }
)

_SERIES_OF_PATIENT = "series s3 JOIN study s2 ON s2.pk = s3.study_pk WHERE s2.patient_pk = p.pk"
_INSTANCES = "instance i3 JOIN series s3 ON s3.pk = i3.series_pk"

#: FROM clause per query level: the entity, joined to the levels above it.
FROM: Final[Mapping[Level, str]] = MappingProxyType(
    {
        Level.PATIENT: "FROM patient p",
        Level.STUDY: "FROM study st JOIN patient p ON p.pk = st.patient_pk",
        Level.SERIES: "FROM series se JOIN study st ON st.pk = se.study_pk "
        "JOIN patient p ON p.pk = st.patient_pk",
        Level.IMAGE: "FROM instance i JOIN series se ON se.pk = i.series_pk "
        "JOIN study st ON st.pk = se.study_pk JOIN patient p ON p.pk = st.patient_pk",
    }
)

#: The stored header that stands for an entity: its own, or its first instance's.
HEADER: Final[Mapping[Level, str]] = MappingProxyType(
    {
        Level.PATIENT: "(SELECT i3.header_json FROM instance i3 JOIN series s3 ON "
        "s3.pk = i3.series_pk JOIN study s2 ON s2.pk = s3.study_pk "
        "WHERE s2.patient_pk = p.pk ORDER BY i3.pk LIMIT 1)",
        Level.STUDY: f"(SELECT i3.header_json FROM {_INSTANCES} "
        "WHERE s3.study_pk = st.pk ORDER BY i3.pk LIMIT 1)",
        Level.SERIES: "(SELECT i3.header_json FROM instance i3 "
        "WHERE i3.series_pk = se.pk ORDER BY i3.pk LIMIT 1)",
        Level.IMAGE: "i.header_json",
    }
)


@dataclass(frozen=True, slots=True)
class KeySpec:
    """A key the index answers (PS3.4 C.6.1.1 tables).

    ``column`` returns the value and, unless ``exists`` is set, is matched on.
    ``exists`` is the predicate template of a computed multi-valued key: the
    key matches when one related row satisfies ``{}`` (Modalities in Study
    matches when one series has the modality).  ``multi`` values come back
    comma-joined from ``group_concat``.
    """

    tag: int
    keyword: str
    level: Level
    column: Column
    exists: str | None = None
    exists_column: Column | None = None
    multi: bool = False

    @property
    def vr(self) -> str:
        return self.column.vr


def _count(sql: str) -> Column:
    return Column(f"(SELECT COUNT(*) FROM {sql})", "IS", integer=True)


def _text(tag: int, keyword: str, level: Level, sql: str, vr: str) -> KeySpec:
    return KeySpec(tag, keyword, level, Column(sql, vr))


_P, _ST, _SE, _I = Level.PATIENT, Level.STUDY, Level.SERIES, Level.IMAGE

_SPECS: Final = (
    KeySpec(
        0x00100010,
        "PatientName",
        _P,
        Column("p.patient_name", "PN", folded="p.patient_name_folded"),
    ),
    _text(0x00100020, "PatientID", _P, "p.patient_id", "LO"),
    _text(0x00100030, "PatientBirthDate", _P, "p.patient_birth_date", "DA"),
    _text(0x00100040, "PatientSex", _P, "p.patient_sex", "CS"),
    KeySpec(
        0x00201200,
        "NumberOfPatientRelatedStudies",
        _P,
        _count("study s2 WHERE s2.patient_pk = p.pk"),
    ),
    KeySpec(0x00201202, "NumberOfPatientRelatedSeries", _P, _count(_SERIES_OF_PATIENT)),
    KeySpec(
        0x00201204,
        "NumberOfPatientRelatedInstances",
        _P,
        _count(f"{_INSTANCES} JOIN study s2 ON s2.pk = s3.study_pk WHERE s2.patient_pk = p.pk"),
    ),
    _text(0x0020000D, "StudyInstanceUID", _ST, "st.study_uid", "UI"),
    _text(0x00080020, "StudyDate", _ST, "st.study_date", "DA"),
    _text(0x00080030, "StudyTime", _ST, "st.study_time", "TM"),
    _text(0x00080050, "AccessionNumber", _ST, "st.accession_number", "SH"),
    _text(0x00200010, "StudyID", _ST, "st.study_id", "SH"),
    _text(0x00081030, "StudyDescription", _ST, "st.study_description", "LO"),
    KeySpec(
        0x00080090,
        "ReferringPhysicianName",
        _ST,
        Column("st.referring_physician_name", "PN", folded="sp_fold(st.referring_physician_name)"),
    ),
    KeySpec(
        0x00080061,
        "ModalitiesInStudy",
        _ST,
        Column(
            "(SELECT group_concat(DISTINCT s3.modality) FROM series s3 "
            "WHERE s3.study_pk = st.pk AND s3.modality <> '')",
            "CS",
        ),
        exists="EXISTS (SELECT 1 FROM series s3 WHERE s3.study_pk = st.pk AND {})",
        exists_column=Column("s3.modality", "CS"),
        multi=True,
    ),
    KeySpec(
        0x00080062,
        "SOPClassesInStudy",
        _ST,
        Column(
            f"(SELECT group_concat(DISTINCT i3.sop_class_uid) FROM {_INSTANCES} "
            "WHERE s3.study_pk = st.pk)",
            "UI",
        ),
        exists=f"EXISTS (SELECT 1 FROM {_INSTANCES} WHERE s3.study_pk = st.pk AND {{}})",
        exists_column=Column("i3.sop_class_uid", "UI"),
        multi=True,
    ),
    KeySpec(
        0x00201206, "NumberOfStudyRelatedSeries", _ST, _count("series s3 WHERE s3.study_pk = st.pk")
    ),
    KeySpec(
        0x00201208,
        "NumberOfStudyRelatedInstances",
        _ST,
        _count(f"{_INSTANCES} WHERE s3.study_pk = st.pk"),
    ),
    _text(0x0020000E, "SeriesInstanceUID", _SE, "se.series_uid", "UI"),
    _text(0x00080060, "Modality", _SE, "se.modality", "CS"),
    KeySpec(0x00200011, "SeriesNumber", _SE, Column("se.series_number", "IS", integer=True)),
    _text(0x0008103E, "SeriesDescription", _SE, "se.series_description", "LO"),
    _text(0x00180015, "BodyPartExamined", _SE, "se.body_part_examined", "CS"),
    KeySpec(
        0x00201209,
        "NumberOfSeriesRelatedInstances",
        _SE,
        _count("instance i3 WHERE i3.series_pk = se.pk"),
    ),
    _text(0x00080018, "SOPInstanceUID", _I, "i.sop_instance_uid", "UI"),
    _text(0x00080016, "SOPClassUID", _I, "i.sop_class_uid", "UI"),
    KeySpec(0x00200013, "InstanceNumber", _I, Column("i.instance_number", "IS", integer=True)),
)

#: The keys the index answers from its columns, by tag.
KEYS: Final[Mapping[int, KeySpec]] = MappingProxyType({s.tag: s for s in _SPECS})
