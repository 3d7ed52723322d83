"""Server.close(): stop listening, let open associations finish, abort the stragglers."""

from __future__ import annotations

import asyncio
import gc
import time

import pytest

from stellarpacs.aio.client import connect
from stellarpacs.aio.server import Server
from stellarpacs.errors import AssociationAborted
from stellarpacs.ul.pdus import AAbort
from tests.integration.conftest import StartServer
from tests.integration.peers import HOST, SERVER_AE, WAIT, RawPeer, containing, wait_for_log


def _pending_server_tasks() -> list[asyncio.Task[object]]:
    """Tasks of the server still running (the archive's index writer is not the server's)."""
    return [
        t
        for t in asyncio.all_tasks()
        if not t.done() and getattr(t.get_coro(), "__qualname__", "").startswith("Server.")
    ]


async def _assert_not_listening(port: int) -> None:
    with pytest.raises(OSError):
        async with asyncio.timeout(WAIT):
            _, writer = await asyncio.open_connection(HOST, port)
        writer.close()


def _assert_no_destroyed_tasks(caplog: pytest.LogCaptureFixture) -> None:
    gc.collect()
    destroyed = [r for r in caplog.records if "Task was destroyed" in r.getMessage()]
    assert not destroyed


async def test_close_waits_for_an_open_association(
    start_server: StartServer, server_log: pytest.LogCaptureFixture
) -> None:
    server = await start_server()
    port = server.port
    client = await connect(HOST, port, called_ae=SERVER_AE, dimse_timeout=WAIT)
    closing = asyncio.create_task(server.close(timeout=10.0))
    try:
        await _assert_not_listening(port)
        assert not closing.done()
        assert await client.echo() == 0  # the open association is still served
        assert not closing.done()
        started = time.monotonic()
        await client.release(timeout=WAIT)
        async with asyncio.timeout(WAIT):
            await closing
        assert time.monotonic() - started < 2.0  # returned on the release, not the timeout
    finally:
        if not closing.done():
            closing.cancel()
    await wait_for_log(server_log, containing("association ended", "released"))
    assert not server.associations
    assert not _pending_server_tasks()
    _assert_no_destroyed_tasks(server_log)


async def test_close_aborts_what_outlives_the_timeout(
    start_server: StartServer, server_log: pytest.LogCaptureFixture
) -> None:
    server = await start_server()
    client = await connect(HOST, server.port, called_ae=SERVER_AE, dimse_timeout=WAIT)
    started = time.monotonic()
    async with asyncio.timeout(WAIT):
        await server.close(timeout=0.5)
    assert 0.4 <= time.monotonic() - started < 3.0
    with pytest.raises(AssociationAborted):
        await client.echo()
    await wait_for_log(server_log, containing("association ended", "aborted"))
    assert not server.associations
    assert not _pending_server_tasks()
    _assert_no_destroyed_tasks(server_log)


async def test_close_does_not_wait_for_a_peer_that_ignores_the_abort(
    start_server: StartServer, server_log: pytest.LogCaptureFixture
) -> None:
    # With the default 30 s ARTIM the server must not sit in Sta13 waiting for
    # this peer to close after our A-ABORT.
    server = await start_server(artim_timeout=30.0)
    peer = await RawPeer.open(server.port)
    try:
        await peer.associate()
        started = time.monotonic()
        async with asyncio.timeout(WAIT + 2):
            await server.close(timeout=0.5)
        assert time.monotonic() - started < 3.0
        abort = await peer.read_pdu()
        assert isinstance(abort, AAbort)
        await peer.wait_eof()
    finally:
        await peer.close()
    await wait_for_log(server_log, containing("association ended", "aborted"))
    assert not _pending_server_tasks()
    _assert_no_destroyed_tasks(server_log)


async def test_close_twice_is_harmless(server: Server) -> None:
    port = server.port
    await server.close(timeout=1.0)
    await server.close(timeout=1.0)
    await _assert_not_listening(port)


async def test_close_drops_connections_that_never_associated(
    start_server: StartServer,
) -> None:
    server = await start_server(artim_timeout=30.0)
    peer = await RawPeer.open(server.port)
    try:
        started = time.monotonic()
        async with asyncio.timeout(WAIT):
            await server.close(timeout=10.0)
        assert time.monotonic() - started < 2.0  # neither ARTIM nor the close timeout
        await peer.wait_eof()
    finally:
        await peer.close()
