"""The exception tree of StellarPACS.

Every error that can reach the wire carries the answer to put there: an
A-ABORT source and reason (PS3.8 9.3.8), an A-ASSOCIATE-RJ result, source and
reason (PS3.8 9.3.4) or a DIMSE status (PS3.7 Annex C).  Two families are kept
apart, as h11 does: a :class:`LocalProtocolError` means *our* caller misused
the API, a :class:`RemoteProtocolError` means the *peer* broke the protocol.
The connection's receive entry point is the one place that turns a remote
error into an A-ABORT.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "AbortReason",
    "AbortSource",
    "AssociationAborted",
    "AssociationRejected",
    "ConfigError",
    "DIMSEError",
    "LocalProtocolError",
    "RejectResult",
    "RejectSource",
    "RemoteProtocolError",
    "StellarPACSError",
]


class AbortSource(IntEnum):
    """A-ABORT Source field, PS3.8 Table 9-26."""

    SERVICE_USER = 0
    RESERVED = 1
    SERVICE_PROVIDER = 2


class AbortReason(IntEnum):
    """A-ABORT Reason/Diag. field when the source is the service provider, PS3.8 Table 9-26."""

    NOT_SPECIFIED = 0
    UNRECOGNIZED_PDU = 1
    UNEXPECTED_PDU = 2
    RESERVED = 3
    UNRECOGNIZED_PDU_PARAMETER = 4
    UNEXPECTED_PDU_PARAMETER = 5
    INVALID_PDU_PARAMETER_VALUE = 6


class RejectResult(IntEnum):
    """A-ASSOCIATE-RJ Result field, PS3.8 Table 9-21."""

    PERMANENT = 1
    TRANSIENT = 2


class RejectSource(IntEnum):
    """A-ASSOCIATE-RJ Source field, PS3.8 Table 9-21."""

    SERVICE_USER = 1
    SERVICE_PROVIDER_ACSE = 2
    SERVICE_PROVIDER_PRESENTATION = 3


class StellarPACSError(Exception):
    """Root of every error raised by StellarPACS."""


class LocalProtocolError(StellarPACSError):
    """Our own caller asked for something the protocol does not allow here."""


class RemoteProtocolError(StellarPACSError):
    """The peer sent something that breaks PS3.8; answer it with this A-ABORT."""

    def __init__(
        self,
        message: str,
        reason: AbortReason = AbortReason.INVALID_PDU_PARAMETER_VALUE,
        source: AbortSource = AbortSource.SERVICE_PROVIDER,
    ) -> None:
        super().__init__(message)
        self.source = source
        self.reason = reason


class AssociationRejected(StellarPACSError):
    """The association request was refused with A-ASSOCIATE-RJ (PS3.8 9.3.4)."""

    def __init__(self, result: int, source: int, reason: int) -> None:
        super().__init__(f"association rejected: result {result}, source {source}, reason {reason}")
        self.result = result
        self.source = source
        self.reason = reason


class AssociationAborted(StellarPACSError):
    """The association ended by A-ABORT or A-P-ABORT, or the connection was lost."""

    def __init__(self, message: str, source: int | None = None, reason: int | None = None) -> None:
        super().__init__(message)
        self.source = source
        self.reason = reason


class DIMSEError(StellarPACSError):
    """A DIMSE operation failed; ``status`` is what goes into the response (PS3.7 Annex C)."""

    def __init__(self, status: int, message: str = "") -> None:
        super().__init__(message or f"DIMSE status 0x{status:04X}")
        self.status = status


class ConfigError(StellarPACSError):
    """The configuration is not usable; the message names the problem in one line."""
