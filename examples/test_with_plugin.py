"""Testing a DICOM peer with the StellarPACS pytest plugin (installed with the package).

Run with ``python -m pytest examples/test_with_plugin.py``.  The fixtures come
from the ``stellarpacs`` plugin: ``dicom_server`` is an SCP in this process
(here the peer under test; point ``raw_association`` at your own device's host
and port instead), ``raw_association`` opens a connection on which the test
speaks PDUs, and ``dicom_emulator`` is an SCP whose answers carry faults.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from stellarpacs import connect
from stellarpacs.dimse.commands import CEchoRQ, CEchoRSP
from stellarpacs.errors import AssociationAborted
from stellarpacs.testing import (
    check_abort_reason,
    check_associate_ac,
    check_associate_rj,
    check_release,
)
from stellarpacs.testing.plugin import DicomServer, EmulatorFactory, RawFactory
from stellarpacs.ul.pdus import (
    AAbort,
    AAssociateRJ,
    AAssociateRQ,
    PresentationContextRQ,
    UserInformation,
)

pytestmark = pytest.mark.asyncio  # also runs where asyncio_mode is "strict"

VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"


def request(called_ae: str) -> AAssociateRQ:
    return AAssociateRQ(
        called_ae_title=called_ae,
        calling_ae_title="VENDOR-TEST",
        presentation_contexts=(PresentationContextRQ(1, VERIFICATION, (IMPLICIT_VR_LE,)),),
        user_information=UserInformation(implementation_class_uid="1.2.3.4"),
    )


async def test_echo_with_our_own_message_id(
    dicom_server: DicomServer, raw_association: RawFactory
) -> None:
    peer = await raw_association(dicom_server.host, dicom_server.port, timeout=5)
    rq = request(dicom_server.ae_title)
    ac = await peer.associate(rq)
    assert check_associate_ac(rq, ac) == []
    # The command set in PDVs of 10 bytes, three to a P-DATA-TF.
    await peer.send_message(1, CEchoRQ(message_id=999), command_sizes=10, pdvs_per_pdu=3)
    answer = await peer.expect_message()
    assert isinstance(answer.command, CEchoRSP)
    assert answer.command.message_id_being_responded_to == 999
    assert check_release(await peer.release()) == []


async def test_wrong_called_ae_title(
    dicom_server: DicomServer, raw_association: RawFactory
) -> None:
    peer = await raw_association(dicom_server.host, dicom_server.port, timeout=5)
    await peer.send(request("SOMEONE-ELSE"))
    rj = await peer.expect(AAssociateRJ)
    assert check_associate_rj(rj) == []
    assert (rj.result, rj.source, rj.reason) == (1, 1, 7)


async def test_protocol_version_zero(
    dicom_server: DicomServer, raw_association: RawFactory
) -> None:
    peer = await raw_association(dicom_server.host, dicom_server.port, timeout=5)
    await peer.send(replace(request(dicom_server.ae_title), protocol_version=0))
    rj = await peer.expect(AAssociateRJ)
    assert (rj.source, rj.reason) == (2, 2)  # protocol version not supported, PS3.8 9.3.4


async def test_unknown_pdu_type(dicom_server: DicomServer, raw_association: RawFactory) -> None:
    peer = await raw_association(dicom_server.host, dicom_server.port, timeout=5)
    await peer.associate(request(dicom_server.ae_title))
    await peer.send(b"\x0a\x00\x00\x00\x00\x00")  # raw bytes: PDU type 0x0A does not exist
    abort = await peer.expect(AAbort)
    assert check_abort_reason(abort) == []


async def test_an_scu_sees_the_emulated_abort(dicom_emulator: EmulatorFactory) -> None:
    scp = await dicom_emulator(faults=[{"when": "C-ECHO", "nth": 1, "action": "abort"}])
    async with await connect(scp.host, scp.port, called_ae=scp.ae_title) as client:
        with pytest.raises(AssociationAborted):
            await client.echo()
