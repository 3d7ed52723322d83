"""Wire traces (--trace: JSON lines) and captures (--pcap) of the CLI, read back by tshark."""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from stellarpacs import connect
from stellarpacs.testing import RawAssociation, TraceWriter, tapping
from stellarpacs.testing.plugin import DicomServer
from stellarpacs.ul.codec import encode_pdu
from stellarpacs.ul.pdus import AAbort, UserIdentityRQ, UserInformation
from tests.integration.peers import HOST, WAIT, Completed, associate_rq, kill, run_process
from tests.integration.retrieve_fixtures import wait_listening
from tests.integration.storage_fixtures import free_port
from tests.storage.dicomdata import EXPLICIT_LE, encode, file_meta, make_dataset, write_file

ROOT = Path(__file__).resolve().parents[2]
ECHO_PDUS = [
    "A-ASSOCIATE-RQ",
    "A-ASSOCIATE-AC",
    "P-DATA-TF",
    "P-DATA-TF",
    "A-RELEASE-RQ",
    "A-RELEASE-RP",
]
ECHO_TYPES = ["0x01", "0x02", "0x04", "0x04", "0x05", "0x06"]


def tshark() -> str:
    """tshark's path; fails (never skips) when it is missing: scripts/test installs it."""
    path = shutil.which("tshark")
    if path is None:
        pytest.fail(
            "tshark is missing: install Debian's `tshark` (scripts/test does)", pytrace=False
        )
    return path


async def tshark_types(pcap: Path, port: int) -> list[str]:
    """The DICOM PDU types tshark's dissector decodes in ``pcap``, in order."""
    done = await run_process(
        tshark(),
        "-r",
        str(pcap),
        "-d",
        f"tcp.port=={port},dicom",
        "-T",
        "fields",
        "-e",
        "dicom.pdu.type",
        env=dict(os.environ, HOME=str(pcap.parent)),
    )
    assert done.returncode == 0, done.stderr
    return [t for line in done.stdout.split() for t in line.split(",") if t]


async def cli(*args: str) -> Completed:
    return await run_process(sys.executable, "-m", "stellarpacs", *args, timeout=60)


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="ascii").splitlines()]


async def test_echo_trace_and_pcap(dicom_server: DicomServer, tmp_path: Path) -> None:
    trace, pcap = tmp_path / "echo.jsonl", tmp_path / "echo.pcap"
    port = str(dicom_server.port)
    done = await cli(
        "echo",
        HOST,
        port,
        "--aec",
        dicom_server.ae_title,
        "--trace",
        str(trace),
        "--pcap",
        str(pcap),
    )
    assert done.returncode == 0, done.stderr
    got = lines(trace)
    assert [line["pdu"] for line in got] == ECHO_PDUS
    assert [line["direction"] for line in got] == ["out", "in"] * 3
    assert {line["peer"] for line in got} == {f"{HOST}:{port}"}
    rq = got[0]["fields"]
    assert rq["called_ae_title"] == dicom_server.ae_title
    assert rq["presentation_contexts"][0]["abstract_syntax"] == "1.2.840.10008.1.1"
    assert got[1]["fields"]["user_information"]["implementation_class_uid"]
    assert got[2]["fields"]["pdvs"][0] | {"length": 0} == {
        "context_id": 1,
        "is_command": True,
        "is_last": True,
        "length": 0,
    }
    assert got[2]["commands"][0]["message"] == "CEchoRQ"
    assert got[2]["commands"][0]["message_id"] == 1
    assert (
        got[3]["commands"][0] | {"message_id_being_responded_to": 1, "status": 0}
        == got[3]["commands"][0]
    )
    assert got[3]["commands"][0]["message"] == "CEchoRSP"
    assert await tshark_types(pcap, dicom_server.port) == ECHO_TYPES


async def test_store_trace_shows_data_set_pdvs(dicom_server: DicomServer, tmp_path: Path) -> None:
    uid = "1.2.826.0.1.3680043.2.914.99.7"
    path = write_file(
        tmp_path / "one.dcm",
        file_meta(sop_instance_uid=uid),
        encode(make_dataset(uid), EXPLICIT_LE),
    )
    trace, pcap = tmp_path / "store.jsonl", tmp_path / "store.pcap"
    port = str(dicom_server.port)
    done = await cli(
        "store",
        HOST,
        port,
        str(path),
        "--aec",
        dicom_server.ae_title,
        "--max-pdu",
        "512",
        "--trace",
        str(trace),
        "--pcap",
        str(pcap),
    )
    assert done.returncode == 0, done.stderr
    got = lines(trace)
    commands = [c["message"] for line in got for c in line.get("commands", [])]
    assert commands == ["CStoreRQ", "CStoreRSP"]
    data_pdvs = [
        p
        for line in got
        if line["direction"] == "out"
        for p in line.get("fields", {}).get("pdvs", [])
        if not p["is_command"]
    ]
    assert data_pdvs and data_pdvs[-1]["is_last"] and sum(p["length"] for p in data_pdvs) > 100
    types = await tshark_types(pcap, dicom_server.port)
    assert types[:2] == ["0x01", "0x02"] and types[-2:] == ["0x05", "0x06"]
    assert types.count("0x04") == sum(1 for line in got if line["pdu"] == "P-DATA-TF")


async def test_serve_trace_and_pcap(tmp_path: Path) -> None:
    trace, pcap, port = tmp_path / "serve.jsonl", tmp_path / "serve.pcap", free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "stellarpacs",
        "serve",
        "--host",
        HOST,
        "--port",
        str(port),
        "--storage",
        str(tmp_path / "st"),
        "--trace",
        str(trace),
        "--pcap",
        str(pcap),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=ROOT,
    )
    try:
        await wait_listening(process, port)
        async with await connect(HOST, port, called_ae="STELLARPACS") as client:
            assert await client.echo() == 0
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(WAIT * 4):
            assert await process.wait() == 0
    finally:
        await kill(process)
    got = lines(trace)
    assert [line["pdu"] for line in got] == ECHO_PDUS
    assert [line["direction"] for line in got] == ["in", "out"] * 3
    assert got[2]["commands"][0]["message"] == "CEchoRQ"
    assert await tshark_types(pcap, port) == ECHO_TYPES
    verbose = await run_process(
        tshark(),
        "-r",
        str(pcap),
        "-d",
        f"tcp.port=={port},dicom",
        "-V",
        env=dict(os.environ, HOME=str(tmp_path)),
    )
    assert "A-ASSOCIATE request" in verbose.stdout and "STELLARPACS" in verbose.stdout


async def test_trace_escapes_peer_text_and_hides_secrets(dicom_server: DicomServer) -> None:
    """An AE title with an escape sequence lands escaped; a passcode never lands at all."""
    buffer = io.StringIO()
    identity = UserIdentityRQ(2, False, b"alice", b"s3cret-passcode")
    info = UserInformation(implementation_class_uid="1.2.3", user_identity=identity)
    rq = replace(associate_rq(dicom_server.ae_title), user_information=info)
    raw_rq = encode_pdu(rq).replace(b"RAWPEER ", b"EVIL\x1b[2J")
    raw = await RawAssociation.open(HOST, dicom_server.port, timeout=5, tap=TraceWriter(buffer))
    async with raw:
        await raw.send(raw_rq)
        await raw.expect()
        await raw.send(b"\x0a\x00\x00\x00\x00\x01x")
        await raw.receive()
    text = buffer.getvalue()
    assert "\x1b" not in text and "\\u001b" in text
    assert "s3cret" not in text and "alice" not in text
    last_out = [json.loads(line) for line in text.splitlines() if '"out"' in line][-1]
    assert last_out["pdu"] == "0x0A" and "unrecognized PDU type" in last_out["error"]


def test_trace_to_a_folder_that_does_not_exist_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "stellarpacs",
            "echo",
            HOST,
            "1",
            "--trace",
            str(tmp_path / "no" / "t.jsonl"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "cannot write" in done.stderr


async def test_serve_side_trace_of_bad_input(dicom_server: DicomServer, tmp_path: Path) -> None:
    """What a hostile peer sends the server is traced (errors named) and the server goes on."""
    trace = tmp_path / "bad.jsonl"
    with tapping(trace=trace):
        for garbage in (b"\x0a\x00\x00\x00\x00\x01x", b"\x04\x00\xff\xff\xff\xf0" + b"x" * 100):
            raw = await RawAssociation.open(HOST, dicom_server.port, timeout=5)
            async with raw:
                await raw.send(garbage)
                assert isinstance(await raw.expect(), AAbort)
        async with await connect(HOST, dicom_server.port, called_ae=dicom_server.ae_title) as c:
            assert await c.echo() == 0
    got = lines(trace)
    incoming = [line for line in got if line["direction"] == "in"]
    assert incoming[0]["pdu"] == "0x0A" and "unrecognized PDU type" in incoming[0]["error"]
    assert (
        "exceeds the limit" in incoming[1]["error"] and "not traced further" in incoming[1]["error"]
    )
    # Our own client is traced too (every connection of the process is): both sides, interleaved.
    echo = [line for line in got if "error" not in line][-12:]
    assert sorted(line["pdu"] for line in echo) == sorted(ECHO_PDUS * 2)
    assert {line["direction"] for line in echo} == {"in", "out"}
