"""Hostile sizes against the server as its own process: flat memory, others still served.

Issue 12, defects 1 and 2: a deflate bomb (1 MB that inflates to 1 GiB), a
31 MB C-FIND identifier and an N-ACTION with 100,000 references. The server
runs as ``python -m stellarpacs`` so that its peak resident set (VmHWM) can
be read; while each runs, another association's C-ECHO must be answered
within 1 s.
"""

from __future__ import annotations

import asyncio
import hashlib
import struct
import time
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import TypeVar

from stellarpacs.aio.client import ClientAssociation, connect
from stellarpacs.aio.scu.contexts import ProposedContext
from stellarpacs.dimse.commands import CFindRQ, CFindRSP, CStoreRQ, CStoreRSP, NActionRQ, NActionRSP
from stellarpacs.storage.files.layout import Layout
from stellarpacs.storage.index.instances import SQLiteIndex
from stellarpacs.uids import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    STORAGE_COMMITMENT_PUSH,
    STORAGE_COMMITMENT_PUSH_INSTANCE,
    STUDY_ROOT_QR_FIND,
    VERIFICATION,
)
from tests.deflate_bombs import CT, GIB, MIB, bomb
from tests.integration.peers import HOST
from tests.integration.storage_fixtures import (
    SERVER_AE,
    ServerProcess,
    files_under,
    free_port,
    server_process,
    sha256_of_file_dataset,
)

_T = TypeVar("_T")

RSS_LIMIT = 150 * 1000 * 1000
ECHO_LIMIT = 1.0  # seconds for another peer's C-ECHO while the hostile request runs
WAIT = 120.0  # one hostile request, end to end
CONTEXTS = (
    ProposedContext(CT, (DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,)),
    ProposedContext(STUDY_ROOT_QR_FIND, (IMPLICIT_VR_LITTLE_ENDIAN,)),
    ProposedContext(STORAGE_COMMITMENT_PUSH, (IMPLICIT_VR_LITTLE_ENDIAN,)),
    ProposedContext(VERIFICATION, (IMPLICIT_VR_LITTLE_ENDIAN,)),
)


async def hostile_client(port: int) -> ClientAssociation:
    async with asyncio.timeout(10.0):
        return await connect(
            HOST, port, called_ae=SERVER_AE, calling_ae="HOSTILE", contexts=CONTEXTS,
            connect_timeout=10.0, dimse_timeout=WAIT,
        )  # fmt: skip


async def one_echo(port: int) -> float:
    """Seconds from connecting to the C-ECHO-RSP of a fresh association (the other peer)."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(ECHO_LIMIT * 5):
            client = await connect(HOST, port, called_ae=SERVER_AE, calling_ae="BYSTANDER")
            async with client:
                assert await client.echo() == 0
                return time.monotonic() - started
    except TimeoutError:
        return time.monotonic() - started


async def while_echoing(port: int, work: Awaitable[_T]) -> tuple[_T, float]:
    """``work``'s result and the slowest C-ECHO of another peer while it ran (at least one)."""
    task = asyncio.ensure_future(work)
    slowest = 0.0
    try:
        while True:
            slowest = max(slowest, await one_echo(port))
            if task.done():
                return task.result(), slowest
            await asyncio.sleep(0.05)
    finally:
        task.cancel()


def hashed(chunks: Iterator[bytes], digest: hashlib._Hash) -> Iterator[bytes]:
    for chunk in chunks:
        digest.update(chunk)
        yield chunk


async def send_store(client: ClientAssociation, uid: str, chunks: Iterator[bytes]) -> int:
    association = client.association
    context = association.context_for(CT)
    rq = CStoreRQ(
        message_id=association.next_message_id(),
        affected_sop_class_uid=CT,
        affected_sop_instance_uid=uid,
    )
    await association.send_stream(context.context_id, rq, chunks)
    incoming = await client.response()
    assert isinstance(incoming.command, CStoreRSP)
    return incoming.command.status


def check_peak(server: ServerProcess, what: str) -> None:
    peak = server.peak_rss_bytes()
    assert peak < RSS_LIMIT, f"peak RSS {peak / 1e6:.0f} MB after {what}\n{server.log()}"


# -- defect 1: the deflate bomb ---------------------------------------------------------------


async def test_a_deflate_bomb_keeps_memory_flat_and_the_others_served(tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    async with server_process(storage, tmp_path / "server.log") as server:
        client = await hostile_client(server.port)
        async with client:
            # 1 GiB of zero pixels: a valid image, stored as received, read up to its pixels
            digest = hashlib.sha256()
            image = hashed(bomb("1.2.826.0.1.3680043.9.12.1", GIB, before_pixels=False), digest)
            status, slowest = await while_echoing(
                server.port, send_store(client, "1.2.826.0.1.3680043.9.12.1", image)
            )
            assert status == 0, server.log()
            assert slowest < ECHO_LIMIT, f"a C-ECHO took {slowest:.2f} s during the bomb"
            check_peak(server, "a 1 GiB pixel bomb")
            # 1 GiB of zeros ahead of the pixels: the header never ends, refused
            refused = bomb("1.2.826.0.1.3680043.9.12.2", GIB, before_pixels=True)
            status, slowest = await while_echoing(
                server.port, send_store(client, "1.2.826.0.1.3680043.9.12.2", refused)
            )
            assert status == 0xA702, server.log()
            assert slowest < ECHO_LIMIT, f"a C-ECHO took {slowest:.2f} s during the bomb"
            check_peak(server, "a 1 GiB bomb ahead of the pixels")
            assert await client.echo() == 0  # the association is still usable
        assert await server.stop() == 0
    async with SQLiteIndex(Layout(storage).index_path) as index:
        stored = await index.get_instance("1.2.826.0.1.3680043.9.12.1")
        assert await index.get_instance("1.2.826.0.1.3680043.9.12.2") is None
    assert stored is not None
    path = Layout(storage).absolute(stored.path)
    assert sha256_of_file_dataset(path)[1] == digest.hexdigest()  # the deflated bytes, exact
    assert path.stat().st_size < 2 * MIB
    assert len(files_under(storage / "studies", ".dcm")) == 1
    assert files_under(storage / "tmp") == []


# -- defect 2: large identifiers and N-ACTION data sets ---------------------------------------


def implicit(tag: int, value: bytes) -> bytes:
    """One Implicit VR Little Endian element (PS3.5 7.1.3), padded to even length."""
    value += b"\0" if len(value) % 2 else b""
    return struct.pack("<HHI", tag >> 16, tag & 0xFFFF, len(value)) + value


def uid_list_identifier(size: int) -> bytes:
    """A Study Root C-FIND identifier whose UID list (PS3.4 C.2.2.2.2) is about ``size`` bytes."""
    uids = b"\\".join(b"1.2.826.0.1.3680043.9.12.9%037d" % n for n in range(size // 64))
    return implicit(0x00080052, b"STUDY ") + implicit(0x00100010, b"") + implicit(0x0020000D, uids)


def commitment_request(references: int) -> bytes:
    """N-ACTION storage commitment information (PS3.4 J.3.2) with ``references`` items."""
    items = b"".join(
        implicit(
            0xFFFEE000,
            implicit(0x00081150, CT.encode())
            + implicit(0x00081155, b"1.2.826.0.1.3680043.9.12.4.%d" % n),
        )
        for n in range(references)
    )
    return implicit(0x00081195, b"1.2.826.0.1.3680043.9.12.3") + implicit(0x00081199, items)


async def send_find(client: ClientAssociation, identifier: bytes) -> int:
    context = client.association.context_for(STUDY_ROOT_QR_FIND)
    rq = CFindRQ(
        message_id=client.association.next_message_id(),
        affected_sop_class_uid=STUDY_ROOT_QR_FIND,
    )
    await client.association.send(context.context_id, rq, identifier)
    while True:  # Pending responses until the final one
        incoming = await client.response()
        assert isinstance(incoming.command, CFindRSP)
        if incoming.command.status not in (0xFF00, 0xFF01):
            return incoming.command.status


async def send_action(client: ClientAssociation, information: bytes) -> int:
    context = client.association.context_for(STORAGE_COMMITMENT_PUSH)
    rq = NActionRQ(
        message_id=client.association.next_message_id(),
        requested_sop_class_uid=STORAGE_COMMITMENT_PUSH,
        requested_sop_instance_uid=STORAGE_COMMITMENT_PUSH_INSTANCE,
        action_type_id=1,
        has_dataset=True,
    )
    incoming = await client.request(context.context_id, rq, information)
    assert isinstance(incoming.command, NActionRSP)
    return incoming.command.status


async def test_a_31_mb_identifier_is_refused_in_flat_memory_and_the_others_served(
    tmp_path: Path,
) -> None:
    identifier = uid_list_identifier(31 * 1000 * 1000)
    assert len(identifier) > 30_000_000
    async with server_process(tmp_path / "storage", tmp_path / "server.log") as server:
        client = await hostile_client(server.port)
        async with client:
            status, slowest = await while_echoing(server.port, send_find(client, identifier))
            assert status == 0xA700, server.log()
            assert slowest < ECHO_LIMIT, f"a C-ECHO took {slowest:.2f} s during the C-FIND"
            check_peak(server, "a 31 MB identifier")
            # the association is still usable: a real query is answered
            assert await send_find(client, uid_list_identifier(650)) == 0x0000
        assert await server.stop() == 0


async def test_an_n_action_of_100000_references_is_refused_in_flat_memory(
    tmp_path: Path,
) -> None:
    information = commitment_request(100_000)
    assert len(information) > 5 * MIB
    config = tmp_path / "server.toml"  # a known requester: its request is read, not refused
    config.write_text(f'[remotes.HOSTILE]\nhost = "{HOST}"\nport = {free_port()}\n')
    storage, log = tmp_path / "storage", tmp_path / "server.log"
    async with server_process(storage, log, "--config", str(config)) as server:
        client = await hostile_client(server.port)
        async with client:
            status, slowest = await while_echoing(server.port, send_action(client, information))
            assert status == 0x0213, server.log()
            assert slowest < ECHO_LIMIT, f"a C-ECHO took {slowest:.2f} s during the N-ACTION"
            check_peak(server, "an N-ACTION with 100,000 references")
            assert await client.echo() == 0  # the association is still usable
        assert await server.stop() == 0
