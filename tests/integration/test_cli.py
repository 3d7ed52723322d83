"""``python -m stellarpacs`` as a user runs it: real subprocesses, bounded in time."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from stellarpacs.aio.server import Server
from tests.integration.peers import (
    HOST,
    SERVER_AE,
    WAIT,
    Completed,
    echoscu,
    kill,
    run_process,
)

#: Bound for the server process to come up (interpreter start, imports, archive open).
STARTUP = 20.0
CLI_TIMEOUT = 30.0


def _free_port() -> int:
    """A port that was free a moment ago (bind port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


async def cli(*args: str, timeout: float = CLI_TIMEOUT) -> Completed:
    return await run_process(sys.executable, "-m", "stellarpacs", *args, timeout=timeout)


def _one_error_line(result: Completed) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@dataclass
class ServerProcess:
    """A ``python -m stellarpacs`` process and the stderr lines it wrote so far."""

    process: asyncio.subprocess.Process
    port: int
    lines: list[str] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    @property
    def stderr(self) -> str:
        return "\n".join(self.lines)

    async def _read(self) -> None:
        assert self.process.stderr is not None
        while line := await self.process.stderr.readline():
            self.lines.append(line.decode(errors="replace").rstrip("\n"))

    async def wait_listening(self) -> bool:
        """True once it logs that it listens; False if it exited first (port taken)."""
        deadline = time.monotonic() + STARTUP
        while time.monotonic() < deadline:
            if any("listening on" in line for line in self.lines):
                return True
            if self.process.returncode is not None:
                assert self.reader is not None
                async with asyncio.timeout(WAIT):
                    await self.reader  # every line it wrote
                return False
            await asyncio.sleep(0.05)
        raise AssertionError(f"server did not come up within {STARTUP} s:\n{self.stderr}")

    async def stop(self) -> int:
        """SIGTERM, then the exit status (bounded)."""
        self.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10.0):
            code = await self.process.wait()
            assert self.reader is not None
            await self.reader
        return code


async def _spawn(args: list[str], port: int) -> ServerProcess:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "stellarpacs",
        *args,
        "--port",
        str(port),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    served = ServerProcess(process, port)
    served.reader = asyncio.create_task(served._read())
    return served


@contextlib.asynccontextmanager
async def serving(*args: str) -> AsyncIterator[ServerProcess]:
    """A server process on a free port (retrying if another process took it meanwhile)."""
    for _ in range(3):
        served = await _spawn(list(args), _free_port())
        try:
            if await served.wait_listening():
                yield served
                return
            assert "cannot listen" in served.stderr, served.stderr  # lost the race; again
        finally:
            await kill(served.process)
            if served.reader is not None:
                served.reader.cancel()
    raise AssertionError("no free port found in 3 tries")


@pytest.mark.interop
@pytest.mark.parametrize("command", [[], ["serve"]], ids=["default-command", "serve"])
async def test_serve_answers_echoscu_and_stops_on_sigterm(
    tmp_path: Path, command: list[str]
) -> None:
    args = [*command, "--host", HOST, "--storage", str(tmp_path / "data")]
    async with serving(*args) as served:
        result = await echoscu(served.port)
        assert result.returncode == 0, result.stderr
        started = time.monotonic()
        code = await served.stop()
        assert code == 0, served.stderr
        assert time.monotonic() - started < 5.0
    assert "association opened" in served.stderr
    assert "association ended" in served.stderr
    assert "Traceback" not in served.stderr
    assert (tmp_path / "data").is_dir()


async def test_echo_command_prints_success(server: Server) -> None:
    result = await cli("echo", HOST, str(server.port), "--aec", SERVER_AE)
    assert result.returncode == 0, result.stderr
    assert "status 0x0000" in result.stdout
    assert "Traceback" not in result.stderr


async def test_echo_command_against_a_closed_port() -> None:
    result = await cli("echo", HOST, str(_free_port()), "--aec", SERVER_AE, "--timeout", "5")
    assert result.returncode == 1
    assert "cannot connect" in _one_error_line(result)


async def test_echo_command_with_wrong_called_ae(server: Server) -> None:
    result = await cli("echo", HOST, str(server.port), "--aec", "NOT-US")
    assert result.returncode == 1
    line = _one_error_line(result)
    assert "association rejected" in line
    assert "result 1, source 1, reason 7" in line


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        ("colour = 'blue'\n", "unknown key 'colour'"),
        ("ae_title = 'ABCDEFGHIJKLMNOPQ'\n", "'ae_title' must be at most 16 characters"),
        ("port = 'eleven'\n", "'port' must be an integer"),
    ],
    ids=["unknown-key", "long-ae-title", "wrong-type"],
)
async def test_bad_configuration_is_one_line(tmp_path: Path, toml: str, named: str) -> None:
    config = tmp_path / "stellarpacs.toml"
    config.write_text(toml)
    result = await cli("serve", "--config", str(config), "--storage", str(tmp_path / "data"))
    assert result.returncode == 2
    line = _one_error_line(result)
    assert named in line
    assert str(config) in line
    assert not (tmp_path / "data").exists()  # refused before touching anything


async def test_long_ae_title_flag_is_one_line(tmp_path: Path) -> None:
    result = await cli("--aet", "A" * 17, "--storage", str(tmp_path / "data"))
    assert result.returncode == 2
    assert "'ae_title' must be at most 16 characters" in _one_error_line(result)


async def test_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = await cli(
            "serve", "--host", HOST, "--port", str(port), "--storage", str(tmp_path / "data")
        )
    assert result.returncode == 2
    line = _one_error_line(result)
    assert "cannot listen" in line and str(port) in line
    assert not (tmp_path / "data").exists()  # the port is checked before the storage
