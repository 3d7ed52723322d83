"""C-FIND latency of StellarPACS on a large index (issue 4's benchmark, our side only).

An index of 1,000 patients, 5,000 studies, 20,000 series and 100,000
instances (``--patients`` scales it; 5 studies per patient, 4 series per
study, 5 instances per series) is written straight into a fresh storage
folder's SQLite index, ``python -m stellarpacs`` serves it as its own process,
and one association of our asyncio client runs each study-level query
``--repeat`` times (after a few warm-up runs), measuring from sending the
C-FIND-RQ to the final response, all Pending identifiers decoded:

* ``patient-id``: Patient ID = one patient (5 matches);
* ``name-prefix``: Patient's Name = ``FAMILY0500*`` (case-folded, 5 matches);
* ``name-infix``: Patient's Name = ``*amily050*`` (no index: scans every patient, 50);
* ``date-range``: Study Date = a 7-day range (about 20 matches).

Every query returns Patient's Name, Patient ID, Study Instance UID, Study
Date and Time, Accession Number, Modalities in Study and Number of Study
Related Instances (two of them computed per study).  The peers of the issue
(dcmqrscp, Orthanc, pynetdicom's qrscp) are not run here: each would first
have to be loaded with the same 100,000 instances over C-STORE.

    python benchmarks/find_latency.py              # 100,000 instances, 200 runs per query
    python benchmarks/find_latency.py --quick      # 10,000 instances, 50 runs
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

from common import format_table, machine_info, running_server, versions, write_results
from pydicom.dataset import Dataset

from stellarpacs.aio.client import connect
from stellarpacs.storage.index import Index
from stellarpacs.storage.paths import Layout
from stellarpacs.uids import STUDY_ROOT_QR_FIND

CT = "1.2.840.10008.5.1.4.1.1.2"
ROOT = "1.2.826.0.1.3680043.9.4"
MODALITIES = ("CT", "MR", "US", "OT")
STUDIES_PER_PATIENT, SERIES_PER_STUDY, INSTANCES_PER_SERIES = 5, 4, 5
DAY0 = 738_000  # a proleptic ordinal in 2021; study dates run forward from it


def _date(ordinal: int) -> str:
    from datetime import date

    return date.fromordinal(ordinal).strftime("%Y%m%d")


def _header(i: int) -> str:
    """A plausible DICOM JSON header (about 600 bytes), as the index keeps one per instance."""
    value = {f"0008{e:04X}": {"vr": "LO", "Value": [f"value {i} {e}" * 2]} for e in range(16)}
    return json.dumps(value, separators=(",", ":"))


def _rows(patients: int) -> Iterator[tuple[str, list[tuple[object, ...]]]]:
    yield (
        "INSERT INTO patient (pk, patient_id, patient_name, patient_name_folded) VALUES (?,?,?,?)",
        [
            (p, f"PID{p:04d}", f"Family{p:04d}^Given{p % 37}", f"family{p:04d}^given{p % 37}")
            for p in range(patients)
        ],
    )
    studies = patients * STUDIES_PER_PATIENT
    yield (
        "INSERT INTO study (pk, study_uid, patient_pk, study_date, study_time, accession_number) "
        "VALUES (?,?,?,?,?,?)",
        [
            (
                s,
                f"{ROOT}.{s}",
                s // STUDIES_PER_PATIENT,
                _date(DAY0 + s * 1826 // studies),
                f"{(s * 7) % 24:02d}{(s * 13) % 60:02d}00",
                f"ACC{s:06d}",
            )
            for s in range(studies)
        ],
    )
    series = studies * SERIES_PER_STUDY
    yield (
        "INSERT INTO series (pk, series_uid, study_pk, modality, series_number) VALUES (?,?,?,?,?)",
        [
            (
                r,
                f"{ROOT}.{r // SERIES_PER_STUDY}.{r}",
                r // SERIES_PER_STUDY,
                MODALITIES[r % SERIES_PER_STUDY],
                r % SERIES_PER_STUDY + 1,
            )
            for r in range(series)
        ],
    )
    yield (
        "INSERT INTO instance (sop_instance_uid, series_pk, sop_class_uid, instance_number, "
        "transfer_syntax_uid, path, size, received_at, header_json) VALUES (?,?,?,?,?,?,?,?,?)",
        [
            (
                f"{ROOT}.9.{i}",
                i // INSTANCES_PER_SERIES,
                CT,
                i % INSTANCES_PER_SERIES + 1,
                "1.2.840.10008.1.2.1",
                f"none/{i}.dcm",
                1000,
                "2024-01-01T00:00:00",
                _header(i),
            )
            for i in range(series * INSTANCES_PER_SERIES)
        ],
    )


async def build_index(storage: Path, patients: int) -> int:
    """Create the schema with the Index, then fill it in one transaction; returns instances."""
    path = Layout(storage).index_path
    path.parent.mkdir(parents=True, exist_ok=True)
    async with Index(path, durable=False):
        pass
    with sqlite3.connect(path) as db:
        for sql, rows in _rows(patients):
            db.executemany(sql, rows)
        db.execute("ANALYZE")
        return int(db.execute("SELECT COUNT(*) FROM instance").fetchone()[0])


def queries(patients: int) -> dict[str, dict[str, str]]:
    middle = patients // 2
    studies = patients * STUDIES_PER_PATIENT
    first = DAY0 + (studies // 2) * 1826 // studies
    return {
        "patient-id": {"PatientID": f"PID{middle:04d}"},
        "name-prefix": {"PatientName": f"FAMILY{middle:04d}*"},
        "name-infix": {"PatientName": f"*amily{middle // 10:03d}*"},
        "date-range": {"StudyDate": f"{_date(first)}-{_date(first + 6)}"},
    }


def identifier(keys: dict[str, str]) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    for name in ("PatientName", "PatientID", "StudyInstanceUID", "StudyDate", "StudyTime"):
        setattr(ds, name, "")
    ds.AccessionNumber = ds.ModalitiesInStudy = ds.NumberOfStudyRelatedInstances = ""
    for name, value in keys.items():
        setattr(ds, name, value)
    return ds


async def measure(port: int, patients: int, repeat: int, warmup: int) -> dict[str, object]:
    out: dict[str, object] = {}
    async with await connect(
        "127.0.0.1", port, called_ae="STELLARPACS", contexts=[STUDY_ROOT_QR_FIND]
    ) as association:
        for name, keys in queries(patients).items():
            query = identifier(keys)
            times, matches = [], 0
            for run in range(warmup + repeat):
                started = time.perf_counter()
                found = [m async for m in association.find(STUDY_ROOT_QR_FIND, query)]
                if run >= warmup:
                    times.append(1000 * (time.perf_counter() - started))
                matches = len(found)
            times.sort()
            out[name] = {
                "matches": matches,
                "median_ms": statistics.median(times),
                "p95_ms": times[min(len(times) - 1, int(0.95 * len(times)))],
                "keys": keys,
            }
    return out


def _run(coro: Coroutine[Any, Any, dict[str, object]]) -> dict[str, object]:
    """On uvloop when installed, as ``python -m stellarpacs`` runs: the client costs less."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=1000, help="20 x this many studies' worth")
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="100 patients, 50 runs")
    parser.add_argument("--results-dir", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    if args.quick:
        args.patients, args.repeat, args.warmup = 100, 50, 3
    with tempfile.TemporaryDirectory(prefix="find-latency-") as tmp:
        workdir = Path(tmp)
        started = time.perf_counter()
        instances = asyncio.run(build_index(workdir / "storage", args.patients))
        print(f"indexed {instances} instances in {time.perf_counter() - started:.1f} s")
        with running_server("stellarpacs", workdir, store=True) as server:
            results = _run(measure(server.port, args.patients, args.repeat, args.warmup))
    rows = [
        [name, str(r["matches"]), f"{r['median_ms']:.2f}", f"{r['p95_ms']:.2f}"]  # type: ignore[index]
        for name, r in results.items()
    ]
    print(format_table(["query (STUDY level)", "matches", "median ms", "p95 ms"], rows))
    payload = {
        "settings": vars(args) | {"results_dir": str(args.results_dir), "instances": instances},
        "machine": machine_info(),
        "versions": versions(),
        "results": results,
    }
    print(f"results: {write_results(args.results_dir, 'find_latency', payload)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
