"""``python -m stellarpacs [serve] [--config FILE] [--port N] ...``: run the DICOM server.

The flags override the configuration file, which overrides the embedded
defaults.  The port is bound before the storage is opened, so a port in use is
reported alone; SIGINT or SIGTERM stops accepting and lets the open
associations finish.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path
from typing import Final

from stellarpacs.aio.server import Server
from stellarpacs.cli.common import EXIT_OK, Subparsers, os_reason, run, setup_logging
from stellarpacs.config import Config, load_config
from stellarpacs.errors import ConfigError

__all__ = ["register"]

log = logging.getLogger("stellarpacs")

_SERVE_KEYS: Final = (
    "ae_title",
    "host",
    "port",
    "storage",
    "max_associations",
    "max_pdu_length",
    "log_level",
)


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


def _config_from(args: argparse.Namespace) -> Config:
    overrides = {key: getattr(args, key, None) for key in _SERVE_KEYS}
    return load_config(args.config, overrides)


async def _serve(config: Config) -> int:
    # Lazy on purpose: the services and the archive (aiosqlite, the Q/R planner,
    # every SCP) cost about a fifth of the start-up, and only this command needs
    # them; ``--help`` and the client commands start without them.
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
            raise ConfigError(f"cannot open storage {config.storage}: {os_reason(error)}") from None
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
        ports = [] if config.tls.only else [str(config.port)]
        ports += [f"TLS {config.tls.port}"] if config.tls.enabled else []
        raise ConfigError(
            f"cannot listen on {config.host}:{' or '.join(ports)}: {os_reason(error)}"
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
    setup_logging(config.log_level)
    return run(_serve(config))


def register(commands: Subparsers) -> None:
    """Add ``serve`` (also what runs without a command) to the command line."""
    serve = commands.add_parser("serve", help="run the DICOM server (the default)")
    _add_serve_flags(serve)
    serve.set_defaults(func=cmd_serve)
