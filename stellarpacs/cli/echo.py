"""``python -m stellarpacs echo HOST PORT [--repeat N]``: a Verification SCU (PS3.4 A).

One line per C-ECHO with its status; the exit status is 0 only when every
answer was Success.
"""

from __future__ import annotations

import argparse

from stellarpacs.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    Subparsers,
    add_peer_flags,
    connect_peer,
    run,
    setup_logging,
)
from stellarpacs.uids import VERIFICATION

__all__ = ["register"]


async def _echo(args: argparse.Namespace) -> int:
    association = await connect_peer(args, (VERIFICATION,))
    async with association:
        for _ in range(args.repeat):
            status = await association.echo()
            print(f"C-ECHO to {args.aec} at {args.host}:{args.port}: status 0x{status:04X}")
            if status != 0:
                return EXIT_FAILED
    return EXIT_OK


def cmd_echo(args: argparse.Namespace) -> int:
    setup_logging("WARNING")
    return run(_echo(args))


def register(commands: Subparsers) -> None:
    """Add ``echo`` to the command line."""
    echo = commands.add_parser("echo", help="send C-ECHO to a DICOM peer")
    add_peer_flags(echo)
    echo.add_argument("--repeat", type=int, default=1, help="C-ECHOs on the association")
    echo.set_defaults(func=cmd_echo)
