"""The examples run as documented: each as a subprocess, every wait bounded."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

from stellarpacs import Config, ProposedContext, Server, connect
from stellarpacs.dimse.commands import CStoreRQ, CStoreRSP
from stellarpacs.uids import EXPLICIT_VR_LITTLE_ENDIAN
from tests.storage.dicomdata import CT_IMAGE, encode, make_dataset

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
STARTUP = 30.0  # seconds for a fresh interpreter to import and bind, on a busy machine


def run_example(name: str, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        check=False,
    )


async def start_example(name: str, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / name),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )


async def finish(process: asyncio.subprocess.Process, timeout: float) -> tuple[bytes, bytes]:
    """Its output once it exits; killed if it has not within ``timeout`` seconds."""
    try:
        return await asyncio.wait_for(process.communicate(), timeout)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def test_sans_io_loop_associates_sends_and_releases() -> None:
    done = run_example("sans_io_loop.py")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    order = [
        "-> AssociationRequested (state now STA3)",
        "-> AssociationAccepted (state now STA6)",
        "-> DataReceived (state now STA6)",
        "decoded on context 1: CEchoRQ(message_id=1",
        "-> ReleaseRequested (state now STA8)",
        "-> ReleaseConfirmed (state now STA1)",
        "final states: requestor STA1, acceptor STA1",
    ]
    positions = [out.index(line) for line in order]
    assert positions == sorted(positions)


async def store_one(port: int, sop_uid: str) -> int:
    """One C-STORE to the example server; returns the response status."""
    context = ProposedContext(CT_IMAGE, (EXPLICIT_VR_LITTLE_ENDIAN,))
    async with await connect(
        "127.0.0.1", port, called_ae="STELLARPACS", calling_ae="EXAMPLETEST", contexts=[context]
    ) as association:
        context_id = association.association.context_for(CT_IMAGE).context_id
        rq = CStoreRQ(
            message_id=1, affected_sop_class_uid=CT_IMAGE, affected_sop_instance_uid=sop_uid
        )
        dataset = encode(make_dataset(sop_uid), EXPLICIT_VR_LITTLE_ENDIAN)
        answer = await association.request(context_id, rq, dataset)
        assert isinstance(answer.command, CStoreRSP)
        return answer.command.status


async def test_embed_server_echoes_stores_hooks_and_stops_by_itself() -> None:
    process = await start_example("embed_server.py", "--seconds", "2", "--interval", "0.5")
    assert process.stdout is not None
    try:
        first = await asyncio.wait_for(process.stdout.readline(), STARTUP)
        match = re.fullmatch(rb"listening on 127\.0\.0\.1:(\d+) as STELLARPACS\n", first)
        assert match, first
        port = int(match.group(1))
        async with await connect("127.0.0.1", port, called_ae="STELLARPACS") as association:
            assert await association.echo() == 0x0000
        assert await store_one(port, "1.2.826.0.1.3680043.2.914.77.1") == 0x0000
    finally:
        rest, errors = await finish(process, 30.0)
    assert process.returncode == 0, errors.decode()
    out = rest.decode()
    assert "stored 1.2.826.0.1.3680043.2.914.77.1 from EXAMPLETEST" in out
    assert "status: " in out
    assert out.rstrip().endswith("stopped")


async def test_echo_client_against_an_in_process_server() -> None:
    async with Server(Config(host="127.0.0.1", port=0)) as server:
        port = str(server.port)
        process = await start_example("echo_client.py", "127.0.0.1", port)
        out, errors = await finish(process, STARTUP)
        rejected = await start_example("echo_client.py", "127.0.0.1", port, "--aec", "OTHER")
        refused, _ = await finish(rejected, STARTUP)
    assert process.returncode == 0, errors.decode()
    lines = out.decode().splitlines()
    assert lines == [
        f"C-ECHO ECHOSCU -> STELLARPACS at 127.0.0.1:{port}: status 0x0000",
        "association released",
    ]
    assert rejected.returncode == 1
    assert refused.decode() == "rejected: result 1, source 1, reason 7\n"


def test_custom_service_answers_the_echoes_it_counts() -> None:
    done = run_example("custom_service.py")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["MODALITY1: 3 C-ECHO", "WORKSTATION: 1 C-ECHO"]


def test_the_plugin_example_runs_under_pytest_in_strict_mode() -> None:
    """examples/test_with_plugin.py gets its fixtures from the installed ``stellarpacs`` plugin."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
         "-o", "asyncio_mode=strict", str(EXAMPLES / "test_with_plugin.py")],
        capture_output=True, text=True, timeout=120, cwd=ROOT, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "5 passed" in done.stdout
