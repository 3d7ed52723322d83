"""Fixtures: an in-process server on 127.0.0.1, port 0, over a temporary archive."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from stellarpacs.aio.server import Server
from stellarpacs.config import Config
from stellarpacs.services.registry import default_services
from tests.integration.peers import HOST

#: ARTIM for test servers: short, so released and aborted connections close quickly.
TEST_ARTIM = 1.0

StartServer = Callable[..., Awaitable[Server]]


def make_config(storage: Path, **overrides: Any) -> Config:
    """A loopback configuration on a free port; ``overrides`` are Config keys."""
    values: dict[str, Any] = {
        "host": HOST,
        "port": 0,
        "storage": storage,
        "artim_timeout": TEST_ARTIM,
        "fsync": False,
    }
    return Config(**(values | overrides))


#: Teardown bound: Server.close() waits 10 s for open associations, then 3 s more at most.
TEARDOWN = 20.0


async def _bounded(step: Callable[[], Awaitable[None]], what: str) -> None:
    """Run a teardown step, failing clearly instead of hanging the suite."""
    try:
        async with asyncio.timeout(TEARDOWN):
            await step()
    except TimeoutError:
        pytest.fail(f"{what} took more than {TEARDOWN} s", pytrace=False)


@pytest.fixture
def server_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """caplog capturing the server's INFO lines."""
    caplog.set_level(logging.INFO, logger="stellarpacs")
    return caplog


@pytest.fixture
async def start_server(tmp_path: Path) -> AsyncIterator[StartServer]:
    """Start servers with Config overrides; each is closed (and its archive) at teardown."""
    async with AsyncExitStack() as stack:
        count = 0

        async def start(**overrides: Any) -> Server:
            nonlocal count
            count += 1
            config = make_config(tmp_path / f"storage{count}", **overrides)
            services = await default_services(config)
            stack.push_async_callback(_bounded, services.close, "closing the archive")
            server = Server(config, services.services)
            await server.start()
            stack.push_async_callback(_bounded, server.close, "closing the server")
            return server

        yield start


@pytest.fixture
async def server(start_server: StartServer, server_log: pytest.LogCaptureFixture) -> Server:
    """A running server with the default limits (10 associations)."""
    return await start_server()
