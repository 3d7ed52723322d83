"""Verification against real peers: dcmtk echoscu, pynetdicom and our own client (PS3.4 A)."""

from __future__ import annotations

import pytest

from stellarpacs.aio.client import connect
from stellarpacs.aio.server import Server
from tests.integration.peers import (
    containing,
    echoscu,
    our_echo,
    pynetdicom_rejected,
    pynetdicom_session,
    wait_for_log,
)


@pytest.mark.interop
async def test_dcmtk_echoscu_succeeds(server: Server, server_log: pytest.LogCaptureFixture) -> None:
    result = await echoscu(server.port)
    assert result.returncode == 0, result.stderr
    await wait_for_log(server_log, containing("association opened", "ECHOSCU -> STELLARPACS"))
    await wait_for_log(server_log, containing("association ended", "released", "1 requests"))


@pytest.mark.interop
async def test_dcmtk_echoscu_with_wrong_called_ae_is_rejected(
    server: Server, server_log: pytest.LogCaptureFixture
) -> None:
    result = await echoscu(server.port, "NOT-US")
    assert result.returncode != 0
    assert "Called AE Title Not Recognized" in result.stdout + result.stderr
    record = await wait_for_log(server_log, containing("association rejected", "NOT-US"))
    assert "result 1 source 1 reason 7" in record.getMessage()
    assert await our_echo(server.port) == 0  # the rejection left the server serving


@pytest.mark.interop
async def test_pynetdicom_echo_succeeds(server: Server) -> None:
    outcome = await pynetdicom_session(server.port)
    assert outcome.established
    assert outcome.echo_status == 0x0000


@pytest.mark.interop
async def test_pynetdicom_wrong_called_ae_is_rejected(server: Server) -> None:
    outcome = await pynetdicom_rejected(server.port, "NOT-US")
    assert outcome.rj_pdu == (1, 1, 7)
    assert outcome.rejected and not outcome.established
    assert outcome.rejection == (1, 1, 7)


async def test_our_client_echo_returns_success(
    server: Server, server_log: pytest.LogCaptureFixture
) -> None:
    assert await our_echo(server.port) == 0
    await wait_for_log(server_log, containing("association ended", "released"))


async def test_several_echoes_on_one_association(server: Server) -> None:
    association = await connect("127.0.0.1", server.port, called_ae="STELLARPACS")
    async with association:
        statuses = [await association.echo() for _ in range(5)]
    assert statuses == [0] * 5
    assert not association.association.is_established
