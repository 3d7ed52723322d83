"""Audit events as DICOM audit messages (PS3.15 A.5), written with :mod:`xml.etree`.

:data:`MESSAGE_TYPES` is the mapping table from our event types to the
messages of PS3.15 A.5.3: EventID, EventActionCode and EventTypeCode.  The
conformance statement prints it.  Every value taken from an event goes
through :func:`~stellarpacs.logtext.printable` first: ElementTree escapes
markup but would write a control character as it is, which no XML 1.0
parser accepts.
"""

from __future__ import annotations

import base64
import getpass
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from stellarpacs.audit.events import (
    MAX_ITEMS,
    MAX_TEXT,
    ApplicationStarted,
    ApplicationStopped,
    AssociationAborted,
    AssociationAccepted,
    AssociationRejected,
    AssociationReleased,
    AuditEntry,
    AuditEvent,
    ConfigurationLoaded,
    InstanceStored,
    QueryPerformed,
    RetrievePerformed,
    StudyDeleted,
)
from stellarpacs.logtext import printable

__all__ = ["MESSAGE_TYPES", "CodedValue", "MessageType", "audit_message", "describe_messages"]

CodedValue = tuple[str, str, str]
"""(code value, coding scheme designator, meaning) of a coded entry (PS3.15 A.5.1)."""

#: Largest identifier quoted in ParticipantObjectQuery; a bigger one is left out.
MAX_QUERY_BYTES: Final = 8192

_USER_AUTHENTICATION: Final = ("110114", "DCM", "User Authentication")
_LOGIN: Final = ("110122", "DCM", "Login")
_LOGOUT: Final = ("110123", "DCM", "Logout")
_APPLICATION: Final = ("110100", "DCM", "Application Activity")
_TRANSFERRED: Final = ("110104", "DCM", "DICOM Instances Transferred")
_SOURCE: Final = ("110153", "DCM", "Source Role ID")
_DESTINATION: Final = ("110152", "DCM", "Destination Role ID")
_STUDY_UID: Final = ("110180", "DCM", "Study Instance UID")
_SOP_CLASS_UID: Final = ("110181", "DCM", "SOP Class UID")
_PATIENT_NUMBER: Final = ("2", "RFC-3881", "Patient Number")
_URI: Final = ("12", "RFC-3881", "URI")


@dataclass(frozen=True, slots=True)
class MessageType:
    """What one event type is in PS3.15 A.5.3: the message, its action, its type code."""

    event_id: CodedValue
    action: str  # EventActionCode: C(reate), R(ead), U(pdate), D(elete), E(xecute)
    type_code: CodedValue | None
    section: str


MESSAGE_TYPES: Final[Mapping[str, MessageType]] = MappingProxyType(
    {
        ApplicationStarted.name: MessageType(
            _APPLICATION, "E", ("110120", "DCM", "Application Start"), "A.5.3.1"
        ),
        ApplicationStopped.name: MessageType(
            _APPLICATION, "E", ("110121", "DCM", "Application Stop"), "A.5.3.1"
        ),
        ConfigurationLoaded.name: MessageType(
            ("110113", "DCM", "Security Alert"),
            "E",
            ("110131", "DCM", "Software Configuration"),
            "A.5.3.11",
        ),
        AssociationAccepted.name: MessageType(_USER_AUTHENTICATION, "E", _LOGIN, "A.5.3.12"),
        AssociationRejected.name: MessageType(_USER_AUTHENTICATION, "E", _LOGIN, "A.5.3.12"),
        AssociationReleased.name: MessageType(_USER_AUTHENTICATION, "E", _LOGOUT, "A.5.3.12"),
        AssociationAborted.name: MessageType(_USER_AUTHENTICATION, "E", _LOGOUT, "A.5.3.12"),
        InstanceStored.name: MessageType(_TRANSFERRED, "C", None, "A.5.3.7"),
        QueryPerformed.name: MessageType(("110112", "DCM", "Query"), "E", None, "A.5.3.10"),
        RetrievePerformed.name: MessageType(_TRANSFERRED, "R", None, "A.5.3.7"),
        StudyDeleted.name: MessageType(
            ("110105", "DCM", "DICOM Study Deleted"), "D", None, "A.5.3.8"
        ),
    }
)
"""Our event types -> PS3.15 A.5.3 messages (EventID, EventActionCode, EventTypeCode)."""


def _text(value: object) -> str:
    return printable(value, MAX_TEXT)


def _coded(parent: ET.Element, tag: str, value: CodedValue) -> None:
    code, scheme, meaning = value
    ET.SubElement(
        parent, tag, {"csd-code": code, "codeSystemName": scheme, "originalText": meaning}
    )


def _participant(
    root: ET.Element,
    user_id: str,
    *,
    requestor: bool,
    role: CodedValue | None = None,
    address: str = "",
    user_name: str | None = None,
) -> None:
    """ActiveParticipant (A.5.2.2); the network access point is an IP address (type 2)."""
    attributes = {"UserID": _text(user_id), "UserIsRequestor": "true" if requestor else "false"}
    if user_name:
        attributes["UserName"] = _text(user_name)
    if address:
        attributes |= {"NetworkAccessPointID": _text(address), "NetworkAccessPointTypeCode": "2"}
    element = ET.SubElement(root, "ActiveParticipant", attributes)
    if role is not None:
        _coded(element, "RoleIDCode", role)


def _object(
    root: ET.Element,
    object_id: str,
    id_type: CodedValue,
    *,
    type_code: str = "2",
    role: str = "3",
) -> ET.Element:
    """ParticipantObjectIdentification (A.5.2.4): type 2 system object, role 3 report."""
    element = ET.SubElement(
        root,
        "ParticipantObjectIdentification",
        {
            "ParticipantObjectID": _text(object_id),
            "ParticipantObjectTypeCode": type_code,
            "ParticipantObjectTypeCodeRole": role,
        },
    )
    _coded(element, "ParticipantObjectIDTypeCode", id_type)
    return element


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _studies(root: ET.Element, studies: Iterable[str]) -> None:
    for uid in list(studies)[:MAX_ITEMS]:
        _object(root, uid, _STUDY_UID)


# --- the participants and objects of each event type ---------------------------------------


def _application(root: ET.Element, event: AuditEvent, source_id: str) -> None:
    """A.5.3.1: the application (110150) and who launched it (110151)."""
    _participant(root, source_id, requestor=False, role=("110150", "DCM", "Application"))
    launcher = ("110151", "DCM", "Application Launcher")
    _participant(root, _os_user(), requestor=True, role=launcher)


def _configuration(root: ET.Element, event: AuditEvent, source_id: str) -> None:
    """A.5.3.11: the application, who launched it, the file (role 13) and its SHA-256."""
    _application(root, event, source_id)
    if isinstance(event, ConfigurationLoaded) and event.file:
        element = _object(root, event.file, _URI, role="13")  # security resource
        if event.sha256:
            ET.SubElement(
                element,
                "ParticipantObjectDetail",
                {"type": "SHA-256", "value": _b64(event.sha256.encode("ascii"))},
            )


def _association(root: ET.Element, event: AuditEvent, source_id: str) -> None:
    """A.5.3.12: the calling AE and its address (the user name once negotiated), our AE."""
    assert isinstance(
        event, AssociationAccepted | AssociationRejected | AssociationReleased | AssociationAborted
    )
    _participant(
        root, event.calling_ae, requestor=True, address=event.peer_host, user_name=event.user
    )
    _participant(root, event.called_ae or source_id, requestor=False)


def _stored(root: ET.Element, event: AuditEvent, source_id: str) -> None:
    """A.5.3.7: the sender (source), us (destination), the study and the patient."""
    assert isinstance(event, InstanceStored)
    _participant(root, event.calling_ae, requestor=True, role=_SOURCE)
    _participant(root, event.called_ae or source_id, requestor=False, role=_DESTINATION)
    if event.study_instance_uid:
        study = _object(root, event.study_instance_uid, _STUDY_UID)
        sop = ET.SubElement(
            study, "SOPClass", {"UID": _text(event.sop_class_uid), "NumberOfInstances": "1"}
        )
        ET.SubElement(sop, "Instance", {"UID": _text(event.sop_instance_uid)})
    if event.patient_id:
        _object(root, event.patient_id, _PATIENT_NUMBER, type_code="1", role="1")


def _query(root: ET.Element, event: AuditEvent, source_id: str) -> None:
    """A.5.3.10: the requestor, us, and the SOP class queried with the identifier."""
    assert isinstance(event, QueryPerformed)
    _participant(root, event.calling_ae, requestor=True, role=_SOURCE)
    _participant(root, event.called_ae or source_id, requestor=False, role=_DESTINATION)
    element = _object(root, event.sop_class_uid, _SOP_CLASS_UID, role="24")  # query
    if event.identifier and len(event.identifier) <= MAX_QUERY_BYTES:
        ET.SubElement(element, "ParticipantObjectQuery").text = _b64(event.identifier)
    if event.transfer_syntax_uid:
        value = _b64(event.transfer_syntax_uid.encode("ascii", "replace"))
        ET.SubElement(
            element, "ParticipantObjectDetail", {"type": "TransferSyntax", "value": value}
        )


def _retrieve(root: ET.Element, event: AuditEvent, source_id: str) -> None:
    """A.5.3.7, sender's side: the requestor, us (source), the destination, the studies."""
    assert isinstance(event, RetrievePerformed)
    _participant(root, event.calling_ae, requestor=True)
    _participant(root, event.called_ae or source_id, requestor=False, role=_SOURCE)
    _participant(root, event.destination, requestor=False, role=_DESTINATION)
    _studies(root, event.studies)


def _deleted(root: ET.Element, event: AuditEvent, source_id: str) -> None:
    """A.5.3.8: who deleted (the operating system user of the tool) and the study."""
    assert isinstance(event, StudyDeleted)
    _participant(root, event.user, requestor=True)
    _participant(root, source_id, requestor=False, role=("110150", "DCM", "Application"))
    _studies(root, [event.study_instance_uid])


_Builder = Callable[[ET.Element, AuditEvent, str], None]
_BUILDERS: Final[Mapping[type[AuditEvent], _Builder]] = MappingProxyType(
    {
        ApplicationStarted: _application,
        ApplicationStopped: _application,
        ConfigurationLoaded: _configuration,
        AssociationAccepted: _association,
        AssociationRejected: _association,
        AssociationReleased: _association,
        AssociationAborted: _association,
        InstanceStored: _stored,
        QueryPerformed: _query,
        RetrievePerformed: _retrieve,
        StudyDeleted: _deleted,
    }
)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def _description(event: AuditEvent) -> str | None:
    if isinstance(event, AssociationRejected):
        return f"A-ASSOCIATE-RJ {event.result}/{event.source}/{event.reason}: {event.reason_text}"
    if isinstance(event, AssociationAborted):
        return f"aborted by {event.by}: {event.reason}"
    if isinstance(event, InstanceStored | QueryPerformed | RetrievePerformed):
        return f"status 0x{event.status:04X}"
    return None


def audit_message(entry: AuditEntry, source_id: str) -> ET.Element:
    """The AuditMessage of ``entry`` (PS3.15 A.5.1); ``source_id`` is our AE title."""
    event = entry.event
    kind = MESSAGE_TYPES[event.name]
    root = ET.Element("AuditMessage")
    action = "R" if isinstance(event, InstanceStored) and event.duplicate else kind.action
    identification = ET.SubElement(
        root,
        "EventIdentification",
        {
            "EventActionCode": action,
            "EventDateTime": entry.time,
            "EventOutcomeIndicator": str(int(event.outcome)),
        },
    )
    _coded(identification, "EventID", kind.event_id)
    if kind.type_code is not None:
        _coded(identification, "EventTypeCode", kind.type_code)
    description = _description(event)
    if description:
        ET.SubElement(identification, "EventOutcomeDescription").text = _text(description)
    _BUILDERS[type(event)](root, event, source_id)
    # The schema's order: participants, then the source, then the objects (A.5.1).
    objects = [child for child in root if child.tag == "ParticipantObjectIdentification"]
    for child in objects:
        root.remove(child)
    source = ET.SubElement(root, "AuditSourceIdentification", {"AuditSourceID": _text(source_id)})
    _coded(source, "AuditSourceTypeCode", ("4", "DCM", "Application Server Process"))
    root.extend(objects)
    return root


def describe_messages() -> list[tuple[str, MessageType, str]]:
    """(event type, its message, who and what it names) for each event, for the statement."""
    rows = []
    for cls, builder in _BUILDERS.items():
        summary = (builder.__doc__ or "").split(":", 1)[-1].strip().rstrip(".")
        rows.append((cls.name, MESSAGE_TYPES[cls.name], summary))
    return rows
