"""The seven upper-layer PDUs and their items, as frozen dataclasses (PS3.8 9.3).

One representation per thing: these objects are what the codec
(:mod:`stellarpacs.ul.codec`) reads and writes, what the state machine
(:mod:`stellarpacs.ul.fsm`) passes around and what negotiation
(:mod:`stellarpacs.ul.negotiation`) computes.  There are no separate
"primitive" classes.

Text fields are kept without their wire padding: AE titles without the
space padding of PS3.8 9.3.2, UIDs without a trailing NUL.  The codec adds
and strips padding; ``decode(encode(x)) == x`` holds for every value built
here with canonical text (no leading or trailing spaces in AE titles).

The user information item (PS3.8 9.3.2.3, PS3.7 Annex D) is held as one
structured :class:`UserInformation` rather than a list of sub-items, because
negotiation looks its sub-items up by kind; unknown sub-items are skipped on
decode as PS3.7 D.3.3 asks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

__all__ = [
    "APPLICATION_CONTEXT_NAME",
    "PDU",
    "AAbort",
    "AAssociateAC",
    "AAssociateRJ",
    "AAssociateRQ",
    "AReleaseRP",
    "AReleaseRQ",
    "AsynchronousOperationsWindow",
    "ContextResult",
    "PDUType",
    "PDataTF",
    "PresentationContextAC",
    "PresentationContextRQ",
    "PresentationDataValue",
    "RoleSelection",
    "SOPClassCommonExtendedNegotiation",
    "SOPClassExtendedNegotiation",
    "UserIdentityAC",
    "UserIdentityRQ",
    "UserIdentityType",
    "UserInformation",
]

#: The DICOM Application Context Name, PS3.7 Annex A.2.1.
APPLICATION_CONTEXT_NAME = "1.2.840.10008.3.1.1.1"


class PDUType(IntEnum):
    """PDU-type field values, PS3.8 9.3.1."""

    A_ASSOCIATE_RQ = 0x01
    A_ASSOCIATE_AC = 0x02
    A_ASSOCIATE_RJ = 0x03
    P_DATA_TF = 0x04
    A_RELEASE_RQ = 0x05
    A_RELEASE_RP = 0x06
    A_ABORT = 0x07


class ContextResult(IntEnum):
    """Presentation context Result/Reason field of the A-ASSOCIATE-AC, PS3.8 Table 9-18."""

    ACCEPTANCE = 0
    USER_REJECTION = 1
    NO_REASON = 2
    ABSTRACT_SYNTAX_NOT_SUPPORTED = 3
    TRANSFER_SYNTAXES_NOT_SUPPORTED = 4


class UserIdentityType(IntEnum):
    """User-Identity-Type field, PS3.7 Table D.3-14."""

    USERNAME = 1
    USERNAME_AND_PASSCODE = 2
    KERBEROS = 3
    SAML = 4
    JWT = 5


@dataclass(frozen=True, slots=True)
class PresentationContextRQ:
    """Presentation context item of an A-ASSOCIATE-RQ (PS3.8 9.3.2.2)."""

    context_id: int
    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PresentationContextAC:
    """Presentation context item of an A-ASSOCIATE-AC (PS3.8 9.3.3.2).

    ``transfer_syntax`` is significant only when ``result`` is acceptance; on
    the wire a refused context still carries a transfer syntax sub-item.
    """

    context_id: int
    result: ContextResult
    transfer_syntax: str


@dataclass(frozen=True, slots=True)
class AsynchronousOperationsWindow:
    """Asynchronous Operations Window sub-item (PS3.7 D.3.3.3); 0 means unlimited."""

    invoked: int
    performed: int


@dataclass(frozen=True, slots=True)
class RoleSelection:
    """SCP/SCU Role Selection sub-item (PS3.7 D.3.3.4)."""

    sop_class_uid: str
    scu_role: bool
    scp_role: bool


@dataclass(frozen=True, slots=True)
class SOPClassExtendedNegotiation:
    """SOP Class Extended Negotiation sub-item (PS3.7 D.3.3.5); the info is opaque bytes."""

    sop_class_uid: str
    info: bytes


@dataclass(frozen=True, slots=True)
class SOPClassCommonExtendedNegotiation:
    """SOP Class Common Extended Negotiation sub-item (PS3.7 D.3.3.6), RQ only."""

    sop_class_uid: str
    service_class_uid: str
    related_general_sop_classes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class UserIdentityRQ:
    """User Identity Negotiation sub-item of the RQ (PS3.7 D.3.3.7.1)."""

    identity_type: UserIdentityType | int
    positive_response_requested: bool
    primary_field: bytes
    secondary_field: bytes = b""


@dataclass(frozen=True, slots=True)
class UserIdentityAC:
    """User Identity Negotiation sub-item of the AC (PS3.7 D.3.3.7.2)."""

    server_response: bytes


@dataclass(frozen=True, slots=True)
class UserInformation:
    """User Information item (PS3.8 9.3.2.3, 9.3.3.3), with its known sub-items.

    ``maximum_length`` is the Maximum Length sub-item (PS3.8 D.1): the largest
    P-DATA-TF variable field the sender can receive, 0 for no limit.  It and
    the implementation class UID are mandatory in a conformant PDU; a
    decoded PDU that lacks them holds ``None`` so that negotiation, not the
    codec, decides what to do about it.
    """

    maximum_length: int | None = 16384
    implementation_class_uid: str | None = None
    implementation_version_name: str | None = None
    asynchronous_operations_window: AsynchronousOperationsWindow | None = None
    role_selections: tuple[RoleSelection, ...] = ()
    extended_negotiations: tuple[SOPClassExtendedNegotiation, ...] = ()
    common_extended_negotiations: tuple[SOPClassCommonExtendedNegotiation, ...] = ()
    user_identity: UserIdentityRQ | UserIdentityAC | None = None


@dataclass(frozen=True, slots=True)
class AAssociateRQ:
    """A-ASSOCIATE-RQ PDU (PS3.8 9.3.2)."""

    called_ae_title: str
    calling_ae_title: str
    presentation_contexts: tuple[PresentationContextRQ, ...]
    user_information: UserInformation = field(default_factory=UserInformation)
    application_context_name: str = APPLICATION_CONTEXT_NAME
    protocol_version: int = 1


@dataclass(frozen=True, slots=True)
class AAssociateAC:
    """A-ASSOCIATE-AC PDU (PS3.8 9.3.3).

    The AE titles are those of the request, returned unchanged as PS3.8
    9.3.3 asks (their values are not tested by the receiver).
    """

    called_ae_title: str
    calling_ae_title: str
    presentation_contexts: tuple[PresentationContextAC, ...]
    user_information: UserInformation = field(default_factory=UserInformation)
    application_context_name: str = APPLICATION_CONTEXT_NAME
    protocol_version: int = 1


@dataclass(frozen=True, slots=True)
class AAssociateRJ:
    """A-ASSOCIATE-RJ PDU (PS3.8 9.3.4): result, source and reason/diag."""

    result: int
    source: int
    reason: int


@dataclass(frozen=True, slots=True)
class PresentationDataValue:
    """One PDV item of a P-DATA-TF (PS3.8 9.3.5.1, message control header E.2)."""

    context_id: int
    is_command: bool
    is_last: bool
    data: bytes


@dataclass(frozen=True, slots=True)
class PDataTF:
    """P-DATA-TF PDU (PS3.8 9.3.5): one or more PDVs."""

    pdvs: tuple[PresentationDataValue, ...]


@dataclass(frozen=True, slots=True)
class AReleaseRQ:
    """A-RELEASE-RQ PDU (PS3.8 9.3.6)."""


@dataclass(frozen=True, slots=True)
class AReleaseRP:
    """A-RELEASE-RP PDU (PS3.8 9.3.7)."""


@dataclass(frozen=True, slots=True)
class AAbort:
    """A-ABORT PDU (PS3.8 9.3.8); ``reason`` is significant when the source is 2."""

    source: int
    reason: int = 0


PDU = AAssociateRQ | AAssociateAC | AAssociateRJ | PDataTF | AReleaseRQ | AReleaseRP | AAbort
