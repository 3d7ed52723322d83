"""Storage SOP Class SCP (PS3.4 Annex B): every C-STORE becomes a durable PS3.10 file.

The data set is not gathered: when a C-STORE-RQ's command arrives, the
archive opens a temporary file and each fragment is appended as it arrives
(see :mod:`stellarpacs.aio.association`).  The response is sent only after
the archive committed the instance (file fsynced and renamed, index row
committed), so a Success means the modality may forget the image.

Statuses (PS3.4 Table B.2-1 and the 1.3 statement 3.1.3.2.2.1): 0000 when
durable (also for a second copy of a known instance, which is kept out),
A702 when we could not store, C000 when the data set cannot be parsed, 0122
when the command's SOP class is not the abstract syntax of its context.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from types import MappingProxyType

from stellarpacs.aio.association import Association, DatasetSink, Incoming
from stellarpacs.config import Config
from stellarpacs.dimse.commands import CStoreRQ, CStoreRSP, Message
from stellarpacs.dimse.status import Status
from stellarpacs.storage.archive import Archive, IncomingInstance
from stellarpacs.uids import STORAGE_TRANSFER_SYNTAXES
from stellarpacs.ul.negotiation import PresentationContext, Role

__all__ = ["StorageService"]

log = logging.getLogger("stellarpacs.storage")


class _ArchiveSink:
    """Feeds an archive's incoming instance; dropped files are cleaned if the association dies."""

    __slots__ = ("incoming",)

    def __init__(self, incoming: IncomingInstance) -> None:
        self.incoming = incoming

    def write(self, data: bytes) -> None:
        self.incoming.write(data)

    def abandon(self) -> None:
        task = asyncio.get_running_loop().create_task(self.incoming.discard())
        _ABANDONED.add(task)
        task.add_done_callback(_ABANDONED.discard)


class _DiscardSink:
    """Swallows the data set of a C-STORE that will be refused anyway."""

    __slots__ = ()

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
    """C-STORE SCP writing into an :class:`Archive`."""

    requests: tuple[type[Message], ...] = (CStoreRQ,)
    roles: Mapping[str, Role] = MappingProxyType({})

    def __init__(self, archive: Archive, config: Config) -> None:
        self.archive = archive
        self.abstract_syntaxes = storage_syntaxes(config)

    def sink(
        self, association: Association, context: PresentationContext, command: Message
    ) -> DatasetSink | None:
        assert isinstance(command, CStoreRQ)
        if command.affected_sop_class_uid != context.abstract_syntax:
            return _DiscardSink()
        incoming = self.archive.begin(
            sop_class_uid=command.affected_sop_class_uid,
            sop_instance_uid=command.affected_sop_instance_uid,
            transfer_syntax_uid=context.transfer_syntax,
            calling_ae=association.calling_ae_title,
        )
        return _ArchiveSink(incoming)

    async def handle(self, association: Association, incoming: Incoming) -> None:
        request = incoming.command
        assert isinstance(request, CStoreRQ)
        status, comment = await self._store(request, incoming)
        response = CStoreRSP(
            message_id_being_responded_to=request.message_id,
            status=status,
            affected_sop_class_uid=request.affected_sop_class_uid,
            affected_sop_instance_uid=request.affected_sop_instance_uid,
            error_comment=comment,
        )
        await association.send(incoming.context.context_id, response)

    async def _store(self, request: CStoreRQ, incoming: Incoming) -> tuple[int, str | None]:
        sink = incoming.sink
        if not isinstance(sink, _ArchiveSink):
            log.warning(
                "C-STORE of %s refused: SOP class %s not negotiated on context %d (%s)",
                request.affected_sop_instance_uid,
                request.affected_sop_class_uid,
                incoming.context.context_id,
                incoming.context.abstract_syntax,
            )
            return Status.SOP_CLASS_NOT_SUPPORTED, "SOP class not negotiated on this context"
        outcome = await sink.incoming.commit()
        if outcome.duplicate:
            log.warning("duplicate SOP instance %s kept out", request.affected_sop_instance_uid)
        return outcome.status, outcome.error_comment
