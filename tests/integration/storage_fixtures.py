"""Helpers of the end-to-end storage tests: servers, instances, a recording proxy.

* :func:`serving`: an in-process server over a fresh archive.
* :class:`ServerProcess`: ``python -m stellarpacs`` as a subprocess (for RSS and SIGKILL).
* :func:`valid_testdata_files` and :func:`synthetic_table2_files`: what we send.
* :class:`RecordingProxy`: a TCP relay that keeps every data set a peer sends, as sent
  on the wire, so a stored file can be compared with what actually arrived.

Everything is bounded in time; subprocesses are killed in ``finally`` blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import signal
import socket
import struct
import sys
import warnings
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom import dcmread, dcmwrite
from pydicom.data import get_testdata_files
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from stellarpacs.aio.client import ClientAssociation, connect
from stellarpacs.aio.scu.contexts import ProposedContext
from stellarpacs.aio.server import Server
from stellarpacs.config import Config
from stellarpacs.dimse.commands import CStoreRQ, CStoreRSP
from stellarpacs.services.registry import default_services
from stellarpacs.storage.archive import Archive
from stellarpacs.uids import TABLE2_STORAGE
from tests.integration.peers import HOST, kill

__all__ = [
    "MIB",
    "SERVER_AE",
    "WAIT",
    "RecordingProxy",
    "ServerProcess",
    "SourceFile",
    "c_store",
    "dataset_bytes",
    "dataset_offset",
    "encode_dataset",
    "files_under",
    "free_port",
    "open_store_association",
    "pixel_header",
    "rounds",
    "server_process",
    "serving",
    "sha256_of_file_dataset",
    "small_header",
    "synthetic_dataset",
    "synthetic_table2_files",
    "valid_testdata_files",
    "write_part10",
    "zero_chunks",
]

SERVER_AE = "STELLARPACS"
#: Bound for one network wait.
WAIT = 10.0


# -- PS3.10 files ------------------------------------------------------------------------------


def dataset_offset(data: bytes) -> int:
    """Where the data set starts in a PS3.10 file: after preamble, DICM and group 0002.

    Read from File Meta Information Group Length (0002,0000), which must come first.
    """
    assert data[128:132] == b"DICM", "no PS3.10 preamble"
    group, element, vr, length = struct.unpack("<HH2sH", data[132:140])
    assert (group, element, vr, length) == (2, 0, b"UL", 4), "no meta group length first"
    (group_length,) = struct.unpack("<I", data[140:144])
    return 144 + int(group_length)


def dataset_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    return data[dataset_offset(data) :]


def _walk(ds: Dataset) -> None:
    for element in ds:
        if element.VR == "SQ":
            for item in element.value:
                _walk(item)


def _truncated(ds: Dataset) -> bool:
    """Whether a top-level value is shorter than its length says (a cut file)."""
    for tag in ds.keys():  # noqa: SIM118 (iterating a Dataset converts every element)
        raw = ds.get_item(tag)
        if not isinstance(raw, RawDataElement) or raw.length == 0xFFFFFFFF:
            continue
        if raw.value is not None and len(raw.value) != raw.length:
            return True
    return False


def _is_valid_part10(path: Path, config: Config) -> bool:
    """A well-formed Part-10 file we accept: readable without a warning, meta consistent."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            ds = dcmread(path)
            if _truncated(ds):
                return False
            _walk(ds)
    except Exception:
        return False
    meta = ds.file_meta
    keys = ("FileMetaInformationGroupLength", "MediaStorageSOPClassUID", "TransferSyntaxUID")
    if ds.preamble is None or any(k not in meta for k in keys):
        return False
    if (ds.get("SOPClassUID"), ds.get("SOPInstanceUID")) != (
        meta.get("MediaStorageSOPClassUID"),
        meta.get("MediaStorageSOPInstanceUID"),
    ):
        return False
    return (
        meta.MediaStorageSOPClassUID in config.storage_sop_classes
        and meta.TransferSyntaxUID in config.transfer_syntax_preference
    )


@dataclass(frozen=True, slots=True)
class SourceFile:
    """One file to send, with the identity its file meta and header give it."""

    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    patient_id: str
    study_uid: str
    series_uid: str
    modality: str


def describe(path: Path) -> SourceFile:
    ds = dcmread(path, stop_before_pixels=True)
    return SourceFile(
        path=path,
        sop_class_uid=str(ds.file_meta.MediaStorageSOPClassUID),
        sop_instance_uid=str(ds.file_meta.MediaStorageSOPInstanceUID),
        transfer_syntax_uid=str(ds.file_meta.TransferSyntaxUID),
        patient_id=str(ds.get("PatientID", "")),
        study_uid=str(ds.get("StudyInstanceUID", "")),
        series_uid=str(ds.get("SeriesInstanceUID", "")),
        modality=str(ds.get("Modality", "")),
    )


def valid_testdata_files(config: Config | None = None) -> list[SourceFile]:
    """pydicom's test files that are valid Part-10 instances of a class and syntax we take."""
    config = config or Config()
    paths = sorted(Path(p) for p in get_testdata_files() if Path(p).is_file())
    return [describe(p) for p in paths if _is_valid_part10(p, config)]


def rounds(files: Iterable[SourceFile]) -> list[list[SourceFile]]:
    """Split ``files`` so that no SOP Instance UID repeats within a round.

    pydicom ships the same instance in several transfer syntaxes; a second copy
    would be a duplicate (kept out), so each round goes to a fresh archive.
    """
    out: list[list[SourceFile]] = []
    seen: list[set[str]] = []
    for source in files:
        for batch, uids in zip(out, seen, strict=True):
            if source.sop_instance_uid not in uids:
                batch.append(source)
                uids.add(source.sop_instance_uid)
                break
        else:
            out.append([source])
            seen.append({source.sop_instance_uid})
    return out


# -- synthetic instances of every Table 2 SOP class ----------------------------------------------

#: Modality of each Table 2 class; the classes that carry no pixel data map to (modality, False).
_TABLE2_KIND: dict[str, tuple[str, bool]] = {
    "1.2.840.10008.5.1.4.1.1.1": ("CR", True),
    "1.2.840.10008.5.1.4.1.1.2": ("CT", True),
    "1.2.840.10008.5.1.4.1.1.4": ("MR", True),
    "1.2.840.10008.5.1.4.1.1.20": ("NM", True),
    "1.2.840.10008.5.1.4.1.1.6.1": ("US", True),
    "1.2.840.10008.5.1.4.1.1.3.1": ("US", True),
    "1.2.840.10008.5.1.4.1.1.7": ("OT", True),
    "1.2.840.10008.5.1.4.1.1.481.1": ("RTIMAGE", True),
    "1.2.840.10008.5.1.4.1.1.481.2": ("RTDOSE", True),
    "1.2.840.10008.5.1.4.1.1.481.3": ("RTSTRUCT", False),
    "1.2.840.10008.5.1.4.1.1.481.4": ("RTRECORD", False),
    "1.2.840.10008.5.1.4.1.1.481.5": ("RTPLAN", False),
    "1.2.840.10008.5.1.4.1.1.12.1": ("XA", True),
    "1.2.840.10008.5.1.4.1.1.12.2": ("RF", True),
    "1.2.840.10008.5.1.4.1.1.12.3": ("XA", True),
    "1.2.840.10008.5.1.4.1.1.8": ("OT", False),
    "1.2.840.10008.5.1.4.1.1.9": ("OT", False),
    "1.2.840.10008.5.1.4.1.1.10": ("OT", False),
    "1.2.840.10008.5.1.4.1.1.11": ("OT", False),
    "1.2.840.10008.5.1.4.1.1.128": ("PT", True),
    "1.2.840.10008.5.1.4.1.1.129": ("PT", False),
    "1.2.840.10008.5.1.4.1.1.1.1": ("DX", True),
    "1.2.840.10008.5.1.4.1.1.1.1.1": ("DX", True),
    "1.2.840.10008.5.1.4.1.1.1.2": ("MG", True),
    "1.2.840.10008.5.1.4.1.1.1.2.1": ("MG", True),
    "1.2.840.10008.5.1.4.1.1.1.3": ("IO", True),
    "1.2.840.10008.5.1.4.1.1.1.3.1": ("IO", True),
    "1.2.840.10008.5.1.4.1.1.77.1.1": ("ES", True),
    "1.2.840.10008.5.1.4.1.1.77.1.2": ("GM", True),
    "1.2.840.10008.5.1.4.1.1.77.1.3": ("SM", True),
    "1.2.840.10008.5.1.4.1.1.77.1.4": ("XC", True),
}


def _add_tiny_image(ds: Dataset, index: int) -> None:
    ds.Rows, ds.Columns = 2, 2
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0
    ds.PixelData = struct.pack("<4H", index, 1, 2, 4095)


def synthetic_dataset(
    sop_class_uid: str,
    index: int,
    *,
    patient_id: str = "SYN001",
    study_uid: str | None = None,
) -> Dataset:
    """A small instance of ``sop_class_uid``: identity, a few keys, pixels where they fit."""
    modality, image = _TABLE2_KIND[sop_class_uid]
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = generate_uid()
    ds.StudyDate, ds.StudyTime = "20240229", "101500"
    ds.AccessionNumber = f"ACC{index:04d}"
    ds.Modality = modality
    ds.StudyDescription = "Table 2 synthetic"
    ds.SeriesDescription = f"class {index}"
    ds.PatientName = "Synthetic^Table^Two"
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.StudyID = "1"
    ds.SeriesNumber = index + 1
    ds.InstanceNumber = 1
    if image:
        _add_tiny_image(ds, index)
    return ds


def write_part10(ds: Dataset, path: Path, transfer_syntax: UID) -> Path:
    """``ds`` as a PS3.10 file in ``transfer_syntax`` (Explicit or Implicit VR LE)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = transfer_syntax
    ds.file_meta = meta
    ds.save_as(path, enforce_file_format=True)
    return path


def encode_dataset(ds: Dataset, transfer_syntax: str = ExplicitVRLittleEndian) -> bytes:
    """The data set bytes alone (no preamble, no meta), as a peer sends them."""
    implicit = transfer_syntax == ImplicitVRLittleEndian
    buf = io.BytesIO()
    dcmwrite(buf, ds, implicit_vr=implicit, little_endian=True, enforce_file_format=False)
    return buf.getvalue()


def synthetic_table2_files(folder: Path) -> list[SourceFile]:
    """One file per Table 2 SOP class, alternately Explicit and Implicit VR Little Endian."""
    folder.mkdir(parents=True, exist_ok=True)
    study_uid = generate_uid()
    out = []
    for index, sop_class in enumerate(TABLE2_STORAGE):
        ds = synthetic_dataset(sop_class.uid, index, study_uid=study_uid)
        syntax = ExplicitVRLittleEndian if index % 2 == 0 else ImplicitVRLittleEndian
        out.append(describe(write_part10(ds, folder / f"table2-{index:02d}.dcm", syntax)))
    return out


# -- the in-process server ---------------------------------------------------------------------


@contextlib.asynccontextmanager
async def serving(storage: Path, **overrides: Any) -> AsyncIterator[tuple[Server, Archive]]:
    """An in-process server on 127.0.0.1 (free port) over a fresh archive at ``storage``."""
    config = Config(host=HOST, port=0, storage=storage, artim_timeout=2.0, **overrides)
    services = await default_services(config)
    assert services.archive is not None
    try:
        async with Server(config, services.services) as server:
            yield server, services.archive
    finally:
        await services.close()


async def open_store_association(
    port: int,
    contexts: Iterable[ProposedContext],
    *,
    calling_ae: str = "OURSCU",
    max_pdu_length: int = 16384,
    dimse_timeout: float = WAIT,
) -> ClientAssociation:
    """Our own client, associated for storage with ``contexts``."""
    async with asyncio.timeout(WAIT):
        return await connect(
            HOST,
            port,
            called_ae=SERVER_AE,
            calling_ae=calling_ae,
            contexts=list(contexts),
            max_pdu_length=max_pdu_length,
            connect_timeout=WAIT,
            dimse_timeout=dimse_timeout,
        )


async def c_store(
    client: ClientAssociation,
    dataset: bytes,
    *,
    sop_class_uid: str,
    sop_instance_uid: str,
    context_sop_class: str | None = None,
    transfer_syntax: str | None = None,
) -> CStoreRSP:
    """One C-STORE on the context of ``context_sop_class`` (default: ``sop_class_uid``)."""
    context = client.association.context_for(context_sop_class or sop_class_uid, transfer_syntax)
    rq = CStoreRQ(
        message_id=client.association.next_message_id(),
        affected_sop_class_uid=sop_class_uid,
        affected_sop_instance_uid=sop_instance_uid,
    )
    incoming = await client.request(context.context_id, rq, dataset)
    rsp = incoming.command
    assert isinstance(rsp, CStoreRSP), rsp
    assert rsp.message_id_being_responded_to == rq.message_id
    return rsp


# -- the server as a subprocess ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    """``python -m stellarpacs`` serving ``storage`` on a free loopback port."""

    storage: Path
    log_path: Path
    extra: tuple[str, ...] = ()
    port: int = field(default_factory=free_port)
    process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def start(self, timeout: float = 30.0) -> None:
        """Start and wait (bounded) until it answers a C-ECHO."""
        argv = [sys.executable, "-m", "stellarpacs", "--host", HOST, "--port", str(self.port)]
        argv += ["--storage", str(self.storage), "--log-level", "WARNING", *self.extra]
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log
            )
        try:
            async with asyncio.timeout(timeout):
                await self._until_ready()
        except TimeoutError:
            await self.kill()
            raise AssertionError(f"server not ready in {timeout} s:\n{self.log()}") from None

    async def _until_ready(self) -> None:
        assert self.process is not None
        while True:
            if self.process.returncode is not None:
                raise AssertionError(f"server exited {self.process.returncode}:\n{self.log()}")
            try:
                client = await connect(HOST, self.port, called_ae=SERVER_AE, connect_timeout=2.0)
            except OSError:
                await asyncio.sleep(0.05)  # bounded by the caller's timeout
                continue
            async with client:
                assert await client.echo() == 0
            return

    def peak_rss_bytes(self) -> int:
        """VmHWM of the process (Linux /proc): its peak resident set size."""
        status = Path(f"/proc/{self.pid}/status").read_text()
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                value, unit = line.split()[1:3]
                assert unit == "kB"
                return int(value) * 1024
        raise AssertionError("no VmHWM in /proc status")

    async def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, then wait; killed when it does not end in time. Returns the exit status."""
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(timeout):
                    await self.process.wait()
            except TimeoutError:
                await kill(self.process)
                raise AssertionError(f"server ignored SIGTERM for {timeout} s") from None
        assert self.process.returncode is not None
        return self.process.returncode

    async def kill(self) -> None:
        """SIGKILL: no clean-up of any kind, as in a power cut of the process."""
        if self.process is not None:
            await kill(self.process)


@contextlib.asynccontextmanager
async def server_process(
    storage: Path, log_path: Path, *extra: str
) -> AsyncIterator[ServerProcess]:
    server = ServerProcess(storage, log_path, tuple(extra))
    await server.start()
    try:
        yield server
    finally:
        await server.kill()


# -- a recording TCP proxy -----------------------------------------------------------------------

_PDU_HEADER = struct.Struct(">BxI")
_PDATA_TF = 0x04
_AFFECTED_SOP_INSTANCE_UID = (0x0000, 0x1000)


def _command_uid(command: bytes) -> str:
    """Affected SOP Instance UID of an Implicit VR LE command set (PS3.7 6.3.1, E.1)."""
    offset = 0
    while offset + 8 <= len(command):
        group, element, length = struct.unpack_from("<HHI", command, offset)
        value = command[offset + 8 : offset + 8 + length]
        if (group, element) == _AFFECTED_SOP_INSTANCE_UID:
            return value.rstrip(b"\0 ").decode("utf-8", "surrogateescape")
        offset += 8 + length
    return ""


class _PDataParser:
    """Follows one direction of an association and gathers its data sets, as sent."""

    def __init__(self, recorded: dict[str, list[bytes]]) -> None:
        self._buffer = bytearray()
        self._recorded = recorded
        self._command = bytearray()
        self._dataset = bytearray()
        self._uid = ""

    def feed(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) >= _PDU_HEADER.size:
            pdu_type, length = _PDU_HEADER.unpack_from(self._buffer)
            end = _PDU_HEADER.size + length
            if len(self._buffer) < end:
                return
            if pdu_type == _PDATA_TF:
                self._items(bytes(self._buffer[_PDU_HEADER.size : end]))
            del self._buffer[:end]

    def _items(self, pdu: bytes) -> None:
        """Presentation data value items (PS3.8 9.3.5.1): length, context ID, header, data."""
        offset = 0
        while offset < len(pdu):
            (length,) = struct.unpack_from(">I", pdu, offset)
            header = pdu[offset + 5]
            self._value(header, pdu[offset + 6 : offset + 4 + length])
            offset += 4 + length

    def _value(self, header: int, data: bytes) -> None:
        is_command, is_last = bool(header & 1), bool(header & 2)
        if is_command:
            self._command += data
            if is_last:
                self._uid = _command_uid(bytes(self._command))
                self._command.clear()
            return
        self._dataset += data
        if is_last:
            self._recorded[self._uid].append(bytes(self._dataset))
            self._dataset.clear()


class RecordingProxy:
    """Relays TCP from a peer to ``target_port`` and records the data sets the peer sends."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.datasets: dict[str, list[bytes]] = defaultdict(list)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def __aenter__(self) -> RecordingProxy:
        self._server = await asyncio.start_server(self._relay, HOST, 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=WAIT)
        await self._server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(HOST, self.target_port)
        parser = _PDataParser(self.datasets)
        for args in ((reader, up_writer, parser), (up_reader, writer, None)):
            task = asyncio.create_task(self._pipe(*args))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _pipe(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, parser: _PDataParser | None
    ) -> None:
        try:
            while data := await reader.read(65536):
                if parser is not None:
                    parser.feed(data)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()


# -- large data sets made on the fly -----------------------------------------------------------

MIB = 1024 * 1024


def pixel_header(length: int) -> bytes:
    """Pixel Data (7FE0,0010) OW with ``length`` bytes, Explicit VR LE (PS3.5 7.1.2)."""
    return struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, length)


def small_header(sop_class_uid: str, sop_instance_uid: str, **keys: str) -> bytes:
    """A few attributes in Explicit VR Little Endian, data set bytes only (no meta)."""
    ds = Dataset()
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = sop_instance_uid
    ds.PatientID = keys.get("patient_id", "BIG001")
    ds.PatientName = "Large^Instance"
    ds.StudyInstanceUID = keys.get("study_uid", "1.2.826.0.1.3680043.9.7.1")
    ds.SeriesInstanceUID = keys.get("series_uid", "1.2.826.0.1.3680043.9.7.1.1")
    ds.Modality = "CT"
    ds.Rows, ds.Columns = 16384, 32768
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 0
    return encode_dataset(ds)


def zero_chunks(total: int, chunk: int = MIB) -> Iterator[bytes]:
    block = bytes(chunk)
    for start in range(0, total, chunk):
        yield block if start + chunk <= total else block[: total - start]


def sha256_of_file_dataset(path: Path, chunk: int = 4 * MIB) -> tuple[int, str]:
    """(size, SHA-256) of the data set part of a large PS3.10 file, read piece by piece."""
    with path.open("rb") as fp:
        head = fp.read(4096)
        offset = dataset_offset(head)
        fp.seek(offset)
        digest = hashlib.sha256()
        size = 0
        while block := fp.read(chunk):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


def files_under(folder: Path, suffix: str = "") -> list[Path]:
    return sorted(p for p in folder.rglob(f"*{suffix}") if p.is_file()) if folder.exists() else []
