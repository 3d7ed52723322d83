"""Association cycles per second: connect, A-ASSOCIATE, C-ECHO, A-RELEASE, close.

Each server (StellarPACS, dcmtk storescp, pynetdicom storescp, Orthanc when
installed) runs as its own process on loopback, all started at once; the
rounds interleave them (the order rotates each round) so that they share the
same background noise. The client is a lean blocking-socket loop in this
process: every PDU it sends is encoded once, up front, with StellarPACS' own
codec (PS3.8 9.3), and every answer is read by its 6-byte PDU header, so the
client costs a few system calls per PDU and the number measured is the
server's. The first cycle of each round decodes the A-ASSOCIATE-AC and the
C-ECHO-RSP in full to check that the server really accepted and answered.

``--aio-client`` adds a second column: the same cycles driven by
``stellarpacs.aio.client.connect``, which measures our client as well.

Run ``python benchmarks/echo_cycles.py --help`` for the flags.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import struct
import sys
import tempfile
import time
from collections.abc import Coroutine
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import (
    HOST,
    SERVER_NAMES,
    RunningServer,
    format_table,
    machine_info,
    median,
    ratio,
    running_server,
    unavailable_reason,
    versions,
    write_results,
)

from stellarpacs.dimse.command_codec import decode_command, encode_command
from stellarpacs.dimse.commands import CEchoRQ, CEchoRSP
from stellarpacs.uids import IMPLEMENTATION_CLASS_UID, IMPLICIT_VR_LITTLE_ENDIAN, VERIFICATION
from stellarpacs.ul.codec import decode_pdu, encode_pdu
from stellarpacs.ul.pdus import (
    AAssociateAC,
    AAssociateRQ,
    AReleaseRQ,
    ContextResult,
    PDataTF,
    PDUType,
    PresentationContextRQ,
    PresentationDataValue,
    UserInformation,
)

CALLING_AE = "BENCH-SCU"
SOCKET_TIMEOUT = 10.0
_HEADER = struct.Struct(">BxI")  # PDU type, reserved, PDU length (PS3.8 9.3.1)
_PDV_HEADER = struct.Struct(">IBB")  # item length, context id, message control header
_LAST_COMMAND = 0x03  # message control header: command, last fragment (PS3.8 E.2)
AIMS = (("dcmtk", 0.3), ("pynetdicom", 50.0))  # StellarPACS / peer, from the issue


class LeanEchoClient:
    """One blocking socket per cycle; PDUs pre-encoded once (PS3.8 9.3.2, 9.3.5, 9.3.6)."""

    def __init__(self, port: int, called_ae: str) -> None:
        self.port = port
        self.buffer = memoryview(bytearray(1 << 16))
        rq = AAssociateRQ(
            called_ae_title=called_ae,
            calling_ae_title=CALLING_AE,
            presentation_contexts=(
                PresentationContextRQ(1, VERIFICATION, (IMPLICIT_VR_LITTLE_ENDIAN,)),
            ),
            user_information=UserInformation(16384, IMPLEMENTATION_CLASS_UID, "BENCH"),
        )
        command = encode_command(CEchoRQ(message_id=1))
        self.associate_rq = encode_pdu(rq)
        self.echo_rq = encode_pdu(PDataTF((PresentationDataValue(1, True, True, command),)))
        self.release_rq = encode_pdu(AReleaseRQ())

    def _read_exact(self, sock: socket.socket, start: int, end: int) -> None:
        while start < end:
            got = sock.recv_into(self.buffer[start:end])
            if got == 0:
                raise ConnectionError("the server closed the connection mid-PDU")
            start += got

    def _read_pdu(self, sock: socket.socket) -> tuple[int, memoryview]:
        self._read_exact(sock, 0, 6)
        pdu_type, length = _HEADER.unpack_from(self.buffer)
        if length > len(self.buffer) - 6:
            raise ConnectionError(f"PDU of {length} bytes is larger than expected")
        self._read_exact(sock, 6, 6 + length)
        return pdu_type, self.buffer[: 6 + length]

    def _expect(self, sock: socket.socket, wanted: PDUType) -> memoryview:
        pdu_type, pdu = self._read_pdu(sock)
        if pdu_type != wanted:
            raise ConnectionError(f"expected {wanted.name}, got PDU type 0x{pdu_type:02X}")
        return pdu

    def _read_echo_rsp(self, sock: socket.socket, check: bool) -> None:
        """Read P-DATA-TF PDUs until the last command fragment (a bounded number of PDUs)."""
        command = bytearray()
        for _ in range(64):
            pdu = self._expect(sock, PDUType.P_DATA_TF)
            offset, control = 6, 0
            while offset < len(pdu):
                length, _, control = _PDV_HEADER.unpack_from(pdu, offset)
                if check:
                    command += pdu[offset + 6 : offset + 4 + length]
                offset += 4 + length
            if control & _LAST_COMMAND == _LAST_COMMAND:
                break
        else:
            raise ConnectionError("no complete C-ECHO-RSP within 64 PDUs")
        if check:
            rsp = decode_command(bytes(command))
            if not isinstance(rsp, CEchoRSP) or rsp.status != 0:
                raise ConnectionError(f"C-ECHO failed: {rsp!r}")

    def _check_accepted(self, pdu: memoryview) -> None:
        ac = decode_pdu(pdu)
        if not isinstance(ac, AAssociateAC) or not any(
            pc.context_id == 1 and pc.result == ContextResult.ACCEPTANCE
            for pc in ac.presentation_contexts
        ):
            raise ConnectionError(f"Verification context not accepted: {ac!r}")

    def cycle(self, check: bool = False) -> None:
        """One full association; ``check`` decodes the AC and the C-ECHO-RSP in full."""
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(SOCKET_TIMEOUT)
            sock.connect((HOST, self.port))
            sock.sendall(self.associate_rq)
            ac = self._expect(sock, PDUType.A_ASSOCIATE_AC)
            if check:
                self._check_accepted(ac)
            sock.sendall(self.echo_rq)
            self._read_echo_rsp(sock, check)
            sock.sendall(self.release_rq)
            self._expect(sock, PDUType.A_RELEASE_RP)


def lean_round(server: RunningServer, cycles: int, time_limit: float) -> tuple[int, float]:
    """Run up to ``cycles`` cycles or ``time_limit`` seconds; (cycles done, seconds)."""
    client = LeanEchoClient(server.port, server.ae_title)
    client.cycle(check=True)  # warm-up and full check, not timed
    done, start = 0, time.perf_counter()
    while done < cycles and time.perf_counter() - start < time_limit:
        client.cycle()
        done += 1
    return done, time.perf_counter() - start


async def _aio_cycles(server: RunningServer, cycles: int, time_limit: float) -> tuple[int, float]:
    from stellarpacs.aio.client import connect

    async def one() -> None:
        association = await connect(
            HOST,
            server.port,
            called_ae=server.ae_title,
            calling_ae=CALLING_AE,
            connect_timeout=SOCKET_TIMEOUT,
            dimse_timeout=SOCKET_TIMEOUT,
        )
        status = await association.echo()
        await association.release(timeout=SOCKET_TIMEOUT)
        if status != 0:
            raise ConnectionError(f"C-ECHO status 0x{status:04X}")

    await one()
    done, start = 0, time.perf_counter()
    while done < cycles and time.perf_counter() - start < time_limit:
        await one()
        done += 1
    return done, time.perf_counter() - start


def _run_async(coro: Coroutine[Any, Any, tuple[int, float]]) -> tuple[int, float]:
    """On uvloop when installed, as ``python -m stellarpacs`` runs."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def aio_round(server: RunningServer, cycles: int, time_limit: float) -> tuple[int, float]:
    return _run_async(_aio_cycles(server, cycles, time_limit))


@dataclass(slots=True)
class ServerResult:
    """Everything measured for one server: per-round (cycles, seconds) and peak memory."""

    name: str
    status: str = "ok"
    lean: list[tuple[int, float]] = field(default_factory=list)
    aio: list[tuple[int, float]] = field(default_factory=list)
    peak_rss_kib: int | None = None

    def rate(self, column: str) -> float | None:
        rounds = self.lean if column == "lean" else self.aio
        return median([n / s for n, s in rounds if s > 0])

    def to_json(self) -> dict[str, object]:
        return {
            "status": self.status,
            "lean_rounds": [{"cycles": n, "seconds": s} for n, s in self.lean],
            "aio_rounds": [{"cycles": n, "seconds": s} for n, s in self.aio],
            "lean_median_cycles_per_s": self.rate("lean"),
            "aio_median_cycles_per_s": self.rate("aio"),
            "peak_rss_kib": self.peak_rss_kib,
        }


def run(args: argparse.Namespace, workroot: Path) -> dict[str, ServerResult]:
    """Start every available server, then interleave the rounds across them."""
    results = {name: ServerResult(name) for name in args.servers}
    with ExitStack() as stack:
        servers: list[RunningServer] = []
        for name in args.servers:
            reason = unavailable_reason(name)
            if reason is not None:
                results[name].status = reason
                continue
            try:
                server = stack.enter_context(running_server(name, workroot / name, store=False))
            except RuntimeError as exc:
                results[name].status = f"ERROR: {exc}".splitlines()[0]
                continue
            servers.append(server)
        for number in range(args.rounds):
            shift = number % max(len(servers), 1)
            for server in servers[shift:] + servers[:shift]:
                _one_round(server, results[server.name], args)
        for server in servers:
            server.stop()
            results[server.name].peak_rss_kib = server.peak_rss_kib
    return results


def _one_round(server: RunningServer, result: ServerResult, args: argparse.Namespace) -> None:
    if result.status != "ok":
        return
    try:
        result.lean.append(lean_round(server, args.cycles, args.time_limit))
        if args.aio_client:
            result.aio.append(aio_round(server, args.cycles, args.time_limit))
    except Exception as exc:  # any failure is reported in the table
        result.status = f"ERROR: {type(exc).__name__}: {exc}"
    print(
        f"  {server.name:<12} round {len(result.lean)}: "
        + ", ".join(f"{n / s:,.0f}/s ({n} cycles)" for n, s in result.lean[-1:]),
        file=sys.stderr,
        flush=True,
    )


def _fmt(value: float | None, spec: str = ",.0f", suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def report(results: dict[str, ServerResult], aio: bool) -> str:
    """The table, then each aim as met/missed; ratios are StellarPACS / that server."""
    ours = results.get("stellarpacs")
    ours_rate = ours.rate("lean") if ours else None
    headers = ["server", "status", "cycles/s", "min-max", "cycles"]
    headers += ["aio client c/s"] if aio else []
    headers += ["peak RSS MiB", "StellarPACS/server"]
    rows = []
    for r in results.values():
        rates = [n / s for n, s in r.lean if s > 0]
        row = [r.name, r.status if len(r.status) < 60 else r.status[:57] + "..."]
        row += [_fmt(r.rate("lean"))]
        row += [f"{min(rates):,.0f}-{max(rates):,.0f}" if rates else "-"]
        row += [str(sum(n for n, _ in r.lean)) if r.lean else "-"]
        row += [_fmt(r.rate("aio"))] if aio else []
        row += [_fmt(r.peak_rss_kib / 1024 if r.peak_rss_kib else None, ".1f")]
        row += [_fmt(ratio(ours_rate, r.rate("lean")), ".2f", "x")]
        rows.append(row)
    lines = [format_table(headers, rows), ""]
    for peer, aim in AIMS:
        got = ratio(ours_rate, results[peer].rate("lean")) if peer in results else None
        verdict = "not measured" if got is None else ("met" if got >= aim else "MISSED")
        lines.append(f"aim StellarPACS/{peer} >= {aim:g}x: {_fmt(got, '.2f', 'x')} {verdict}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=2000, help="cycles per server per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the median is reported")
    parser.add_argument(
        "--time-limit",
        type=float,
        default=20.0,
        help="seconds at most per server per round (pynetdicom needs this cap)",
    )
    parser.add_argument(
        "--servers",
        default=",".join(SERVER_NAMES),
        help=f"comma-separated subset of {','.join(SERVER_NAMES)}",
    )
    parser.add_argument("--aio-client", action="store_true", help="add our asyncio client column")
    parser.add_argument("--quick", action="store_true", help="200 cycles, 1 round, 2 s cap")
    parser.add_argument(
        "--results-dir", type=Path, default=Path(__file__).resolve().parent / "results"
    )
    args = parser.parse_args(argv)
    args.servers = [s for s in args.servers.split(",") if s]
    unknown = set(args.servers) - set(SERVER_NAMES)
    if unknown:
        parser.error(f"unknown servers: {', '.join(sorted(unknown))}")
    if args.quick:
        args.cycles, args.rounds, args.time_limit = 200, 1, 2.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    machine = machine_info()
    print(
        f"echo cycles: {args.cycles} cycles x {args.rounds} rounds per server "
        f"(cap {args.time_limit:g} s), loopback, {machine['cpus']} CPUs shared by client "
        f"and servers, load average {machine['load_average_1_5_15']}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="stellarpacs-echo-") as tmp:
        results = run(args, Path(tmp))
    print(report(results, args.aio_client))
    machine["load_average_at_end"] = machine_info()["load_average_1_5_15"]
    payload = {
        "benchmark": "echo_cycles",
        "settings": {k: v for k, v in vars(args).items() if k != "results_dir"},
        "machine": machine,
        "versions": versions(),
        "servers": {name: r.to_json() for name, r in results.items()},
    }
    path = write_results(args.results_dir, "echo_cycles", payload)
    print(f"results written to {path}")
    failed = [r.name for r in results.values() if r.status.startswith("ERROR")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
