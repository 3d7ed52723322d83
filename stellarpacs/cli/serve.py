"""``python -m stellarpacs [serve] [--config FILE] [--port N] ...``: run the DICOM server.

The flags override the configuration file, which overrides the embedded
defaults.  The port is bound before the storage is opened, so a port in use is
reported alone; SIGINT or SIGTERM stops accepting and lets the open
associations finish.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Final

from stellarpacs.aio.server import Server
from stellarpacs.audit import Auditor, open_auditor
from stellarpacs.audit.events import (
    ApplicationStarted,
    ApplicationStopped,
    ConfigurationLoaded,
    Outcome,
)
from stellarpacs.cli.common import (
    EXIT_OK,
    Subparsers,
    add_trace_flags,
    os_reason,
    run,
    setup_logging,
)
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
    add_trace_flags(parser)


def _config_from(args: argparse.Namespace) -> Config:
    overrides = {key: getattr(args, key, None) for key in _SERVE_KEYS}
    return load_config(args.config, overrides)


def _loaded(args: argparse.Namespace, config: Config) -> ConfigurationLoaded:
    """Which file, its SHA-256 and which flags overrode it: never a value (it may be secret)."""
    path: Path | None = args.config
    digest = hashlib.sha256(path.read_bytes()).hexdigest() if path is not None else None
    flags = tuple(key for key in _SERVE_KEYS if getattr(args, key, None) is not None)
    return ConfigurationLoaded(config.ae_title, str(path) if path else None, digest, flags)


async def _serve(config: Config, auditor: Auditor, loaded: ConfigurationLoaded) -> int:
    # Lazy on purpose: the services and the archive (aiosqlite, the Q/R planner,
    # every SCP) cost about a fifth of the start-up, and only this command needs
    # them; ``--help`` and the client commands start without them.
    from stellarpacs.services.registry import default_services
    from stellarpacs.storage.archive import Archive

    # The port is bound before the storage is touched, so a port in use is
    # reported alone and leaves no storage folder behind.
    archive = Archive(
        config.storage,
        fsync=config.fsync,
        max_inflated_header=config.max_inflated_header,
        duplicate_policy=config.duplicate_policy,
    )
    auditor.record(loaded)  # here, on the loop, where the syslog sink can send it
    services = await default_services(config, archive, auditor=auditor)
    server = Server(config, services.services, auditor=auditor)
    started: list[bool] = []
    stopped = ApplicationStopped(config.ae_title, "signal")

    def on_started() -> None:
        started.append(True)
        auditor.record(ApplicationStarted(config.ae_title, config.host, server.port))

    try:
        await _bind(server, config)
        try:
            await archive.open()
        except OSError as error:
            raise ConfigError(f"cannot open storage {config.storage}: {os_reason(error)}") from None
        await _serve_until_signal(server, on_started)
    except BaseException as error:
        why = f"error: {type(error).__name__}"
        stopped = ApplicationStopped(config.ae_title, why, Outcome.SERIOUS_FAILURE)
        raise
    finally:
        await server.close()
        await services.close()
        if started:
            auditor.record(stopped)
        await auditor.close()
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


async def _serve_until_signal(server: Server, on_started: Callable[[], None]) -> None:
    """Accept associations until SIGINT or SIGTERM, then let the open ones finish."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await server.start()
    on_started()
    await stop.wait()
    log.info("stopping: finishing open associations")


def cmd_serve(args: argparse.Namespace) -> int:
    config = _config_from(args)
    setup_logging(config.log_level)
    loaded = _loaded(args, config)
    auditor = open_auditor(config.audit, config.ae_title)  # an unwritable file: exit 2
    return run(_serve(config, auditor, loaded))


def register(commands: Subparsers) -> None:
    """Add ``serve`` (also what runs without a command) to the command line."""
    serve = commands.add_parser("serve", help="run the DICOM server (the default)")
    _add_serve_flags(serve)
    serve.set_defaults(func=cmd_serve)
