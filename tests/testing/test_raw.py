"""The raw association against our server and dcmtk's storescp and dcmqrscp (PS3.8 9.3)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from stellarpacs.dimse.commands import CEchoRQ, CEchoRSP, CStoreRQ, CStoreRSP
from stellarpacs.testing import (
    ExpectationFailed,
    RawAssociation,
    check_abort_reason,
    check_associate_ac,
    check_associate_rj,
    check_release,
)
from stellarpacs.testing.plugin import DicomServer, RawFactory
from stellarpacs.uids import EXPLICIT_VR_LITTLE_ENDIAN
from stellarpacs.ul.pdus import (
    AAbort,
    AAssociateAC,
    AAssociateRJ,
    PDataTF,
    PresentationContextRQ,
)
from tests.integration.peers import HOST, associate_rq, echo_pdata
from tests.integration.retrieve_fixtures import dcmqrscp, storescp
from tests.storage.dicomdata import CT_IMAGE, encode, make_dataset

#: dcmtk's implementation class UID root (OFFIS), PS3.7 D.3.3.2.
DCMTK_ROOT = "1.2.276.0.7230010.3"
UNKNOWN_PDU = b"\x0a\x00\x00\x00\x00\x04abcd"  # PDU type 0x0A is not defined (PS3.8 9.3.1)


async def test_wrong_called_ae_is_rejected_1_1_7(
    dicom_server: DicomServer, raw_association: RawFactory
) -> None:
    raw = await raw_association(dicom_server.host, dicom_server.port, timeout=5)
    await raw.send(associate_rq("NOT-THE-SCP"))
    rj = await raw.expect(AAssociateRJ)
    assert (rj.result, rj.source, rj.reason) == (1, 1, 7)  # PS3.8 Table 9-21
    assert check_associate_rj(rj) == []


async def test_unknown_pdu_type_gets_a_provider_abort(
    dicom_server: DicomServer, raw_association: RawFactory
) -> None:
    raw = await raw_association(dicom_server.host, dicom_server.port, timeout=5)
    await raw.associate(associate_rq(dicom_server.ae_title))
    await raw.send(UNKNOWN_PDU)
    abort = await raw.expect(AAbort)
    assert (abort.source, abort.reason) == (2, 1)  # AA-8, unrecognized PDU (PS3.8 9.3.8)
    assert check_abort_reason(abort) == []


async def test_echo_with_chosen_message_id_in_tiny_pdvs(
    dicom_server: DicomServer, raw_association: RawFactory
) -> None:
    raw = await raw_association(dicom_server.host, dicom_server.port, timeout=5)
    rq = associate_rq(dicom_server.ae_title)
    ac = await raw.associate(rq)
    assert check_associate_ac(rq, ac) == []
    await raw.send_message(1, CEchoRQ(message_id=4242), command_sizes=5, pdvs_per_pdu=4)
    answer = await raw.expect_message()
    assert isinstance(answer.command, CEchoRSP)
    assert (answer.command.message_id_being_responded_to, answer.command.status) == (4242, 0)
    assert check_release(await raw.release()) == []


async def test_store_with_command_and_data_set_in_one_pdu(
    dicom_server: DicomServer, raw_association: RawFactory
) -> None:
    raw = await raw_association(dicom_server.host, dicom_server.port, timeout=5)
    context = PresentationContextRQ(3, CT_IMAGE, (EXPLICIT_VR_LITTLE_ENDIAN,))
    rq = replace(associate_rq(dicom_server.ae_title), presentation_contexts=(context,))
    ac = await raw.associate(rq)
    assert check_associate_ac(rq, ac) == []
    uid = "1.2.826.0.1.3680043.2.914.99.1"
    dataset = encode(make_dataset(uid), EXPLICIT_VR_LITTLE_ENDIAN)
    command = CStoreRQ(message_id=7, affected_sop_class_uid=CT_IMAGE, affected_sop_instance_uid=uid)
    await raw.send_message(3, command, dataset, dataset_sizes=[1, 7, 100], pdvs_per_pdu=3)
    answer = await raw.expect_message()
    assert isinstance(answer.command, CStoreRSP)
    assert answer.command.status == 0
    await raw.release()
    assert await dicom_server.archive.get_instance(uid) is not None


async def test_expectation_failed_says_what_was_expected_and_what_came(
    dicom_server: DicomServer, raw_association: RawFactory
) -> None:
    raw = await raw_association(dicom_server.host, dicom_server.port, timeout=5)
    await raw.send(associate_rq("NOT-THE-SCP"))
    with pytest.raises(ExpectationFailed, match=r"expected A-ASSOCIATE-AC, got AAssociateRJ\("):
        await raw.expect(AAssociateAC)


async def test_nothing_within_the_timeout(
    dicom_server: DicomServer, raw_association: RawFactory
) -> None:
    raw = await raw_association(dicom_server.host, dicom_server.port, timeout=5)
    with pytest.raises(ExpectationFailed, match=r"expected A-ABORT, got nothing within 0.2 s"):
        await raw.expect(AAbort, timeout=0.2)
    with pytest.raises(ExpectationFailed, match=r"expected the connection closed, got nothing"):
        await raw.expect_closed(timeout=0.2)


async def test_a_silent_connection_is_closed_at_artim(
    dicom_server: DicomServer, raw_association: RawFactory
) -> None:
    """The acceptor closes a connection that sends no A-ASSOCIATE-RQ (ARTIM, PS3.8 9.1.5)."""
    raw = await raw_association(dicom_server.host, dicom_server.port, timeout=10)
    await raw.expect_closed()


async def _one_shot_peer(answer: bytes) -> tuple[asyncio.Server, int]:
    """A TCP server that writes ``answer`` to whoever connects."""

    async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(answer)
        await writer.drain()
        await reader.read(100)
        writer.close()

    server = await asyncio.start_server(greet, HOST, 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (UNKNOWN_PDU, r"undecodable 0x0A .*unrecognized PDU type 0x0A"),
        (b"\x02\x00\x00\x00\x00\x03abc", r"undecodable A-ASSOCIATE-AC .*: "),
        (b"\x04\x00\xff\xff\xff\xff", r"exceeds the limit"),
    ],
)
async def test_what_does_not_decode_is_shown_with_why(answer: bytes, why: str) -> None:
    server, port = await _one_shot_peer(answer)
    async with server:
        raw = await RawAssociation.open(HOST, port, timeout=5)
        async with raw:
            with pytest.raises(ExpectationFailed, match=why):
                await raw.expect(AAssociateAC)


@pytest.fixture
async def dcmtk_storescp(tmp_path: Path) -> AsyncIterator[int]:
    async with storescp(tmp_path / "in", "STORESCP") as port:
        yield port


@pytest.mark.interop
async def test_dcmtk_storescp_accepts_any_called_ae_and_echoes(
    dcmtk_storescp: int, raw_association: RawFactory
) -> None:
    raw = await raw_association(HOST, dcmtk_storescp, timeout=5)
    rq = associate_rq("WHATEVER")  # storescp does not check the called AE title
    ac = await raw.associate(rq)
    assert check_associate_ac(rq, ac) == []
    assert (ac.user_information.implementation_class_uid or "").startswith(DCMTK_ROOT)
    await raw.send(*echo_pdata(message_id=77))
    answer = await raw.expect_message()
    assert isinstance(answer.command, CEchoRSP)
    assert answer.command.message_id_being_responded_to == 77
    assert check_release(await raw.release()) == []


@pytest.mark.interop
async def test_dcmtk_storescp_aborts_on_an_unknown_pdu(
    dcmtk_storescp: int, raw_association: RawFactory
) -> None:
    raw = await raw_association(HOST, dcmtk_storescp, timeout=5)
    await raw.associate(associate_rq("STORESCP"))
    await raw.send(UNKNOWN_PDU)
    abort = await raw.expect(AAbort)
    # What dcmtk 3.6 does: a service-user A-ABORT, where AA-8 asks for the provider source.
    assert (abort.source, abort.reason) == (0, 0)
    assert check_abort_reason(abort) == []


@pytest.mark.interop
async def test_dcmtk_dcmqrscp_rejects_a_wrong_called_ae(
    tmp_path: Path, raw_association: RawFactory
) -> None:
    async with dcmqrscp(tmp_path, {}) as port:
        raw = await raw_association(HOST, port, timeout=5)
        await raw.send(associate_rq("NOT-QRSCP"))
        rj = await raw.expect(AAssociateRJ)
        assert (rj.result, rj.source, rj.reason) == (1, 1, 7)
        assert check_associate_rj(rj) == []
        raw2 = await raw_association(HOST, port, timeout=5)
        rq = associate_rq("QRSCP")
        assert check_associate_ac(rq, await raw2.associate(rq)) == []
        await raw2.send(*echo_pdata())
        assert isinstance((await raw2.expect(PDataTF)).pdvs[0].data, bytes)
        await raw2.release()
