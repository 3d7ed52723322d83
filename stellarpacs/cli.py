"""Command line: ``python -m stellarpacs [serve|echo|...]``.

Every failure a user can cause (a bad configuration, a port in use, a peer
that rejects or cannot be reached) ends in one line on stderr naming the
problem and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from stellarpacs.cli_support import add_peer_flags, connect_peer, run
from stellarpacs.config import Config, load_config
from stellarpacs.errors import (
    AssociationAborted,
    AssociationRejected,
    ConfigError,
    DIMSEError,
    StellarPACSError,
)
from stellarpacs.uids import VERIFICATION

if TYPE_CHECKING:
    from stellarpacs.aio.server import Server

__all__ = ["main"]

log = logging.getLogger("stellarpacs")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

#: Modules that add subcommands: each has ``register(subparsers) -> None``.
_COMMAND_MODULES: tuple[str, ...] = (
    "stellarpacs.storage.cli",
    "stellarpacs.store_cli",
    "stellarpacs.query_cli",
    "stellarpacs.retrieve_cli",
    "stellarpacs.nservices_cli",
)


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


# --- serve ----------------------------------------------------------------------------


def _add_serve_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML configuration file")
    parser.add_argument("--aet", dest="ae_title", help="our AE title (default STELLARPACS)")
    parser.add_argument("--host", help="address to listen on (default 0.0.0.0)")
    parser.add_argument("--port", type=int, help="TCP port (default 11112)")
    parser.add_argument("--storage", type=Path, help="storage folder (default ./stellarpacs-data)")
    parser.add_argument("--max-associations", type=int, dest="max_associations")
    parser.add_argument("--max-pdu", type=int, dest="max_pdu_length")
    parser.add_argument(
        "--log-level", dest="log_level", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )


_SERVE_KEYS = (
    "ae_title",
    "host",
    "port",
    "storage",
    "max_associations",
    "max_pdu_length",
    "log_level",
)


def _config_from(args: argparse.Namespace) -> Config:
    overrides = {key: getattr(args, key, None) for key in _SERVE_KEYS}
    return load_config(args.config, overrides)


def _os_reason(error: OSError) -> str:
    """The short reason of an OSError, without asyncio's restating of the address."""
    if error.errno and error.errno > 0 and not isinstance(error, socket.gaierror):
        return os.strerror(error.errno)
    return error.strerror or str(error)


async def _serve(config: Config) -> int:
    from stellarpacs.aio.server import Server
    from stellarpacs.services.registry import default_services
    from stellarpacs.storage.archive import Archive

    # The port is bound before the storage is touched, so a port in use is
    # reported alone and leaves no storage folder behind.
    archive = Archive(config.storage, fsync=config.fsync)
    services = await default_services(config, archive)
    server = Server(config, services.services)
    try:
        await _bind(server, config)
        try:
            await archive.open()
        except OSError as error:
            raise ConfigError(
                f"cannot open storage {config.storage}: {_os_reason(error)}"
            ) from None
        await _serve_until_signal(server)
    finally:
        await server.close()
        await services.close()
    log.info("stopped")
    return EXIT_OK


async def _bind(server: Server, config: Config) -> None:
    try:
        await server.bind()
    except OSError as error:
        raise ConfigError(
            f"cannot listen on {config.host}:{config.port}: {_os_reason(error)}"
        ) from None


async def _serve_until_signal(server: Server) -> None:
    """Accept associations until SIGINT or SIGTERM, then let the open ones finish."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await server.start()
    await stop.wait()
    log.info("stopping: finishing open associations")


def cmd_serve(args: argparse.Namespace) -> int:
    config = _config_from(args)
    _setup_logging(config.log_level)
    return run(_serve(config))


# --- echo -------------------------------------------------------------------------------


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
    _setup_logging("WARNING")
    return run(_echo(args))


# --- entry point ---------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m stellarpacs",
        description="StellarPACS: a DICOM server and protocol toolkit. "
        "Without a command, serves with the embedded defaults.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser("serve", help="run the DICOM server (the default)")
    _add_serve_flags(serve)
    serve.set_defaults(func=cmd_serve)
    echo = commands.add_parser("echo", help="send C-ECHO to a DICOM peer")
    add_peer_flags(echo)
    echo.add_argument("--repeat", type=int, default=1, help="C-ECHOs on the association")
    echo.set_defaults(func=cmd_echo)
    for module in _COMMAND_MODULES:
        importlib.import_module(module).register(commands)
    return parser


def _describe(error: BaseException) -> str:
    if isinstance(error, AssociationRejected):
        return (
            f"association rejected (result {error.result}, source {error.source}, "
            f"reason {error.reason})"
        )
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, OSError):
        return f"cannot connect: {_os_reason(error)}"
    return str(error)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the command; returns the process exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    if not args_list or (args_list[0].startswith("-") and args_list[0] not in ("-h", "--help")):
        args_list.insert(0, "serve")
    args = parser.parse_args(args_list)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
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
