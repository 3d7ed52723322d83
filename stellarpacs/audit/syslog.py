"""PS3.15 A.5 audit messages to a syslog collector: RFC 5424 frames over UDP or TLS.

Sending never blocks the event loop or a DIMSE exchange: :meth:`SyslogSink.emit`
only puts the entry on a bounded queue, and one background task builds each
message and sends it, over UDP (RFC 5426, one frame per datagram) or TLS
(RFC 5425, octet-counting framing, at least TLS 1.2 as BCP 195 asks).  When
the queue is full or the collector cannot be reached, records are dropped and
counted, with a WARNING now and then; after a failed TLS connection the sink
waits :data:`RETRY_AFTER` seconds before it tries again, dropping meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
import xml.etree.ElementTree as ET
from typing import Final

from stellarpacs.audit.events import AuditEntry
from stellarpacs.audit.message import audit_message
from stellarpacs.audit.ratelimit import Warner
from stellarpacs.audit.settings import SyslogTarget

__all__ = ["MSGID", "PRI", "SyslogSink", "frame", "tls_context"]

log = logging.getLogger("stellarpacs.audit")

#: Facility 10 (security/authorization) and severity 5 (notice), as IHE ATNA asks.
PRI: Final = 10 * 8 + 5
#: MSGID of an audit message in the RFC 5424 header, as IHE ATNA collectors expect it.
MSGID: Final = "IHE+RFC-3881"
#: Entries waiting to be sent before new ones are dropped.
QUEUE_SIZE: Final = 1000
#: Seconds to connect to a TLS collector, and to hand it one frame.
SEND_TIMEOUT: Final = 5.0
#: Seconds after a failed TLS connection before the next attempt.
RETRY_AFTER: Final = 10.0
#: Largest UDP payload of IPv4 (RFC 5426 3.2 leaves the bound to the transport).
MAX_DATAGRAM: Final = 65507
#: Seconds ``close`` waits for the queue to empty.
CLOSE_WAIT: Final = 2.0


def _header_field(value: str, limit: int) -> str:
    """PRINTUSASCII of at most ``limit`` characters (RFC 5424 6.2), or the NILVALUE."""
    kept = "".join(c for c in value if "!" <= c <= "~")[:limit]
    return kept or "-"


def frame(entry: AuditEntry, source_id: str, hostname: str) -> bytes:
    """One RFC 5424 SYSLOG-MSG whose MSG is the A.5 AuditMessage of ``entry``."""
    xml: bytes = ET.tostring(audit_message(entry, source_id), encoding="utf-8")
    header = (
        f"<{PRI}>1 {entry.time} {_header_field(hostname, 255)} "
        f"{_header_field(source_id, 48)} {os.getpid()} {MSGID} - "
    )
    # MSG-ANY without a BOM (RFC 5424 6.4; IHE ITI CP 477 asks for none): the XML is
    # ASCII anyway, since every value went through printable().
    return header.encode("ascii") + xml


def tls_context(ca_file: str = "", certificate: str = "", private_key: str = "") -> ssl.SSLContext:
    """The client side of RFC 5425: the collector checked against ``ca_file`` (else the
    system's authorities), our certificate shown when given (ATNA asks for both ways).

    Raises OSError or ssl.SSLError for a file that cannot be used.
    """
    context = ssl.create_default_context(cafile=ca_file or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # BCP 195, PS3.15 A.6
    if certificate:
        context.load_cert_chain(certificate, private_key or None)
    return context


class _Datagrams(asyncio.DatagramProtocol):
    """Counts what the kernel reports back (an ICMP port unreachable, say)."""

    def __init__(self, sink: SyslogSink) -> None:
        self.sink = sink

    def error_received(self, exc: Exception) -> None:
        self.sink.dropped += 1
        self.sink.warn(f"collector reports {exc}")


class SyslogSink:
    """Sends each entry to ``target`` from a background task; never raises into the caller."""

    def __init__(
        self,
        target: SyslogTarget,
        source_id: str,
        *,
        context: ssl.SSLContext | None = None,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        self.target = target
        self.source_id = source_id
        self.hostname = socket.gethostname()
        self.dropped = 0
        self.sent = 0
        self._context = context if context is not None else tls_context()
        self._queue: asyncio.Queue[AuditEntry] = asyncio.Queue(queue_size)
        self._task: asyncio.Task[None] | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._retry_at = 0.0
        self._warner = Warner(log, "audit collector %s://%s:%d: %s (%d records dropped so far)")

    def warn(self, why: str) -> None:
        t = self.target
        self._warner.warn(t.transport, t.host, t.port, why, self.dropped)

    def emit(self, entry: AuditEntry) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.dropped += 1
            self.warn("no event loop to send from")
            return
        if self._task is None:
            self._task = loop.create_task(self._run(), name="audit-syslog")
        try:
            self._queue.put_nowait(entry)
        except asyncio.QueueFull:
            self.dropped += 1
            self.warn("queue full")

    async def _run(self) -> None:
        while True:
            entry = await self._queue.get()
            try:
                await self._send(frame(entry, self.source_id, self.hostname))
            except (OSError, TimeoutError, ssl.SSLError, ValueError) as error:
                self.dropped += 1
                self.warn(str(error) or type(error).__name__)
            finally:
                self._queue.task_done()

    async def _send(self, message: bytes) -> None:
        if self.target.transport == "udp":
            await self._send_datagram(message)
        else:
            await self._send_tls(message)
        self.sent += 1

    async def _send_datagram(self, message: bytes) -> None:
        if len(message) > MAX_DATAGRAM:
            raise ValueError(f"message of {len(message)} bytes does not fit a datagram")
        if self._udp is None:
            loop = asyncio.get_running_loop()
            self._udp, _ = await loop.create_datagram_endpoint(
                lambda: _Datagrams(self), remote_addr=(self.target.host, self.target.port)
            )
        self._udp.sendto(message)

    async def _send_tls(self, message: bytes) -> None:
        loop = asyncio.get_running_loop()
        if self._writer is None:
            if loop.time() < self._retry_at:
                raise OSError("not connected; waiting before the next attempt")
            try:
                async with asyncio.timeout(SEND_TIMEOUT):
                    _, self._writer = await asyncio.open_connection(
                        self.target.host, self.target.port, ssl=self._context
                    )
            except BaseException:
                self._retry_at = loop.time() + RETRY_AFTER
                raise
        writer = self._writer
        try:
            writer.write(f"{len(message)} ".encode("ascii") + message)  # RFC 5425 4.3
            async with asyncio.timeout(SEND_TIMEOUT):
                await writer.drain()
        except BaseException:
            self._writer = None
            writer.transport.abort()
            raise

    async def close(self) -> None:
        """Send what is queued (for at most :data:`CLOSE_WAIT` s), then stop."""
        if self._task is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_WAIT):
                    await self._queue.join()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.dropped += self._queue.qsize()
        if self._udp is not None:
            self._udp.close()
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._writer.wait_closed()
        if self.dropped:
            t = self.target
            log.warning(
                "audit collector %s://%s:%d: %d records dropped in all",
                t.transport, t.host, t.port, self.dropped,
            )  # fmt: skip
