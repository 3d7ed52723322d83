"""Command line: ``python -m stellarpacs [serve|echo|...]``.

One module per command group, each with a ``register(subparsers)`` that adds
its sub-commands (:data:`~stellarpacs.cli.common.Register`); this module only
builds the parser from them and runs the chosen command.

Every failure a user can cause (a bad configuration, a port in use, a peer
that rejects or cannot be reached) ends in one line on stderr naming the
problem and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import ssl
import sys
from collections.abc import Sequence
from typing import Final

from stellarpacs.cli import echo, nservices, passcode, query, retrieve, serve, storage, store
from stellarpacs.cli.common import (
    EXIT_FAILED,
    EXIT_USAGE,
    Command,
    Register,
    os_reason,
    wire_taps,
)
from stellarpacs.errors import (
    AssociationAborted,
    AssociationRejected,
    ConfigError,
    DIMSEError,
    StellarPACSError,
)
from stellarpacs.tls import describe_handshake_error

__all__ = ["main"]

#: The command groups, in the order ``--help`` lists them.
_GROUPS: Final[tuple[Register, ...]] = (
    serve.register,
    echo.register,
    storage.register,
    store.register,
    query.register,
    retrieve.register,
    nservices.register,
    passcode.register,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m stellarpacs",
        description="StellarPACS: a DICOM server and protocol toolkit. "
        "Without a command, serves with the embedded defaults.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in _GROUPS:
        register(commands)
    return parser


def _describe(error: BaseException) -> str:
    if isinstance(error, AssociationRejected):
        return (
            f"association rejected (result {error.result}, source {error.source}, "
            f"reason {error.reason})"
        )
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, ssl.SSLError):
        return f"TLS handshake failed: {describe_handshake_error(error)}"
    if isinstance(error, OSError):
        return f"cannot connect: {os_reason(error)}"
    return str(error)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the command; returns the process exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    if not args_list or (args_list[0].startswith("-") and args_list[0] not in ("-h", "--help")):
        args_list.insert(0, "serve")
    args = parser.parse_args(args_list)
    func: Command = args.func
    try:
        with wire_taps(args):
            return func(args)
    except ConfigError as error:
        print(f"stellarpacs: configuration error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (
        AssociationRejected,
        AssociationAborted,
        DIMSEError,
        StellarPACSError,
        OSError,
        TimeoutError,
    ) as error:
        print(f"stellarpacs {args.command}: {_describe(error)}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_FAILED
