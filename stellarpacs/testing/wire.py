"""Wire traces: one JSON line per PDU, and pcap files that Wireshark's DICOM dissector reads.

Both are taps (:data:`~stellarpacs.aio.transport.TapFactory`): they see the
bytes each connection reads and writes.  The JSON trace re-frames them into
PDUs (:class:`~stellarpacs.testing.frames.Framer`) and writes what the codec
decoded, escaped by ``json`` (no raw peer byte reaches the file; user
identity fields only as lengths).  The pcap writer wraps the bytes in
synthesized Ethernet, IPv4 or IPv6 and TCP headers, with a handshake and
running sequence numbers so that a dissector reassembles the stream
(libpcap format, LINKTYPE_ETHERNET).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import struct
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, Any, Final

from stellarpacs.aio.transport import Tap, TapFactory, set_tap_factory
from stellarpacs.testing.frames import CommandJoiner, Frame, Framer, describe_pdu
from stellarpacs.ul.pdus import PDataTF

__all__ = ["PcapWriter", "TraceWriter", "tapping", "tee"]

Address = tuple[str, int]
log = logging.getLogger("stellarpacs.testing")


class TraceWriter:
    """JSON lines, one per PDU in or out of every tapped connection, flushed per line.

    A failing write (a full disk) stops the trace with one log line; the
    connections go on.
    """

    def __init__(self, stream: IO[str]) -> None:
        self._stream: IO[str] | None = stream

    def __call__(self, local: Address, peer: Address) -> Tap:
        sides: dict[bool, tuple[Framer, CommandJoiner] | None] = {
            True: (Framer(), CommandJoiner()),
            False: (Framer(), CommandJoiner()),
        }
        where = {"peer": f"{peer[0]}:{peer[1]}", "local": f"{local[0]}:{local[1]}"}

        def tap(incoming: bool, data: bytes, when: float) -> None:
            side = sides[incoming]
            if side is None or self._stream is None:
                return
            head = {"time": when, "direction": "in" if incoming else "out", **where}
            framer, joiner = side
            try:
                frames = framer.feed(data)
            except ValueError as error:  # an absurd PDU-length: the framing is lost
                self._write({**head, "error": f"{error}; not traced further"})
                sides[incoming] = None
                return
            for frame in frames:
                self._write({**head, **_frame_fields(frame, joiner)})

        return tap

    def _write(self, line: dict[str, Any]) -> None:
        if self._stream is None:
            return
        try:
            self._stream.write(json.dumps(line, ensure_ascii=True) + "\n")
            self._stream.flush()
        except OSError as error:
            log.warning("trace stopped: %s", error)
            self._stream = None


def _frame_fields(frame: Frame, joiner: CommandJoiner) -> dict[str, Any]:
    line: dict[str, Any] = {"pdu": frame.name, "length": len(frame.raw) - 6}
    if frame.pdu is None:
        line["error"] = frame.error
        return line
    line["fields"] = describe_pdu(frame.pdu)
    if isinstance(frame.pdu, PDataTF):
        commands = joiner.feed(frame.pdu)
        if commands:
            line["commands"] = commands
    return line


# --- pcap (libpcap format, https://wiki.wireshark.org/Development/LibpcapFileFormat) -----------

_GLOBAL_HEADER: Final = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
_RECORD: Final = struct.Struct("<IIII")
_TCP: Final = struct.Struct(">HHIIBBHHH")
_SYN, _ACK, _PSH = 0x02, 0x10, 0x08
#: TCP payload per synthesized segment, so that the IP total length fits 16 bits.
_SEGMENT: Final = 60000


def _checksum(header: bytes) -> int:
    total: int = sum(struct.unpack(f">{len(header) // 2}H", header))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ip(source: str, destination: str, payload: bytes) -> tuple[int, bytes]:
    """(ethertype, IP header + payload) for TCP from ``source`` to ``destination``."""
    src, dst = ipaddress.ip_address(source), ipaddress.ip_address(destination)
    if src.version == 6 or dst.version == 6:
        src6 = src if src.version == 6 else ipaddress.IPv6Address(f"::ffff:{src}")
        dst6 = dst if dst.version == 6 else ipaddress.IPv6Address(f"::ffff:{dst}")
        header = struct.pack(">IHBB", 6 << 28, len(payload), 6, 64) + src6.packed + dst6.packed
        return 0x86DD, header + payload
    header = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0x4000, 64, 6, 0,
                         src.packed, dst.packed)  # fmt: skip
    header = header[:10] + struct.pack(">H", _checksum(header)) + header[12:]
    return 0x0800, header + payload


class PcapWriter:
    """Every tapped connection as a TCP stream in one pcap file.

    The handshake is synthesized at a connection's first bytes, the side that
    sent them shown as the TCP client: in DICOM the requestor speaks first
    (A-ASSOCIATE-RQ, PS3.8 9.2), and the requestor is the one that connected.
    TCP checksums are left 0; dissectors do not check them by default.
    """

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream: IO[bytes] | None = stream
        stream.write(_GLOBAL_HEADER)
        stream.flush()

    def __call__(self, local: Address, peer: Address) -> Tap:
        host = {True: peer, False: local}  # sender of incoming / outgoing bytes
        seq = {True: 1000, False: 5000}
        started = False

        def tap(incoming: bool, data: bytes, when: float) -> None:
            nonlocal started
            if not started:
                started = True
                self._handshake(host[incoming], host[not incoming], seq, incoming, when)
            for start in range(0, len(data), _SEGMENT):
                chunk = data[start : start + _SEGMENT]
                src, dst = host[incoming], host[not incoming]
                self._segment(src, dst, seq[incoming], seq[not incoming], _PSH | _ACK, chunk, when)
                seq[incoming] += len(chunk)

        return tap

    def _handshake(
        self, client: Address, server: Address, seq: dict[bool, int], first: bool, when: float
    ) -> None:
        """SYN, SYN-ACK, ACK; ``first`` is the direction key of the client's bytes."""
        c, s = seq[first], seq[not first]
        self._segment(client, server, c - 1, 0, _SYN, b"", when)
        self._segment(server, client, s - 1, c, _SYN | _ACK, b"", when)
        self._segment(client, server, c, s, _ACK, b"", when)

    def _segment(
        self, src: Address, dst: Address, seq: int, ack: int, flags: int, data: bytes, when: float
    ) -> None:
        tcp = _TCP.pack(src[1], dst[1], seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags,
                        65535, 0, 0)  # fmt: skip
        ethertype, packet = _ip(src[0] or "127.0.0.1", dst[0] or "127.0.0.1", tcp + data)
        frame = b"\x02\x00\x00\x00\x00\x01" + b"\x02\x00\x00\x00\x00\x02"
        frame += struct.pack(">H", ethertype) + packet
        seconds = int(when)
        micros = int((when - seconds) * 1_000_000)
        if self._stream is None:
            return
        try:
            self._stream.write(_RECORD.pack(seconds, micros, len(frame), len(frame)) + frame)
            self._stream.flush()
        except OSError as error:
            log.warning("pcap capture stopped: %s", error)
            self._stream = None


def tee(*factories: TapFactory) -> TapFactory:
    """One tap factory feeding several."""

    def factory(local: Address, peer: Address) -> Tap:
        taps = [f(local, peer) for f in factories]

        def tap(incoming: bool, data: bytes, when: float) -> None:
            for each in taps:
                each(incoming, data, when)

        return tap

    return factory


@contextmanager
def tapping(trace: Path | None = None, pcap: Path | None = None) -> Iterator[None]:
    """Trace (JSON lines) and/or capture (pcap) every connection made inside the block."""
    if trace is None and pcap is None:
        yield
        return
    with ExitStack() as stack:
        factories: list[TapFactory] = []
        if trace is not None:
            factories.append(TraceWriter(stack.enter_context(trace.open("w", encoding="utf-8"))))
        if pcap is not None:
            factories.append(PcapWriter(stack.enter_context(pcap.open("wb"))))
        previous = set_tap_factory(tee(*factories) if len(factories) > 1 else factories[0])
        stack.callback(set_tap_factory, previous)
        yield
