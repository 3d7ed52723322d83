"""Audit events, their JSON form and their A.5 messages, without a network (PS3.15 A.5)."""

from __future__ import annotations

import json
import logging
import xml.etree.ElementTree as ET
from dataclasses import fields
from pathlib import Path

import pytest

from stellarpacs.aio.auditing import aborted_by
from stellarpacs.audit import Auditor, events, open_auditor
from stellarpacs.audit.events import (
    MAX_ITEMS,
    MAX_TEXT,
    ApplicationStarted,
    AssociationAborted,
    AssociationRejected,
    AuditEntry,
    AuditEvent,
    ConfigurationLoaded,
    Outcome,
    QueryPerformed,
    StudyDeleted,
    outcome_of_status,
)
from stellarpacs.audit.jsonl import JsonLinesSink
from stellarpacs.audit.message import _BUILDERS, MESSAGE_TYPES, audit_message
from stellarpacs.audit.settings import AuditSettings, audit_from_table
from stellarpacs.config_checks import KeyProblem

EVENT_TYPES = [
    cls
    for cls in vars(events).values()
    if isinstance(cls, type) and issubclass(cls, AuditEvent) and cls is not AuditEvent
]
FIND = "1.2.840.10008.5.1.4.1.2.2.1"


def test_every_event_type_has_an_a5_message_and_a_builder() -> None:
    assert {cls.name for cls in EVENT_TYPES} == set(MESSAGE_TYPES)
    assert set(EVENT_TYPES) == set(_BUILDERS)
    assert all(kind.event_id[1] == "DCM" for kind in MESSAGE_TYPES.values())


def test_outcomes_follow_the_status_category() -> None:
    assert outcome_of_status(0x0000) is Outcome.SUCCESS
    assert outcome_of_status(0xFF00) is Outcome.SUCCESS
    assert outcome_of_status(0xB000) is Outcome.MINOR_FAILURE
    assert outcome_of_status(0xFE00) is Outcome.MINOR_FAILURE
    assert outcome_of_status(0xA702) is Outcome.SERIOUS_FAILURE
    assert outcome_of_status(0xC000) is Outcome.SERIOUS_FAILURE


def hostile_query() -> QueryPerformed:
    keys = tuple((f"Key{i}\n", "v\x1b" * 1000) for i in range(MAX_ITEMS + 10))
    return QueryPerformed("EVIL\r\n", "STELLARPACS", FIND, "STUDY\x00", keys, 3, 0, b"\x00" * 9000)


def test_the_json_record_is_escaped_and_bounded() -> None:
    record = AuditEntry("2026-01-01T00:00:00.000Z", hostile_query()).record()
    text = json.dumps(record, ensure_ascii=True)
    assert all(" " <= c <= "~" for c in text)
    assert record["calling_ae"] == "EVIL\\r\\n" and record["level"] == "STUDY\\x00"
    keys = record["keys"]
    assert isinstance(keys, dict) and len(keys) == MAX_ITEMS
    assert all(len(value) <= MAX_TEXT for value in keys.values())
    assert "identifier" not in record and record["outcome"] == "success"
    assert list(record)[:3] == ["time", "event", "outcome"]


def test_the_xml_of_a_hostile_event_parses() -> None:
    entry = AuditEntry("2026-01-01T00:00:00.000Z", hostile_query())
    data = ET.tostring(audit_message(entry, "STELLARPACS"), encoding="utf-8")
    assert all(0x20 <= byte < 0x7F for byte in data)
    message = ET.fromstring(data)
    query = message.find("ParticipantObjectIdentification")
    assert query is not None and query.find("ParticipantObjectQuery") is None  # over 8 KiB
    assert message.find("ActiveParticipant[@UserID='EVIL\\r\\n']") is not None


@pytest.mark.parametrize(
    "event",
    [
        ApplicationStarted("STELLARPACS", "0.0.0.0", 104),
        ConfigurationLoaded("STELLARPACS", "/etc/x.toml", "ab" * 32, ("port",)),
        AssociationRejected("A", "B", "127.0.0.1", 5, 1, 1, 7, "called AE title not recognized"),
        AssociationAborted("A", "B", "127.0.0.1", 5, "peer", "A-ABORT source 0 reason 0", 1.0, 2),
        StudyDeleted("1.2.3", 4, "/srv/dicom", "operator"),
    ],
    ids=lambda event: event.name,
)
def test_each_message_names_its_event_and_outcome(event: AuditEvent) -> None:
    message = audit_message(AuditEntry("2026-01-01T00:00:00.000Z", event), "STELLARPACS")
    identification = message.find("EventIdentification")
    assert identification is not None
    kind = MESSAGE_TYPES[event.name]
    assert identification.get("EventActionCode") == kind.action
    assert identification.get("EventOutcomeIndicator") == str(int(event.outcome))
    event_id = identification.find("EventID")
    assert event_id is not None and event_id.get("csd-code") == kind.event_id[0]
    assert len(message.findall("ActiveParticipant")) >= 1


def test_the_json_sink_appends_one_line_per_record(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_text('{"earlier":1}\n')
    sink = JsonLinesSink(path)
    for port in (1, 2):
        sink.emit(AuditEntry("2026-01-01T00:00:00.000Z", ApplicationStarted("S", "h", port)))
    lines = path.read_text().splitlines()
    assert len(lines) == 3 and [json.loads(line).get("port") for line in lines] == [None, 1, 2]
    fresh = tmp_path / "new.jsonl"
    JsonLinesSink(fresh)
    assert (fresh.stat().st_mode & 0o777) == 0o600


async def test_a_failing_write_is_counted_and_warned_never_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """/dev/full answers every write with ENOSPC, as a full disk does."""
    caplog.set_level(logging.WARNING, logger="stellarpacs.audit")
    sink = JsonLinesSink(Path("/dev/full"))
    auditor = Auditor([sink])
    for _ in range(5):
        auditor.record(ApplicationStarted("S", "h", 1))
    await auditor.close()
    assert sink.failed == 5
    assert len([r for r in caplog.records if "not written" in r.getMessage()]) == 1


def test_the_audit_table_is_checked() -> None:
    assert audit_from_table({}) == AuditSettings()
    target = audit_from_table({"syslog": "tls://[::1]"}).target
    assert target is not None and (target.transport, target.host, target.port) == (
        "tls",
        "::1",
        6514,
    )
    for bad in ("ftp://x", "udp://", "udp://host:99999", "udp://host/path"):
        with pytest.raises(KeyProblem, match=r"'audit\.syslog'"):
            audit_from_table({"syslog": bad})
    with pytest.raises(KeyProblem, match=r"'audit\.file' must be a string"):
        audit_from_table({"file": 3})
    names = ["file", "syslog", "syslog_ca_file", "syslog_certificate", "syslog_private_key"]
    assert [f.name for f in fields(AuditSettings)] == names


def test_tls_files_that_cannot_be_used_are_named(tmp_path: Path) -> None:
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello")
    cases = [
        ({"syslog_ca_file": str(tmp_path / "missing.pem")}, "'audit.syslog_ca_file' is not a"),
        ({"syslog_certificate": str(tmp_path / "none.pem")}, "'audit.syslog_certificate' is"),
        ({"syslog_ca_file": str(not_pem)}, "'audit.syslog' TLS files cannot be used"),
    ]
    for values, message in cases:
        settings = AuditSettings(syslog="tls://127.0.0.1:6514", **values)
        with pytest.raises(KeyProblem) as raised:
            open_auditor(settings, "STELLARPACS")
        assert message in str(raised.value)
    udp = AuditSettings(syslog="udp://127.0.0.1", syslog_ca_file=str(tmp_path / "x"))
    assert open_auditor(udp, "STELLARPACS").enabled  # no TLS, no certificate needed


@pytest.mark.parametrize(
    ("end_reason", "by"),
    [
        ("aborted by local user", "local"),
        ("aborted: idle timeout", "local"),
        ("aborted: A-ABORT source 0 reason 0 (peer)", "peer"),
        ("aborted: A-ABORT source 2 reason 6 (provider): invalid PDU parameter", "provider"),
        ("aborted: connection closed without release", "peer"),
        ("aborted: DIMSE command set cannot be decoded", "local"),
    ],
)
def test_who_aborted_is_read_from_the_end_reason(end_reason: str, by: str) -> None:
    assert aborted_by(end_reason) == by
