"""Retrieve SCPs: C-MOVE and C-GET with Storage SCU sub-operations (PS3.4 C.4.2, C.4.3).

Both find the instances the identifier names (:mod:`stellarpacs.storage.retrieval`)
and send each as a C-STORE sub-operation, exactly as stored when the
receiver accepts the stored transfer syntax, otherwise decoded into an
uncompressed one it accepts.  C-MOVE sends over a new association to the
Move Destination, which must be configured in ``[remotes]`` (else A801:
nothing is ever sent to an address that is not configured); C-GET sends on
the same association, on the contexts where the requestor took the SCP role.

A Pending response with the four counts follows each sub-operation; the
final response comes only after the last one: 0000 when all succeeded, B000
with the Failed SOP Instance UID List when some failed, A702 when none could
be attempted (destination unreachable), FE00 after a C-CANCEL.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from pydicom.dataset import Dataset

from stellarpacs.aio.association import Association, DatasetSink, Incoming
from stellarpacs.aio.client import ClientAssociation, connect
from stellarpacs.aio.storescu import StoreItem, StoreResult, propose_contexts, scan_file, send_item
from stellarpacs.config import Config
from stellarpacs.dimse.commands import CGetRQ, CGetRSP, CMoveRQ, CMoveRSP, Message
from stellarpacs.dimse.status import Status, StatusCategory, category
from stellarpacs.errors import AssociationAborted, AssociationRejected, DIMSEError
from stellarpacs.services.datasets import decode_dataset, encode_dataset
from stellarpacs.storage.archive import Archive
from stellarpacs.storage.index import InstanceRecord
from stellarpacs.storage.retrieval import instances_for, retrieve_keys
from stellarpacs.uids import (
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    QR_GET_MODELS,
    QR_MOVE_MODELS,
)
from stellarpacs.ul.negotiation import PresentationContext, Role

__all__ = ["GetService", "MoveService"]

log = logging.getLogger("stellarpacs.retrieve")

_QR_SYNTAXES = (IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN)

#: Marks a retrieve whose final response was already sent.
_ALREADY_ANSWERED = -1


@dataclass(slots=True)
class _Counts:
    """Sub-operation counts (PS3.4 C.4.2.1.4) and the failed instances."""

    remaining: int
    completed: int = 0
    failed: int = 0
    warning: int = 0
    failed_uids: list[str] = field(default_factory=list)

    def add(self, result: StoreResult) -> None:
        self.remaining -= 1
        kind = category(result.status) if result.status is not None else StatusCategory.FAILURE
        if kind is StatusCategory.SUCCESS:
            self.completed += 1
        elif kind is StatusCategory.WARNING:
            self.warning += 1
        else:
            self.failed += 1
            self.failed_uids.append(result.item.sop_instance_uid)

    def fail_rest(self, uids: list[str]) -> None:
        self.failed += len(uids)
        self.remaining -= len(uids)
        self.failed_uids.extend(uids)


class _RetrieveBase:
    """What C-MOVE and C-GET share: identifier, matching, counting, responses."""

    request_class: type[CMoveRQ] | type[CGetRQ]
    response_class: type[CMoveRSP] | type[CGetRSP]
    models: tuple[str, ...]

    def __init__(self, archive: Archive, config: Config) -> None:
        self.archive = archive
        self.config = config
        self.abstract_syntaxes: Mapping[str, tuple[str, ...]] = MappingProxyType(
            {model: _QR_SYNTAXES for model in self.models}
        )
        self.requests: tuple[type[Message], ...] = (self.request_class,)
        self.roles: Mapping[str, Role] = MappingProxyType({})

    def sink(
        self, association: Association, context: PresentationContext, command: Message
    ) -> DatasetSink | None:
        return None

    async def handle(self, association: Association, incoming: Incoming) -> None:
        request = incoming.command
        assert isinstance(request, CMoveRQ | CGetRQ)
        try:
            records = await self._match(incoming)
        except DIMSEError as error:
            await self._final(association, incoming, error.status, None, str(error))
            return
        counts = _Counts(remaining=len(records))
        status = await self._suboperations(association, incoming, records, counts)
        if status != _ALREADY_ANSWERED:
            await self._final(association, incoming, status, counts)

    async def _match(self, incoming: Incoming) -> list[InstanceRecord]:
        context = incoming.context
        ds = decode_dataset(incoming.dataset or b"", context.transfer_syntax)
        keys = retrieve_keys(ds, context.abstract_syntax)
        try:
            return await instances_for(self.archive.index, keys)
        except (sqlite3.Error, OSError) as error:
            raise DIMSEError(Status.OUT_OF_RESOURCES_MATCHES, f"index: {error}") from error

    async def _suboperations(
        self,
        association: Association,
        incoming: Incoming,
        records: list[InstanceRecord],
        counts: _Counts,
    ) -> int:
        raise NotImplementedError

    async def _items(self, records: list[InstanceRecord], counts: _Counts) -> list[StoreItem]:
        """The files of ``records``; a missing or unreadable one counts as failed."""
        root = self.archive.layout.root
        items: list[StoreItem] = []
        for record in records:
            try:
                items.append(await asyncio.to_thread(scan_file, root / record.path))
            except (OSError, ValueError) as error:
                log.error("cannot send %s: %s", record.sop_instance_uid, error)
                counts.fail_rest([record.sop_instance_uid])
        return items

    async def _send_all(
        self,
        association: Association,
        incoming: Incoming,
        sender: Association,
        items: list[StoreItem],
        counts: _Counts,
        *,
        scp_role_only: bool,
    ) -> int:
        """Run the sub-operations over ``sender``; Pending after each; the final status."""
        request = incoming.command
        assert isinstance(request, CMoveRQ | CGetRQ)
        originator = (association.calling_ae_title, request.message_id)
        for position, item in enumerate(items):
            if request.message_id in association.cancelled:
                return Status.CANCEL
            try:
                result = await send_item(
                    sender,
                    item,
                    dimse_timeout=self.config.dimse_timeout,
                    move_originator=originator,
                    scp_role_only=scp_role_only,
                )
            except (AssociationAborted, DIMSEError) as error:
                log.error("sub-operations stopped: %s", error)
                counts.fail_rest([i.sop_instance_uid for i in items[position:]])
                break
            counts.add(result)
            if result.error:
                log.warning("sub-operation for %s failed: %s", item.sop_instance_uid, result.error)
            await self._pending(association, incoming, counts)
        return Status.SUBOPERATIONS_COMPLETE_WITH_FAILURES if counts.failed else Status.SUCCESS

    async def _pending(self, association: Association, incoming: Incoming, counts: _Counts) -> None:
        if counts.remaining <= 0:
            return
        await self._respond(association, incoming, Status.PENDING, counts, None, final=False)

    async def _final(
        self,
        association: Association,
        incoming: Incoming,
        status: int,
        counts: _Counts | None,
        comment: str | None = None,
    ) -> None:
        await self._respond(association, incoming, status, counts, comment, final=True)

    async def _respond(
        self,
        association: Association,
        incoming: Incoming,
        status: int,
        counts: _Counts | None,
        comment: str | None,
        *,
        final: bool,
    ) -> None:
        request = incoming.command
        assert isinstance(request, CMoveRQ | CGetRQ)
        dataset = None
        if final and counts is not None and counts.failed_uids:
            identifier = Dataset()
            identifier.FailedSOPInstanceUIDList = counts.failed_uids
            dataset = encode_dataset(identifier, incoming.context.transfer_syntax)
        remaining = None
        if counts is not None and (not final or status == Status.CANCEL):
            remaining = counts.remaining  # Pending and Cancel only (PS3.4 C.4.2.1.5)
        response = self.response_class(
            message_id_being_responded_to=request.message_id,
            status=status,
            affected_sop_class_uid=request.affected_sop_class_uid,
            number_of_remaining_suboperations=remaining,
            number_of_completed_suboperations=counts.completed if counts else None,
            number_of_failed_suboperations=counts.failed if counts else None,
            number_of_warning_suboperations=counts.warning if counts else None,
            error_comment=comment[:64] if comment else None,
            has_dataset=dataset is not None,
        )
        await association.send(incoming.context.context_id, response, dataset)


class MoveService(_RetrieveBase):
    """C-MOVE SCP for the three MOVE models of the 1.3 statement (Table 3)."""

    request_class = CMoveRQ
    response_class = CMoveRSP
    models = QR_MOVE_MODELS

    async def _suboperations(
        self,
        association: Association,
        incoming: Incoming,
        records: list[InstanceRecord],
        counts: _Counts,
    ) -> int:
        request = incoming.command
        assert isinstance(request, CMoveRQ)
        remote = self.config.remotes.get(request.move_destination)
        if remote is None:
            log.warning(
                "C-MOVE from %s to unknown destination %r refused",
                association.calling_ae_title,
                request.move_destination,
            )
            await self._final(
                association,
                incoming,
                Status.MOVE_DESTINATION_UNKNOWN,
                None,
                f"move destination {request.move_destination} unknown",
            )
            return _ALREADY_ANSWERED
        items = await self._items(records, counts)
        if not items:
            return Status.SUBOPERATIONS_COMPLETE_WITH_FAILURES if counts.failed else Status.SUCCESS
        try:
            client = await self._open(remote.host, remote.port, remote.ae_title, items)
        except (OSError, TimeoutError, AssociationRejected, AssociationAborted) as error:
            log.error("C-MOVE destination %s unreachable: %s", request.move_destination, error)
            counts.fail_rest([i.sop_instance_uid for i in items])
            return Status.OUT_OF_RESOURCES_SUBOPERATIONS
        async with client:
            return await self._send_all(
                association, incoming, client.association, items, counts, scp_role_only=False
            )

    async def _open(
        self, host: str, port: int, ae_title: str, items: list[StoreItem]
    ) -> ClientAssociation:
        return await connect(
            host,
            port,
            called_ae=ae_title,
            calling_ae=self.config.ae_title,
            contexts=propose_contexts(items),
            max_pdu_length=self.config.max_pdu_length,
            connect_timeout=self.config.connect_timeout,
            dimse_timeout=self.config.dimse_timeout,
        )


def _storage_roles(config: Config) -> Mapping[str, Role]:
    """C-GET needs the requestor to act as Storage SCP (PS3.4 C.4.3.3, PS3.7 D.3.3.4)."""
    return MappingProxyType({uid: Role(scu=True, scp=True) for uid in config.storage_sop_classes})


class GetService(_RetrieveBase):
    """C-GET SCP (beyond the 1.3 statement): sub-operations on the same association."""

    request_class = CGetRQ
    response_class = CGetRSP
    models = QR_GET_MODELS

    def __init__(self, archive: Archive, config: Config) -> None:
        super().__init__(archive, config)
        self.roles = _storage_roles(config)

    async def _suboperations(
        self,
        association: Association,
        incoming: Incoming,
        records: list[InstanceRecord],
        counts: _Counts,
    ) -> int:
        items = await self._items(records, counts)
        return await self._send_all(
            association, incoming, association, items, counts, scp_role_only=True
        )
