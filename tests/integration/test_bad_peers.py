"""Peers that break the protocol: each is answered as PS3.8 9.2 says, logged, and survived."""

from __future__ import annotations

import asyncio
import logging
import random
import struct
import time

import pytest

from stellarpacs.aio.server import Server
from stellarpacs.errors import AbortReason, AbortSource
from stellarpacs.ul.codec import encode_pdu
from stellarpacs.ul.pdus import AAbort, AAssociateRJ, PDataTF, PresentationDataValue
from tests.integration.conftest import TEST_ARTIM, StartServer
from tests.integration.peers import (
    RawPeer,
    assert_still_serves,
    associate_rq,
    containing,
    echo_pdata,
    wait_for_log,
)

#: The server closes at once or after its ARTIM; allow for a loaded machine.
CLOSE_WITHIN = TEST_ARTIM + 3.0


async def test_oversize_pdata_is_aborted(
    server: Server, server_log: pytest.LogCaptureFixture
) -> None:
    peer = await RawPeer.open(server.port)
    try:
        await peer.associate()
        payload = bytes(20000)
        pdv = PresentationDataValue(1, is_command=True, is_last=True, data=payload)
        raw = encode_pdu(PDataTF((pdv,)))
        assert struct.unpack_from(">I", raw, 2)[0] > 16384
        await peer.send(raw)
        abort = await peer.read_pdu()
        assert isinstance(abort, AAbort)
        assert abort.source == AbortSource.SERVICE_PROVIDER
        assert abort.reason == AbortReason.INVALID_PDU_PARAMETER_VALUE
        await peer.wait_eof(CLOSE_WITHIN)
    finally:
        await peer.close()
    record = await wait_for_log(server_log, containing("association ended", "RAWPEER"))
    message = record.getMessage()
    assert "aborted" in message and "exceeds our maximum length 16384" in message
    await assert_still_serves(server.port)


_HTTP = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
_NOISE = bytes([0xA5]) + random.Random(20240624).randbytes(200)


@pytest.mark.parametrize("garbage", [_HTTP, _NOISE], ids=["http-request", "random-bytes"])
async def test_garbage_instead_of_associate_rq_is_aborted(
    server: Server, server_log: pytest.LogCaptureFixture, garbage: bytes
) -> None:
    peer = await RawPeer.open(server.port)
    try:
        await peer.send(garbage)
        abort = await peer.read_pdu()
        assert isinstance(abort, AAbort)
        assert abort.source == AbortSource.SERVICE_PROVIDER
        assert abort.reason == AbortReason.UNRECOGNIZED_PDU
        await peer.wait_eof(CLOSE_WITHIN)
    finally:
        await peer.close()
    record = await wait_for_log(server_log, containing("before association", "unrecognized PDU"))
    assert f"0x{garbage[0]:02X}" in record.getMessage()
    await assert_still_serves(server.port)


async def test_wrong_called_ae_is_rejected(
    server: Server, server_log: pytest.LogCaptureFixture
) -> None:
    peer = await RawPeer.open(server.port)
    try:
        await peer.send_pdu(associate_rq("SOMEONE-ELSE"))
        answer = await peer.read_pdu()
        assert answer == AAssociateRJ(result=1, source=1, reason=7)
    finally:
        await peer.close()
    await wait_for_log(
        server_log, containing("association rejected", "SOMEONE-ELSE", "result 1 source 1 reason 7")
    )
    await assert_still_serves(server.port)


async def test_silent_client_is_closed_after_artim(
    start_server: StartServer, server_log: pytest.LogCaptureFixture
) -> None:
    server = await start_server(artim_timeout=0.5)
    peer = await RawPeer.open(server.port)
    try:
        waited = await peer.wait_eof(timeout=5.0)
    finally:
        await peer.close()
    assert 0.4 <= waited < 4.0
    await wait_for_log(server_log, containing("no A-ASSOCIATE-RQ within 0.5 s"))
    await assert_still_serves(server.port)


async def test_peer_vanishing_mid_pdu_ends_the_association(
    server: Server, server_log: pytest.LogCaptureFixture
) -> None:
    peer = await RawPeer.open(server.port)
    try:
        await peer.associate()
        raw = encode_pdu(echo_pdata()[0])
        await peer.send(raw[: len(raw) // 2])
    finally:
        await peer.close()
    record = await wait_for_log(server_log, containing("association ended", "RAWPEER"))
    assert "aborted" in record.getMessage()
    assert "connection closed" in record.getMessage()
    assert not server.associations
    await assert_still_serves(server.port)


async def test_idle_association_is_aborted(
    start_server: StartServer, server_log: pytest.LogCaptureFixture
) -> None:
    server = await start_server(idle_timeout=0.5)
    peer = await RawPeer.open(server.port)
    try:
        await peer.associate()
        started = time.monotonic()
        abort = await peer.read_pdu(timeout=5.0)
        assert isinstance(abort, AAbort)
        assert time.monotonic() - started >= 0.4
        await peer.wait_eof(CLOSE_WITHIN)
    finally:
        await peer.close()
    await wait_for_log(server_log, containing("association ended", "idle timeout"))
    await assert_still_serves(server.port)


async def test_idle_timer_restarts_with_traffic(start_server: StartServer) -> None:
    server = await start_server(idle_timeout=1.0)
    peer = await RawPeer.open(server.port)
    try:
        await peer.associate()
        for message_id in range(1, 5):  # 4 x 0.3 s: longer than the limit, never idle
            for pdu in echo_pdata(message_id=message_id):
                await peer.send_pdu(pdu)
            answer = await peer.read_pdu()
            assert isinstance(answer, PDataTF)
            await asyncio.sleep(0.3)
        assert len(server.associations) == 1  # still open after 1.2 s of 0.3 s pauses
    finally:
        await peer.close()


async def test_pdata_on_unaccepted_context_is_aborted(
    server: Server, server_log: pytest.LogCaptureFixture
) -> None:
    peer = await RawPeer.open(server.port)
    try:
        await peer.associate()
        for pdu in echo_pdata(context_id=3):
            await peer.send_pdu(pdu)
        abort = await peer.read_pdu()
        assert isinstance(abort, AAbort)
        await peer.wait_eof(CLOSE_WITHIN)
    finally:
        await peer.close()
    not_accepted = containing("presentation context 3", "not accepted", level=logging.WARNING)
    await wait_for_log(server_log, not_accepted)
    record = await wait_for_log(server_log, containing("association ended", "RAWPEER"))
    assert "aborted" in record.getMessage()
    await assert_still_serves(server.port)
