"""A raw association: PDUs of the test's choosing to any peer, and what came back (PS3.8 9.3).

Nothing here enforces the protocol: the test sends what it wants, in any
state, and :meth:`RawAssociation.expect` reports what the peer did.  Every
wait is bounded by a timeout; a wrong answer raises :class:`ExpectationFailed`
naming what was expected and what came.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from types import TracebackType
from typing import TypeVar, overload

from stellarpacs.aio.transport import Tap, TapFactory
from stellarpacs.dimse.commands import Message
from stellarpacs.dimse.fragments import CommandReceived, DatasetFragment, MessageAssembler
from stellarpacs.errors import StellarPACSError
from stellarpacs.testing.fragments import Sizes, message_pdus
from stellarpacs.testing.frames import DEFAULT_LIMIT, Frame, Framer, pdu_name
from stellarpacs.ul.codec import encode_pdu
from stellarpacs.ul.pdus import (
    PDU,
    AAbort,
    AAssociateAC,
    AAssociateRJ,
    AAssociateRQ,
    AReleaseRP,
    AReleaseRQ,
    PDataTF,
)

__all__ = ["DimseMessage", "ExpectationFailed", "RawAssociation"]

P = TypeVar("P", bound=PDU)
_READ: int = 65536


class ExpectationFailed(AssertionError):
    """The peer did not do what the test expected; ``got`` is what it did (None: nothing)."""

    def __init__(self, expected: str, got: str, frame: Frame | None = None) -> None:
        super().__init__(f"expected {expected}, got {got}")
        self.expected = expected
        self.got = got
        self.frame = frame


@dataclass(frozen=True, slots=True)
class DimseMessage:
    """A DIMSE message received whole: its context, command and data set bytes (if any)."""

    context_id: int
    command: Message
    dataset: bytes | None


class RawAssociation:
    """One TCP connection on which the test speaks PDUs; use :meth:`open`."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        timeout: float,
        limit: int,
        tap: Tap | None,
    ) -> None:
        self._reader, self._writer = reader, writer
        self.timeout = timeout
        self._framer = Framer(limit)
        self._frames: list[Frame] = []
        self._eof = False
        self._tap = tap
        #: The last A-ASSOCIATE-RQ sent and the A-ASSOCIATE-AC received (:meth:`associate`).
        self.rq: AAssociateRQ | None = None
        self.ac: AAssociateAC | None = None

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        *,
        timeout: float = 10.0,
        limit: int = DEFAULT_LIMIT,
        tap: TapFactory | None = None,
    ) -> RawAssociation:
        """Connect within ``timeout``; ``timeout`` is also the default of every later wait."""
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port, limit=_READ)
        local, peer = writer.get_extra_info("sockname"), writer.get_extra_info("peername")
        the_tap = None
        if tap is not None:
            the_tap = tap((str(local[0]), int(local[1])), (str(peer[0]), int(peer[1])))
        return cls(reader, writer, timeout=timeout, limit=limit, tap=the_tap)

    # --- sending ------------------------------------------------------------------------

    async def send(self, *pdus: PDU | bytes, timeout: float | None = None) -> None:
        """Write PDUs (dataclasses, encoded by the codec) or raw bytes, as given."""
        data = b"".join(p if isinstance(p, bytes) else encode_pdu(p) for p in pdus)
        if self._tap is not None:
            self._tap(False, data, time.time())
        self._writer.write(data)
        async with asyncio.timeout(self._wait(timeout)):
            await self._writer.drain()

    async def send_message(
        self,
        context_id: int,
        command: Message | bytes,
        dataset: bytes | None = None,
        *,
        command_sizes: Sizes = None,
        dataset_sizes: Sizes = None,
        pdvs_per_pdu: int = 1,
        timeout: float | None = None,
    ) -> None:
        """Send a DIMSE message cut as asked (see :func:`.fragments.message_pdus`)."""
        pdus = message_pdus(
            context_id,
            command,
            dataset,
            command_sizes=command_sizes,
            dataset_sizes=dataset_sizes,
            pdvs_per_pdu=pdvs_per_pdu,
        )
        await self.send(*pdus, timeout=timeout)

    # --- receiving ----------------------------------------------------------------------

    def _wait(self, timeout: float | None) -> float:
        return self.timeout if timeout is None else timeout

    async def receive(self, timeout: float | None = None, expected: str = "a PDU") -> Frame | None:
        """The next PDU as it came, or None when the peer closed the connection."""
        wait = self._wait(timeout)
        try:
            async with asyncio.timeout(wait):
                while not self._frames and not self._eof:
                    await self._read()
        except TimeoutError:
            raise ExpectationFailed(expected, f"nothing within {wait:g} s") from None
        return self._frames.pop(0) if self._frames else None

    async def _read(self) -> None:
        try:
            data = await self._reader.read(_READ)
        except ConnectionError:
            data = b""
        if not data:
            self._eof = True
            return
        if self._tap is not None:
            self._tap(True, data, time.time())
        try:
            self._frames += self._framer.feed(data)
        except ValueError as error:
            raise ExpectationFailed("a PDU within the size limit", str(error)) from None

    @overload
    async def expect(self, pdu_type: type[P], timeout: float | None = None) -> P: ...
    @overload
    async def expect(self, pdu_type: None = None, timeout: float | None = None) -> PDU: ...

    async def expect(self, pdu_type: type[P] | None = None, timeout: float | None = None) -> PDU:
        """The next PDU, decoded, which must be a ``pdu_type`` (any type when None)."""
        wanted = _type_name(pdu_type)
        frame = await self.receive(timeout, wanted)
        if frame is None:
            raise ExpectationFailed(wanted, "the connection closed")
        if frame.pdu is None:
            got = f"an undecodable {frame.name} ({len(frame.raw)} bytes: {frame.raw[:32].hex()}"
            raise ExpectationFailed(wanted, f"{got}...): {frame.error}", frame)
        if pdu_type is not None and not isinstance(frame.pdu, pdu_type):
            raise ExpectationFailed(wanted, repr(frame.pdu), frame)
        return frame.pdu

    async def expect_closed(self, timeout: float | None = None) -> None:
        """The peer closes the connection without sending anything more."""
        frame = await self.receive(timeout, "the connection closed")
        if frame is not None:
            raise ExpectationFailed("the connection closed", repr(frame.pdu or frame.raw), frame)

    async def expect_message(self, timeout: float | None = None) -> DimseMessage:
        """The next whole DIMSE message within ``timeout``, from P-DATA-TFs only (PS3.7 6.3.1)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._wait(timeout)
        assembler = MessageAssembler()
        command: CommandReceived | None = None
        dataset = bytearray()
        while True:
            pdata = await self.expect(PDataTF, max(0.0, deadline - loop.time()))
            try:
                events = assembler.receive(pdata)
            except StellarPACSError as error:
                raise ExpectationFailed("a well-formed DIMSE message", str(error)) from None
            for event in events:
                if isinstance(event, CommandReceived):
                    command = event
                    if not event.has_dataset:
                        return DimseMessage(event.context_id, event.message, None)
                elif isinstance(event, DatasetFragment) and command is not None:
                    dataset += event.data
                    if event.is_last:
                        return DimseMessage(command.context_id, command.message, bytes(dataset))

    # --- the association's life ---------------------------------------------------------

    async def associate(self, rq: AAssociateRQ, timeout: float | None = None) -> AAssociateAC:
        """Send ``rq``, expect an A-ASSOCIATE-AC; both are kept in ``rq`` and ``ac``."""
        self.rq = rq
        await self.send(rq, timeout=timeout)
        self.ac = await self.expect(AAssociateAC, timeout)
        return self.ac

    async def release(self, timeout: float | None = None) -> AReleaseRP:
        """A-RELEASE-RQ, expect A-RELEASE-RP, then close (PS3.8 7.2)."""
        await self.send(AReleaseRQ(), timeout=timeout)
        rp = await self.expect(AReleaseRP, timeout)
        await self.close()
        return rp

    async def abort(self, source: int = 0, reason: int = 0) -> None:
        """Send A-ABORT and close (PS3.8 7.3)."""
        await self.send(AAbort(source, reason))
        await self.close()

    async def close(self) -> None:
        """Close the TCP connection (bounded wait)."""
        if self._writer.is_closing():
            return
        self._writer.close()
        try:
            async with asyncio.timeout(self.timeout):
                await self._writer.wait_closed()
        except (OSError, TimeoutError):
            pass

    async def __aenter__(self) -> RawAssociation:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def _type_name(pdu_type: type[object] | None) -> str:
    return "a PDU" if pdu_type is None else pdu_name(_TYPES[pdu_type])


_TYPES: dict[type[object], int] = {
    AAssociateRQ: 1, AAssociateAC: 2, AAssociateRJ: 3, PDataTF: 4,
    AReleaseRQ: 5, AReleaseRP: 6, AAbort: 7,
}  # fmt: skip
