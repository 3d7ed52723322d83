"""The pytest plugin (entry point ``pytest11``, name ``stellarpacs``): DICOM peers as fixtures.

``dicom_server``: a StellarPACS SCP in this process on a free loopback port
over a temporary archive.  ``dicom_emulator``: a factory of such servers
whose C-ECHO and C-STORE answers carry faults (:mod:`.faults`).
``raw_association``: a factory of :class:`~stellarpacs.testing.raw.RawAssociation`
connections, closed at teardown.  Async fixtures run on pytest-asyncio.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from stellarpacs.aio.handler import ServiceHandler
from stellarpacs.aio.server import Server
from stellarpacs.config import Config
from stellarpacs.services.registry import default_services
from stellarpacs.storage.archive import Archive
from stellarpacs.testing.faults import Fault, FaultyService
from stellarpacs.testing.raw import RawAssociation

__all__ = ["DicomServer", "dicom_emulator", "dicom_server", "raw_association"]

HOST = "127.0.0.1"
#: Teardown waits at most this long for open associations (Server.close).
CLOSE_TIMEOUT = 10.0


@dataclass
class DicomServer:
    """A running in-process SCP: where to reach it and what it stored."""

    host: str
    port: int
    ae_title: str
    archive: Archive
    server: Server
    #: For an emulator: each fault that fired, as (when, occurrence, action).
    fired: list[tuple[str, int, str]] = field(default_factory=list)


async def _start(
    stack: AsyncExitStack, storage: Path, faults: Iterable[Fault | Mapping[str, Any]], **keys: Any
) -> DicomServer:
    values: dict[str, Any] = {"host": HOST, "port": 0, "storage": storage, "fsync": False}
    values |= {"artim_timeout": 5.0} | keys
    config = Config(**values)
    services = await default_services(config)
    stack.push_async_callback(services.close)
    assert services.archive is not None
    handlers: list[ServiceHandler] = list(services.services)
    wanted = [f if isinstance(f, Fault) else Fault(**f) for f in faults]
    fired: list[tuple[str, int, str]] = []
    if wanted:
        counts: Counter[str] = Counter()
        wrapped = [FaultyService(h, wanted, counts) for h in handlers]
        for service in wrapped:
            service.fired = fired
        handlers = list(wrapped)
    server = Server(config, handlers)
    await server.start()
    stack.push_async_callback(server.close, CLOSE_TIMEOUT)
    return DicomServer(HOST, server.port, config.ae_title, services.archive, server, fired)


@pytest_asyncio.fixture
async def dicom_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[DicomServer]:
    """A StellarPACS SCP on a free loopback port over a fresh archive; closed after the test."""
    async with AsyncExitStack() as stack:
        yield await _start(stack, tmp_path_factory.mktemp("dicom_server"), ())


EmulatorFactory = Callable[..., Awaitable[DicomServer]]


@pytest_asyncio.fixture
async def dicom_emulator(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[EmulatorFactory]:
    """``await dicom_emulator(faults=[{"when": "C-STORE", "nth": 2, "action": "status", ...}])``.

    Further keyword arguments are configuration keys (``ae_title``, ``max_pdu_length``...).
    """
    async with AsyncExitStack() as stack:

        async def start(
            faults: Iterable[Fault | Mapping[str, Any]] = (), **keys: Any
        ) -> DicomServer:
            return await _start(stack, tmp_path_factory.mktemp("dicom_emulator"), faults, **keys)

        yield start


RawFactory = Callable[..., Awaitable[RawAssociation]]


@pytest_asyncio.fixture
async def raw_association() -> AsyncIterator[RawFactory]:
    """``await raw_association(host, port, timeout=...)``: a raw association, closed at teardown."""
    opened: list[RawAssociation] = []

    async def open_raw(host: str, port: int, **options: Any) -> RawAssociation:
        raw = await RawAssociation.open(host, port, **options)
        opened.append(raw)
        return raw

    yield open_raw
    for raw in opened:
        await raw.close()
