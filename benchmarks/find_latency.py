"""C-FIND latency, side by side: StellarPACS, dcmtk's dcmqrscp, Orthanc, pynetdicom's qrscp.

Issue 4's benchmark. One corpus of ``--instances`` synthetic instances (2,000
by default, as the issue's reference numbers; multiple of 100) in the issue's
shape: per 100 instances, 1 patient with 5 studies of 4 series of 5
instances (1,000 patients and 5,000 studies at 100,000), with Patient IDs,
mixed-case Patient's Names and Study Dates spread over five years. The files
(8 x 8 pixels, Explicit VR Little Endian) are generated once with pydicom
into a cache folder.

Each server runs alone, in turn, from an empty storage folder: it is started,
loaded with the whole corpus by dcmtk's storescu over one association
(untimed), queried, and stopped (in a ``finally``). The client is a lean
blocking-socket loop in this process, the same for every server: ONE
association per server (Study Root FIND, Implicit VR Little Endian), every
C-FIND-RQ pre-encoded once with StellarPACS' codecs, every response read by
its PDU and PDV headers with only the command set decoded; the time runs from
sending the request to the final response. Each query runs ``--warmup``
untimed times (the first decodes every identifier and checks the set of
Study Instance UIDs against the generator's own answer) and ``--repeat``
timed times. Study-level queries (return keys: Patient's Name and ID, Study
Instance UID, Date and Time, Accession Number, Modalities in Study, Number of
Study Related Instances):

* ``patient-id``: Patient ID of the middle patient (5 studies);
* ``name-prefix``: Patient's Name ``Family0010*`` (one patient, 5 studies);
* ``name-infix``: Patient's Name ``*amily001*`` (ten patients, 50 studies: a scan);
* ``date-range``: Study Date range over 20 consecutive studies (about 20).

``--load index`` (StellarPACS alone, for the 100,000-instance scale run)
skips the files and storescu: the rows are made from the same data sets by
``stellarpacs.storage.files.header.row_from_dataset`` and added with ``SQLiteIndex.add``.

    python benchmarks/find_latency.py                      # 2,000 instances, 4 servers
    python benchmarks/find_latency.py --quick              # 400 instances, 10 runs: ~30 s
    python benchmarks/find_latency.py --instances 100000 --servers stellarpacs --load index
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from fnmatch import fnmatchcase
from io import BytesIO
from pathlib import Path

from common import (
    DCMQRSCP_MAX_STUDIES,
    HOST,
    QR_LAUNCHERS,
    RunningServer,
    format_table,
    machine_info,
    median,
    percentile,
    qr_unavailable_reason,
    ratio,
    running_server,
    send_files,
    versions,
    write_results,
)
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.uid import UID

from stellarpacs.dimse.command_codec import decode_command, encode_command
from stellarpacs.dimse.commands import CFindRQ, CFindRSP
from stellarpacs.dimse.status import StatusCategory, category
from stellarpacs.uids import (
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLEMENTATION_CLASS_UID,
    IMPLICIT_VR_LITTLE_ENDIAN,
    STUDY_ROOT_QR_FIND,
)
from stellarpacs.ul.codec import decode_pdu, encode_pdu
from stellarpacs.ul.pdus import (
    AAssociateAC,
    AAssociateRQ,
    AReleaseRQ,
    ContextResult,
    PDataTF,
    PDUType,
    PresentationContextRQ,
    PresentationDataValue,
    UserInformation,
)

SERVERS = ("stellarpacs", "dcmtk", "pynetdicom", "orthanc")
CALLING_AE = "BENCH-SCU"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"  # any modality may carry it
UID_ROOT = "1.2.826.0.1.3680043.8.498.7301"  # pydicom's root, which its users may extend
MODALITIES = ("CT", "MR", "US", "OT")
STUDIES_PER_PATIENT, SERIES_PER_STUDY, INSTANCES_PER_SERIES = 5, 4, 5
PER_PATIENT = STUDIES_PER_PATIENT * SERIES_PER_STUDY * INSTANCES_PER_SERIES
DAY0, DAYS = 738_000, 1826  # study dates: five years from a day in 2021
CACHE_VERSION = 1
SOCKET_TIMEOUT = 30.0
MAX_PDUS_PER_QUERY = 1_000_000
_HEADER = struct.Struct(">BxI")  # PDU type, reserved, PDU length (PS3.8 9.3.1)
_PDV_HEADER = struct.Struct(">IBB")  # item length, context id, message control header
_COMMAND, _LAST = 0x01, 0x02  # message control header bits (PS3.8 E.2)


# --- the corpus -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Shape:
    """The issue's proportions: per patient 5 studies x 4 series x 5 instances."""

    instances: int

    @property
    def patients(self) -> int:
        return self.instances // PER_PATIENT

    @property
    def studies(self) -> int:
        return self.patients * STUDIES_PER_PATIENT


def patient_id(p: int) -> str:
    return f"PID{p:04d}"


def patient_name(p: int) -> str:
    return f"Family{p:04d}^Given{p % 37}"


def study_uid(s: int) -> str:
    return f"{UID_ROOT}.1.{s}"


def study_date(shape: Shape, s: int) -> str:
    return date.fromordinal(DAY0 + s * DAYS // shape.studies).strftime("%Y%m%d")


def header(shape: Shape, i: int) -> Dataset:
    """Instance ``i``'s header: the study, series and patient follow from its number."""
    r = i // INSTANCES_PER_SERIES
    s = r // SERIES_PER_STUDY
    p = s // STUDIES_PER_PATIENT
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = SECONDARY_CAPTURE, f"{UID_ROOT}.3.{i}"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid(s), f"{UID_ROOT}.2.{r}"
    ds.PatientID, ds.PatientName = patient_id(p), patient_name(p)
    ds.PatientBirthDate, ds.PatientSex = f"19{40 + p % 60:02d}0101", "FM"[p % 2]
    ds.StudyDate, ds.StudyTime = study_date(shape, s), f"{(s * 7) % 24:02d}{(s * 13) % 60:02d}00"
    ds.AccessionNumber, ds.StudyID = f"ACC{s:06d}", str(s % 1000)
    ds.StudyDescription = f"Study {s % 17}"
    ds.Modality, ds.SeriesNumber = MODALITIES[r % SERIES_PER_STUDY], r % SERIES_PER_STUDY + 1
    ds.InstanceNumber = i % INSTANCES_PER_SERIES + 1
    return ds


def _write_file(path: Path, ds: Dataset) -> None:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = UID(EXPLICIT_VR_LITTLE_ENDIAN)
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.Rows, ds.Columns = 1, "MONOCHROME2", 8, 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = bytes(range(128))
    ds.save_as(path, enforce_file_format=True)


def corpus_files(cache: Path, shape: Shape) -> Path:
    """The folder of the corpus' PS3.10 files, generated on first use (a marker ends it)."""
    folder = cache / f"find-v{CACHE_VERSION}-{shape.instances}"
    files, marker = folder / "dicom", folder / "complete"
    if not marker.exists():
        print(f"generating {shape.instances} instances in {files}", file=sys.stderr, flush=True)
        shutil.rmtree(folder, ignore_errors=True)
        files.mkdir(parents=True)
        for i in range(shape.instances):
            _write_file(files / f"{i:06d}.dcm", header(shape, i))
        marker.write_text(str(shape.instances))
    return files


async def load_index(storage: Path, shape: Shape, batch: int = 2000) -> None:
    """StellarPACS' index filled straight from the corpus' headers (no files, no network)."""
    from stellarpacs.storage.files.header import row_from_dataset
    from stellarpacs.storage.files.layout import Layout
    from stellarpacs.storage.index.instances import SQLiteIndex

    path = Layout(storage).index_path
    path.parent.mkdir(parents=True, exist_ok=True)
    async with SQLiteIndex(path, durable=False) as index:
        rows = []
        for i in range(shape.instances):
            ds = header(shape, i)
            row = row_from_dataset(
                ds,
                sop_instance_uid=ds.SOPInstanceUID,
                sop_class_uid=SECONDARY_CAPTURE,
                transfer_syntax_uid=EXPLICIT_VR_LITTLE_ENDIAN,
                size=1024,
                received_at="2026-01-01T00:00:00+00:00",
                calling_ae=CALLING_AE,
            )
            rows.append(row)
            if len(rows) == batch or i == shape.instances - 1:
                await index.add(rows)
                rows = []


# --- the queries ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Query:
    """A study-level query and the generator's own answer to it (the oracle)."""

    name: str
    keys: dict[str, str]
    matches: Callable[[int], bool]  # study number -> whether it matches

    def expected(self, shape: Shape) -> set[str]:
        return {study_uid(s) for s in range(shape.studies) if self.matches(s)}


def queries(shape: Shape) -> list[Query]:
    """The same four queries at every scale: 5, 5, 50 and about 20 matches (fewer when tiny)."""
    middle = shape.patients // 2
    first = shape.studies // 2
    low, high = study_date(shape, first), study_date(shape, min(first + 19, shape.studies - 1))
    prefix, infix = f"Family{middle:04d}*", f"*amily{middle // 10:03d}*"

    def patient(s: int) -> int:
        return s // STUDIES_PER_PATIENT

    return [
        Query("patient-id", {"PatientID": patient_id(middle)}, lambda s: patient(s) == middle),
        Query(
            "name-prefix",
            {"PatientName": prefix},
            lambda s: fnmatchcase(patient_name(patient(s)), prefix),
        ),
        Query(
            "name-infix",
            {"PatientName": infix},
            lambda s: fnmatchcase(patient_name(patient(s)), infix),
        ),
        Query(
            "date-range",
            {"StudyDate": f"{low}-{high}"},
            lambda s: low <= study_date(shape, s) <= high,
        ),
    ]


def identifier(keys: dict[str, str]) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    for name in ("PatientName", "PatientID", "StudyInstanceUID", "StudyDate", "StudyTime"):
        setattr(ds, name, "")
    ds.AccessionNumber = ds.ModalitiesInStudy = ds.NumberOfStudyRelatedInstances = ""
    for name, value in keys.items():
        setattr(ds, name, value)
    return ds


# --- the lean client --------------------------------------------------------------------------


def encode_find(message_id: int, keys: dict[str, str]) -> bytes:
    """One P-DATA-TF: the C-FIND-RQ command and its identifier, each a last fragment."""
    command = encode_command(
        CFindRQ(message_id=message_id, affected_sop_class_uid=STUDY_ROOT_QR_FIND)
    )
    buffer = DicomBytesIO()
    buffer.is_implicit_VR, buffer.is_little_endian = True, True
    write_dataset(buffer, identifier(keys))
    pdvs = (
        PresentationDataValue(1, True, True, command),
        PresentationDataValue(1, False, True, buffer.getvalue()),
    )
    return encode_pdu(PDataTF(pdvs))


@dataclass(slots=True)
class Answer:
    """What one C-FIND returned: Pending responses, and their identifiers when collected."""

    responses: int = 0
    identifiers: list[bytes] = field(default_factory=list)


class LeanFindClient:
    """One blocking socket and ONE association; requests encoded up front (PS3.8 9.3)."""

    def __init__(self, port: int, called_ae: str) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=SOCKET_TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = self.sock.makefile("rb")
        rq = AAssociateRQ(
            called_ae_title=called_ae,
            calling_ae_title=CALLING_AE,
            presentation_contexts=(
                PresentationContextRQ(1, STUDY_ROOT_QR_FIND, (IMPLICIT_VR_LITTLE_ENDIAN,)),
            ),
            user_information=UserInformation(16384, IMPLEMENTATION_CLASS_UID, "BENCH"),
        )
        self.sock.sendall(encode_pdu(rq))
        ac = decode_pdu(self._read(PDUType.A_ASSOCIATE_AC))
        if not isinstance(ac, AAssociateAC) or not any(
            pc.context_id == 1 and pc.result == ContextResult.ACCEPTANCE
            for pc in ac.presentation_contexts
        ):
            raise ConnectionError(f"Study Root FIND context not accepted: {ac!r}")
        self.peer_max_pdu = ac.user_information.maximum_length or 0

    def _read(self, wanted: PDUType) -> bytes:
        head = self.reader.read(6)
        if len(head) < 6:
            raise ConnectionError("the server closed the connection")
        pdu_type, length = _HEADER.unpack(head)
        body = self.reader.read(length)
        if len(body) < length:
            raise ConnectionError("the server closed the connection mid-PDU")
        if pdu_type != wanted:
            raise ConnectionError(f"expected {wanted.name}, got PDU type 0x{pdu_type:02X}")
        return head + body

    def find(self, request: bytes, *, collect: bool = False) -> Answer:
        """Send a pre-encoded C-FIND-RQ; read to the final response (PS3.7 9.1.2.1.6)."""
        if self.peer_max_pdu and len(request) - 6 > self.peer_max_pdu:
            raise ConnectionError("the request is larger than the server's maximum PDU")
        self.sock.sendall(request)
        answer, command, data = Answer(), bytearray(), bytearray()
        for _ in range(MAX_PDUS_PER_QUERY):
            pdu = self._read(PDUType.P_DATA_TF)
            offset = 6
            while offset < len(pdu):
                length, _, control = _PDV_HEADER.unpack_from(pdu, offset)
                fragment = pdu[offset + 6 : offset + 4 + length]
                offset += 4 + length
                if not control & _COMMAND:
                    if collect:
                        data += fragment
                        if control & _LAST:
                            answer.identifiers.append(bytes(data))
                            data.clear()
                    continue
                command += fragment
                if control & _LAST:
                    if self._final(bytes(command)):
                        return answer
                    answer.responses += 1
                    command.clear()
        raise ConnectionError(f"no final C-FIND-RSP within {MAX_PDUS_PER_QUERY} PDUs")

    @staticmethod
    def _final(raw: bytes) -> bool:
        """Whether this response ends the C-FIND; raises on any status but Pending/Success."""
        rsp = decode_command(raw)
        if not isinstance(rsp, CFindRSP):
            raise ConnectionError(f"expected a C-FIND-RSP, got {rsp!r}")
        kind = category(rsp.status)
        if kind is StatusCategory.PENDING:
            return False
        if rsp.status != 0x0000:
            raise ConnectionError(f"C-FIND ended with status 0x{rsp.status:04X}")
        return True

    def release(self) -> None:
        self.sock.sendall(encode_pdu(AReleaseRQ()))
        self._read(PDUType.A_RELEASE_RP)

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


def study_uids(identifiers: list[bytes]) -> list[str]:
    """The Study Instance UID of each returned identifier (Implicit VR Little Endian)."""
    found = []
    for raw in identifiers:
        ds = read_dataset(BytesIO(raw), is_implicit_VR=True, is_little_endian=True)
        found.append(str(ds.get("StudyInstanceUID", "")))
    return found


# --- measuring --------------------------------------------------------------------------------


@dataclass(slots=True)
class Cell:
    """One server answering one query."""

    status: str = "ok"
    responses: int | None = None
    studies: int | None = None
    times_ms: list[float] = field(default_factory=list)

    def row(self, name: str, reference: float | None) -> list[str]:
        mid, p95 = median(self.times_ms), percentile(self.times_ms, 0.95)
        status = self.status if len(self.status) < 60 else self.status[:57] + "..."
        return [
            name,
            status,
            _fmt(self.responses, "d"),
            _fmt(self.studies, "d"),
            _fmt(mid, ".2f"),
            _fmt(p95, ".2f"),
            _fmt(min(self.times_ms, default=None), ".2f"),
            str(len(self.times_ms)),
            _fmt(ratio(mid, reference), ".2f", "x"),
        ]


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def check(cell: Cell, query: Query, shape: Shape, answer: Answer) -> None:
    """The first run's identifiers against the oracle: the same set of studies, or WRONG."""
    found = study_uids(answer.identifiers)
    expected = query.expected(shape)
    cell.responses, cell.studies = answer.responses, len(set(found))
    if set(found) != expected:
        missing, extra = len(expected - set(found)), len(set(found) - expected)
        cell.status = f"WRONG: {missing} expected studies missing, {extra} unexpected"


def measure(
    server: RunningServer, shape: Shape, cells: dict[str, Cell], args: argparse.Namespace
) -> None:
    """Every query over ONE association: warm-up (the first checked), then timed runs."""
    client = LeanFindClient(server.port, server.ae_title)
    try:
        for number, query in enumerate(queries(shape), start=1):
            request, cell = encode_find(number, query.keys), cells[query.name]
            check(cell, query, shape, client.find(request, collect=True))
            for _ in range(args.warmup - 1):
                client.find(request)
            deadline = time.monotonic() + args.time_limit
            while len(cell.times_ms) < args.repeat and time.monotonic() < deadline:
                started = time.perf_counter()
                client.find(request)
                cell.times_ms.append(1000 * (time.perf_counter() - started))
        client.release()
    finally:
        client.close()


def skip_reason(name: str, shape: Shape) -> str | None:
    """dcmqrscp cannot hold the scale run; a peer may not be installed."""
    if name == "dcmtk" and shape.studies > DCMQRSCP_MAX_STUDIES:
        return f"skipped: > {DCMQRSCP_MAX_STUDIES} studies"
    return qr_unavailable_reason(name)


def run_server(name: str, shape: Shape, args: argparse.Namespace) -> dict[str, Cell]:
    """Start, load, query and stop one server; any failure is reported in its cells."""
    cells = {query.name: Cell() for query in queries(shape)}
    reason = skip_reason(name, shape)
    if reason is not None:
        for cell in cells.values():
            cell.status = reason
        return cells
    workdir = Path(tempfile.mkdtemp(prefix=f"find-{name}-", dir=args.workroot))
    try:
        started = time.perf_counter()
        if args.load == "index":
            asyncio.run(load_index(workdir / "storage", shape))
        with running_server(name, workdir, store=True, launchers=QR_LAUNCHERS) as server:
            if args.load == "storescu":
                send_files(server, args.files, timeout=args.load_timeout, calling_ae=CALLING_AE)
            loaded = time.perf_counter() - started
            print(f"  {name:<12} loaded in {loaded:6.1f} s", file=sys.stderr, flush=True)
            measure(server, shape, cells, args)
    except Exception as exc:  # any failure is reported in the table
        for cell in cells.values():
            cell.status = f"ERROR: {exc}".splitlines()[0]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return cells


# --- reporting --------------------------------------------------------------------------------


def report(shape: Shape, results: dict[str, dict[str, Cell]]) -> str:
    headers = ["server", "status", "responses", "studies", "median ms", "p95 ms", "min ms"]
    headers += ["runs", "server/StellarPACS"]
    blocks = []
    for query in queries(shape):
        ours = results.get("stellarpacs", {}).get(query.name)
        reference = median(ours.times_ms) if ours else None
        keys = ", ".join(f"{k}={v}" for k, v in query.keys.items())
        title = f"{query.name}: {keys} (expected {len(query.expected(shape))} studies)"
        rows = [cells[query.name].row(name, reference) for name, cells in results.items()]
        blocks.append(f"{title}\n{format_table(headers, rows)}")
    return "\n\n".join(blocks)


def notes(results: dict[str, dict[str, Cell]]) -> list[str]:
    """What to keep in mind when reading the tables (each line starts with "note:")."""
    lines = [
        "note: server/StellarPACS is that server's median over StellarPACS' median "
        "(above 1: StellarPACS answers faster)."
    ]
    if {"dcmtk", "pynetdicom"} & set(results):
        lines.append(
            "note: the dcmtk rows are dcmqrscp (a child process per association), the "
            "pynetdicom rows its qrscp app; neither returns Modalities in Study nor Number of "
            "Study Related Instances (asked for; StellarPACS and Orthanc compute both)."
        )
    for name, cells in results.items():
        extra = [c for c in cells.values() if c.responses and c.responses != c.studies]
        if extra:
            lines.append(
                f"note: {name} sent more responses than studies ({extra[0].responses} for "
                f"{extra[0].studies}): one Pending response per matching instance, not per study."
            )
    return lines


def payload(
    args: argparse.Namespace, shape: Shape, results: dict[str, dict[str, Cell]]
) -> dict[str, object]:
    return {
        "benchmark": "find_latency",
        "settings": {
            "instances": shape.instances,
            "patients": shape.patients,
            "studies": shape.studies,
            "repeat": args.repeat,
            "warmup": args.warmup,
            "time_limit_s": args.time_limit,
            "load": args.load,
            "servers": args.servers,
            "quick": args.quick,
        },
        "machine": args.machine,
        "versions": versions(),
        "queries": {
            q.name: {"keys": q.keys, "expected": len(q.expected(shape))} for q in queries(shape)
        },
        "servers": {
            name: {
                query: {
                    "status": cell.status,
                    "responses": cell.responses,
                    "studies": cell.studies,
                    "median_ms": median(cell.times_ms),
                    "p95_ms": percentile(cell.times_ms, 0.95),
                    "times_ms": [round(t, 4) for t in cell.times_ms],
                }
                for query, cell in cells.items()
            }
            for name, cells in results.items()
        },
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=2000, help="a multiple of 100")
    parser.add_argument("--repeat", type=int, default=200, help="timed runs per query")
    parser.add_argument("--warmup", type=int, default=10, help="untimed runs per query (>= 1)")
    parser.add_argument("--time-limit", type=float, default=120.0, help="s per server and query")
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated subset")
    parser.add_argument(
        "--load",
        choices=("storescu", "index"),
        default="storescu",
        help="index: fill StellarPACS' index directly (StellarPACS only; for --instances 100000)",
    )
    parser.add_argument("--quick", action="store_true", help="400 instances, 10 runs, 5 s caps")
    parser.add_argument("--load-timeout", type=float, default=1800.0, help="s per storescu run")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "stellarpacs-benchmark-cache",
        help="where the corpus' files are generated once",
    )
    parser.add_argument("--results-dir", type=Path, default=here / "results")
    args = parser.parse_args(argv)
    if args.quick:
        args.instances, args.repeat, args.warmup = 400, 10, 2
        args.time_limit = min(args.time_limit, 5.0)
    args.servers = [s for s in args.servers.split(",") if s]
    if set(args.servers) - set(SERVERS):
        parser.error(f"servers must be among {', '.join(SERVERS)}")
    if args.instances < PER_PATIENT or args.instances % PER_PATIENT:
        parser.error(f"--instances must be a positive multiple of {PER_PATIENT}")
    if args.load == "index" and args.servers != ["stellarpacs"]:
        parser.error("--load index fills StellarPACS' own index: use --servers stellarpacs")
    args.warmup = max(args.warmup, 1)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    shape = Shape(args.instances)
    args.machine = machine_info()
    print(
        f"C-FIND latency: {shape.instances} instances ({shape.patients} patients, "
        f"{shape.studies} studies), {args.repeat} timed runs per query over one association, "
        f"loopback, {args.machine['cpus']} CPUs, "
        f"load average {args.machine['load_average_1_5_15']}",
        flush=True,
    )
    if args.load == "storescu":
        args.files = corpus_files(args.cache_dir, shape)
    with tempfile.TemporaryDirectory(prefix="stellarpacs-find-") as tmp:
        args.workroot = Path(tmp)
        results = {name: run_server(name, shape, args) for name in args.servers}
    args.machine["load_average_at_end"] = machine_info()["load_average_1_5_15"]
    print()
    print(report(shape, results))
    print()
    print("\n".join(notes(results)))
    saved = write_results(args.results_dir, "find_latency", payload(args, shape, results))
    print(f"\nresults written to {saved}")
    bad = ("ERROR", "WRONG")
    failed = [c for cells in results.values() for c in cells.values() if c.status.startswith(bad)]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
