"""Helpers of the retrieve tests: instances, a StellarPACS archive with remotes, dcmtk peers.

* :func:`make_instances`: a few patients, studies and series of small synthetic
  instances (Explicit and Implicit VR LE) plus compressed instances (RLE,
  JPEG-LS, JPEG Lossless) made from pydicom's test files with fresh UIDs.
* :func:`archive`: an in-process server whose ``remotes`` are given, holding the
  instances stored by our own Storage SCU.
* :func:`storescp` and :func:`dcmqrscp`: dcmtk servers as subprocesses, killed in
  a ``finally``; :func:`movescu` and :func:`getscu` runs, bounded in time.
* :func:`pynetdicom_get`: pynetdicom's C-GET SCU in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from stellarpacs.aio.client import ClientAssociation, connect
from stellarpacs.aio.scu.contexts import ProposedContext
from stellarpacs.aio.scu.store import scan_paths, store_paths
from stellarpacs.aio.server import Server
from stellarpacs.config import Config, RemoteAE
from stellarpacs.services.registry import default_services
from stellarpacs.services.retrieve import GetService, MoveService
from stellarpacs.storage.archive import Archive
from stellarpacs.uids import (
    JPEG_LOSSLESS_SV1,
    JPEG_LS_LOSSLESS,
    QR_GET_MODELS,
    QR_MOVE_MODELS,
    RLE_LOSSLESS,
    VERIFICATION,
)
from tests.integration.peers import HOST, Completed, dcmtk, dcmtk_env, kill, run_process
from tests.integration.storage_fixtures import (
    dataset_bytes,
    free_port,
    synthetic_dataset,
    write_part10,
)

__all__ = [
    "COMPRESSED_SOURCES",
    "SERVER_AE",
    "WAIT",
    "Instance",
    "archive",
    "client_for",
    "dcmqrscp",
    "make_instances",
    "movescu",
    "received",
    "storescp",
    "wait_listening",
]

SERVER_AE = "STELLARPACS"
#: Bound for one network wait or one tool run.
WAIT = 20.0
CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"

#: pydicom test files whose pixel data is compressed without loss, by transfer syntax.
COMPRESSED_SOURCES: Mapping[str, str] = {
    RLE_LOSSLESS: "MR_small_RLE.dcm",
    JPEG_LS_LOSSLESS: "MR_small_jpeg_ls_lossless.dcm",
    JPEG_LOSSLESS_SV1: "SC_rgb_jpeg_gdcm.dcm",
}


@dataclass(frozen=True, slots=True)
class Instance:
    """One stored instance and its place in the hierarchy."""

    path: Path
    patient_id: str
    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax: str

    @property
    def compressed(self) -> bool:
        return self.transfer_syntax in COMPRESSED_SOURCES

    def dataset(self) -> bytes:
        """The data set bytes as first stored (after the file meta)."""
        return dataset_bytes(self.path)


def _instance(path: Path) -> Instance:
    ds = dcmread(path, stop_before_pixels=True)
    return Instance(
        path,
        str(ds.PatientID),
        str(ds.StudyInstanceUID),
        str(ds.SeriesInstanceUID),
        str(ds.SOPInstanceUID),
        str(ds.SOPClassUID),
        str(ds.file_meta.TransferSyntaxUID),
    )


def _synthetic(folder: Path, patient: str, series: Sequence[int], sop_class: str) -> list[Path]:
    """One study of ``patient``: len(series) series with that many instances each."""
    study = generate_uid()
    paths = []
    for number, count in enumerate(series):
        series_uid = generate_uid()
        for index in range(count):
            ds = synthetic_dataset(sop_class, index, patient_id=patient, study_uid=study)
            ds.SeriesInstanceUID = series_uid
            ds.SeriesNumber, ds.InstanceNumber = number + 1, index + 1
            syntax = ExplicitVRLittleEndian if index % 2 == 0 else ImplicitVRLittleEndian
            name = f"{patient}-{number}-{index}.dcm"
            paths.append(write_part10(ds, folder / name, syntax))
    return paths


def _compressed(folder: Path, patient: str) -> list[Path]:
    """pydicom's compressed test files as one study of ``patient``, with fresh UIDs.

    The pixel data stays encapsulated as shipped; only identifying elements change.
    """
    study, series = generate_uid(), generate_uid()
    paths = []
    for index, name in enumerate(COMPRESSED_SOURCES.values()):
        source = get_testdata_file(name)
        assert source is not None, f"pydicom test file {name} is missing"
        ds = dcmread(source)
        ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = patient, study, series
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        path = folder / f"{patient}-c{index}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def make_instances(folder: Path, *, big_study: int = 0) -> list[Instance]:
    """Patients P1 (a study of 2 series: 3 + 2 CT), P2 (one MR series of 2), P3 (compressed).

    With ``big_study``, patient P4 gets one CT study of that many instances.
    """
    folder.mkdir(parents=True, exist_ok=True)
    paths = _synthetic(folder, "P1", (3, 2), CT)
    paths += _synthetic(folder, "P2", (2,), MR)
    paths += _compressed(folder, "P3")
    if big_study:
        paths += _synthetic(folder, "P4", (big_study,), CT)
    return [_instance(p) for p in paths]


# --- StellarPACS in process ----------------------------------------------------------------


def remotes(**destinations: int) -> dict[str, RemoteAE]:
    """``[remotes]`` for loopback destinations: AE title -> port."""
    return {ae: RemoteAE(ae, HOST, port) for ae, port in destinations.items()}


@contextlib.asynccontextmanager
async def archive(
    storage: Path, instances: Iterable[Instance], **overrides: Any
) -> AsyncIterator[tuple[Server, Archive]]:
    """An in-process server over a fresh archive holding ``instances`` (stored by our SCU)."""
    config = Config(host=HOST, port=0, storage=storage, artim_timeout=2.0, fsync=False, **overrides)
    services = await default_services(config)
    assert services.archive is not None
    try:
        async with Server(config, services.services) as server:
            items, skipped = scan_paths([i.path for i in instances])
            assert not skipped, skipped

            async def open_association(contexts: list[ProposedContext]) -> ClientAssociation:
                return await connect(
                    HOST, server.port, called_ae=config.ae_title, contexts=contexts
                )

            async with asyncio.timeout(WAIT * 3):
                results = await store_paths(items, open_association)
            assert [r.status for r in results] == [0] * len(items), results
            yield server, services.archive
    finally:
        await services.close()


async def client_for(
    port: int,
    contexts: Iterable[ProposedContext | str] = (*QR_MOVE_MODELS, VERIFICATION),
    *,
    called_ae: str = SERVER_AE,
    dimse_timeout: float = WAIT,
) -> ClientAssociation:
    """Our client associated with ``contexts`` (the MOVE models by default)."""
    async with asyncio.timeout(WAIT):
        return await connect(
            HOST,
            port,
            called_ae=called_ae,
            calling_ae="RETRIEVER",
            contexts=list(contexts),
            connect_timeout=WAIT,
            dimse_timeout=dimse_timeout,
        )


GET_MODELS = QR_GET_MODELS


# --- files received ------------------------------------------------------------------------


def received(folder: Path) -> dict[str, bytes]:
    """SOP Instance UID -> data set bytes of every PS3.10 file under ``folder``."""
    out: dict[str, bytes] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if path.suffix == ".part" or path.name.startswith("."):
            continue
        meta = dcmread(path, stop_before_pixels=True).file_meta
        out[str(meta.MediaStorageSOPInstanceUID)] = dataset_bytes(path)
    return out


def received_datasets(folder: Path) -> dict[str, Dataset]:
    """SOP Instance UID -> the data set (with file meta) of every PS3.10 file under ``folder``."""
    out: dict[str, Dataset] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        ds = dcmread(path)
        out[str(ds.file_meta.MediaStorageSOPInstanceUID)] = ds
    return out


def same_instance(arrived: Dataset, instance: Instance) -> bool:
    """``arrived`` holds the same attributes as the stored file; pixels compared decoded."""
    original = dcmread(instance.path)
    if "PixelData" in original:
        if not np.array_equal(arrived.pixel_array, original.pixel_array):
            return False
        # Decompression rewrites the pixel description (e.g. Photometric Interpretation).
        skip = {0x7FE00010, 0x00280004, 0x00282110, 0x00282114, 0x00280006}
        return all(
            arrived.get(tag) == original.get(tag)
            for tag in original.keys()  # noqa: SIM118 (keys() is cheaper than converting)
            if tag not in skip
        )
    return bool(arrived == original)


def clear(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)


# --- dcmtk -------------------------------------------------------------------------------


def _listening(port: int) -> bool:
    """Whether ``port`` is in LISTEN state (/proc/net/tcp: no probe connection needed)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    return True
    return False


async def wait_listening(process: asyncio.subprocess.Process, port: int) -> None:
    """Poll (bounded) until ``port`` listens; fail at once if the process died."""
    deadline = time.monotonic() + WAIT
    while not _listening(port):
        if process.returncode is not None:
            raise AssertionError(f"server exited with {process.returncode} before listening")
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing listens on port {port} after {WAIT} s")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def _serving(argv: Sequence[str], port: int) -> AsyncIterator[asyncio.subprocess.Process]:
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        env=dcmtk_env(),
    )
    try:
        await wait_listening(process, port)
        yield process
    finally:
        await kill(process)


@contextlib.asynccontextmanager
async def storescp(folder: Path, ae_title: str = "DEST", *options: str) -> AsyncIterator[int]:
    """dcmtk storescp writing into ``folder``, bit-preserving (+B): yields its port.

    Without ``+xa`` in ``options`` it accepts uncompressed syntaxes only.
    """
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [dcmtk("storescp"), "-aet", ae_title, "+B", "-od", str(folder), *options, str(port)]
    async with _serving(argv, port):
        yield port


_DCMQRSCP_CFG = """\
NetworkTCPPort  = {port}
MaxPDUSize      = 16384
MaxAssociations = 16

HostTable BEGIN
{hosts}
HostTable END

VendorTable BEGIN
VendorTable END

AETable BEGIN
QRSCP {storage} RW (200, 1024mb) ANY
AETable END
"""


@contextlib.asynccontextmanager
async def dcmqrscp(workdir: Path, destinations: Mapping[str, int]) -> AsyncIterator[int]:
    """dcmtk's dcmqrscp (AE QRSCP) over a fresh storage area; ``destinations``: AE -> port."""
    storage = workdir / "qrscp-db"
    storage.mkdir(parents=True)
    port = free_port()
    hosts = "\n".join(f"{ae.lower()} = ({ae}, {HOST}, {dest})" for ae, dest in destinations.items())
    config = workdir / "dcmqrscp.cfg"
    config.write_text(_DCMQRSCP_CFG.format(port=port, hosts=hosts, storage=storage))
    argv = [dcmtk("dcmqrscp"), "-c", str(config), str(port)]  # forks per association
    async with _serving(argv, port):
        yield port


async def storescu(port: int, called_ae: str, paths: Iterable[Path]) -> Completed:
    """dcmtk storescu: send ``paths`` as they are (proposing each file's own syntax)."""
    argv = [dcmtk("storescu"), "-aec", called_ae, "-R", "+sd", "-to", "10", "-ta", "10"]
    argv += [HOST, str(port), *map(str, paths)]
    return await run_process(*argv, env=dcmtk_env(), timeout=WAIT)


_MODEL_FLAG = {"patient": "-P", "study": "-S", "psonly": "-O"}


async def movescu(
    port: int, model: str, keys: Mapping[str, str], destination: str = "DEST", *extra: str
) -> Completed:
    """dcmtk movescu (debug output, which shows every response's counts)."""
    argv = [dcmtk("movescu"), "-d", _MODEL_FLAG[model], "-aec", SERVER_AE, "-aem", destination]
    argv += ["-to", "10", "-ta", "10", "-td", "20"]
    for key, value in keys.items():
        argv += ["-k", f"{key}={value}"]
    return await run_process(*argv, *extra, HOST, str(port), env=dcmtk_env(), timeout=WAIT)


async def getscu(
    port: int, model: str, keys: Mapping[str, str], folder: Path, *extra: str
) -> Completed:
    """dcmtk getscu writing what it receives into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    argv = [dcmtk("getscu"), "-v", _MODEL_FLAG[model], "-aec", SERVER_AE, "-od", str(folder)]
    argv += ["-to", "10", "-ta", "10", "-td", "20"]
    for key, value in keys.items():
        argv += ["-k", f"{key}={value}"]
    return await run_process(*argv, *extra, HOST, str(port), env=dcmtk_env(), timeout=WAIT)


# --- pynetdicom ---------------------------------------------------------------------------


def _pynetdicom_get(
    port: int, model: str, keys: Mapping[str, str], sop_classes: Sequence[str]
) -> tuple[int | None, dict[str, Dataset]]:
    """Blocking: pynetdicom C-GET; (final status, SOP Instance UID -> data set received)."""
    from pynetdicom import AE, build_role, evt

    got: dict[str, Dataset] = {}

    def on_store(event: Any) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        got[str(event.request.AffectedSOPInstanceUID)] = ds
        return 0x0000

    ae = AE(ae_title="PYNETGET")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = WAIT
    ae.add_requested_context(model)
    for sop_class in sop_classes:
        ae.add_requested_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    # pynetdicom types ext_neg as a list of its whole user-information union.
    roles: list[Any] = [build_role(uid, scp_role=True) for uid in sop_classes]
    identifier = Dataset()
    for key, value in keys.items():
        setattr(identifier, key, value)
    assoc = ae.associate(
        HOST, port, ae_title=SERVER_AE, ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    final: int | None = None
    try:
        assert assoc.is_established, "pynetdicom could not associate"
        for status, _ in assoc.send_c_get(identifier, model):
            if status is not None and "Status" in status:
                final = int(status.Status)
        assoc.release()
    finally:
        if assoc.is_alive():
            assoc.abort()
        ae.shutdown()
    return final, got


async def pynetdicom_get(
    port: int, model: str, keys: Mapping[str, str], sop_classes: Sequence[str]
) -> tuple[int | None, dict[str, Dataset]]:
    """:func:`_pynetdicom_get` in a worker thread: the in-process server keeps serving."""
    async with asyncio.timeout(WAIT * 2):
        return await asyncio.to_thread(_pynetdicom_get, port, model, keys, sop_classes)


# --- dcmtk output ---------------------------------------------------------------------------

_COUNT_LINE = re.compile(
    r"^D: (Remaining|Completed|Failed|Warning) Suboperations\s*: (none|\d+)\s*$"
    r"|^D: DIMSE Status\s*: 0x([0-9a-fA-F]{4})",
    re.MULTILINE,
)


@dataclass(frozen=True, slots=True)
class Counts:
    """One C-MOVE/C-GET response as dcmtk's debug output shows it."""

    status: int
    remaining: int | None
    completed: int | None
    failed: int | None
    warning: int | None


def responses_in(output: str) -> list[Counts]:
    """The responses in a ``movescu -d`` / ``getscu -d`` log, in order.

    Counts lines precede the DIMSE Status line of the same response.
    """
    found: list[Counts] = []
    current: dict[str, int | None] = {}
    for match in _COUNT_LINE.finditer(output):
        name, value, status = match.groups()
        if status is not None:
            if current:  # a C-MOVE/C-GET-RSP, not a C-STORE-RSP
                found.append(Counts(int(status, 16), **current))
            current = {}
        else:
            current[name.lower()] = None if value == "none" else int(value)
    return found


def check_counts(responses: Sequence[Counts], total: int) -> None:
    """Each Pending accounts for all ``total`` sub-operations and progresses; the final is whole.

    The server sends a Pending after the first sub-operation, then at most
    every ``pending_interval`` seconds, so not one per instance.
    """
    assert responses, "no responses"
    *pending, final = responses
    previous = 0
    for response in pending:
        assert response.status == 0xFF00, response
        done = (response.completed or 0) + (response.failed or 0) + (response.warning or 0)
        assert done > previous, (previous, response)
        assert response.remaining == total - done, (total, response)
        previous = done
    if pending:
        first = pending[0]
        assert (first.completed or 0) + (first.failed or 0) + (first.warning or 0) == 1, first
    assert (final.completed or 0) + (final.failed or 0) + (final.warning or 0) == total, final


def set_pending_interval(server: Server, seconds: float) -> None:
    """Make the server's C-MOVE and C-GET services report progress every ``seconds``."""
    retrieve = [s for s in server.services if isinstance(s, MoveService | GetService)]
    assert len(retrieve) == 2
    for service in retrieve:
        service.pending_interval = seconds
