"""Helpers of the C-FIND interop tests: an awkward corpus, findscu, pynetdicom, bulk rows.

The corpus has mixed-case names with every ``^`` component, UTF-8 names,
``%``, ``_`` and ``[`` in values, dates with and without times; it is sent
with dcmtk's storescu so that what is found is what arrived over the wire.
Everything is bounded in time.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from stellarpacs.aio.server import Server
from stellarpacs.services.storage import StorageService
from stellarpacs.storage.archive import Archive
from tests.integration.peers import (
    HOST,
    SERVER_AE,
    TOOL_TIMEOUT,
    WAIT,
    dcmtk,
    dcmtk_env,
    run_process,
)
from tests.integration.storage_fixtures import write_part10

CT, MR = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4"
MODEL_FLAGS = {"patient": "-P", "study": "-S", "psonly": "-O"}


@dataclass(frozen=True, slots=True)
class Entry:
    """One instance of the corpus."""

    sop: str
    series: str
    study: str
    patient_id: str
    name: str
    date: str
    time: str
    modality: str
    accession: str = ""


# study 7.1 has two series; 7.1.2 has two instances.  P1 has two studies.
CORPUS = (
    Entry("7.1.1.1", "7.1.1", "7.1", "P1", "Doe^John", "20240105", "101500", "CT", "A%1"),
    Entry("7.1.2.1", "7.1.2", "7.1", "P1", "Doe^John", "20240105", "101500", "MR", "A%1"),
    Entry("7.1.2.2", "7.1.2", "7.1", "P1", "Doe^John", "20240105", "101500", "MR", "A%1"),
    Entry("7.2.1.1", "7.2.1", "7.2", "P1", "Doe^John", "20240201", "2300", "US", "A_2"),
    Entry("7.3.1.1", "7.3.1", "7.3", "P2", "Müller^Jürgen", "20240202", "0300", "CT", "A3"),
    Entry("7.4.1.1", "7.4.1", "7.4", "P3", "50%_off^Sale", "20231231", "", "MR", "A4"),
    Entry("7.5.1.1", "7.5.1", "7.5", "P4", "50xoff^Sale", "20240301", "120000", "CT", "A5"),
    Entry(
        "7.6.1.1",
        "7.6.1",
        "7.6",
        "P5",
        "van der Berg^Anna^Maria^Dr.^PhD",
        "20240115",
        "080000",
        "OT",
        "A6",
    ),
    Entry("7.7.1.1", "7.7.1", "7.7", "P_6", "DOE^JANE", "20240106", "", "MR", "A[7]"),
)


def corpus_dataset(entry: Entry) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = MR if entry.modality == "MR" else CT
    ds.SOPInstanceUID = entry.sop
    ds.StudyInstanceUID, ds.SeriesInstanceUID = entry.study, entry.series
    ds.PatientID, ds.PatientName = entry.patient_id, entry.name
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyDate, ds.StudyTime = entry.date, entry.time
    ds.AccessionNumber = entry.accession
    ds.StudyID = entry.study.replace(".", "")
    ds.StudyDescription = f"Study of {entry.name}"
    ds.Modality = entry.modality
    ds.SeriesNumber = entry.series.rsplit(".", 1)[1]
    ds.InstanceNumber = entry.sop.rsplit(".", 1)[1]
    ds.InstitutionName = "Big%Hospital" if entry.patient_id == "P1" else "Small_Clinic"
    return ds


def write_corpus(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [
        write_part10(corpus_dataset(e), folder / f"{e.sop}.dcm", ExplicitVRLittleEndian)
        for e in CORPUS
    ]


async def store_corpus(port: int, folder: Path) -> None:
    """Send the corpus with dcmtk's storescu; every file must be stored."""
    files = [str(p) for p in write_corpus(folder)]
    argv = [dcmtk("storescu"), "-aec", SERVER_AE, "-to", "10", "-ta", "10", "-td", "10"]
    done = await run_process(*argv, HOST, str(port), *files, env=dcmtk_env())
    assert done.returncode == 0, done.stderr


def archive_of(server: Server) -> Archive:
    return cast(Archive, next(s.archive for s in server.services if isinstance(s, StorageService)))


async def bulk_index(archive: Archive, count: int, patient_id: str = "BULK") -> None:
    """``count`` studies of one patient, written straight into the index tables (fast)."""
    db = archive.index.db
    await db.execute("BEGIN IMMEDIATE")
    cursor = await db.execute(
        "INSERT INTO patient (patient_id, patient_name, patient_name_folded) VALUES (?, ?, ?) "
        "RETURNING pk",
        (patient_id, "Bulk^Patient", "bulk^patient"),
    )
    row = await cursor.fetchone()
    assert row is not None
    patient_pk = int(row[0])
    await db.executemany(
        "INSERT INTO study (pk, study_uid, patient_pk, study_date) VALUES (?, ?, ?, '20240101')",
        [(100_000 + i, f"8.{i}", patient_pk) for i in range(count)],
    )
    await db.executemany(
        "INSERT INTO series (pk, series_uid, study_pk, modality) VALUES (?, ?, ?, 'CT')",
        [(100_000 + i, f"8.{i}.1", 100_000 + i) for i in range(count)],
    )
    await db.executemany(
        "INSERT INTO instance (sop_instance_uid, series_pk, sop_class_uid, transfer_syntax_uid, "
        "path, size, received_at) VALUES (?, ?, ?, '1.2.840.10008.1.2', ?, 1, 'now')",
        [(f"8.{i}.1.1", 100_000 + i, CT, f"none/{i}") for i in range(count)],
    )
    await db.execute("COMMIT")


# -- findscu -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FindscuRun:
    returncode: int
    matches: list[Dataset]
    output: str


async def findscu(port: int, model: str, keys: list[str], workdir: Path, *extra: str) -> FindscuRun:
    """dcmtk's findscu with ``-k`` keys; the Pending identifiers, read from ``-X`` files."""
    workdir.mkdir(parents=True, exist_ok=True)
    for old in workdir.glob("rsp*.dcm"):
        old.unlink()
    argv = [dcmtk("findscu"), MODEL_FLAGS[model], "-aec", SERVER_AE, "-to", "10", "-ta", "10"]
    argv += ["-v", "-td", "10", "-X", "-od", str(workdir), *extra]
    for key in keys:
        argv += ["-k", key]
    done = await run_process(*argv, HOST, str(port), env=dcmtk_env())
    files = sorted(workdir.glob("rsp*.dcm"))
    matches: list[Dataset] = [dcmread(f, force=True) for f in files]
    return FindscuRun(done.returncode, matches, done.stdout + done.stderr)


# -- pynetdicom --------------------------------------------------------------------------------


@dataclass(slots=True)
class PynetdicomFind:
    """What pynetdicom saw: per C-FIND, the statuses and the Pending identifiers."""

    statuses: list[list[int]]
    matches: list[list[Dataset]]


def _pynetdicom_find(port: int, model: str, identifiers: list[Dataset]) -> PynetdicomFind:
    """Blocking: one association, one C-FIND per identifier, release."""
    from pynetdicom import AE

    ae = AE(ae_title="PYNETDICOM")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = WAIT
    ae.add_requested_context(model, ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1"])
    assoc = ae.associate(HOST, port, ae_title=SERVER_AE)
    outcome = PynetdicomFind([], [])
    try:
        assert assoc.is_established, "pynetdicom could not associate"
        for identifier in identifiers:
            statuses: list[int] = []
            found: list[Dataset] = []
            for status, ds in assoc.send_c_find(identifier, model):
                code = int(status.Status) if "Status" in status else -1
                statuses.append(code)
                if code in (0xFF00, 0xFF01) and ds is not None:
                    found.append(ds)
            outcome.statuses.append(statuses)
            outcome.matches.append(found)
        assoc.release()
    finally:
        if assoc.is_alive():
            assoc.abort()
        ae.shutdown()
    return outcome


async def pynetdicom_find(port: int, model: str, identifiers: list[Dataset]) -> PynetdicomFind:
    """:func:`_pynetdicom_find` in a worker thread, so the server keeps serving."""
    async with asyncio.timeout(TOOL_TIMEOUT):
        return await asyncio.to_thread(_pynetdicom_find, port, model, identifiers)


def identifier(level: str, **keys: Any) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for key, value in keys.items():
        setattr(ds, key, value)
    return ds
