"""C-STORE from real peers: dcmtk's storescu and pynetdicom, every file stored byte-exact.

What is sent: every valid Part-10 file that pydicom ships in its test data
(of a storage SOP class and a transfer syntax we accept) plus one synthetic
instance of every SOP class of the conformance statement's Table 2. Each peer
proposes each file's own transfer syntax, one presentation context per
(SOP class, transfer syntax), so nothing is converted on the way.

pydicom ships some instances several times (one per transfer syntax); a
second copy of a SOP Instance UID would be a duplicate, so the files go in
rounds, each to a fresh archive.

storescu re-encodes a data set as it sends it (dcmtk writes what it parsed:
group lengths recomputed, sequence lengths made explicit), so for storescu the
stored bytes are compared with what it actually put on the wire, captured by
a recording proxy. pynetdicom (with chunked sending) sends the file's bytes
untouched, so there the stored bytes are compared with the file itself.
"""

from __future__ import annotations

import asyncio
import re
import socket
from pathlib import Path
from typing import Any

import pytest
from pydicom.filereader import read_file_meta_info

from stellarpacs.storage.archive import Archive
from stellarpacs.uids import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from tests.integration.peers import HOST, dcmtk, dcmtk_env, run_process
from tests.integration.storage_fixtures import (
    SERVER_AE,
    WAIT,
    RecordingProxy,
    SourceFile,
    dataset_bytes,
    rounds,
    serving,
    synthetic_table2_files,
    valid_testdata_files,
)

pytestmark = pytest.mark.interop

STORESCU_AE = "DCMTKSCU"
PYNETDICOM_AE = "PYNETDICOMSCU"


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> list[SourceFile]:
    synthetic = synthetic_table2_files(tmp_path_factory.mktemp("table2"))
    files = valid_testdata_files() + synthetic
    assert len(files) >= 150, "pydicom's test data shrank: the test would prove little"
    return files


async def check_stored(
    archive: Archive, source: SourceFile, calling_ae: str, expected_dataset: bytes
) -> None:
    """The stored file is ``expected_dataset`` behind a correct meta, and it is indexed."""
    uid = source.sop_instance_uid
    record = await archive.index.get_instance(uid)
    assert record is not None, f"{source.path.name}: no index row"
    path = archive.layout.absolute(record.path)
    assert path.resolve().is_relative_to(archive.layout.root.resolve())
    assert dataset_bytes(path) == expected_dataset, f"{source.path.name}: bytes differ"
    meta = read_file_meta_info(path)
    assert meta.MediaStorageSOPClassUID == source.sop_class_uid
    assert meta.MediaStorageSOPInstanceUID == uid
    assert meta.TransferSyntaxUID == source.transfer_syntax_uid
    assert meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
    assert meta.ImplementationVersionName == IMPLEMENTATION_VERSION_NAME
    assert str(meta.SourceApplicationEntityTitle).strip() == calling_ae
    assert (record.sop_class_uid, record.transfer_syntax_uid) == (
        source.sop_class_uid,
        source.transfer_syntax_uid,
    )
    assert (record.patient_id, record.study_instance_uid, record.series_instance_uid) == (
        source.patient_id,
        source.study_uid,
        source.series_uid,
    )
    assert record.calling_ae == calling_ae
    assert record.size == path.stat().st_size
    header = await archive.index.get_header_json(uid)
    assert header is not None
    if source.modality:
        assert header["00080060"]["Value"] == [source.modality]


# -- dcmtk storescu -----------------------------------------------------------------------------


def storescu_profile(batch: list[SourceFile], path: Path) -> Path:
    """A storescu association profile (-xf): one context per (SOP class, transfer syntax).

    dcmtk's own options propose a fixed list of syntaxes; a profile proposes
    exactly each file's syntax, including those without a ``--propose-*`` flag.
    """
    syntaxes = sorted({f.transfer_syntax_uid for f in batch})
    pairs = sorted({(f.sop_class_uid, f.transfer_syntax_uid) for f in batch})
    assert len(pairs) <= 128, "one association proposes at most 128 contexts"
    lines = ["[[TransferSyntaxes]]"]
    for n, syntax in enumerate(syntaxes):
        lines += [f"[TS{n}]", f"TransferSyntax1 = {syntax}"]
    lines += ["[[PresentationContexts]]", "[Contexts]"]
    for n, (sop_class, syntax) in enumerate(pairs, start=1):
        lines.append(f"PresentationContext{n} = {sop_class}\\TS{syntaxes.index(syntax)}")
    lines += ["[[Profiles]]", "[Storage]", "PresentationContexts = Contexts"]
    path.write_text("\n".join(lines) + "\n")
    return path


async def storescu(port: int, batch: list[SourceFile], profile: Path) -> str:
    argv = [dcmtk("storescu"), "-v", "-xf", str(profile), "Storage"]
    argv += ["-aet", STORESCU_AE, "-aec", SERVER_AE, "-to", "10", "-ta", "10", "-td", "30"]
    argv += [HOST, str(port), *(str(f.path) for f in batch)]
    result = await run_process(*argv, timeout=120.0, env=dcmtk_env())
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    return output


async def test_storescu_stores_every_file_byte_exact(
    tmp_path: Path, sources: list[SourceFile]
) -> None:
    sent = same_as_file = 0
    for n, batch in enumerate(rounds(sources)):
        profile = storescu_profile(batch, tmp_path / f"round{n}.cfg")
        async with serving(tmp_path / f"round{n}") as (server, archive):
            async with RecordingProxy(server.port) as proxy:
                output = await storescu(proxy.port, batch, profile)
            responses = re.findall(r"Received Store Response \((\w+)\)", output)
            assert responses == ["Success"] * len(batch), output[-4000:]
            assert all(_same_syntax(line) for line in _conversions(output))
            assert (await archive.index.stats())["instances"] == len(batch)
            for source in batch:
                wire = proxy.datasets[source.sop_instance_uid]
                assert len(wire) == 1, f"{source.path.name} sent {len(wire)} times"
                await check_stored(archive, source, STORESCU_AE, wire[0])
                unchanged = wire[0] == dataset_bytes(source.path)
                # our synthetic instances are plain enough for dcmtk to send them untouched
                assert unchanged or not source.path.name.startswith("table2-")
                same_as_file += unchanged
            sent += len(batch)
    assert sent == len(sources)
    # dcmtk re-encodes only what it must; most files go out unchanged.
    assert same_as_file >= len(sources) // 2, same_as_file


def _conversions(output: str) -> list[str]:
    return [line for line in output.splitlines() if "Converting transfer syntax" in line]


def _same_syntax(line: str) -> bool:
    """storescu logs 'Converting transfer syntax: X -> X' even when nothing is converted."""
    source, _, target = line.partition("Converting transfer syntax: ")[2].partition(" -> ")
    return source.strip() == target.strip()


# -- pynetdicom -------------------------------------------------------------------------------


def _no_delay(event: Any) -> None:
    """TCP_NODELAY on pynetdicom's socket: its command and data set PDUs go in separate
    small writes, which Nagle would hold for the server's delayed ACK (~40 ms each)."""
    sock = event.assoc.dul.socket.socket
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _pynetdicom_store(port: int, batch: list[SourceFile]) -> list[int]:
    """Blocking: one association, a C-STORE of each file as its raw bytes; the statuses."""
    from pynetdicom import AE, _config, evt

    ae = AE(ae_title=PYNETDICOM_AE)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = WAIT
    for sop_class, syntax in sorted({(f.sop_class_uid, f.transfer_syntax_uid) for f in batch}):
        ae.add_requested_context(sop_class, [syntax])
    chunked = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True  # send the file's bytes, undecoded
    assoc = ae.associate(
        HOST, port, ae_title=SERVER_AE, evt_handlers=[(evt.EVT_CONN_OPEN, _no_delay)]
    )
    statuses: list[int] = []
    try:
        assert assoc.is_established, "pynetdicom could not associate"
        for source in batch:
            status = assoc.send_c_store(source.path)
            statuses.append(int(status.Status) if "Status" in status else -1)
        assoc.release()
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = chunked
        if assoc.is_alive():
            assoc.abort()
        ae.shutdown()
    return statuses


async def test_pynetdicom_stores_every_file_byte_exact(
    tmp_path: Path, sources: list[SourceFile]
) -> None:
    for n, batch in enumerate(rounds(sources)):
        async with serving(tmp_path / f"round{n}") as (server, archive):
            async with asyncio.timeout(120.0):
                statuses = await asyncio.to_thread(_pynetdicom_store, server.port, batch)
            assert statuses == [0] * len(batch)
            assert (await archive.index.stats())["instances"] == len(batch)
            for source in batch:
                await check_stored(archive, source, PYNETDICOM_AE, dataset_bytes(source.path))
