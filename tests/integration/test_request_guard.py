"""Requests the server answers itself (``aio.guard``), on loopback with raw command sets.

Issue 12, defect 6: a non-ASCII byte in the Affected SOP Class UID of a
C-ECHO, C-FIND, C-MOVE or C-GET crashed the handler ("cannot encode
affected_sop_class_uid"); now every service answers 0122 with the context's
SOP class, and nothing reaches the log at ERROR. Defect 2, in process: data
sets over their bound are drained and refused with each service's status,
and the association goes on.
"""

from __future__ import annotations

import logging

import pytest

from stellarpacs.aio.client import ClientAssociation, connect
from stellarpacs.aio.scu.contexts import ProposedContext
from stellarpacs.aio.server import Server
from stellarpacs.dimse.command_codec import encode_command
from stellarpacs.dimse.commands import (
    CEchoRQ,
    CFindRQ,
    CGetRQ,
    CMoveRQ,
    CStoreRQ,
    Message,
    NCreateRQ,
)
from stellarpacs.dimse.fragments import fragment_message
from stellarpacs.dimse.matching import Response
from stellarpacs.uids import (
    IMPLICIT_VR_LITTLE_ENDIAN,
    MPPS,
    STUDY_ROOT_QR_FIND,
    STUDY_ROOT_QR_GET,
    STUDY_ROOT_QR_MOVE,
    VERIFICATION,
)
from tests.integration.conftest import StartServer
from tests.integration.peers import HOST, SERVER_AE, WAIT
from tests.integration.test_hostile_limits import uid_list_identifier

CT = "1.2.840.10008.5.1.4.1.1.2"
CONTEXTS = [
    ProposedContext(uid, (IMPLICIT_VR_LITTLE_ENDIAN,))
    for uid in (VERIFICATION, STUDY_ROOT_QR_FIND, STUDY_ROOT_QR_MOVE, STUDY_ROOT_QR_GET, MPPS, CT)
]
IDENTIFIER = uid_list_identifier(650)  # a Study Root STUDY level identifier, ten UIDs


async def associate(port: int) -> ClientAssociation:
    return await connect(
        HOST, port, called_ae=SERVER_AE, calling_ae="GUARDED", contexts=CONTEXTS,
        connect_timeout=WAIT, dimse_timeout=WAIT,
    )  # fmt: skip


def with_raw_class(message: Message, placeholder: str, raw: bytes) -> bytes:
    """The command set of ``message`` with ``raw`` bytes where ``placeholder`` was."""
    command = encode_command(message)
    assert command.count(placeholder.encode()) == 1
    return command.replace(placeholder.encode(), raw)


async def send_raw(
    client: ClientAssociation, abstract_syntax: str, command: bytes, data: bytes | None
) -> Response:
    """Send a command set as bytes (and its data set); the one response."""
    association = client.association
    context = association.context_for(abstract_syntax)
    for pdu in fragment_message(context.context_id, command, data, association.peer_max_pdu):
        association.connection.send_data(pdu)
    assert association.protocol is not None
    association.protocol.pump()
    response = (await client.response()).command
    assert isinstance(response, Response)
    return response


def request_for(abstract_syntax: str, message_id: int, sop_class: str) -> Message:
    if abstract_syntax == VERIFICATION:
        return CEchoRQ(message_id=message_id, affected_sop_class_uid=sop_class)
    if abstract_syntax == STUDY_ROOT_QR_FIND:
        return CFindRQ(message_id=message_id, affected_sop_class_uid=sop_class)
    if abstract_syntax == STUDY_ROOT_QR_MOVE:
        return CMoveRQ(
            message_id=message_id, affected_sop_class_uid=sop_class, move_destination="X"
        )
    if abstract_syntax == STUDY_ROOT_QR_GET:
        return CGetRQ(message_id=message_id, affected_sop_class_uid=sop_class)
    return CStoreRQ(
        message_id=message_id, affected_sop_class_uid=sop_class, affected_sop_instance_uid="1.2.3"
    )


SERVICES = [VERIFICATION, STUDY_ROOT_QR_FIND, STUDY_ROOT_QR_MOVE, STUDY_ROOT_QR_GET, CT]


@pytest.mark.parametrize("abstract_syntax", SERVICES, ids=["echo", "find", "move", "get", "store"])
@pytest.mark.parametrize("byte", [b"\xe9", b"\xff", b"\x80"])
async def test_a_non_ascii_affected_sop_class_uid_is_answered_0122(
    server: Server, server_log: pytest.LogCaptureFixture, abstract_syntax: str, byte: bytes
) -> None:
    raw = abstract_syntax.encode()[:-1] + byte
    placeholder = "9" * len(raw)
    async with await associate(server.port) as client:
        for message_id in (1, 2):  # twice: the association goes on after the first
            request = request_for(abstract_syntax, message_id, placeholder)
            data = None if abstract_syntax == VERIFICATION else IDENTIFIER
            rsp = await send_raw(
                client, abstract_syntax, with_raw_class(request, placeholder, raw), data
            )
            assert type(rsp).__name__ == type(request).__name__.replace("RQ", "RSP")
            assert rsp.status == 0x0122
            assert rsp.affected_sop_class_uid == abstract_syntax
            assert rsp.message_id_being_responded_to == message_id
        assert await client.echo() == 0
    assert not [r for r in server_log.records if r.levelno >= logging.ERROR]
    assert not [r for r in server_log.records if r.exc_info]
    assert "Affected SOP Class UID is not ASCII" in server_log.text


@pytest.mark.parametrize(
    ("abstract_syntax", "status"),
    [(STUDY_ROOT_QR_FIND, 0xA700), (STUDY_ROOT_QR_MOVE, 0xA701), (STUDY_ROOT_QR_GET, 0xA701)],
    ids=["find", "move", "get"],
)
async def test_an_identifier_over_the_limit_is_drained_and_refused(
    start_server: StartServer,
    server_log: pytest.LogCaptureFixture,
    abstract_syntax: str,
    status: int,
) -> None:
    server = await start_server(max_identifier_size=4096)
    async with await associate(server.port) as client:
        request = request_for(abstract_syntax, 7, abstract_syntax)
        rsp = await send_raw(
            client, abstract_syntax, encode_command(request), uid_list_identifier(64 * 1024)
        )
        assert rsp.status == status
        assert rsp.affected_sop_class_uid == abstract_syntax
        assert rsp.message_id_being_responded_to == 7
        again = request_for(STUDY_ROOT_QR_FIND, 8, STUDY_ROOT_QR_FIND)
        rsp = await send_raw(client, STUDY_ROOT_QR_FIND, encode_command(again), IDENTIFIER)
        assert rsp.status == 0x0000  # the association is still usable
    assert "over the limit of 4096" in server_log.text
    assert not [r for r in server_log.records if r.levelno >= logging.ERROR]


async def test_an_n_create_over_the_limit_is_refused_0213(
    start_server: StartServer, server_log: pytest.LogCaptureFixture
) -> None:
    server = await start_server(max_nservice_dataset_size=2048)
    async with await associate(server.port) as client:
        request = NCreateRQ(message_id=3, affected_sop_class_uid=MPPS, has_dataset=True)
        rsp = await send_raw(client, MPPS, encode_command(request), bytes(8192))
        assert rsp.status == 0x0213
        assert rsp.affected_sop_class_uid == MPPS
        assert await client.echo() == 0
    assert not [r for r in server_log.records if r.levelno >= logging.ERROR]


async def test_a_large_identifier_within_the_limit_is_answered(server: Server) -> None:
    """200 KB, over the size parsed on the event loop: parsed in a worker thread."""
    async with await associate(server.port) as client:
        request = request_for(STUDY_ROOT_QR_FIND, 5, STUDY_ROOT_QR_FIND)
        rsp = await send_raw(
            client, STUDY_ROOT_QR_FIND, encode_command(request), uid_list_identifier(200_000)
        )
        assert rsp.status == 0x0000
