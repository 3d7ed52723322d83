"""The server as its own process: a 1 GiB instance in flat memory, SIGKILL mid-transfer,
and the storage tools beside a running server.

``python -m stellarpacs`` runs as a subprocess so that its peak resident set
(VmHWM) can be read and so that it can be killed without any clean-up.
Data sets are made on the fly: a small Explicit VR LE header, then a Pixel
Data element header and zero bytes in 1 MiB chunks, so the test process does
not hold them either.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from stellarpacs.aio.client import ClientAssociation
from stellarpacs.aio.scu.contexts import ProposedContext
from stellarpacs.dimse.commands import CStoreRQ, CStoreRSP
from stellarpacs.errors import AssociationAborted
from stellarpacs.storage.files.layout import Layout
from stellarpacs.storage.index.instances import SQLiteIndex
from stellarpacs.storage.records import InstanceRecord
from stellarpacs.uids import EXPLICIT_VR_LITTLE_ENDIAN
from tests.integration.peers import run_process
from tests.integration.storage_fixtures import (
    MIB,
    ServerProcess,
    c_store,
    dataset_bytes,
    dataset_offset,
    encode_dataset,
    files_under,
    open_store_association,
    pixel_header,
    server_process,
    sha256_of_file_dataset,
    small_header,
    synthetic_dataset,
    zero_chunks,
)

CT = "1.2.840.10008.5.1.4.1.1.2"
CONTEXTS = (ProposedContext(CT, (EXPLICIT_VR_LITTLE_ENDIAN,)),)
GIB = 1024 * MIB
#: Peak resident set allowed to the server while it stores 1 GiB.
RSS_LIMIT = 150 * 1000 * 1000
#: Waiting for a response that follows an fsync of a large file.
LARGE_WAIT = 120.0


def large_dataset(uid: str, pixel_bytes: int) -> tuple[bytes, Callable[[], Iterator[bytes]]]:
    """(header bytes, chunk source) of a data set with ``pixel_bytes`` of zero pixels."""
    head = small_header(CT, uid) + pixel_header(pixel_bytes)

    def chunks() -> Iterator[bytes]:
        yield head
        yield from zero_chunks(pixel_bytes)

    return head, chunks


def digest_of(chunks: Iterator[bytes]) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


async def send_large(
    client: ClientAssociation, uid: str, chunks: Iterator[bytes] | AsyncIterator[bytes]
) -> CStoreRSP:
    association = client.association
    context = association.context_for(CT)
    rq = CStoreRQ(
        message_id=association.next_message_id(),
        affected_sop_class_uid=CT,
        affected_sop_instance_uid=uid,
    )
    async with asyncio.timeout(LARGE_WAIT):
        await association.send_stream(context.context_id, rq, chunks)
    incoming = await client.response()
    assert isinstance(incoming.command, CStoreRSP)
    return incoming.command


async def indexed(storage: Path, uid: str) -> InstanceRecord | None:
    """The index row of ``uid``, read from this process (WAL: the server may write meanwhile)."""
    async with SQLiteIndex(Layout(storage).index_path) as index:
        return await index.get_instance(uid)


def require_free_space(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if free < needed:
        pytest.fail(
            f"{folder} has {free / GIB:.1f} GiB free; this test needs {needed / GIB:.0f} GiB",
            pytrace=False,
        )


# -- 1 GiB in flat memory ------------------------------------------------------------------------


async def test_a_1_gib_instance_is_stored_with_peak_rss_under_150_mb(tmp_path: Path) -> None:
    require_free_space(tmp_path, 3 * GIB)
    storage = tmp_path / "storage"
    uid = "1.2.826.0.1.3680043.9.7.1.1.1"
    head, chunks = large_dataset(uid, GIB)
    try:
        async with server_process(storage, tmp_path / "server.log") as server:
            client = await open_store_association(server.port, CONTEXTS, dimse_timeout=LARGE_WAIT)
            async with client:
                rsp = await send_large(client, uid, chunks())
            assert rsp.status == 0, server.log()
            peak = server.peak_rss_bytes()
            assert peak < RSS_LIMIT, f"peak RSS {peak / 1e6:.0f} MB while storing 1 GiB"
            record = await indexed(storage, uid)
            assert record is not None
            path = Layout(storage).absolute(record.path)
            size = path.stat().st_size
            assert record.size == size
            with path.open("rb") as fp:
                meta_end = dataset_offset(fp.read(4096))
                fp.seek(meta_end)
                assert fp.read(len(head)) == head
                fp.seek(size - MIB)
                assert fp.read() == bytes(MIB)
            assert size == meta_end + len(head) + GIB
            assert await server.stop() == 0
    finally:
        shutil.rmtree(storage, ignore_errors=True)  # do not leave 1 GiB in pytest's tmp


# -- SIGKILL mid-transfer ------------------------------------------------------------------------


async def _kill_halfway(
    chunks: Iterator[bytes], server: ServerProcess, storage: Path, after: int
) -> AsyncIterator[bytes]:
    """Pass ``chunks`` on; once ``after`` bytes went out and the server's temporary file
    holds a good part of them, SIGKILL the server."""
    sent = 0
    for chunk in chunks:
        yield chunk
        sent += len(chunk)
        if sent >= after:
            await _until_partial(storage / "tmp", after // 2)
            await server.kill()
            return


async def _until_partial(tmp: Path, size: int, timeout: float = 30.0) -> None:
    """Wait (bounded) until one temporary file under ``tmp`` has ``size`` bytes."""
    async with asyncio.timeout(timeout):
        while not any(p.stat().st_size >= size for p in files_under(tmp)):
            await asyncio.sleep(0.01)


async def test_sigkill_mid_transfer_leaves_nothing_and_a_resend_succeeds(
    tmp_path: Path,
) -> None:
    require_free_space(tmp_path, 1 * GIB)
    storage = tmp_path / "storage"
    uid = "1.2.826.0.1.3680043.9.7.2.1.1"
    total = 300 * MIB
    _, chunks = large_dataset(uid, total)
    try:
        await _crash_then_resend(storage, tmp_path, uid, total, chunks)
    finally:
        shutil.rmtree(storage, ignore_errors=True)


async def _crash_then_resend(
    storage: Path, tmp_path: Path, uid: str, total: int, chunks: Callable[[], Iterator[bytes]]
) -> None:
    async with server_process(storage, tmp_path / "first.log") as server:
        client = await open_store_association(server.port, CONTEXTS, dimse_timeout=LARGE_WAIT)
        with pytest.raises((AssociationAborted, ConnectionError)):
            await send_large(client, uid, _kill_halfway(chunks(), server, storage, total // 2))
        client.abort()
        assert server.process is not None and server.process.returncode == -9
    partial = files_under(storage / "tmp")
    assert len(partial) == 1 and partial[0].stat().st_size < total  # the crash left it
    assert files_under(storage / "studies", ".dcm") == []

    async with server_process(storage, tmp_path / "second.log") as server:
        assert files_under(storage / "tmp") == [], "start-up kept a partial transfer"
        assert "removed 1 unfinished transfers" in server.log()
        assert await indexed(storage, uid) is None
        assert files_under(storage / "studies", ".dcm") == []
        client = await open_store_association(server.port, CONTEXTS, dimse_timeout=LARGE_WAIT)
        async with client:
            rsp = await send_large(client, uid, chunks())
        assert rsp.status == 0, server.log()
        record = await indexed(storage, uid)
        assert record is not None
        path = Layout(storage).absolute(record.path)
        stored = await asyncio.to_thread(sha256_of_file_dataset, path)
        assert stored == await asyncio.to_thread(digest_of, chunks())
        assert record.size == path.stat().st_size
        assert files_under(storage / "studies", ".dcm") == [path]
        assert files_under(storage / "tmp") == []
        assert await server.stop() == 0


# -- storage tools beside a running server -------------------------------------------------------


async def storage_tool(*args: str) -> tuple[int, str, str]:
    result = await run_process(sys.executable, "-m", "stellarpacs", "storage", *args, timeout=60)
    return result.returncode, result.stdout, result.stderr


async def test_storage_tools_run_while_the_server_serves(tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    async with server_process(storage, tmp_path / "server.log") as server:
        sent = []
        client = await open_store_association(server.port, CONTEXTS, calling_ae="TOOLSCU")
        async with client:
            for n in range(4):
                ds = synthetic_dataset(CT, n, patient_id=f"TOOL{n % 2}")
                data = encode_dataset(ds)
                rsp = await c_store(
                    client, data, sop_class_uid=CT, sop_instance_uid=ds.SOPInstanceUID
                )
                assert rsp.status == 0
                sent.append((str(ds.SOPInstanceUID), data))
            # the association stays open: the server is busy with it while the tools run
            code, out, err = await storage_tool("stats", "--json", "--storage", str(storage))
            assert code == 0, err
            stats = json.loads(out)
            assert (stats["patients"], stats["studies"], stats["instances"]) == (2, 4, 4)
            code, out, err = await storage_tool("verify", "--storage", str(storage))
            assert (code, out) == (0, "checked 4 index rows and 4 files: 0 problems\n"), err
            code, out, err = await storage_tool("list", "--json", "--storage", str(storage))
            assert code == 0, err
            assert sorted(s["patient_id"] for s in json.loads(out)) == [
                "TOOL0",
                "TOOL0",
                "TOOL1",
                "TOOL1",
            ]
        for uid, data in sent:
            record = await indexed(storage, uid)
            assert record is not None and record.calling_ae == "TOOLSCU"
            assert dataset_bytes(Layout(storage).absolute(record.path)) == data
        assert await server.stop() == 0
