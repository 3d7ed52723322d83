"""Hostile peers on loopback (issue 12): each is answered at once, cleanly, with no traceback."""

from __future__ import annotations

import logging
import time
from dataclasses import replace

import pytest

from stellarpacs.aio.server import Server
from stellarpacs.errors import AbortReason
from stellarpacs.ul.codec import encode_pdu
from stellarpacs.ul.pdus import PDU, AAbort, AAssociateAC, AAssociateRJ, AReleaseRP, AReleaseRQ
from tests.integration.conftest import TEST_ARTIM
from tests.integration.peers import (
    RawPeer,
    assert_still_serves,
    associate_rq,
    containing,
    wait_for_log,
)
from tests.ul.test_unencodable_answer import role_selections

CLOSE_WITHIN = TEST_ARTIM + 3.0
#: Role selection items that fit the RQ's user information item but not our AC's.
ROLES = role_selections()


def assert_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing at ERROR or above, and no record carrying an exception, in any logger."""
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, "\n".join(f"{r.levelname} {r.name}: {r.getMessage()}" for r in bad)


async def answers(peer: RawPeer, count: int) -> list[PDU]:
    return [await peer.read_pdu() for _ in range(count)]


# --- defect 4: pipelined PDUs -------------------------------------------------------------


async def test_release_pipelined_behind_the_request(
    server: Server, server_log: pytest.LogCaptureFixture
) -> None:
    peer = await RawPeer.open(server.port)
    try:
        await peer.send(encode_pdu(associate_rq()) + encode_pdu(AReleaseRQ()))
        ac, rp = await answers(peer, 2)
        assert isinstance(ac, AAssociateAC) and rp == AReleaseRP()
        await peer.wait_eof(CLOSE_WITHIN)
    finally:
        await peer.close()
    await wait_for_log(server_log, containing("association ended", "RAWPEER", "released"))
    await assert_still_serves(server.port)
    assert_no_traceback(server_log)


async def test_abort_pipelined_behind_the_request(
    server: Server, server_log: pytest.LogCaptureFixture
) -> None:
    peer = await RawPeer.open(server.port)
    try:
        await peer.send(encode_pdu(associate_rq()) + encode_pdu(AAbort(0, 0)))
        assert await peer.reader.read() == b""  # AA-3: no answer, the connection closed
    finally:
        await peer.close()
    await wait_for_log(server_log, containing("RAWPEER", "A-ABORT before our answer"))
    assert not server.associations
    await assert_still_serves(server.port)
    assert_no_traceback(server_log)


async def test_second_request_pipelined_behind_the_first(
    server: Server, server_log: pytest.LogCaptureFixture
) -> None:
    peer = await RawPeer.open(server.port)
    try:
        await peer.send(encode_pdu(associate_rq()) * 2)
        ac, abort = await answers(peer, 2)
        assert isinstance(ac, AAssociateAC)
        assert abort == AAbort(source=2, reason=2)  # AA-8 in Sta6: unexpected PDU
        await peer.wait_eof(CLOSE_WITHIN)
    finally:
        await peer.close()
    await wait_for_log(server_log, containing("association ended", "RAWPEER", "aborted"))
    await assert_still_serves(server.port)
    assert_no_traceback(server_log)


# --- defect 5: an A-ASSOCIATE-AC that cannot be encoded -------------------------------------


async def test_an_answer_too_large_to_encode_is_a_reject(
    server: Server, server_log: pytest.LogCaptureFixture
) -> None:
    rq = associate_rq()
    rq = replace(rq, user_information=replace(rq.user_information, role_selections=ROLES))
    peer = await RawPeer.open(server.port)
    try:
        await peer.send_pdu(rq)
        assert await peer.read_pdu() == AAssociateRJ(result=1, source=1, reason=1)
        await peer.wait_eof(CLOSE_WITHIN)
    finally:
        await peer.close()
    await wait_for_log(server_log, containing("association rejected", "RAWPEER", "reason 1"))
    await assert_still_serves(server.port)
    assert_no_traceback(server_log)


# --- defect 8: a Maximum Length that cannot carry a PDV --------------------------------------


async def test_a_maximum_length_of_3_is_aborted_at_once(
    server: Server, server_log: pytest.LogCaptureFixture
) -> None:
    peer = await RawPeer.open(server.port)
    try:
        started = time.monotonic()
        await peer.send_pdu(associate_rq(max_pdu_length=3))
        abort = await peer.read_pdu(timeout=1.0)
        assert time.monotonic() - started < 1.0
        assert abort == AAbort(source=2, reason=AbortReason.INVALID_PDU_PARAMETER_VALUE)
        await peer.wait_eof(CLOSE_WITHIN)
    finally:
        await peer.close()
    record = await wait_for_log(
        server_log, containing("before association", "Maximum Length 3", level=logging.WARNING)
    )
    assert "A-ABORT sent" in record.getMessage()
    assert not server.associations
    await assert_still_serves(server.port)
    assert_no_traceback(server_log)


# --- defect 7: log injection ---------------------------------------------------------------

FORGER = "EVIL\r\nFAKE\x1b[31m"
FORGER_SHOWN = "EVIL\\r\\nFAKE\\x1b[31m"


def assert_single_printable_lines(caplog: pytest.LogCaptureFixture) -> None:
    for record in caplog.records:
        message = record.getMessage()
        assert all(" " <= c <= "~" for c in message), repr(message)


async def test_control_characters_in_the_calling_ae_title_are_escaped(
    server: Server, server_log: pytest.LogCaptureFixture
) -> None:
    peer = await RawPeer.open(server.port)
    try:
        await peer.send_pdu(replace(associate_rq(), calling_ae_title=FORGER))
        assert isinstance(await peer.read_pdu(), AAssociateAC)
        await peer.send_pdu(AReleaseRQ())
        assert await peer.read_pdu() == AReleaseRP()
    finally:
        await peer.close()
    opened = await wait_for_log(server_log, containing("association opened", FORGER_SHOWN))
    ended = await wait_for_log(server_log, containing("association ended", FORGER_SHOWN))
    assert opened.getMessage().startswith(f"association opened: {FORGER_SHOWN} -> STELLARPACS")
    assert ended.getMessage().startswith(f"association ended: {FORGER_SHOWN} -> STELLARPACS")
    assert_single_printable_lines(server_log)
    assert_no_traceback(server_log)


async def test_control_characters_in_a_rejected_request_are_escaped(
    server: Server, server_log: pytest.LogCaptureFixture
) -> None:
    peer = await RawPeer.open(server.port)
    try:
        rq = replace(associate_rq("NOT\nUS\x1b[2J"), calling_ae_title=FORGER)
        await peer.send_pdu(rq)
        assert await peer.read_pdu() == AAssociateRJ(result=1, source=1, reason=7)
    finally:
        await peer.close()
    record = await wait_for_log(server_log, containing("association rejected"))
    assert f"{FORGER_SHOWN} -> NOT\\nUS\\x1b[2J" in record.getMessage()
    assert_single_printable_lines(server_log)
