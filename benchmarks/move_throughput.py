"""C-MOVE throughput: one study moved to a dcmtk storescp by each Q/R server, side by side.

The same study of 2,000 [--quick: 200] small CT instances (64 x 64 x 16 bit,
about 9 KB each, Explicit VR Little Endian, generated once with pydicom into a
cache folder) is loaded into each server by dcmtk's storescu, untimed:

* StellarPACS (``python -m stellarpacs``, the destination in ``[remotes]``);
* dcmtk's dcmqrscp (destination in its HostTable; it forks per association);
* pynetdicom's qrscp app (destination in its ini file; needs SQLAlchemy).

Then, for each round, dcmtk's movescu sends one C-MOVE-RQ (Study Root, STUDY
level) and the wall time of the movescu run is taken (its start-up and
association set-up included, the same for every server). movescu, a light C++
SCU, asks every server, so that the SCU takes little of the two cores. The
destination is one dcmtk storescp (single process, 16 KB maximum PDU like
everyone) that receives and discards (``--ignore``; ``--dest-writes`` makes it
write each file, which then dominates the time). A final status other than
Success is reported as an error, not as a number. The servers take turns
within each round (the order rotates, after one untimed warm-up move each) so
that they share the background noise; the median of the rounds is reported,
with the ratio StellarPACS/server (above 1 means StellarPACS is faster).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from common import (
    DCMTK_BIN,
    HOST,
    NODELAY_ENV,
    format_table,
    free_port,
    machine_info,
    median,
    peak_rss_kib,
    qr_unavailable_reason,
    ratio,
    versions,
    wait_for_listen,
    write_results,
)

MAX_PDU = 16384
DEST_AE = "DEST"
CALLING_AE = "BENCH-SCU"
UID_ROOT = "1.2.826.0.1.3680043.8.498"
CACHE_VERSION = 1
SERVERS = ("stellarpacs", "dcmtk", "pynetdicom")
STARTUP = 30.0
STOP = 10.0


# --- the study ---------------------------------------------------------------------------


def _write_instance(path: Path, study: str, series: str, index: int) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage
    ds.SOPInstanceUID = f"{study}.{index + 1}"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.PatientName, ds.PatientID = "Bench^Move", "BENCHMOVE"
    ds.StudyDate, ds.StudyTime, ds.StudyID = "20240101", "120000", "1"
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", 1, index + 1
    ds.Rows = ds.Columns = 64
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = os.urandom(64 * 64 * 2)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = (
        ds.SOPClassUID,
        ds.SOPInstanceUID,
    )
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.save_as(path, enforce_file_format=True)


def study_files(cache: Path, count: int) -> tuple[str, list[Path]]:
    """The cached study of ``count`` instances (made on first use): (Study UID, files)."""
    folder = cache / f"move-v{CACHE_VERSION}-{count}"
    marker = folder / "study-uid.txt"  # written last: its presence means the cache is whole
    files_dir = folder / "dicom"
    if not marker.exists():
        shutil.rmtree(folder, ignore_errors=True)
        files_dir.mkdir(parents=True)
        study = f"{UID_ROOT}.{int(time.time())}.{count}"
        for index in range(count):
            _write_instance(files_dir / f"{index:05d}.dcm", study, f"{study}.0", index)
        marker.write_text(study)
    files = sorted(files_dir.glob("*.dcm"))
    assert len(files) == count, f"cache {folder} is incomplete: remove it"
    return marker.read_text().strip(), files


# --- the servers -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Launch:
    argv: tuple[str, ...]
    ae_title: str
    env: dict[str, str] = field(default_factory=lambda: dict(NODELAY_ENV))


def _stellarpacs(port: int, workdir: Path, dest_port: int) -> Launch:
    config = workdir / "stellarpacs.toml"
    config.write_text(
        f'fsync = false\n\n[remotes.{DEST_AE}]\nhost = "{HOST}"\nport = {dest_port}\n'
    )  # fsync only concerns loading the study, which is not timed
    argv = [sys.executable, "-m", "stellarpacs", "--config", str(config), "--host", HOST]
    argv += ["--port", str(port), "--storage", str(workdir / "storage")]
    argv += ["--log-level", "WARNING", "--max-pdu", str(MAX_PDU)]
    return Launch(tuple(argv), "STELLARPACS")


def _dcmtk(port: int, workdir: Path, dest_port: int) -> Launch:
    storage = workdir / "storage"
    storage.mkdir(parents=True)
    config = workdir / "dcmqrscp.cfg"
    config.write_text(
        f"NetworkTCPPort = {port}\nMaxPDUSize = {MAX_PDU}\nMaxAssociations = 16\n\n"
        f"HostTable BEGIN\ndest = ({DEST_AE}, {HOST}, {dest_port})\nHostTable END\n\n"
        "VendorTable BEGIN\nVendorTable END\n\n"
        f"AETable BEGIN\nQRSCP {storage} RW (10, 4096mb) ANY\nAETable END\n"
    )
    return Launch((str(DCMTK_BIN / "dcmqrscp"), "-c", str(config), str(port)), "QRSCP")


def _pynetdicom(port: int, workdir: Path, dest_port: int) -> Launch:
    config = workdir / "qrscp.ini"
    config.write_text(
        f"[DEFAULT]\nae_title: QRSCP\nport: {port}\nmax_pdu: {MAX_PDU}\n"
        "acse_timeout: 30\ndimse_timeout: 30\nnetwork_timeout: 30\n"
        f"bind_address: {HOST}\ninstance_location: {workdir / 'instances'}\n"
        f"database_location: {workdir / 'instances.sqlite'}\nlog_identifier: False\n\n"
        f"[{DEST_AE}]\naddress: {HOST}\nport: {dest_port}\n"
    )
    argv = (sys.executable, "-m", "pynetdicom", "qrscp", "-q", "-c", str(config))
    return Launch(argv, "QRSCP")


LAUNCHERS: dict[str, Callable[[int, Path, int], Launch]] = {
    "stellarpacs": _stellarpacs,
    "dcmtk": _dcmtk,
    "pynetdicom": _pynetdicom,
}


@dataclass(slots=True)
class Running:
    name: str
    port: int
    ae_title: str
    process: subprocess.Popen[bytes]
    log: Path
    peak_rss_kib: int | None = None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.peak_rss_kib = peak_rss_kib(self.process.pid)
            self.process.terminate()
        try:
            self.process.wait(STOP)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(STOP)


@contextmanager
def running(
    argv: tuple[str, ...], env: dict[str, str], workdir: Path, port: int
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """Start ``argv`` in ``workdir`` (log to a file); stopped on exit, whatever happens."""
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            argv, env=env, cwd=workdir, stdin=subprocess.DEVNULL, stdout=out, stderr=out
        )
    try:
        wait_for_listen(process, port, STARTUP)
        yield process, log
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP)


@contextmanager
def qr_server(name: str, workdir: Path, dest_port: int, files: list[Path]) -> Iterator[Running]:
    """Server ``name``, started and loaded with ``files`` by dcmtk's storescu."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    launch = LAUNCHERS[name](port, workdir, dest_port)
    with running(launch.argv, launch.env, workdir, port) as (process, log):
        server = Running(name, port, launch.ae_title, process, log)
        try:
            load(server, files, workdir)
            yield server
        finally:
            server.stop()


def load(server: Running, files: list[Path], workdir: Path) -> None:
    argv = [str(DCMTK_BIN / "storescu"), "-aec", server.ae_title, "-R", "+sd", "-to", "30"]
    argv += ["--max-pdu", str(MAX_PDU), HOST, str(server.port), str(files[0].parent)]
    done = subprocess.run(
        argv, env=dict(NODELAY_ENV), capture_output=True, timeout=900, check=False, cwd=workdir
    )
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise RuntimeError(f"{server.name}: loading the study failed: {' / '.join(tail)}")


# --- the move ------------------------------------------------------------------------------


_FINAL = re.compile(r"Received Final Move Response \((\w+)")


def timed_move(port: int, ae_title: str, study: str, timeout: float) -> tuple[float, str, str]:
    """One C-MOVE of ``study`` to DEST by dcmtk's movescu: (seconds, problem, note).

    The move counts when its final response is Success; a non-zero exit
    status after that (the release failing) is only noted.
    """
    argv = [str(DCMTK_BIN / "movescu"), "-v", "-S", "-aet", CALLING_AE, "-aec", ae_title]
    argv += ["-aem", DEST_AE, "--max-pdu", str(MAX_PDU), "-k", "QueryRetrieveLevel=STUDY"]
    argv += ["-k", f"StudyInstanceUID={study}", HOST, str(port)]
    started = time.perf_counter()
    done = subprocess.run(
        argv, env=dict(NODELAY_ENV), capture_output=True, timeout=timeout, check=False
    )
    elapsed = time.perf_counter() - started
    output = (done.stdout + done.stderr).decode(errors="replace")
    final = _FINAL.search(output)
    if final is None or final.group(1) != "Success":
        last = final.group(0) + ")" if final else output.strip()[-200:]
        return elapsed, f"movescu exited with {done.returncode}: {last}", ""
    note = f"movescu exit {done.returncode} after Success" if done.returncode else ""
    return elapsed, "", note


@dataclass(slots=True)
class Cell:
    seconds: list[float] = field(default_factory=list)
    error: str = ""
    peak_rss_kib: int | None = None
    skipped: str = ""
    notes: list[str] = field(default_factory=list)

    def rate(self, count: int) -> float | None:
        best = median(self.seconds)
        return count / best if best else None


def _move_once(server: Running, study: str, files: list[Path], timeout: float, cell: Cell) -> None:
    """One timed C-MOVE into ``cell`` (or its error)."""
    try:
        seconds, problem, note = timed_move(server.port, server.ae_title, study, timeout)
    except (OSError, subprocess.TimeoutExpired) as error:
        cell.error = f"{type(error).__name__}: {error}".splitlines()[0]
        return
    if problem:
        cell.error = problem
        return
    cell.seconds.append(seconds)
    if note and note not in cell.notes:
        cell.notes.append(note)
    print(f"  {server.name}: {seconds:.2f} s {note}", file=sys.stderr)


def measure(args: argparse.Namespace, study: str, files: list[Path]) -> dict[str, Cell]:
    """Start every server (loaded), then rounds of one C-MOVE each, the order rotating."""
    cells = {name: Cell(skipped=qr_unavailable_reason(name) or "") for name in args.servers}
    active = [name for name in args.servers if not cells[name].skipped]
    with tempfile.TemporaryDirectory(prefix="move-bench-") as tmp, ExitStack() as stack:
        root = Path(tmp)
        received = root / "received"
        received.mkdir()
        dest_port = free_port()
        dest_argv = (
            str(DCMTK_BIN / "storescp"), "--single-process", "--disable-host-lookup",
            "--max-pdu", str(MAX_PDU), "-aet", DEST_AE, "-od", str(received),
            *(() if args.dest_writes else ("--ignore",)), str(dest_port),
        )  # fmt: skip
        stack.enter_context(running(dest_argv, dict(NODELAY_ENV), root / "dest", dest_port))
        servers: dict[str, Running] = {}
        for name in active:
            print(f"loading {len(files)} instances into {name}", file=sys.stderr)
            try:
                servers[name] = stack.enter_context(qr_server(name, root / name, dest_port, files))
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as error:
                cells[name].error = str(error).splitlines()[0]
        ready = [name for name in active if name in servers]
        warmup = {name: Cell() for name in ready}
        rounds = [("warm-up", warmup)] if args.warmup else []
        rounds += [(f"round {n + 1}", cells) for n in range(args.rounds)]
        for number, (label, into) in enumerate(rounds):
            print(label, file=sys.stderr)
            order = ready[number % len(ready) :] + ready[: number % len(ready)] if ready else []
            for name in order:
                if cells[name].error:
                    continue
                _move_once(servers[name], study, files, args.timeout, into[name])
                if into is not cells and into[name].error:
                    cells[name].error = f"warm-up: {into[name].error}"
                shutil.rmtree(received, ignore_errors=True)
                received.mkdir(exist_ok=True)
        for name, server in servers.items():
            server.stop()
            cells[name].peak_rss_kib = server.peak_rss_kib
    return cells


# --- report --------------------------------------------------------------------------------


def report(cells: dict[str, Cell], count: int) -> str:
    ours = cells["stellarpacs"].rate(count) if "stellarpacs" in cells else None
    rows = []
    for name, cell in cells.items():
        if cell.skipped or cell.error:
            status = cell.skipped or f"ERROR {cell.error}"
            rows.append([name, status, "-", "-", "-"])
            continue
        rate = cell.rate(count)
        mine = ratio(ours, rate)
        rss = f"{cell.peak_rss_kib / 1024:.0f} MiB" if cell.peak_rss_kib else "-"
        rows.append(
            [
                name,
                "; ".join(["ok", *cell.notes]),
                f"{rate:.0f}" if rate else "-",
                f"{mine:.2f}x" if mine else "-",
                rss,
            ]
        )
    table = format_table(["server", "status", "instances/s", "StellarPACS/it", "peak RSS"], rows)
    return f"C-MOVE of a {count}-instance study to dcmtk storescp (median of rounds)\n{table}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=2000, help="instances in the study")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the median is reported")
    parser.add_argument("--quick", action="store_true", help="200 instances, 1 round")
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated subset")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per C-MOVE")
    parser.add_argument(
        "--dest-writes",
        action="store_true",
        help="let storescp write each file (by default it receives and discards: --ignore)",
    )
    parser.add_argument(
        "--no-warmup", dest="warmup", action="store_false", help="skip the untimed first move"
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "stellarpacs-bench-cache",
        help="where the synthetic study is kept between runs",
    )
    parser.add_argument("--results-dir", type=Path, default=here / "results")
    args = parser.parse_args(argv)
    if args.quick:
        args.instances, args.rounds = 200, 1
    args.servers = [s for s in args.servers.split(",") if s]
    unknown = set(args.servers) - set(SERVERS)
    if unknown:
        parser.error(f"unknown servers: {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    study, files = study_files(args.cache_dir, args.instances)
    print(f"moving {len(files)} instances, {args.rounds} round(s)", file=sys.stderr)
    cells = measure(args, study, files)
    print(report(cells, len(files)))
    payload = {
        "benchmark": "move_throughput",
        "instances": len(files),
        "rounds": args.rounds,
        "machine": machine_info(),
        "versions": versions(),
        "servers": {
            name: {
                "seconds": cell.seconds,
                "instances_per_s": cell.rate(len(files)),
                "error": cell.error,
                "skipped": cell.skipped,
                "peak_rss_kib": cell.peak_rss_kib,
                "notes": cell.notes,
            }
            for name, cell in cells.items()
        },
    }
    saved = write_results(args.results_dir, "move_throughput", payload)
    print(f"results: {saved}", file=sys.stderr)
    return 1 if any(cell.error for cell in cells.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
