"""The audit sinks against a live server: escaped hostile text, syslog over UDP and TLS,
and a collector that is away, which must not slow C-STORE down.

The collectors are sockets of the test on 127.0.0.1; the TLS one has a throwaway
certificate (tests/audit/certs.py) that the sink checks against ``syslog_ca_file``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import ssl
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, aclosing, asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset

from stellarpacs.aio.client import connect
from stellarpacs.aio.scu.contexts import ProposedContext
from stellarpacs.aio.server import Server
from stellarpacs.audit import Auditor, open_auditor
from stellarpacs.audit.events import ApplicationStarted, QueryPerformed
from stellarpacs.audit.jsonl import JsonLinesSink
from stellarpacs.audit.settings import AuditSettings, SyslogTarget
from stellarpacs.audit.syslog import SyslogSink, tls_context
from stellarpacs.services.registry import default_services
from stellarpacs.ul.pdus import AAbort, AAssociateAC, AReleaseRP, AReleaseRQ
from tests.audit.certs import make_certificates
from tests.integration.access_peers import PASSCODE, attempt, passcode_hash
from tests.integration.conftest import make_config
from tests.integration.peers import HOST, WAIT, RawPeer, associate_rq
from tests.integration.storage_fixtures import (
    c_store,
    encode_dataset,
    open_store_association,
    synthetic_dataset,
)

CT = "1.2.840.10008.5.1.4.1.1.2"
STUDY_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
FORGER = "EVIL\r\nFAKE\x1b[31m"
FORGER_SHOWN = "EVIL\\r\\nFAKE\\x1b[31m"
#: <PRI>VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD, then the XML.
FRAME = re.compile(rb"<(\d+)>1 (\S+) (\S+) (\S+) (\d+) (\S+) - (<AuditMessage>.*)", re.DOTALL)


def parse_frame(data: bytes) -> tuple[re.Match[bytes], ET.Element]:
    match = FRAME.fullmatch(data)
    assert match is not None, data[:200]
    assert match.group(1) == b"85" and match.group(6) == b"IHE+RFC-3881"
    return match, ET.fromstring(match.group(7))


def event_code(message: ET.Element) -> tuple[str | None, str | None]:
    identification = message.find("EventIdentification")
    assert identification is not None
    event_id = identification.find("EventID")
    type_code = identification.find("EventTypeCode")
    assert event_id is not None and event_id.get("codeSystemName") == "DCM"
    return event_id.get("csd-code"), type_code.get("csd-code") if type_code is not None else None


def assert_a5_structure(message: ET.Element) -> None:
    """PS3.15 A.5.1: identification, participants, then the source, then the objects."""
    assert message.tag == "AuditMessage"
    tags = [child.tag for child in message]
    assert tags[0] == "EventIdentification"
    source = tags.index("AuditSourceIdentification")
    assert tags[1:source] and set(tags[1:source]) == {"ActiveParticipant"}
    assert set(tags[source + 1 :]) <= {"ParticipantObjectIdentification"}
    assert message.find("AuditSourceIdentification/AuditSourceTypeCode") is not None


@dataclass
class UDPCollector(asyncio.DatagramProtocol):
    frames: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self.frames.put_nowait(data)


@asynccontextmanager
async def udp_collector() -> AsyncIterator[tuple[int, UDPCollector]]:
    loop = asyncio.get_running_loop()
    transport, collector = await loop.create_datagram_endpoint(UDPCollector, local_addr=(HOST, 0))
    try:
        yield transport.get_extra_info("sockname")[1], collector
    finally:
        transport.close()


async def next_frames(queue: asyncio.Queue[bytes], count: int) -> list[bytes]:
    async with asyncio.timeout(WAIT):
        return [await queue.get() for _ in range(count)]


@asynccontextmanager
async def audited_server(
    tmp_path: Path, auditor: Auditor, **overrides: Any
) -> AsyncIterator[Server]:
    config = make_config(tmp_path / "storage", **overrides)
    async with AsyncExitStack() as stack:
        services = await default_services(config, auditor=auditor)
        stack.push_async_callback(services.close)
        server = Server(config, services.services, auditor=auditor)
        await server.start()
        stack.push_async_callback(server.close)
        yield server


async def store_one(port: int, calling_ae: str = "OURSCU") -> str:
    ds = synthetic_dataset(CT, 0, patient_id="SYSLOG1")
    client = await open_store_association(port, [ProposedContext(CT)], calling_ae=calling_ae)
    async with client:
        rsp = await c_store(
            client, encode_dataset(ds), sop_class_uid=CT, sop_instance_uid=ds.SOPInstanceUID
        )
        assert rsp.status == 0
    return str(ds.StudyInstanceUID)


async def test_a_hostile_calling_ae_is_escaped_in_the_file_and_the_xml(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    async with udp_collector() as (port, collector):
        udp = SyslogSink(SyslogTarget("udp", HOST, port), "STELLARPACS")
        auditor = Auditor([JsonLinesSink(path), udp])
        async with audited_server(tmp_path, auditor) as server:
            peer = await RawPeer.open(server.port)
            try:
                await peer.send_pdu(replace(associate_rq(), calling_ae_title=FORGER))
                assert isinstance(await peer.read_pdu(), AAssociateAC)
                await peer.send_pdu(AReleaseRQ())
                assert await peer.read_pdu() == AReleaseRP()
            finally:
                await peer.close()
            frames = await next_frames(collector.frames, 2)
        await auditor.close()
    raw = path.read_bytes()
    assert all(0x20 <= byte < 0x7F for byte in raw.replace(b"\n", b"")), raw
    entries = [json.loads(line) for line in raw.decode("ascii").splitlines()]
    assert [e["event"] for e in entries] == ["association-accepted", "association-released"]
    assert all(e["calling_ae"] == FORGER_SHOWN for e in entries)
    for data in frames:
        assert b"\r" not in data and b"\x1b" not in data
        _, message = parse_frame(data)
        assert_a5_structure(message)
        user = message.find("ActiveParticipant[@UserIsRequestor='true']")
        assert user is not None and user.get("UserID") == FORGER_SHOWN
        assert user.get("NetworkAccessPointID") == HOST


async def test_udp_collector_receives_rfc5424_frames_with_a5_messages(tmp_path: Path) -> None:
    async with udp_collector() as (port, collector):
        auditor = Auditor([SyslogSink(SyslogTarget("udp", HOST, port), "STELLARPACS")])
        async with audited_server(tmp_path, auditor) as server:
            study = await store_one(server.port)
            frames = await next_frames(collector.frames, 3)
        await auditor.close()
    messages = [parse_frame(data)[1] for data in frames]
    for message in messages:
        assert_a5_structure(message)
    login, stored, logout = messages
    assert event_code(login) == ("110114", "110122")  # User Authentication, Login
    assert event_code(logout) == ("110114", "110123")  # Logout
    assert event_code(stored) == ("110104", None)  # DICOM Instances Transferred
    identification = stored.find("EventIdentification")
    assert identification is not None
    assert identification.get("EventActionCode") == "C"
    assert identification.get("EventOutcomeIndicator") == "0"
    roles = {
        p.get("UserID"): p.find("RoleIDCode").get("csd-code")  # type: ignore[union-attr]
        for p in stored.iter("ActiveParticipant")
    }
    assert roles == {"OURSCU": "110153", "STELLARPACS": "110152"}
    objects = {o.get("ParticipantObjectID") for o in stored.iter("ParticipantObjectIdentification")}
    assert objects == {study, "SYSLOG1"}
    assert stored.find(".//SOPClass[@UID='" + CT + "']/Instance") is not None


@dataclass
class TLSCollector:
    frames: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)
    peers: list[object] = field(default_factory=list)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """RFC 5425 4.3: MSG-LEN SP SYSLOG-MSG, repeated."""
        self.peers.append(writer.get_extra_info("peercert"))
        try:
            while length := await reader.readuntil(b" "):
                self.frames.put_nowait(await reader.readexactly(int(length[:-1])))
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()


async def test_tls_collector_receives_octet_counted_frames(tmp_path: Path) -> None:
    """Mutual authentication (RFC 5425 5, IHE ATNA): each side checks the other's certificate."""
    certs = make_certificates(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=certs.ca_file)
    context.load_cert_chain(certs.certificate, certs.private_key)
    context.verify_mode = ssl.CERT_REQUIRED
    collector = TLSCollector()
    listener = await asyncio.start_server(collector.serve, HOST, 0, ssl=context)
    port = listener.sockets[0].getsockname()[1]
    settings = AuditSettings(
        syslog=f"tls://{HOST}:{port}",
        syslog_ca_file=str(certs.ca_file),
        syslog_certificate=str(certs.certificate),
        syslog_private_key=str(certs.private_key),
    )
    try:
        auditor = open_auditor(settings, "STELLARPACS")
        (sink,) = auditor.sinks
        assert isinstance(sink, SyslogSink)
        keys = (("PatientName", "<b>&\x00"), ("PatientID", "x" * 10_000))
        find, implicit = "1.2.840.10008.5.1.4.1.2.2.1", "1.2.840.10008.1.2"
        identifier = b"\x08\x00\x52\x00"
        query = QueryPerformed(
            "FINDSCU", "STELLARPACS", find, "STUDY", keys, 0, 0, identifier, implicit
        )
        auditor.record(query)
        auditor.record(query)
        frames = await next_frames(collector.frames, 2)
        await auditor.close()
    finally:
        listener.close()
        await listener.wait_closed()
    assert sink.sent == 2 and sink.dropped == 0
    assert len(collector.peers) == 1 and collector.peers[0]  # one connection, our certificate
    for data in frames:
        _, message = parse_frame(data)
        assert_a5_structure(message)
        assert event_code(message) == ("110112", None)  # Query
        query_object = message.find("ParticipantObjectIdentification")
        assert query_object is not None
        assert query_object.findtext("ParticipantObjectQuery") == "CABSAA=="


async def test_a_collector_with_an_unknown_certificate_gets_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The collector's certificate is checked: one from another authority is refused."""
    ours, theirs = make_certificates(tmp_path / "ours"), make_certificates(tmp_path / "theirs")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(theirs.certificate, theirs.private_key)
    collector = TLSCollector()
    listener = await asyncio.start_server(collector.serve, HOST, 0, ssl=context)
    port = listener.sockets[0].getsockname()[1]
    caplog.set_level(logging.WARNING, logger="stellarpacs.audit")
    try:
        target = SyslogTarget("tls", HOST, port)
        sink = SyslogSink(target, "STELLARPACS", context=tls_context(str(ours.ca_file)))
        auditor = Auditor([sink])
        auditor.record(ApplicationStarted("STELLARPACS", HOST, 104))
        await auditor.close()
    finally:
        listener.close()
        await listener.wait_closed()
    assert sink.sent == 0 and sink.dropped == 1 and collector.frames.empty()
    assert any("CERTIFICATE_VERIFY_FAILED" in r.getMessage() for r in caplog.records)


async def test_a_collector_that_is_away_does_not_slow_c_store(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A TLS collector that accepts TCP but never answers the handshake, a tiny queue."""
    blackhole = socket.socket()
    blackhole.bind((HOST, 0))
    blackhole.listen(1)  # the kernel completes TCP handshakes; nobody speaks TLS
    caplog.set_level(logging.WARNING, logger="stellarpacs.audit")
    try:
        target = SyslogTarget("tls", HOST, blackhole.getsockname()[1])
        sink = SyslogSink(target, "STELLARPACS", queue_size=4)
        auditor = Auditor([sink])
        async with audited_server(tmp_path, auditor) as server:
            started = time.monotonic()
            for _ in range(5):
                await store_one(server.port)
            elapsed = time.monotonic() - started
        closing = time.monotonic()
        await auditor.close()
        closed_in = time.monotonic() - closing
    finally:
        blackhole.close()
    assert elapsed < 3.0, f"5 associations with a C-STORE each took {elapsed:.1f} s"
    assert closed_in < 5.0
    assert sink.sent == 0 and sink.dropped >= 10  # 3 events per association
    warnings = [r for r in caplog.records if "records dropped" in r.getMessage()]
    assert 1 <= len(warnings) <= 3  # now and then, not once per record


async def test_a_udp_collector_that_is_not_there_breaks_nothing(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((HOST, 0))
        port = probe.getsockname()[1]  # free once closed: ICMP port unreachable
    sink = SyslogSink(SyslogTarget("udp", HOST, port), "STELLARPACS")
    auditor = Auditor([sink])
    async with audited_server(tmp_path, auditor) as server:
        await store_one(server.port)
        await store_one(server.port)
    await auditor.close()
    assert sink.sent == 6  # handed to the kernel; the ICMP answers are counted as drops
    assert sink.dropped >= 1


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on the hostile Patient's Name
async def test_hostile_query_keys_and_move_destination_are_escaped(tmp_path: Path) -> None:
    """What a peer asks reaches the trail escaped and bounded, whatever the query's outcome."""
    path = tmp_path / "audit.jsonl"
    auditor = Auditor([JsonLinesSink(path)])
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.PatientName = 'EVIL\r\n{"event":"forged"}\x1b[2J' + "x" * 5000
    identifier.StudyInstanceUID = ""
    async with audited_server(tmp_path, auditor) as server:
        client = await connect(HOST, server.port, called_ae="STELLARPACS", contexts=[STUDY_FIND,
                               STUDY_MOVE], connect_timeout=WAIT, dimse_timeout=WAIT)  # fmt: skip
        async with client:
            async with aclosing(client.find(STUDY_FIND, identifier)) as matches:
                assert [m async for m in matches] == []
            wanted = Dataset()
            wanted.QueryRetrieveLevel, wanted.StudyInstanceUID = "STUDY", "1.2.3"
            async with aclosing(client.move(STUDY_MOVE, wanted, "NO\nWHERE")) as moving:
                statuses = [response.status async for response in moving]
            assert statuses == [0xA801]
    await auditor.close()
    raw = path.read_bytes()
    assert all(0x20 <= byte < 0x7F for byte in raw.replace(b"\n", b""))
    entries = [json.loads(line) for line in raw.decode("ascii").splitlines()]
    events = [e["event"] for e in entries]
    assert events == ["association-accepted", "query", "retrieve", "association-released"]
    query, retrieve = entries[1], entries[2]
    name = query["keys"]["PatientName"]
    assert name.startswith('EVIL\\r\\n{"event":"forged"}\\x1b[2J') and len(name) <= 256
    assert retrieve["destination"] == "NO\\nWHERE" and retrieve["status"] == 0xA801
    assert retrieve["outcome"] == "serious failure"


async def test_an_abort_by_the_peer_is_recorded_with_who_and_why(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    auditor = Auditor([JsonLinesSink(path)])
    async with audited_server(tmp_path, auditor) as server:
        peer = await RawPeer.open(server.port)
        try:
            await peer.send_pdu(associate_rq())
            assert isinstance(await peer.read_pdu(), AAssociateAC)
            await peer.send_pdu(AAbort(source=0, reason=0))
            await peer.wait_eof()
        finally:
            await peer.close()
        async with asyncio.timeout(WAIT):
            while len(path.read_text().splitlines()) < 2:
                await asyncio.sleep(0.01)
    await auditor.close()
    accepted, aborted = (json.loads(line) for line in path.read_text().splitlines())
    assert accepted["event"] == "association-accepted" and accepted["calling_ae"] == "RAWPEER"
    assert aborted["event"] == "association-aborted" and aborted["by"] == "peer"
    assert aborted["reason"] == "A-ABORT source 0 reason 0 (peer)"
    assert aborted["outcome"] == "serious failure" and aborted["requests"] == 0


async def test_the_negotiated_user_is_in_the_association_records(tmp_path: Path) -> None:
    """PS3.15 A.5.3.12: the user that User Identity Negotiation (PS3.7 D.3.3.7) verified."""
    path = tmp_path / "audit.jsonl"
    auditor = Auditor([JsonLinesSink(path)])
    users = {"alice": {"passcode_hash": passcode_hash()}}
    async with audited_server(tmp_path, auditor, users=users) as server:
        outcome = await attempt(server.port, identity=(2, b"alice", PASSCODE.encode(), True))
        assert outcome.echo_status == 0
        anonymous = await attempt(server.port)
        assert anonymous.echo_status == 0
    await auditor.close()
    entries = [json.loads(line) for line in path.read_text(encoding="ascii").splitlines()]
    ends = ("association-released", "association-aborted")
    named = [e for e in entries if e["event"] == "association-accepted" or e["event"] in ends]
    assert [e.get("user") for e in named] == ["alice", "alice", None, None]
    assert PASSCODE not in path.read_text(encoding="ascii")
