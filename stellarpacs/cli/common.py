"""What the command groups share: exit statuses, the ``register`` type, the peer flags,
the association they describe, and the event loop a command runs on."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import socket
import ssl
import sys
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final, TypeAlias, TypeVar

from stellarpacs.aio.client import ClientAssociation, connect
from stellarpacs.aio.scu.contexts import ProposedContext
from stellarpacs.errors import ConfigError
from stellarpacs.tls import DEFAULT_PROFILE, PROFILES, TLSFileError, client_context

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "Command",
    "Register",
    "Subparsers",
    "add_peer_flags",
    "add_trace_flags",
    "connect_peer",
    "os_reason",
    "run",
    "setup_logging",
    "table",
    "tls_context",
    "wire_taps",
]

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2

#: What ``add_subparsers()`` returns; each command group adds its commands to it.
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
#: A command group's ``register``: adds its sub-commands, each with ``func`` set.
Register: TypeAlias = Callable[[Subparsers], None]
#: The ``func`` a sub-command sets: parsed arguments in, exit status out.
Command: TypeAlias = Callable[[argparse.Namespace], int]

_T = TypeVar("_T")


def setup_logging(level: str) -> None:
    """Log lines to stderr, as the server and the client commands print them."""
    logging.basicConfig(
        level=getattr(logging, level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def os_reason(error: OSError) -> str:
    """The short reason of an OSError, without asyncio's restating of the address."""
    if error.errno and error.errno > 0 and not isinstance(error, socket.gaierror):
        return os.strerror(error.errno)
    return error.strerror or str(error)


def run(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run on uvloop when it is installed (a dependency on Linux), else asyncio's loop."""
    try:
        import uvloop  # optional: absent off Linux
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def table(rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows as left-aligned columns two spaces apart, trailing blanks cut."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]


def add_peer_flags(parser: argparse.ArgumentParser, *, timeout: float = 30.0) -> None:
    """HOST PORT and the association flags of every client command."""
    parser.add_argument("host", help="peer host name or address")
    parser.add_argument("port", type=int, help="peer TCP port")
    parser.add_argument("--aet", default="STELLARPACS", help="our (calling) AE title")
    parser.add_argument("--aec", default="ANY-SCP", help="the peer's (called) AE title")
    parser.add_argument("--max-pdu", type=int, default=16384, dest="max_pdu_length")
    parser.add_argument(
        "--timeout", type=float, default=timeout, help="seconds to wait for each answer"
    )
    add_trace_flags(parser)
    _add_tls_flags(parser)


def add_trace_flags(parser: argparse.ArgumentParser) -> None:
    """``--trace FILE`` (JSON line per PDU) and ``--pcap FILE``, for every networking command."""
    parser.add_argument("--trace", type=Path, metavar="FILE", help="write every PDU as JSON lines")
    parser.add_argument("--pcap", type=Path, metavar="FILE", help="write the traffic as pcap")


@contextlib.contextmanager
def wire_taps(args: argparse.Namespace) -> Iterator[None]:
    """Trace and capture what the command sends and receives, as its flags ask."""
    trace, pcap = getattr(args, "trace", None), getattr(args, "pcap", None)
    if trace is None and pcap is None:
        yield
        return
    from stellarpacs.testing.wire import tapping  # only when asked for

    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(tapping(trace, pcap))
        except OSError as error:
            raise ConfigError(f"cannot write {error.filename}: {os_reason(error)}") from None
        yield


def _add_tls_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("TLS (PS3.15 B.12, B.13); any --tls-* flag implies --tls")
    group.add_argument("--tls", action="store_true", help="connect with TLS 1.2 or newer")
    group.add_argument(
        "--tls-ca", type=Path, metavar="FILE", help="PEM CAs to verify the peer (default: system's)"
    )
    group.add_argument("--tls-cert", type=Path, metavar="FILE", help="our PEM client certificate")
    group.add_argument("--tls-key", type=Path, metavar="FILE", help="its private key")
    group.add_argument(
        "--tls-profile", choices=tuple(PROFILES), help=f"TLS profile (default {DEFAULT_PROFILE})"
    )


def tls_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The client context the TLS flags describe; None without them (ConfigError: bad files)."""
    flags = (args.tls_ca, args.tls_cert, args.tls_key, args.tls_profile)
    if not args.tls and all(flag is None for flag in flags):
        return None
    if args.tls_key is not None and args.tls_cert is None:
        raise ConfigError("--tls-key needs --tls-cert")
    try:
        return client_context(
            args.tls_profile or DEFAULT_PROFILE, args.tls_ca, args.tls_cert, args.tls_key
        )
    except TLSFileError as error:
        flag = {"ca_file": "--tls-ca", "certificate": "--tls-cert"}.get(error.which, "--tls-key")
        raise ConfigError(f"{flag}: {error}") from None


async def connect_peer(
    args: argparse.Namespace, contexts: Iterable[ProposedContext | str]
) -> ClientAssociation:
    """The association that :func:`add_peer_flags` describes, proposing ``contexts``."""
    return await connect(
        args.host,
        args.port,
        called_ae=args.aec,
        calling_ae=args.aet,
        contexts=contexts,
        max_pdu_length=args.max_pdu_length,
        connect_timeout=args.timeout,
        dimse_timeout=args.timeout,
        tls=tls_context(args),
    )
