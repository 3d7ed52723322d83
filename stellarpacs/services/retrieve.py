"""Retrieve SCPs: C-MOVE and C-GET with Storage SCU sub-operations (PS3.4 C.4.2, C.4.3).

Both find the instances the identifier names (``storage.api.InstanceLookup``)
and send each as a C-STORE sub-operation, exactly as stored when the
receiver accepts the stored transfer syntax, otherwise decoded into an
uncompressed one it accepts.  C-MOVE sends over a new association to the
Move Destination, which must be configured in ``[remotes]`` and allowed
``store`` (else A801: nothing is ever sent to an address that is not
configured, or not meant to receive); C-GET sends on
the same association, on the contexts where the requestor took the SCP role.

Pending responses with the four counts report progress: after the first
sub-operation, then at most every :attr:`pending_interval` seconds (PS3.4
C.4.2.3.1 makes them optional; one per instance would cost a study of small
instances a third of its time). The final response comes only after the
last sub-operation: 0000 when all succeeded, B000 with the Failed SOP
Instance UID List when some failed, A702 when none succeeded (destination
unreachable, or every sub-operation failed: "Failure or Refused", PS3.4
C.4.2.2.1), FE00 after a C-CANCEL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from pydicom.dataset import Dataset

from stellarpacs.aio.client import ClientAssociation, connect
from stellarpacs.aio.protocols import AssociationLike
from stellarpacs.aio.scu.store import (
    StoreItem,
    StoreResult,
    propose_contexts,
    read_ahead,
    scan_file,
    send_item,
)
from stellarpacs.aio.tls import remote_context
from stellarpacs.audit import Auditor
from stellarpacs.config import Config, RemoteAE
from stellarpacs.datasets import decode_dataset, encode_dataset
from stellarpacs.dimse.commands import CGetRQ, CGetRSP, CMoveRQ, CMoveRSP, Message
from stellarpacs.dimse.events import DatasetSink, Incoming
from stellarpacs.dimse.status import Status, StatusCategory, category
from stellarpacs.errors import AssociationAborted, AssociationRejected, DIMSEError
from stellarpacs.logtext import printable
from stellarpacs.services.auditing import audit_retrieve
from stellarpacs.services.offload import parse_off_loop
from stellarpacs.storage.api import (
    InstanceLookup,
    InstanceRecord,
    InvalidQuery,
    NotFound,
    QueryProblem,
    RetrieveKeys,
    StorageUnavailable,
    retrieve_keys,
)
from stellarpacs.uids import (
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    QR_GET_MODELS,
    QR_MOVE_MODELS,
)
from stellarpacs.ul.negotiation import PresentationContext, Role

__all__ = ["RETRIEVE_FAILURE", "GetService", "MoveService", "identifier_keys"]

log = logging.getLogger("stellarpacs.retrieve")

_QR_SYNTAXES = (IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN)

RETRIEVE_FAILURE: Final[Mapping[QueryProblem, int]] = MappingProxyType(
    {
        QueryProblem.MODEL: Status.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS,
        QueryProblem.HIERARCHY: Status.UNABLE_TO_PROCESS,
        QueryProblem.VALUE: Status.UNABLE_TO_PROCESS,
    }
)
"""The C-MOVE / C-GET status for each problem of an identifier (PS3.4 C.4.2.1.5, C.4.3.1.4)."""


def identifier_keys(ds: Dataset, model: str) -> RetrieveKeys:
    """The unique keys of a retrieve identifier; DIMSEError with the status to answer."""
    try:
        return retrieve_keys(ds, model)
    except InvalidQuery as error:
        raise DIMSEError(RETRIEVE_FAILURE[error.problem], str(error)) from error


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

    def final_status(self) -> int:
        """0000, B000 when some failed, A702 when none succeeded (PS3.4 C.4.2.2.1, C.4.3.2)."""
        if not self.failed:
            return Status.SUCCESS
        if self.completed or self.warning:
            return Status.SUBOPERATIONS_COMPLETE_WITH_FAILURES
        return Status.OUT_OF_RESOURCES_SUBOPERATIONS


class _RetrieveBase:
    """What C-MOVE and C-GET share: identifier, matching, counting, responses."""

    request_class: type[CMoveRQ] | type[CGetRQ]
    response_class: type[CMoveRSP] | type[CGetRSP]
    models: tuple[str, ...]
    #: Seconds at least between two Pending responses; 0 sends one after every sub-operation.
    pending_interval: float = 0.05

    def __init__(
        self, archive: InstanceLookup, config: Config, *, auditor: Auditor | None = None
    ) -> None:
        self.archive = archive
        self.config = config
        self.auditor = auditor if auditor is not None else Auditor()
        self.abstract_syntaxes: Mapping[str, tuple[str, ...]] = MappingProxyType(
            {model: _QR_SYNTAXES for model in self.models}
        )
        self.requests: tuple[type[Message], ...] = (self.request_class,)
        self.roles: Mapping[str, Role] = MappingProxyType({})

    def sink(
        self, association: AssociationLike, context: PresentationContext, command: Message
    ) -> DatasetSink | None:
        return None

    async def handle(self, association: AssociationLike, incoming: Incoming) -> None:
        request = incoming.command
        assert isinstance(request, CMoveRQ | CGetRQ)
        records: list[InstanceRecord] = []
        counts = _Counts(remaining=0)
        status: int = Status.SUCCESS
        try:
            status = await self._retrieve(association, incoming, records, counts)
        finally:
            # A later request may reuse the Message ID (PS3.7 9.1.1.1): forget its C-CANCEL.
            association.cancelled.discard(request.message_id)
            if self.auditor.enabled:
                done = (counts.completed, counts.failed, counts.warning)
                audit_retrieve(self.auditor, association, incoming, records, done, status)

    async def _retrieve(
        self,
        association: AssociationLike,
        incoming: Incoming,
        records: list[InstanceRecord],
        counts: _Counts,
    ) -> int:
        """Match, run the sub-operations, answer; the final status (``records`` filled in)."""
        try:
            records += await self._match(incoming)
        except DIMSEError as error:
            await self._final(association, incoming, error.status, None, str(error))
            return error.status
        counts.remaining = len(records)
        try:
            status = await self._suboperations(association, incoming, records, counts)
        except DIMSEError as refusal:  # refused before any sub-operation, e.g. A801
            await self._final(association, incoming, refusal.status, None, str(refusal))
            return refusal.status
        await self._final(association, incoming, status, counts)
        return status

    async def _match(self, incoming: Incoming) -> list[InstanceRecord]:
        context = incoming.context
        keys = await parse_off_loop(
            incoming.dataset,
            lambda: identifier_keys(
                decode_dataset(incoming.dataset or b"", context.transfer_syntax),
                context.abstract_syntax,
            ),
        )
        try:
            return await self.archive.instances_for(keys)
        except StorageUnavailable as error:
            raise DIMSEError(Status.OUT_OF_RESOURCES_MATCHES, f"index: {error}") from error

    async def _suboperations(
        self,
        association: AssociationLike,
        incoming: Incoming,
        records: list[InstanceRecord],
        counts: _Counts,
    ) -> int:
        raise NotImplementedError

    async def _items(self, records: list[InstanceRecord], counts: _Counts) -> list[StoreItem]:
        """The files of ``records``; a missing or unreadable one counts as failed.

        One worker thread reads all the metas: one hop per instance would cost
        more than the reads themselves for a study of small instances.
        """
        items, unreadable = await asyncio.to_thread(_scan_records, self.archive, records)
        for uid, error in unreadable:
            log.error("cannot send %s: %s", printable(uid), printable(error))
            counts.fail_rest([uid])
        return items

    async def _send_all(
        self,
        association: AssociationLike,
        incoming: Incoming,
        sender: AssociationLike,
        items: list[StoreItem],
        counts: _Counts,
        *,
        scp_role_only: bool,
    ) -> int:
        """Run the sub-operations over ``sender``, reporting progress; the final status."""
        request = incoming.command
        assert isinstance(request, CMoveRQ | CGetRQ)
        # Move Originator only on C-MOVE sub-operations (PS3.7 9.3.1.1, Table 9.3-1).
        originator = (
            (association.calling_ae_title, request.message_id)
            if isinstance(request, CMoveRQ)
            else None
        )
        loop = asyncio.get_running_loop()
        next_pending = 0.0  # the first sub-operation is reported at once
        done = 0
        async with contextlib.aclosing(read_ahead(items)) as prepared:
            async for item, data in prepared:
                if request.message_id in association.cancelled:
                    return Status.CANCEL
                result = await self._store(sender, item, data, originator, scp_role_only)
                if result is None:
                    counts.fail_rest([i.sop_instance_uid for i in items[done:]])
                    break
                done += 1
                counts.add(result)
                if counts.remaining > 0 and loop.time() >= next_pending:
                    await self._respond(
                        association, incoming, Status.PENDING, counts, None, final=False
                    )
                    next_pending = loop.time() + self.pending_interval
        return counts.final_status()

    async def _store(
        self,
        sender: AssociationLike,
        item: StoreItem,
        data: bytes | None,
        originator: tuple[str, int] | None,
        scp_role_only: bool,
    ) -> StoreResult | None:
        """One C-STORE sub-operation; None when the association it needs is gone."""
        try:
            result = await send_item(
                sender,
                item,
                dimse_timeout=self.config.dimse_timeout,
                move_originator=originator,
                scp_role_only=scp_role_only,
                data=data,
            )
        except (AssociationAborted, DIMSEError) as error:
            log.error("sub-operations stopped: %s", printable(error))
            return None
        if result.error:
            log.warning(
                "sub-operation for %s failed: %s",
                printable(item.sop_instance_uid),
                printable(result.error),
            )
        return result

    async def _final(
        self,
        association: AssociationLike,
        incoming: Incoming,
        status: int,
        counts: _Counts | None,
        comment: str | None = None,
    ) -> None:
        await self._respond(association, incoming, status, counts, comment, final=True)

    async def _respond(
        self,
        association: AssociationLike,
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
            syntax = incoming.context.transfer_syntax
            identifier = Dataset()
            identifier.FailedSOPInstanceUIDList = _fitting(counts.failed_uids, syntax)
            dataset = encode_dataset(identifier, syntax)
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
            error_comment=_comment(comment) if comment else None,
            has_dataset=dataset is not None,
        )
        await association.send(incoming.context.context_id, response, dataset)


def _comment(text: str) -> str:
    """An Error Comment (LO, PS3.7 C.4): printable ASCII only, at most 64 characters.

    The text may quote the peer's identifier, which can hold any byte; the
    command set is encoded as ASCII, so anything else would fail to encode.
    """
    return "".join(c if " " <= c <= "~" else "?" for c in text)[:64]


def _scan_records(
    archive: InstanceLookup, records: list[InstanceRecord]
) -> tuple[list[StoreItem], list[tuple[str, str]]]:
    """Blocking: the StoreItems of ``records``, and (UID, why) for each file that is unusable."""
    items: list[StoreItem] = []
    unreadable: list[tuple[str, str]] = []
    for record in records:
        try:
            items.append(scan_file(archive.file_path(record)))
        except (OSError, ValueError, NotFound) as error:
            unreadable.append((record.sop_instance_uid, str(error)))
    return items, unreadable


#: Longest value of a 2-byte length field, the Explicit VR encoding of UI (PS3.5 7.1.2).
_EXPLICIT_UI_MAX = 0xFFFE


def _fitting(uids: list[str], transfer_syntax: str) -> list[str]:
    """As many failed UIDs as one UI value can hold in ``transfer_syntax``.

    In Explicit VR the list must stay under 64 KiB (about 1,000 UIDs); the
    counts still say how many failed. Implicit VR has a 4-byte length.
    """
    if transfer_syntax == IMPLICIT_VR_LITTLE_ENDIAN:
        return uids
    kept: list[str] = []
    size = -1  # no backslash before the first value
    for uid in uids:
        size += len(uid) + 1
        if size + (size % 2) > _EXPLICIT_UI_MAX:
            break
        kept.append(uid)
    return kept


class MoveService(_RetrieveBase):
    """C-MOVE SCP for the three MOVE models of the 1.3 statement (Table 3)."""

    request_class = CMoveRQ
    response_class = CMoveRSP
    models = QR_MOVE_MODELS

    async def _suboperations(
        self,
        association: AssociationLike,
        incoming: Incoming,
        records: list[InstanceRecord],
        counts: _Counts,
    ) -> int:
        request = incoming.command
        assert isinstance(request, CMoveRQ)
        remote = self.config.remotes.get(request.move_destination)
        if remote is None or "store" not in remote.services:
            # A destination not allowed to receive (services without "store") gets the same
            # A801 as an unknown one: the one refusal PS3.4 C.4.2.1.5 has for a destination,
            # and it tells a peer nothing about the configuration.
            log.warning(
                "C-MOVE from %s to %s destination %r refused",
                printable(association.calling_ae_title),
                "unknown" if remote is None else "not allowed store,",
                printable(request.move_destination),
            )
            raise DIMSEError(
                Status.MOVE_DESTINATION_UNKNOWN,
                f"move destination {request.move_destination} unknown",
            )
        items = await self._items(records, counts)
        if not items:
            return counts.final_status()
        try:
            client = await self._open(remote, items)
        except (OSError, TimeoutError, AssociationRejected, AssociationAborted) as error:
            log.error(
                "C-MOVE destination %s unreachable: %s",
                printable(request.move_destination),
                printable(error),
            )
            counts.fail_rest([i.sop_instance_uid for i in items])
            return Status.OUT_OF_RESOURCES_SUBOPERATIONS
        async with client:
            return await self._send_all(
                association, incoming, client.association, items, counts, scp_role_only=False
            )

    async def _open(self, remote: RemoteAE, items: list[StoreItem]) -> ClientAssociation:
        return await connect(
            remote.host,
            remote.port,
            called_ae=remote.ae_title,
            calling_ae=self.config.ae_title,
            contexts=propose_contexts(items),
            max_pdu_length=self.config.max_pdu_length,
            connect_timeout=self.config.connect_timeout,
            dimse_timeout=self.config.dimse_timeout,
            tls=remote_context(self.config, remote),
        )


def _storage_roles(config: Config) -> Mapping[str, Role]:
    """C-GET needs the requestor to act as Storage SCP (PS3.4 C.4.3.3, PS3.7 D.3.3.4)."""
    return MappingProxyType({uid: Role(scu=True, scp=True) for uid in config.storage_sop_classes})


class GetService(_RetrieveBase):
    """C-GET SCP (beyond the 1.3 statement): sub-operations on the same association."""

    request_class = CGetRQ
    response_class = CGetRSP
    models = QR_GET_MODELS

    def __init__(
        self, archive: InstanceLookup, config: Config, *, auditor: Auditor | None = None
    ) -> None:
        super().__init__(archive, config, auditor=auditor)
        self.roles = _storage_roles(config)

    async def _suboperations(
        self,
        association: AssociationLike,
        incoming: Incoming,
        records: list[InstanceRecord],
        counts: _Counts,
    ) -> int:
        items = await self._items(records, counts)
        return await self._send_all(
            association, incoming, association, items, counts, scp_role_only=True
        )
