"""C-STORE throughput: each server receiving from dcmtk's storescu, side by side.

Scenarios (the ``--quick`` sizes in brackets):

* ``small``: 2,000 [100] CT instances of about 41 KB over one association;
* ``parallel``: the same instances split over four storescu processes at once;
* ``large``: 20 [2] DX instances of about 25 MB over one association.

Every server (StellarPACS, dcmtk storescp, pynetdicom storescp, Orthanc when
installed) is started fresh, on loopback, with an empty storage folder for
each scenario and round, so that every run stores the same new instances;
the rounds interleave the servers (the order rotates) so that they share
the same background noise. ``os.sync()`` runs before each timed transfer so
that one server's dirty pages are not written back on the next one's time.
The time is the wall clock from starting storescu until the last one exits
(so it includes storescu reading its input files, the same for every
server). After each run the DICOM files in the server's storage folder are
counted: a server that did not store every instance is reported as an error.

Durability differs and is printed with the table: StellarPACS (default
configuration) and Orthanc (``SyncStorageArea``, its default) fsync every
file before answering; dcmtk's and pynetdicom's storescp do not.

The synthetic instances (Explicit VR Little Endian, random pixel data,
unique UIDs) are generated once with pydicom into a cache folder, by default
in the system temporary directory, and reused by later runs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from common import (
    DCMTK_BIN,
    HOST,
    LAUNCHERS,
    NODELAY_ENV,
    SERVER_NAMES,
    RunningServer,
    format_table,
    machine_info,
    median,
    ratio,
    running_server,
    unavailable_reason,
    versions,
    write_results,
)

CALLING_AE = "BENCH-SCU"
UID_ROOT = "1.2.826.0.1.3680043.8.498"  # pydicom's root, which its users may extend
AIMS = (("dcmtk", 0.7), ("pynetdicom", 3.0))  # StellarPACS / peer, every scenario
CACHE_VERSION = 1


@dataclass(frozen=True, slots=True)
class InstanceSet:
    """One kind of synthetic instance: SOP class and 16-bit monochrome image size."""

    name: str
    sop_class_uid: str
    modality: str
    rows: int
    columns: int
    per_series: int


SETS = {
    # CT Image Storage, 128 x 160 x 16 bit: about 41 KB per file.
    "ct": InstanceSet("ct", "1.2.840.10008.5.1.4.1.1.2", "CT", 128, 160, 100),
    # Digital X-Ray Image Storage - For Presentation, 3536 x 3536 x 16 bit: about 25 MB.
    "dx": InstanceSet("dx", "1.2.840.10008.5.1.4.1.1.1.1", "DX", 3536, 3536, 20),
}


@dataclass(frozen=True, slots=True)
class Scenario:
    key: str
    instance_set: str
    count: int
    processes: int

    def title(self, size_bytes: int) -> str:
        each = size_bytes / self.count / 1e6
        how = "one association" if self.processes == 1 else f"{self.processes} parallel storescu"
        return f"{self.key}: {self.count} instances x {each:.2f} MB over {how}"


FULL = (
    Scenario("small", "ct", 2000, 1),
    Scenario("parallel", "ct", 2000, 4),
    Scenario("large", "dx", 20, 1),
)
QUICK = (
    Scenario("small", "ct", 100, 1),
    Scenario("parallel", "ct", 100, 4),
    Scenario("large", "dx", 2, 1),
)


# --- synthetic instances -------------------------------------------------------------------


def _manifest(directory: Path, spec: InstanceSet) -> dict[str, object]:
    """The set's manifest, recreating the folder when it was made by other parameters."""
    path = directory / "manifest.json"
    wanted = {"version": CACHE_VERSION, "spec": [str(getattr(spec, f)) for f in spec.__slots__]}
    try:
        found = json.loads(path.read_text())
        if {k: found.get(k) for k in wanted} == wanted:
            return dict(found)
    except (OSError, ValueError):
        pass
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    manifest = {**wanted, "run_id": random.randrange(10**9, 10**10)}
    path.write_text(json.dumps(manifest))
    return manifest


def _write_instance(path: Path, spec: InstanceSet, run_id: int, index: int) -> None:
    """One PS3.10 file, Explicit VR Little Endian, unique UIDs, random pixels (PS3.5 9.1)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian

    def uid(kind: int, number: int) -> UID:
        return UID(f"{UID_ROOT}.{run_id}.{kind}.{number}")

    series = index // spec.per_series + 1
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = UID(spec.sop_class_uid)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = uid(3, index + 1)
    ds.StudyInstanceUID = uid(1, (series - 1) // 5 + 1)
    ds.SeriesInstanceUID = uid(2, series)
    ds.PatientID = f"BENCH{(series - 1) // 5 + 1:04d}"
    ds.PatientName = f"Benchmark^Patient{(series - 1) // 5 + 1}"
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber = "20240101", "120000", f"A{series}"
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = spec.modality, series, index + 1
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = spec.rows, spec.columns
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = os.urandom(spec.rows * spec.columns * 2)
    partial = path.with_suffix(".part")
    ds.save_as(partial, enforce_file_format=True)
    os.replace(partial, path)


def instances(cache: Path, set_name: str, count: int) -> list[Path]:
    """The first ``count`` files of a set, generating those missing from the cache."""
    spec = SETS[set_name]
    directory = cache / set_name
    manifest = _manifest(directory, spec)
    paths = [directory / f"{i:05d}.dcm" for i in range(count)]
    missing = [(i, p) for i, p in enumerate(paths) if not p.exists()]
    if missing:
        print(f"generating {len(missing)} {set_name} instances in {directory}", flush=True)
    for index, path in missing:
        _write_instance(path, spec, int(str(manifest["run_id"])), index)
    return paths


def count_stored(root: Path) -> int:
    """Files under ``root`` that are PS3.10 files ("DICM" after the 128-byte preamble)."""
    found = 0
    for path in root.rglob("*"):
        try:
            if path.is_file() and path.stat().st_size > 132:
                with path.open("rb") as f:
                    f.seek(128)
                    found += f.read(4) == b"DICM"
        except OSError:
            continue
    return found


# --- one timed transfer ----------------------------------------------------------------------


def _storescu_argv(server: RunningServer, files: Sequence[Path]) -> list[str]:
    argv = [str(DCMTK_BIN / "storescu"), "--aetitle", CALLING_AE, "--call", server.ae_title]
    argv += ["--max-pdu", "16384", "--required", HOST, str(server.port)]
    return argv + [str(f) for f in files]


def _split(files: Sequence[Path], parts: int) -> list[Sequence[Path]]:
    return [files[i::parts] for i in range(parts) if files[i::parts]]


def timed_transfer(
    server: RunningServer, files: Sequence[Path], processes: int, timeout: float
) -> float:
    """Seconds for ``processes`` storescu runs to send ``files``; raises on any failure."""
    logs = [server.workdir / f"storescu-{i}.log" for i in range(processes)]
    running: list[subprocess.Popen[bytes]] = []
    os.sync()
    start = time.perf_counter()
    try:
        for part, log_path in zip(_split(files, processes), logs, strict=False):
            with open(log_path, "wb") as log:
                running.append(
                    subprocess.Popen(
                        _storescu_argv(server, part),
                        env=dict(NODELAY_ENV),
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
        deadline = start + timeout
        for process in running:
            process.wait(max(deadline - time.perf_counter(), 0.1))
        elapsed = time.perf_counter() - start
    finally:
        for process in running:
            if process.poll() is None:
                process.kill()
                process.wait(10)
    _check_clients(running, logs)
    return elapsed


def _check_clients(running: Sequence[subprocess.Popen[bytes]], logs: Sequence[Path]) -> None:
    for process, log_path in zip(running, logs, strict=False):
        text = log_path.read_text(errors="replace")
        errors = [line for line in text.splitlines() if line.startswith(("E:", "F:"))]
        if process.returncode != 0 or errors:
            detail = (errors or text.splitlines() or ["no output"])[0]
            raise RuntimeError(f"storescu exited {process.returncode}: {detail}")


# --- the benchmark -------------------------------------------------------------------------------


@dataclass(slots=True)
class Cell:
    """One server in one scenario: per-round seconds and the peak RSS over the rounds."""

    status: str = "ok"
    seconds: list[float] = field(default_factory=list)
    peak_rss_kib: int | None = None
    fsync: bool | None = None

    def rate(self, count: int) -> float | None:
        elapsed = median(self.seconds)
        return count / elapsed if elapsed else None


def _measure(
    name: str, scenario: Scenario, files: Sequence[Path], cell: Cell, args: argparse.Namespace
) -> None:
    """One round of one server on one scenario, in its own fresh folder."""
    workdir = Path(tempfile.mkdtemp(prefix=f"store-{name}-", dir=args.workroot))
    try:
        with running_server(name, workdir, store=True) as server:
            try:
                seconds = timed_transfer(server, files, scenario.processes, args.timeout)
                stored = count_stored(server.storage)
            finally:
                server.stop()
                cell.fsync = server.fsync
                cell.peak_rss_kib = max(cell.peak_rss_kib or 0, server.peak_rss_kib or 0) or None
        if stored != len(files):
            raise RuntimeError(f"stored {stored} of {len(files)} instances")
        cell.seconds.append(seconds)
        print(f"  {scenario.key:<9} {name:<12} {seconds:8.2f} s", file=sys.stderr, flush=True)
    except Exception as exc:  # any failure is reported in the table
        cell.status = f"ERROR: {exc}".splitlines()[0]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run(args: argparse.Namespace) -> list[tuple[Scenario, int, dict[str, Cell]]]:
    """Every scenario, every round, every server; the server order rotates per round."""
    out = []
    for scenario in args.scenarios:
        files = instances(args.cache_dir, scenario.instance_set, scenario.count)
        cells = {name: Cell() for name in args.servers}
        for name, cell in cells.items():
            cell.status = unavailable_reason(name) or "ok"
        for number in range(args.rounds):
            shift = number % len(args.servers)
            for name in args.servers[shift:] + args.servers[:shift]:
                if cells[name].status == "ok":
                    _measure(name, scenario, files, cells[name], args)
        out.append((scenario, sum(f.stat().st_size for f in files), cells))
    return out


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def report_scenario(scenario: Scenario, size: int, cells: dict[str, Cell]) -> str:
    """The scenario's table and its aims; ratios are StellarPACS / that server (rates)."""
    ours = cells["stellarpacs"].rate(scenario.count) if "stellarpacs" in cells else None
    headers = ["server", "status", "inst/s", "MB/s", "median s", "min-max s", "rounds"]
    headers += ["peak RSS MiB", "fsync", "StellarPACS/server"]
    rows = []
    for name, cell in cells.items():
        rate, elapsed = cell.rate(scenario.count), median(cell.seconds)
        status = cell.status if len(cell.status) < 60 else cell.status[:57] + "..."
        spread = f"{min(cell.seconds):.2f}-{max(cell.seconds):.2f}" if cell.seconds else "-"
        mb_per_s = size / 1e6 / elapsed if elapsed else None
        rss_mib = cell.peak_rss_kib / 1024 if cell.peak_rss_kib else None
        fsync = {True: "yes", False: "no", None: "-"}[cell.fsync]
        rows.append(
            [
                name,
                status,
                _fmt(rate, ",.1f"),
                _fmt(mb_per_s, ",.1f"),
                _fmt(elapsed, ".2f"),
                spread,
                str(len(cell.seconds)),
                _fmt(rss_mib, ".1f"),
                fsync,
                _fmt(ratio(ours, rate), ".2f", "x"),
            ]
        )
    lines = [scenario.title(size), format_table(headers, rows)]
    for peer, aim in AIMS:
        got = ratio(ours, cells[peer].rate(scenario.count)) if peer in cells else None
        verdict = "not measured" if got is None else ("met" if got >= aim else "MISSED")
        lines.append(f"aim StellarPACS/{peer} >= {aim:g}x: {_fmt(got, '.2f', 'x')} {verdict}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the median is reported")
    parser.add_argument(
        "--servers",
        default=",".join(SERVER_NAMES),
        help=f"comma-separated, among {','.join(LAUNCHERS)} (stellarpacs-nofsync is a "
        "reference row showing what fsync costs; the aims are judged with fsync on)",
    )
    parser.add_argument(
        "--scenarios", default="small,parallel,large", help="comma-separated subset"
    )
    parser.add_argument("--quick", action="store_true", help="100 small, 2 large, 1 round")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per transfer")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "stellarpacs-benchmark-cache",
        help="where the synthetic instances are generated once",
    )
    parser.add_argument("--results-dir", type=Path, default=here / "results")
    args = parser.parse_args(argv)
    args.servers = [s for s in args.servers.split(",") if s]
    if set(args.servers) - set(LAUNCHERS):
        parser.error(f"servers must be among {', '.join(LAUNCHERS)}")
    wanted = [s for s in args.scenarios.split(",") if s]
    table = {s.key: s for s in (QUICK if args.quick else FULL)}
    if set(wanted) - set(table):
        parser.error(f"scenarios must be among {', '.join(table)}")
    args.scenarios = [table[key] for key in wanted]
    if args.quick:
        args.rounds = 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    machine = machine_info()
    print(
        f"store throughput: {args.rounds} rounds per server and scenario, storescu "
        f"--max-pdu 16384 to servers announcing 16384, loopback, {machine['cpus']} CPUs "
        f"shared by storescu and the server, load average {machine['load_average_1_5_15']}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="stellarpacs-store-") as tmp:
        args.workroot = Path(tmp)
        measured = run(args)
    print(
        "durability: StellarPACS fsyncs each instance before answering (fsync on, its "
        "default); Orthanc too (SyncStorageArea, its default); dcmtk storescp and "
        "pynetdicom storescp do not fsync."
    )
    for scenario, size, cells in measured:
        print()
        print(report_scenario(scenario, size, cells))
    machine["load_average_at_end"] = machine_info()["load_average_1_5_15"]
    payload = {
        "benchmark": "store_throughput",
        "settings": {"rounds": args.rounds, "servers": args.servers, "quick": args.quick},
        "machine": machine,
        "versions": versions(),
        "scenarios": {
            scenario.key: {
                "instances": scenario.count,
                "processes": scenario.processes,
                "total_bytes": size,
                "servers": {
                    name: {
                        "status": cell.status,
                        "seconds": cell.seconds,
                        "instances_per_s": cell.rate(scenario.count),
                        "peak_rss_kib": cell.peak_rss_kib,
                        "fsync": cell.fsync,
                    }
                    for name, cell in cells.items()
                },
            }
            for scenario, size, cells in measured
        },
    }
    print(f"\nresults written to {write_results(args.results_dir, 'store_throughput', payload)}")
    failed = [c for _, _, cells in measured for c in cells.values() if c.status.startswith("ERROR")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
