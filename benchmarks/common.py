"""Shared plumbing for the side-by-side benchmarks: peer servers as subprocesses.

Every server under test runs as its own process on 127.0.0.1, started from a
table of launchers (one function per implementation), so the benchmark loops
treat StellarPACS, dcmtk's ``storescp``, pynetdicom's ``storescp`` and Orthanc
alike. Each is stopped in a ``finally`` (SIGTERM, then SIGKILL after a bounded
wait); its peak resident memory is read from ``/proc/PID/status`` (VmHWM)
just before it is stopped. dcmtk and Orthanc leave Nagle's algorithm on
unless ``TCP_NODELAY=1`` is in their environment, so they always get it.

Nothing here times anything: the benchmark scripts do, and they report
ratios between implementations measured in the same run, never absolute
thresholds.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

__all__ = [
    "DCMQRSCP_MAX_STUDIES",
    "DCMTK_BIN",
    "HOST",
    "LAUNCHERS",
    "NODELAY_ENV",
    "QR_LAUNCHERS",
    "SERVER_NAMES",
    "Launch",
    "RunningServer",
    "format_table",
    "free_port",
    "machine_info",
    "median",
    "orthanc_binary",
    "peak_rss_kib",
    "percentile",
    "qr_unavailable_reason",
    "ratio",
    "running_server",
    "send_files",
    "unavailable_reason",
    "versions",
    "wait_for_listen",
    "write_results",
]

HOST = "127.0.0.1"
DCMTK_BIN = Path("/usr/bin")  # absolute: pynetdicom installs same-named shims on PATH
NODELAY_ENV: Mapping[str, str] = {**os.environ, "TCP_NODELAY": "1"}
SERVER_NAMES = ("stellarpacs", "dcmtk", "pynetdicom", "orthanc")  # the default set
MAX_PDU = 16384
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class Launch:
    """How to start one server: its command line, environment and AE title."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    ae_title: str
    fsync: bool  # whether it flushes each received file to disk before answering


Launcher = Callable[[int, Path, bool], Launch]  # (port, workdir, store) -> Launch


def _stellarpacs(port: int, workdir: Path, store: bool) -> Launch:
    """StellarPACS with its defaults (fsync on); it always stores, echo never touches disk."""
    argv = [sys.executable, "-m", "stellarpacs", "--host", HOST, "--port", str(port)]
    argv += ["--storage", str(workdir / "storage"), "--log-level", "WARNING"]
    argv += ["--max-pdu", str(MAX_PDU)]
    return Launch(tuple(argv), dict(os.environ), "STELLARPACS", fsync=True)


def _stellarpacs_nofsync(port: int, workdir: Path, store: bool) -> Launch:
    """A reference row only (not in the default set): what fsync costs StellarPACS."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "nofsync.toml"
    config.write_text("fsync = false\n")
    launch = _stellarpacs(port, workdir, store)
    return Launch((*launch.argv, "--config", str(config)), launch.env, launch.ae_title, False)


def _dcmtk(port: int, workdir: Path, store: bool) -> Launch:
    """dcmtk storescp, single process, no reverse DNS look-up (its fastest honest setup)."""
    out = workdir / "storage"
    out.mkdir(parents=True, exist_ok=True)
    argv = [str(DCMTK_BIN / "storescp"), "--single-process", "--disable-host-lookup"]
    argv += ["--max-pdu", str(MAX_PDU), "--aetitle", "STORESCP", "--output-directory", str(out)]
    argv += [] if store else ["--ignore"]
    return Launch((*argv, str(port)), NODELAY_ENV, "STORESCP", fsync=False)


def _pynetdicom(port: int, workdir: Path, store: bool) -> Launch:
    """pynetdicom's storescp app, quiet, bound to loopback."""
    out = workdir / "storage"
    out.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "pynetdicom", "storescp", str(port), "--bind-address", HOST]
    argv += ["--max-pdu", str(MAX_PDU), "--ae-title", "STORESCP", "--quiet"]
    argv += ["--output-directory", str(out)] if store else ["--ignore"]
    return Launch(tuple(argv), dict(os.environ), "STORESCP", fsync=False)


def orthanc_binary() -> str | None:
    """The Orthanc executable (Debian puts it in /usr/sbin), or None when not installed."""
    for candidate in ("/usr/bin/Orthanc", "/usr/sbin/Orthanc"):
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("Orthanc")


def _orthanc_config(port: int, workdir: Path) -> dict[str, object]:
    storage = workdir / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    return {
        "Name": "stellarpacs-benchmark",
        "StorageDirectory": str(storage),
        "IndexDirectory": str(workdir / "index"),
        "Plugins": [],
        "HttpServerEnabled": False,
        "RemoteAccessAllowed": False,
        "DicomServerEnabled": True,
        "DicomAet": "ORTHANC",
        "DicomPort": port,
        "DicomCheckCalledAet": False,
        "DicomAlwaysAllowEcho": True,
        "DicomAlwaysAllowStore": True,
        "MaximumPduLength": MAX_PDU,
        "SyncStorageArea": True,
        "SaveJobs": False,
    }


def _orthanc_launch(workdir: Path, config: Mapping[str, object]) -> Launch:
    binary = orthanc_binary()
    if binary is None:
        raise RuntimeError("Orthanc is not installed")
    path = workdir / "orthanc.json"
    path.write_text(json.dumps(config, indent=2))
    return Launch((binary, str(path)), NODELAY_ENV, "ORTHANC", fsync=True)


def _orthanc(port: int, workdir: Path, store: bool) -> Launch:
    """Orthanc from a generated configuration: DICOM only, HTTP off, no plugins.

    ``SyncStorageArea`` is Orthanc's default (true since 1.7.4): it fsyncs
    each stored file, as StellarPACS does.
    """
    if orthanc_binary() is None:
        raise RuntimeError("Orthanc is not installed")
    return _orthanc_launch(workdir, _orthanc_config(port, workdir))


LAUNCHERS: Mapping[str, Launcher] = {
    "stellarpacs": _stellarpacs,
    "dcmtk": _dcmtk,
    "pynetdicom": _pynetdicom,
    "orthanc": _orthanc,
    "stellarpacs-nofsync": _stellarpacs_nofsync,
}


# --- query/retrieve servers (C-FIND and C-MOVE SCPs that also store what they receive) --------

QR_AE_TITLE = "QRSCP"
DCMQRSCP_MAX_STUDIES = 500  # dcmtk's DB_UpperMaxStudies: its index.dat holds no more


def _dcmqrscp(port: int, workdir: Path, store: bool) -> Launch:
    """dcmtk's dcmqrscp over one read-write storage area that any calling AE may use.

    In its default mode it forks a child per association and the parent goes
    on listening; with ``--single-process`` (dcmtk 3.6.7) it stops listening
    after the first association, so the query association after the loading
    one would be refused. A child ends when its association does.
    """
    storage = workdir / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    config = workdir / "dcmqrscp.cfg"
    config.write_text(
        f"NetworkTCPPort = {port}\nMaxPDUSize = {MAX_PDU}\nMaxAssociations = 16\n\n"
        "HostTable BEGIN\nHostTable END\n\nVendorTable BEGIN\nVendorTable END\n\n"
        f"AETable BEGIN\n{QR_AE_TITLE} {storage} RW ({DCMQRSCP_MAX_STUDIES}, 1024mb) ANY\n"
        "AETable END\n"
    )
    argv = [str(DCMTK_BIN / "dcmqrscp"), "--disable-host-lookup"]
    argv += ["--config", str(config), str(port)]
    return Launch(tuple(argv), NODELAY_ENV, QR_AE_TITLE, fsync=False)


def _pynetdicom_qrscp(port: int, workdir: Path, store: bool) -> Launch:
    """pynetdicom's qrscp app (SQLAlchemy over SQLite), quiet, bound to loopback."""
    storage = workdir / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    config = workdir / "qrscp.ini"
    config.write_text(
        f"[DEFAULT]\nae_title: {QR_AE_TITLE}\nport: {port}\nmax_pdu: {MAX_PDU}\n"
        "acse_timeout: 30\ndimse_timeout: 30\nnetwork_timeout: 60\n"
        f"bind_address: {HOST}\ninstance_location: {storage}\n"
        f"database_location: {workdir / 'instances.sqlite'}\nlog_identifier: False\n"
    )
    argv = (sys.executable, "-m", "pynetdicom", "qrscp", "--quiet", "--config", str(config))
    return Launch(argv, dict(os.environ), QR_AE_TITLE, fsync=False)


def _orthanc_qr(port: int, workdir: Path, store: bool) -> Launch:
    """Orthanc as for storage, and answering C-FIND from any AE (off by default since 1.9)."""
    if orthanc_binary() is None:
        raise RuntimeError("Orthanc is not installed")
    config = _orthanc_config(port, workdir) | {"DicomAlwaysAllowFind": True}
    return _orthanc_launch(workdir, config)


QR_LAUNCHERS: Mapping[str, Launcher] = {
    "stellarpacs": _stellarpacs,
    "dcmtk": _dcmqrscp,
    "pynetdicom": _pynetdicom_qrscp,
    "orthanc": _orthanc_qr,
}


def qr_unavailable_reason(name: str) -> str | None:
    """Why the Q/R server ``name`` cannot run here, or None when it can."""
    if name == "dcmtk" and not os.access(DCMTK_BIN / "dcmqrscp", os.X_OK):
        return "not installed"
    if name == "pynetdicom":
        try:
            import sqlalchemy  # noqa: F401  (the qrscp app's database layer)
        except ImportError:
            return "needs sqlalchemy"
    if name == "orthanc" and orthanc_binary() is None:
        return "not installed"
    return None


def unavailable_reason(name: str) -> str | None:
    """Why ``name`` cannot run here ("not installed"), or None when it can."""
    if name == "orthanc" and orthanc_binary() is None:
        return "not installed"
    if name == "dcmtk" and not os.access(DCMTK_BIN / "storescp", os.X_OK):
        return "not installed"
    return None


def free_port() -> int:
    """A TCP port free on loopback now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _listening_ports() -> set[int]:
    """Ports in LISTEN state, from /proc/net/tcp{,6}: no probe connection disturbs a server."""
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[3] == "0A":  # 0A is TCP_LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def wait_for_listen(process: subprocess.Popen[bytes], port: int, timeout: float) -> None:
    """Poll (bounded) until ``port`` listens; fail early if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with status {process.returncode} before listening")
        if port in _listening_ports():
            return
        time.sleep(0.05)
    raise RuntimeError(f"server did not listen on port {port} within {timeout:.0f} s")


def peak_rss_kib(pid: int) -> int | None:
    """VmHWM (peak resident set size, KiB) of a live process, None if unreadable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


@dataclass(slots=True)
class RunningServer:
    """A started server; ``peak_rss_kib`` is filled in when it is stopped."""

    name: str
    port: int
    ae_title: str
    fsync: bool
    workdir: Path
    process: subprocess.Popen[bytes]
    peak_rss_kib: int | None = None

    @property
    def storage(self) -> Path:
        return self.workdir / "storage"

    def log_tail(self, lines: int = 8) -> str:
        try:
            text = (self.workdir / "server.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Read the peak RSS, then SIGTERM; SIGKILL if it has not exited in time."""
        if self.process.poll() is None:
            self.peak_rss_kib = peak_rss_kib(self.process.pid) or self.peak_rss_kib
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT)


@contextmanager
def running_server(
    name: str, workdir: Path, *, store: bool, launchers: Mapping[str, Launcher] = LAUNCHERS
) -> Iterator[RunningServer]:
    """Start server ``name`` on a free loopback port in ``workdir``; always stopped on exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    launch = launchers[name](port, workdir, store)
    with open(workdir / "server.log", "wb") as log:
        process = subprocess.Popen(
            launch.argv,
            env=dict(launch.env),
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = RunningServer(name, port, launch.ae_title, launch.fsync, workdir, process)
    try:
        try:
            wait_for_listen(process, port, STARTUP_TIMEOUT)
        except RuntimeError as exc:
            raise RuntimeError(f"{name}: {exc}\n{server.log_tail()}") from None
        yield server
    finally:
        server.stop()


def send_files(server: RunningServer, folder: Path, *, timeout: float, calling_ae: str) -> None:
    """Send every file under ``folder`` to ``server`` with dcmtk's storescu, one association.

    ``--required`` proposes only the SOP classes of the files; the log goes to
    the server's workdir. Raises when storescu fails, reports an error line,
    or has not finished within ``timeout`` seconds (it is then killed).
    """
    argv = [str(DCMTK_BIN / "storescu"), "--aetitle", calling_ae, "--call", server.ae_title]
    argv += ["--max-pdu", str(MAX_PDU), "--required", "--scan-directories", "--recurse"]
    argv += [HOST, str(server.port), str(folder)]
    log_path = server.workdir / "storescu.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            argv, env=dict(NODELAY_ENV), stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"storescu still running after {timeout:.0f} s") from None
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(STOP_TIMEOUT)
    text = log_path.read_text(errors="replace")
    errors = [line for line in text.splitlines() if line.startswith(("E:", "F:"))]
    if process.returncode != 0 or errors:
        detail = (errors or text.splitlines() or ["no output"])[0]
        raise RuntimeError(f"storescu exited {process.returncode}: {detail}")


# --- reporting ---------------------------------------------------------------------------


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The nearest-rank percentile (``fraction`` 0.95 for p95); None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def ratio(ours: float | None, theirs: float | None) -> float | None:
    """ours / theirs for rates (higher is better); None when either is missing."""
    if ours is None or theirs is None or theirs <= 0:
        return None
    return ours / theirs


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain fixed-width text table (first column left-aligned, the rest right-aligned)."""
    widths = [max(len(str(row[i])) for row in (headers, *rows)) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        parts = [
            str(c).ljust(w) if i == 0 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def _first_line(argv: Sequence[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def versions() -> dict[str, str]:
    """Versions of every implementation in the run, for the results file."""
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str] = {}
    for package in ("stellarpacs", "pynetdicom", "pydicom", "uvloop"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    found["dcmtk"] = _first_line([str(DCMTK_BIN / "storescp"), "--version"])
    binary = orthanc_binary()
    found["orthanc"] = _first_line([binary, "--version"]) if binary else "not installed"
    return found


def machine_info() -> dict[str, object]:
    """What the numbers were measured on; the load average shows competing work."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
    }


def write_results(directory: Path, benchmark: str, payload: Mapping[str, object]) -> Path:
    """Save one run as JSON under ``directory`` (benchmarks/results/ is gitignored)."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"{benchmark}-{stamp}.json"
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return path
