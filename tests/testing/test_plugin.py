"""The plugin's fixtures as a vendor's test uses them: server, emulator faults, raw association."""

from __future__ import annotations

import time

import pytest

from stellarpacs import ProposedContext, connect
from stellarpacs.dimse.commands import CStoreRQ, CStoreRSP
from stellarpacs.errors import AssociationAborted
from stellarpacs.testing.faults import Fault
from stellarpacs.testing.plugin import DicomServer, EmulatorFactory
from stellarpacs.uids import EXPLICIT_VR_LITTLE_ENDIAN
from tests.storage.dicomdata import CT_IMAGE, encode, make_dataset

UID = "1.2.826.0.1.3680043.2.914.98.{}"


async def store_three(server: DicomServer) -> list[int]:
    """Three C-STORE on one association; their statuses."""
    context = ProposedContext(CT_IMAGE, (EXPLICIT_VR_LITTLE_ENDIAN,))
    statuses = []
    async with await connect(
        server.host, server.port, called_ae=server.ae_title, contexts=[context], dimse_timeout=10
    ) as client:
        context_id = client.association.context_for(CT_IMAGE).context_id
        for n in range(1, 4):
            uid = UID.format(n)
            rq = CStoreRQ(
                message_id=n, affected_sop_class_uid=CT_IMAGE, affected_sop_instance_uid=uid
            )
            data = encode(make_dataset(uid), EXPLICIT_VR_LITTLE_ENDIAN)
            answer = (await client.request(context_id, rq, data)).command
            assert isinstance(answer, CStoreRSP)
            statuses.append(answer.status)
    return statuses


async def test_dicom_server_stores(dicom_server: DicomServer) -> None:
    assert await store_three(dicom_server) == [0, 0, 0]
    for n in range(1, 4):
        assert await dicom_server.archive.get_instance(UID.format(n)) is not None


async def test_status_on_the_second_store_is_not_stored(dicom_emulator: EmulatorFactory) -> None:
    server = await dicom_emulator(
        faults=[{"when": "C-STORE", "nth": 2, "action": "status", "status": 0xA700}]
    )
    assert await store_three(server) == [0, 0xA700, 0]
    assert await server.archive.get_instance(UID.format(2)) is None
    assert await server.archive.get_instance(UID.format(3)) is not None
    assert server.fired == [("C-STORE", 2, "status")]


async def test_delay_and_abort_on_echo(dicom_emulator: EmulatorFactory) -> None:
    server = await dicom_emulator(
        faults=[Fault("C-ECHO", "delay", nth=1, seconds=0.5), Fault("C-ECHO", "abort", nth=2)]
    )
    async with await connect(server.host, server.port, called_ae=server.ae_title) as client:
        started = time.monotonic()
        assert await client.echo() == 0
        assert 0.45 <= time.monotonic() - started <= 0.75
        with pytest.raises(AssociationAborted):
            await client.echo()
    assert server.fired == [("C-ECHO", 1, "delay"), ("C-ECHO", 2, "abort")]


@pytest.mark.parametrize(
    "bad",
    [
        {"when": "C-FOO", "action": "status"},
        {"when": "C-ECHO", "action": "explode"},
        {"when": "C-ECHO", "action": "status", "status": 0x10000},
    ],
)
async def test_bad_faults_are_refused(
    dicom_emulator: EmulatorFactory, bad: dict[str, object]
) -> None:
    with pytest.raises(ValueError, match="fault"):
        await dicom_emulator(faults=[bad])
