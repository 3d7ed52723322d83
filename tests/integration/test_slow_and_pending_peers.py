"""Hostile peers against the limits of issue 12: a trickled PDU, a flood of silent sockets.

Defect 3: a peer that starts a P-DATA-TF and sends it a byte at a time is
aborted once ``pdu_timeout`` has passed since the PDU's first byte.
Defect 9: connections that never associate are bounded by
``max_pending_connections``; the oldest are closed and a real peer is served.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from stellarpacs.ul.codec import encode_pdu
from stellarpacs.ul.pdus import AAbort
from tests.integration.conftest import TEST_ARTIM, StartServer
from tests.integration.peers import (
    HOST,
    RawPeer,
    assert_still_serves,
    containing,
    echo_pdata,
    echoscu,
    wait_for_log,
)
from tests.integration.test_hostile_peers import assert_no_traceback

PDU_LIMIT = 0.5


async def _trickle(peer: RawPeer, data: bytes, every: float) -> None:
    with contextlib.suppress(OSError):  # the server hangs up on us: that is the point
        for i in range(len(data)):
            await peer.send(data[i : i + 1])
            await asyncio.sleep(every)


async def test_a_trickled_p_data_is_aborted_at_the_pdu_limit(
    start_server: StartServer, server_log: pytest.LogCaptureFixture
) -> None:
    server = await start_server(pdu_timeout=PDU_LIMIT)  # idle_timeout stays 600 s
    peer = await RawPeer.open(server.port)
    try:
        await peer.associate()
        started = time.monotonic()
        trickler = asyncio.create_task(_trickle(peer, encode_pdu(echo_pdata()[0]), 0.1))
        try:
            answer = await peer.read_pdu(timeout=PDU_LIMIT + 2.0)
            took = time.monotonic() - started
        finally:
            trickler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await trickler
        assert answer == AAbort(source=2, reason=0)
        assert PDU_LIMIT - 0.05 <= took < PDU_LIMIT + 1.0
        await peer.wait_eof(TEST_ARTIM + 3.0)
    finally:
        await peer.close()
    await wait_for_log(server_log, containing("association ended", "RAWPEER", "pdu_timeout"))
    await assert_still_serves(server.port)
    assert_no_traceback(server_log)


async def _closed(reader: asyncio.StreamReader, timeout: float) -> bool:
    """True when the server closed the connection within ``timeout`` s."""
    try:
        async with asyncio.timeout(timeout):
            return await reader.read(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


async def test_silent_sockets_cannot_keep_a_real_peer_out(
    start_server: StartServer, server_log: pytest.LogCaptureFixture
) -> None:
    limit, extra = 8, 5
    server = await start_server(max_pending_connections=limit, artim_timeout=30.0)
    silent: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        for _ in range(limit + extra):
            silent.append(await asyncio.open_connection(HOST, server.port))
            await asyncio.sleep(0.01)  # accepted in order, so "oldest" is well defined
        started = time.monotonic()
        result = await echoscu(server.port)
        assert result.returncode == 0, result.stderr
        assert time.monotonic() - started < 3.0  # at once, not after ARTIM (30 s here)
        closed = [await _closed(reader, 0.5 if i < extra + 1 else 0.1) for i, (reader, _) in
                  enumerate(silent)]  # fmt: skip
        # The first `extra` made room for the rest; one more made room for echoscu.
        assert closed[: extra + 1] == [True] * (extra + 1)
        assert closed[extra + 1 :] == [False] * (limit - 1)
        assert server.pending_dropped == extra + 1
    finally:
        for _, writer in silent:
            writer.close()
    record = await wait_for_log(server_log, containing("max_pending_connections 8"))
    assert "to make room" in record.getMessage()
    assert_no_traceback(server_log)
