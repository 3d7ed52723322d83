"""What every client command shares: the peer flags, the association, the event loop."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Coroutine, Iterable
from typing import Any, TypeVar

from stellarpacs.aio.client import ClientAssociation, connect
from stellarpacs.aio.scu.contexts import ProposedContext

__all__ = ["add_peer_flags", "connect_peer", "run"]

_T = TypeVar("_T")


def run(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run on uvloop when it is installed (a dependency on Linux), else asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


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
    )
