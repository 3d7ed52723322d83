"""What the acceptor agrees to: the association limit and its A-ASSOCIATE-AC (PS3.8 9.3.3-4)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from stellarpacs.aio.client import ClientAssociation, connect
from stellarpacs.aio.server import Server
from stellarpacs.errors import AssociationRejected
from stellarpacs.ul.pdus import AAssociateAC, ContextResult
from tests.integration.peers import (
    HOST,
    SERVER_AE,
    WAIT,
    RawPeer,
    containing,
    echoscu,
    pynetdicom_rejected,
    pynetdicom_session,
    wait_for_log,
)

IMPLEMENTATION_CLASS_UID = "1.2.826.0.1.3680043.2.914"
IMPLEMENTATION_VERSION_NAME = "StellarPACS_1.3"


async def _open(port: int) -> ClientAssociation:
    async with asyncio.timeout(WAIT):
        return await connect(HOST, port, called_ae=SERVER_AE, dimse_timeout=WAIT)


@pytest.mark.interop
async def test_eleventh_association_is_rejected_until_one_is_released(
    server: Server, server_log: pytest.LogCaptureFixture
) -> None:
    assert server.config.max_associations == 10
    held: list[ClientAssociation] = []
    try:
        for _ in range(10):
            held.append(await _open(server.port))
        statuses = await asyncio.gather(*(a.echo() for a in held))
        assert statuses == [0] * 10
        assert len(server.associations) == 10

        with pytest.raises(AssociationRejected) as caught:
            await _open(server.port)
        assert (caught.value.result, caught.value.source, caught.value.reason) == (2, 3, 2)
        await wait_for_log(server_log, containing("rejected", "result 2 source 3 reason 2"))

        outcome = await pynetdicom_rejected(server.port)
        assert outcome.rj_pdu == (2, 3, 2)
        assert outcome.rejected and not outcome.established
        assert outcome.rejection == (2, 3, 2)

        dcmtk = await echoscu(server.port)
        assert dcmtk.returncode != 0
        assert "Local Limit Exceeded" in dcmtk.stdout + dcmtk.stderr

        # The ten are still usable while others are turned away.
        assert await asyncio.gather(*(a.echo() for a in held)) == [0] * 10

        await held.pop().release()
        newcomer = await _open(server.port)
        held.append(newcomer)
        assert await newcomer.echo() == 0
    finally:
        for association in held:
            with contextlib.suppress(Exception):
                await association.release(timeout=WAIT)


async def test_ac_carries_our_limits_and_identity(server: Server) -> None:
    peer = await RawPeer.open(server.port)
    try:
        ac = await peer.associate(async_window=(5, 5))
        info = ac.user_information
        assert info.maximum_length == 16384
        assert info.implementation_class_uid == IMPLEMENTATION_CLASS_UID
        assert info.implementation_version_name == IMPLEMENTATION_VERSION_NAME
        window = info.asynchronous_operations_window
        # Absent means (1, 1); 0 would mean unlimited (PS3.7 D.3.3.3).
        assert window is None or (window.invoked, window.performed) == (1, 1)
        assert ac.called_ae_title == SERVER_AE and ac.calling_ae_title == "RAWPEER"
        [context] = ac.presentation_contexts
        assert (context.context_id, context.result) == (1, ContextResult.ACCEPTANCE)
        assert context.transfer_syntax == "1.2.840.10008.1.2"
    finally:
        await peer.close()


async def test_ac_without_window_when_none_asked(server: Server) -> None:
    peer = await RawPeer.open(server.port)
    try:
        ac = await peer.associate()
        assert isinstance(ac, AAssociateAC)
        assert ac.user_information.asynchronous_operations_window is None
    finally:
        await peer.close()


@pytest.mark.interop
async def test_pynetdicom_sees_the_same_ac(server: Server) -> None:
    outcome = await pynetdicom_session(server.port, echo=True, async_window=(5, 5))
    assert outcome.established
    assert outcome.maximum_length == 16384
    assert outcome.implementation_class_uid == IMPLEMENTATION_CLASS_UID
    assert outcome.implementation_version_name == IMPLEMENTATION_VERSION_NAME
    assert outcome.asynchronous_operations == (1, 1)
    assert outcome.echo_status == 0
