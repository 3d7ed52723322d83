"""Storage SOP Class SCP (PS3.4 Annex B): every C-STORE becomes a durable PS3.10 file.

The data set is not gathered: when a C-STORE-RQ's command arrives, the
archive opens a temporary file and each fragment is appended as it arrives
(see :mod:`stellarpacs.aio.association`).  The response is sent only after
the archive committed the instance (file fsynced and renamed, index row
committed), so a Success means the modality may forget the image.

Statuses (PS3.4 Table B.2-1 and the 1.3 statement 3.1.3.2.2.1): 0000 when
durable (also for a second copy of a known instance, which is kept out),
A702 (Refused: Out of Resources, range A7xx) when we could not store, C000
when the data set cannot be parsed (:data:`STORE_STATUS` maps storage's
outcomes to them), 0122 when the command's SOP class is not the abstract
syntax of its context, 0117 when the SOP Instance UID arrived with non-ASCII
bytes (see :func:`_refusal`).

What the data set itself says (see :func:`store_status`): a SOP Class UID
(0008,0016) other than the command's is A900, data set does not match SOP
class (PS3.4 B.2.3); a SOP Instance UID (0008,0018) other than the command's
is C000, cannot understand: the data set conforms to its class, but the SCP
cannot tell which instance it is asked to store.  Nothing is stored for
either.  A known SOP Instance UID with other content follows
``duplicate_policy``: ``keep`` answers B006, elements discarded (every
element of this copy was; the first copy stays, so the SCU knows the UID is
stored and that its content was not taken), ``reject`` answers 0111,
duplicate SOP instance (PS3.7 C.5, a failure, the standard's one name for
it), ``replace`` answers Success.  An identical copy is Success, as before.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from enum import IntEnum
from types import MappingProxyType
from typing import Final

from stellarpacs.aio.protocols import AssociationLike
from stellarpacs.audit import Auditor
from stellarpacs.audit.events import InstanceStored, outcome_of_status
from stellarpacs.config import Config
from stellarpacs.dimse.commands import CStoreRQ, CStoreRSP, Message
from stellarpacs.dimse.events import DatasetSink, Incoming
from stellarpacs.dimse.status import Status
from stellarpacs.logtext import printable
from stellarpacs.storage.api import IncomingInstance, InstanceArchive, StoreOutcome, StoreResult
from stellarpacs.uids import STORAGE_TRANSFER_SYNTAXES
from stellarpacs.ul.negotiation import PresentationContext, Role

__all__ = ["STORE_STATUS", "StorageService", "StoreStatus"]

log = logging.getLogger("stellarpacs.storage")


class StoreStatus(IntEnum):
    """The C-STORE-RSP statuses of a store that reached the archive (PS3.4 Table B.2-1)."""

    SUCCESS = 0x0000
    OUT_OF_RESOURCES = 0xA702
    CANNOT_UNDERSTAND = 0xC000


STORE_STATUS: Final[Mapping[StoreResult, StoreStatus]] = MappingProxyType(
    {
        StoreResult.STORED: StoreStatus.SUCCESS,
        StoreResult.NOT_STORED: StoreStatus.OUT_OF_RESOURCES,
        StoreResult.UNREADABLE: StoreStatus.CANNOT_UNDERSTAND,
    }
)
"""How each end of a store is answered."""


class _ArchiveSink:
    """Feeds an archive's incoming instance; dropped files are cleaned if the association dies."""

    __slots__ = ("calling_ae", "incoming")

    def __init__(self, incoming: IncomingInstance, calling_ae: str) -> None:
        self.incoming = incoming
        self.calling_ae = calling_ae

    def write(self, data: bytes) -> None:
        self.incoming.write(data)

    def abandon(self) -> None:
        task = asyncio.get_running_loop().create_task(self.incoming.discard())
        _ABANDONED.add(task)
        task.add_done_callback(_ABANDONED.discard)


class _Refusal:
    """Swallows the data set of a C-STORE refused from its command alone; holds the answer."""

    __slots__ = ("comment", "status")

    def __init__(self, status: int, comment: str) -> None:
        self.status = status
        self.comment = comment

    def write(self, data: bytes) -> None:
        pass

    def abandon(self) -> None:
        pass


_ABANDONED: set[asyncio.Task[None]] = set()


def storage_syntaxes(config: Config) -> Mapping[str, tuple[str, ...]]:
    """Each storage SOP class -> the transfer syntaxes we accept, in preference order."""
    accepted = tuple(
        ts for ts in config.transfer_syntax_preference if ts in STORAGE_TRANSFER_SYNTAXES
    )
    return MappingProxyType({uid: accepted for uid in config.storage_sop_classes})


class StorageService:
    """C-STORE SCP writing into an archive."""

    requests: tuple[type[Message], ...] = (CStoreRQ,)
    roles: Mapping[str, Role] = MappingProxyType({})

    def __init__(
        self, archive: InstanceArchive, config: Config, *, auditor: Auditor | None = None
    ) -> None:
        self.archive = archive
        self.abstract_syntaxes = storage_syntaxes(config)
        self.auditor = auditor if auditor is not None else Auditor()
        self.duplicate_policy = config.duplicate_policy  # the archive applies it; for the log

    def sink(
        self, association: AssociationLike, context: PresentationContext, command: Message
    ) -> DatasetSink | None:
        assert isinstance(command, CStoreRQ)
        refusal = _refusal(context, command)
        if refusal is not None:
            return refusal
        incoming = self.archive.begin(
            sop_class_uid=command.affected_sop_class_uid,
            sop_instance_uid=command.affected_sop_instance_uid,
            transfer_syntax_uid=context.transfer_syntax,
            calling_ae=association.calling_ae_title,
            check_uids=True,
        )
        return _ArchiveSink(incoming, association.calling_ae_title)

    async def handle(self, association: AssociationLike, incoming: Incoming) -> None:
        request = incoming.command
        assert isinstance(request, CStoreRQ)
        status, comment, outcome = await self._store(request, incoming)
        if self.auditor.enabled:
            self._audit(association, request, status, outcome)
        response = CStoreRSP(
            message_id_being_responded_to=request.message_id,
            status=status,
            affected_sop_class_uid=_echoable(request.affected_sop_class_uid),
            affected_sop_instance_uid=_echoable(request.affected_sop_instance_uid),
            error_comment=comment,
        )
        await association.send(incoming.context.context_id, response)

    def _audit(
        self,
        association: AssociationLike,
        request: CStoreRQ,
        status: int,
        outcome: StoreOutcome | None,
    ) -> None:
        record = outcome.record if outcome is not None else None
        self.auditor.record(
            InstanceStored(
                calling_ae=association.calling_ae_title,
                called_ae=association.called_ae_title,
                sop_class_uid=request.affected_sop_class_uid,
                sop_instance_uid=request.affected_sop_instance_uid,
                study_instance_uid=record.study_instance_uid if record else None,
                patient_id=record.patient_id if record else None,
                status=status,
                duplicate=outcome.duplicate if outcome is not None else False,
                outcome=outcome_of_status(status),
            )
        )

    async def _store(
        self, request: CStoreRQ, incoming: Incoming
    ) -> tuple[int, str | None, StoreOutcome | None]:
        sink = incoming.sink
        if isinstance(sink, _Refusal):
            log.warning(
                "C-STORE of %r refused with 0x%04X: %s (SOP class %r on context %d, %s)",
                printable(request.affected_sop_instance_uid),
                sink.status,
                printable(sink.comment),
                printable(request.affected_sop_class_uid),
                incoming.context.context_id,
                incoming.context.abstract_syntax,
            )
            return sink.status, sink.comment, None
        assert isinstance(sink, _ArchiveSink)
        outcome = await sink.incoming.commit()
        status = store_status(outcome)
        uid = printable(request.affected_sop_instance_uid)
        if outcome.conflict:
            log.warning(
                "SOP instance %s arrived again from %s with other content: %s, answered 0x%04X "
                "(duplicate_policy %s)",
                uid, printable(sink.calling_ae), "replaced" if outcome.replaced else "kept out",
                status, self.duplicate_policy,
            )  # fmt: skip
        elif outcome.duplicate:
            log.warning("duplicate SOP instance %s kept out", uid)
        elif outcome.mismatch is not None:
            log.warning("C-STORE of %s refused with 0x%04X: %s", uid, status, outcome.error_comment)
        return status, outcome.error_comment, outcome


def store_status(outcome: StoreOutcome) -> int:
    """The C-STORE-RSP status of a store that reached the archive (see the module docstring)."""
    if outcome.mismatch == "class":
        return Status.DATASET_DOES_NOT_MATCH_SOP_CLASS
    if outcome.conflict and not outcome.replaced:
        stored = outcome.result is StoreResult.STORED
        return Status.ELEMENTS_DISCARDED if stored else Status.DUPLICATE_SOP_INSTANCE
    return STORE_STATUS[outcome.result]


def _refusal(context: PresentationContext, command: CStoreRQ) -> _Refusal | None:
    """Why a C-STORE is refused before its data set is read, or None to store it.

    A UID that held non-ASCII bytes reaches us with U+FFFD in their place (the
    command codec decodes UI values as ASCII, PS3.5 9.1): two different UIDs could
    then name one instance, so it is refused as an invalid SOP instance (PS3.7
    C.5.12) rather than stored under a name that is not its own.
    """
    if command.affected_sop_class_uid != context.abstract_syntax:
        return _Refusal(Status.SOP_CLASS_NOT_SUPPORTED, "SOP class not negotiated on this context")
    if not command.affected_sop_instance_uid.isascii():
        return _Refusal(Status.INVALID_OBJECT_INSTANCE, "SOP Instance UID is not ASCII")
    return None


def _echoable(uid: str) -> str | None:
    """A request UID to repeat in the response; one that cannot be encoded is left out.

    Both are optional in C-STORE-RSP (PS3.7 Table 9.3-2), and a UID that arrived with
    non-ASCII bytes cannot go back on the wire as it came.
    """
    return uid if uid.isascii() else None
