"""The security-relevant events the audit trail records, one typed dataclass each.

Each event has a type name (``association-accepted``...), an outcome (the
EventOutcomeIndicator of PS3.15 A.5.1, taken from RFC 3881) and its fields.
:func:`fields_of` turns the fields into JSON-ready values with every string
escaped and bounded by :func:`~stellarpacs.logtext.printable`: a peer chooses
its AE titles, UIDs and query values, so none of them may reach a sink raw.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import IntEnum
from typing import ClassVar, Final

from stellarpacs.logtext import printable

__all__ = [
    "MAX_ITEMS",
    "MAX_TEXT",
    "REJECT_REASONS",
    "ApplicationStarted",
    "ApplicationStopped",
    "AssociationAborted",
    "AssociationAccepted",
    "AssociationRejected",
    "AssociationReleased",
    "AuditEntry",
    "AuditEvent",
    "ConfigurationLoaded",
    "InstanceStored",
    "Outcome",
    "QueryPerformed",
    "RetrievePerformed",
    "StudyDeleted",
    "clean_keys",
    "fields_of",
    "outcome_of_status",
]

#: Longest rendering of one string value (a UID is at most 64 characters, PS3.5 9.1).
MAX_TEXT: Final = 256
#: Most items kept of a list or of the query keys; the rest is counted, not written.
MAX_ITEMS: Final = 64


#: A-ASSOCIATE-RJ (source, reason) in words (PS3.8 Table 9-21).
REJECT_REASONS: Final = {
    (1, 1): "no reason given",
    (1, 2): "application context name not supported",
    (1, 3): "calling AE title not recognized",
    (1, 7): "called AE title not recognized",
    (2, 1): "no reason given (ACSE)",
    (2, 2): "protocol version not supported",
    (3, 1): "temporary congestion",
    (3, 2): "local limit exceeded",
}


class Outcome(IntEnum):
    """EventOutcomeIndicator (PS3.15 A.5.1, RFC 3881 5.1.4)."""

    SUCCESS = 0
    MINOR_FAILURE = 4
    SERIOUS_FAILURE = 8
    MAJOR_FAILURE = 12

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", " ")


def outcome_of_status(status: int) -> Outcome:
    """A DIMSE status as an outcome: success, warning (minor) or failure (serious), PS3.7 C."""
    if status in (0x0000, 0xFF00, 0xFF01):
        return Outcome.SUCCESS
    if status == 0x0001 or 0xB000 <= status <= 0xBFFF or status == 0xFE00:
        return Outcome.MINOR_FAILURE
    return Outcome.SERIOUS_FAILURE


class AuditEvent:
    """Base of the events: ``name`` is the type name, ``outcome`` a field of each."""

    name: ClassVar[str]
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One event as recorded: when (UTC, ISO 8601 with milliseconds and ``Z``) and what."""

    time: str
    event: AuditEvent

    def record(self) -> dict[str, object]:
        """The JSON object of the file: time, event type, outcome, then the fields."""
        head: dict[str, object] = {
            "time": self.time,
            "event": self.event.name,
            "outcome": self.event.outcome.label,
        }
        return head | fields_of(self.event)


@dataclass(frozen=True, slots=True)
class ApplicationStarted(AuditEvent):
    """The server listens (PS3.15 A.5.3.1, Application Start)."""

    name: ClassVar[str] = "application-started"
    ae_title: str
    host: str
    port: int
    outcome: Outcome = Outcome.SUCCESS


@dataclass(frozen=True, slots=True)
class ApplicationStopped(AuditEvent):
    """The server stopped listening and its associations ended (A.5.3.1, Application Stop)."""

    name: ClassVar[str] = "application-stopped"
    ae_title: str
    reason: str
    outcome: Outcome = Outcome.SUCCESS


@dataclass(frozen=True, slots=True)
class ConfigurationLoaded(AuditEvent):
    """The configuration in force: its file and the file's SHA-256, never its values."""

    name: ClassVar[str] = "configuration-loaded"
    ae_title: str
    file: str | None
    sha256: str | None
    overrides: tuple[str, ...] = ()
    outcome: Outcome = Outcome.SUCCESS


@dataclass(frozen=True, slots=True)
class AssociationAccepted(AuditEvent):
    """A-ASSOCIATE-AC sent; ``contexts`` are the accepted abstract syntaxes."""

    name: ClassVar[str] = "association-accepted"
    calling_ae: str
    called_ae: str
    peer_host: str
    peer_port: int
    contexts: tuple[str, ...]
    user: str | None = None
    outcome: Outcome = Outcome.SUCCESS


@dataclass(frozen=True, slots=True)
class AssociationRejected(AuditEvent):
    """A-ASSOCIATE-RJ sent: its result, source and reason (PS3.8 9.3.4) and why in words."""

    name: ClassVar[str] = "association-rejected"
    calling_ae: str
    called_ae: str
    peer_host: str
    peer_port: int
    result: int
    source: int
    reason: int
    reason_text: str
    user: str | None = None
    outcome: Outcome = Outcome.MINOR_FAILURE


@dataclass(frozen=True, slots=True)
class AssociationReleased(AuditEvent):
    """The association ended by A-RELEASE."""

    name: ClassVar[str] = "association-released"
    calling_ae: str
    called_ae: str
    peer_host: str
    peer_port: int
    duration: float
    requests: int
    user: str | None = None
    outcome: Outcome = Outcome.SUCCESS


@dataclass(frozen=True, slots=True)
class AssociationAborted(AuditEvent):
    """The association ended otherwise: ``by`` is peer, local or provider, ``reason`` why."""

    name: ClassVar[str] = "association-aborted"
    calling_ae: str
    called_ae: str
    peer_host: str
    peer_port: int
    by: str
    reason: str
    duration: float
    requests: int
    user: str | None = None
    outcome: Outcome = Outcome.SERIOUS_FAILURE


@dataclass(frozen=True, slots=True)
class InstanceStored(AuditEvent):
    """A C-STORE answered: what arrived, from whom, and the status sent."""

    name: ClassVar[str] = "instance-stored"
    calling_ae: str
    called_ae: str
    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str | None
    patient_id: str | None
    status: int
    duplicate: bool = False
    outcome: Outcome = Outcome.SUCCESS


@dataclass(frozen=True, slots=True)
class QueryPerformed(AuditEvent):
    """A C-FIND answered: the model, the level and the keys asked (keyword, value)."""

    name: ClassVar[str] = "query"
    calling_ae: str
    called_ae: str
    sop_class_uid: str
    level: str
    keys: tuple[tuple[str, str], ...]
    matches: int
    status: int
    #: The identifier as received, for ParticipantObjectQuery (A.5.3.10); not in the file.
    identifier: bytes = b""
    transfer_syntax_uid: str = ""
    outcome: Outcome = Outcome.SUCCESS


@dataclass(frozen=True, slots=True)
class RetrievePerformed(AuditEvent):
    """A C-MOVE or C-GET answered: what was asked, where it went, the sub-operation counts."""

    name: ClassVar[str] = "retrieve"
    calling_ae: str
    called_ae: str
    operation: str  # "C-MOVE" or "C-GET"
    sop_class_uid: str
    level: str
    keys: tuple[tuple[str, str], ...]
    destination: str  # the Move Destination; the calling AE for C-GET
    studies: tuple[str, ...]
    completed: int
    failed: int
    warning: int
    status: int
    outcome: Outcome = Outcome.SUCCESS


@dataclass(frozen=True, slots=True)
class StudyDeleted(AuditEvent):
    """``storage delete`` removed a study (or found nothing to remove)."""

    name: ClassVar[str] = "study-deleted"
    study_instance_uid: str
    instances: int
    storage: str
    user: str
    outcome: Outcome = Outcome.SUCCESS


#: Fields that sinks read themselves and the JSON file leaves out.
_NOT_IN_FILE: Final = frozenset({"outcome", "identifier"})


def clean_keys(keys: tuple[tuple[str, str], ...]) -> dict[str, str]:
    """Query keys as a JSON object: names and values escaped, at most MAX_ITEMS of them."""
    return {printable(k, 64): printable(v, MAX_TEXT) for k, v in keys[:MAX_ITEMS]}


def _clean(name: str, value: object) -> object:
    """A JSON value: strings escaped and bounded, lists bounded."""
    if isinstance(value, str):
        return printable(value, MAX_TEXT)
    if name == "keys" and isinstance(value, tuple):
        return clean_keys(value)
    if isinstance(value, tuple):
        return [_clean(name, v) for v in value[:MAX_ITEMS]]
    if isinstance(value, float):
        return round(value, 3)
    return value


def fields_of(event: AuditEvent) -> dict[str, object]:
    """The event's fields, by name, safe to write anywhere (the outcome left to the caller)."""
    return {
        f.name: _clean(f.name, getattr(event, f.name))
        for f in fields(event)  # type: ignore[arg-type]
        if f.name not in _NOT_IN_FILE
    }
