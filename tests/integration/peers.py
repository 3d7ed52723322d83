"""Peers for the loopback integration tests: dcmtk tools, pynetdicom, a raw PDU client.

Everything here is bounded in time: subprocesses run under ``asyncio.timeout``
and are killed in a ``finally``; pynetdicom (blocking) runs in a worker thread
with its own ACSE/DIMSE/network timeouts, so the in-process server keeps
running on the event loop meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from stellarpacs.aio.client import connect
from stellarpacs.dimse.command_codec import encode_command
from stellarpacs.dimse.commands import CEchoRQ
from stellarpacs.dimse.fragments import fragment_message
from stellarpacs.uids import IMPLICIT_VR_LITTLE_ENDIAN, VERIFICATION
from stellarpacs.ul.codec import decode_pdu, encode_pdu
from stellarpacs.ul.pdus import (
    PDU,
    AAssociateAC,
    AAssociateRQ,
    AsynchronousOperationsWindow,
    PDataTF,
    PresentationContextRQ,
    UserInformation,
)

SERVER_AE = "STELLARPACS"
HOST = "127.0.0.1"
#: Bound for one external tool run; they take well under a second normally.
TOOL_TIMEOUT = 20.0
#: Bound for one network wait in a test.
WAIT = 5.0

_DCMTK_DIR = Path("/usr/bin")


def dcmtk(tool: str) -> str:
    """Absolute path of a dcmtk tool; fails (never skips) when dcmtk is missing.

    The absolute path matters: pynetdicom installs a console script named
    ``echoscu`` that would shadow dcmtk's on PATH.
    """
    path = _DCMTK_DIR / tool
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(
            f"{path} is missing: the interop tests need dcmtk; "
            "install it with `apt-get install dcmtk`",
            pytrace=False,
        )
    return str(path)


@dataclass(frozen=True, slots=True)
class Completed:
    """What a finished subprocess left."""

    returncode: int
    stdout: str
    stderr: str


async def run_process(
    *argv: str, timeout: float = TOOL_TIMEOUT, env: dict[str, str] | None = None
) -> Completed:
    """Run ``argv`` to completion without blocking the loop; killed if it outlives ``timeout``."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await process.communicate()
    finally:
        await kill(process)
    assert process.returncode is not None
    return Completed(process.returncode, out.decode(errors="replace"), err.decode(errors="replace"))


async def kill(process: asyncio.subprocess.Process) -> None:
    """Kill ``process`` if it still runs and reap it (bounded)."""
    if process.returncode is None:
        process.kill()
        async with asyncio.timeout(WAIT):
            await process.wait()


def dcmtk_env() -> dict[str, str]:
    """The environment for dcmtk tools: TCP_NODELAY avoids 40 ms delayed-ACK stalls."""
    return dict(os.environ, TCP_NODELAY="1")


async def echoscu(port: int, called_ae: str = SERVER_AE, *extra: str) -> Completed:
    """dcmtk's C-ECHO SCU against ``127.0.0.1:port``."""
    argv = [dcmtk("echoscu"), "-aec", called_ae, "-to", "10", "-ta", "10", "-td", "10"]
    return await run_process(*argv, *extra, HOST, str(port), env=dcmtk_env())


# --- pynetdicom -----------------------------------------------------------------------------


@dataclass(slots=True)
class PynetdicomOutcome:
    """What pynetdicom saw of one association attempt."""

    established: bool = False
    rejected: bool = False
    aborted: bool = False
    echo_status: int | None = None
    #: (result, source, diagnostic) of the A-ASSOCIATE-RJ, as pynetdicom's ACSE took it.
    rejection: tuple[int, int, int] | None = None
    #: (result, source, reason) of an A-ASSOCIATE-RJ PDU its DUL decoded.
    rj_pdu: tuple[int, int, int] | None = None
    maximum_length: int | None = None
    implementation_class_uid: str | None = None
    implementation_version_name: str | None = None
    asynchronous_operations: tuple[int, int] | None = None


def _pynetdicom_session(
    port: int,
    called_ae: str,
    echo: bool,
    async_window: tuple[int, int] | None,
) -> PynetdicomOutcome:
    """Blocking: associate with pynetdicom, optionally C-ECHO, then release."""
    from pynetdicom import AE, evt
    from pynetdicom.pdu_primitives import AsynchronousOperationsWindowNegotiation

    outcome = PynetdicomOutcome()

    def on_acse_recv(event: Any) -> None:
        primitive = event.primitive
        if getattr(primitive, "result", None) in (1, 2):
            outcome.rejection = (
                int(primitive.result),
                int(primitive.result_source),
                int(primitive.diagnostic),
            )

    def on_pdu_recv(event: Any) -> None:
        pdu = event.pdu
        if type(pdu).__name__ == "A_ASSOCIATE_RJ":
            outcome.rj_pdu = (int(pdu.result), int(pdu.source), int(pdu.reason_diagnostic))

    ae = AE(ae_title="PYNETDICOM")
    ae.acse_timeout = WAIT
    ae.dimse_timeout = WAIT
    ae.network_timeout = WAIT
    ae.add_requested_context(VERIFICATION, IMPLICIT_VR_LITTLE_ENDIAN)
    ext_neg: list[Any] = []
    if async_window is not None:
        item = AsynchronousOperationsWindowNegotiation()
        item.maximum_number_operations_invoked = async_window[0]
        item.maximum_number_operations_performed = async_window[1]
        ext_neg.append(item)
    assoc = ae.associate(
        HOST,
        port,
        ae_title=called_ae,
        ext_neg=ext_neg or None,
        evt_handlers=[(evt.EVT_ACSE_RECV, on_acse_recv), (evt.EVT_PDU_RECV, on_pdu_recv)],
    )
    try:
        outcome.established = assoc.is_established
        outcome.rejected = assoc.is_rejected
        outcome.aborted = assoc.is_aborted
        if assoc.is_established:
            acceptor = assoc.acceptor
            outcome.maximum_length = acceptor.maximum_length
            outcome.implementation_class_uid = acceptor.implementation_class_uid
            outcome.implementation_version_name = acceptor.implementation_version_name
            outcome.asynchronous_operations = acceptor.asynchronous_operations
            if echo:
                status = assoc.send_c_echo()
                outcome.echo_status = int(status.Status) if "Status" in status else None
            assoc.release()
    finally:
        if assoc.is_alive():
            assoc.abort()
        ae.shutdown()
    return outcome


async def pynetdicom_session(
    port: int,
    called_ae: str = SERVER_AE,
    *,
    echo: bool = True,
    async_window: tuple[int, int] | None = None,
) -> PynetdicomOutcome:
    """:func:`_pynetdicom_session` in a worker thread, so the server on this loop keeps serving."""
    async with asyncio.timeout(TOOL_TIMEOUT):
        return await asyncio.to_thread(_pynetdicom_session, port, called_ae, echo, async_window)


def lost_rejection_race(outcome: PynetdicomOutcome) -> bool:
    """pynetdicom 3.0 dropped an A-ASSOCIATE-RJ that came in too fast.

    Its requestor thread checks ``socket._is_connected`` after the transport
    became ready; when the RJ arrives first, its DUL has already closed the
    socket (AE-4), so the association is marked aborted though the RJ PDU was
    decoded.  Our server is then right, and the attempt is worth repeating.
    """
    return outcome.aborted and outcome.rejection is None and outcome.rj_pdu is not None


async def pynetdicom_rejected(
    port: int, called_ae: str = SERVER_AE, attempts: int = 5
) -> PynetdicomOutcome:
    """An association attempt, repeated while pynetdicom loses the race described above."""
    for _ in range(attempts):
        outcome = await pynetdicom_session(port, called_ae, echo=False)
        if not lost_rejection_race(outcome):
            break
    return outcome


# --- our own client -----------------------------------------------------------------------


async def our_echo(port: int, called_ae: str = SERVER_AE) -> int:
    """One association with our client, one C-ECHO, release; returns the status."""
    async with asyncio.timeout(WAIT * 2):
        association = await connect(
            HOST, port, called_ae=called_ae, connect_timeout=WAIT, dimse_timeout=WAIT
        )
        async with association:
            return await association.echo()


async def assert_still_serves(port: int) -> None:
    """A fresh association and C-ECHO still succeed."""
    assert await our_echo(port) == 0


# --- a raw PDU peer -----------------------------------------------------------------------

_HEADER = struct.Struct(">BxI")


def associate_rq(
    called_ae: str = SERVER_AE,
    *,
    async_window: tuple[int, int] | None = None,
    max_pdu_length: int = 16384,
) -> AAssociateRQ:
    """An A-ASSOCIATE-RQ proposing Verification (context 1) in Implicit VR LE."""
    window = AsynchronousOperationsWindow(*async_window) if async_window else None
    return AAssociateRQ(
        called_ae_title=called_ae,
        calling_ae_title="RAWPEER",
        presentation_contexts=(
            PresentationContextRQ(1, VERIFICATION, (IMPLICIT_VR_LITTLE_ENDIAN,)),
        ),
        user_information=UserInformation(
            maximum_length=max_pdu_length,
            implementation_class_uid="1.2.3.4.5",
            implementation_version_name="RAWPEER_1",
            asynchronous_operations_window=window,
        ),
    )


def echo_pdata(context_id: int = 1, message_id: int = 1) -> list[PDataTF]:
    """The P-DATA-TF PDUs of one C-ECHO-RQ on ``context_id``."""
    command = encode_command(CEchoRQ(message_id=message_id))
    return list(fragment_message(context_id, command, None, 16384))


class RawPeer:
    """A TCP client that writes and reads PDUs byte for byte, for misbehaving on purpose."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> RawPeer:
        async with asyncio.timeout(WAIT):
            reader, writer = await asyncio.open_connection(HOST, port)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        async with asyncio.timeout(WAIT):
            await self.writer.drain()

    async def send_pdu(self, pdu: PDU) -> None:
        await self.send(encode_pdu(pdu))

    async def read_raw_pdu(self, timeout: float = WAIT) -> bytes:
        """The bytes of the next whole PDU, header included."""
        async with asyncio.timeout(timeout):
            header = await self.reader.readexactly(_HEADER.size)
            _, length = _HEADER.unpack(header)
            return header + await self.reader.readexactly(length)

    async def read_pdu(self, timeout: float = WAIT) -> PDU:
        return decode_pdu(await self.read_raw_pdu(timeout))

    async def wait_eof(self, timeout: float = WAIT) -> float:
        """Read until the server closes; returns the seconds that took."""
        started = time.monotonic()
        async with asyncio.timeout(timeout):
            while await self.reader.read(65536):
                pass
        return time.monotonic() - started

    async def associate(
        self, called_ae: str = SERVER_AE, *, async_window: tuple[int, int] | None = None
    ) -> AAssociateAC:
        await self.send_pdu(associate_rq(called_ae, async_window=async_window))
        answer = await self.read_pdu()
        assert isinstance(answer, AAssociateAC), answer
        return answer

    async def close(self) -> None:
        self.writer.close()
        try:
            async with asyncio.timeout(WAIT):
                await self.writer.wait_closed()
        except (OSError, TimeoutError):
            pass  # already reset by the server; nothing left to do


# --- logs ---------------------------------------------------------------------------------


async def wait_for_log(
    caplog: pytest.LogCaptureFixture,
    match: Callable[[logging.LogRecord], bool],
    timeout: float = WAIT,
) -> logging.LogRecord:
    """Poll the captured records (bounded) until one matches; the server logs asynchronously."""
    deadline = time.monotonic() + timeout
    while True:
        for record in caplog.records:
            if match(record):
                return record
        if time.monotonic() > deadline:
            lines = "\n".join(f"{r.levelname} {r.name}: {r.getMessage()}" for r in caplog.records)
            raise AssertionError(f"no matching log record within {timeout} s; got:\n{lines}")
        await asyncio.sleep(0.01)


def containing(*words: str, level: int = logging.INFO) -> Callable[[logging.LogRecord], bool]:
    """A record matcher: at ``level`` or above, with every one of ``words`` in its message."""

    def match(record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return record.levelno >= level and all(w in message for w in words)

    return match
