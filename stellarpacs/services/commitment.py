"""Storage Commitment Push Model SCP (PS3.4 J.3) with durable, retried delivery.

N-ACTION (J.3.2): the request is checked, kept durably in the index database
(``storage.api.NServiceStore``) and answered at once; the N-ACTION-RSP only says
that we took the request.  Statuses, checked in this order:

- 0118 the Requested SOP Class is not Storage Commitment Push Model;
- 0117 the Requested SOP Instance UID breaks the UID rules, 0112 it is not
  the well-known instance 1.2.840.10008.1.20.1.1 (J.3.5);
- 0123 an Action Type ID other than 1;
- 0110 the Calling AE Title is not a ``[remotes]`` entry: we could never
  deliver the result, so the request is refused at once (and logged) rather
  than accepted and left pending forever; the Error Comment says so;
- 0120 / 0121 / 0106 no action information, or its Transaction UID or
  Referenced SOP Sequence (with both UIDs in each item) absent / empty /
  malformed (Transaction UID: PS3.5 9.1);
- 0110 the action information cannot be parsed, or the request cannot be kept.

The results go back by N-EVENT-REPORT, from
:mod:`stellarpacs.services.commitment_delivery`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import MappingProxyType
from typing import ClassVar

from stellarpacs.aio.protocols import AssociationLike
from stellarpacs.aio.scu.contexts import DEFAULT_TRANSFER_SYNTAXES
from stellarpacs.commitment import (
    REQUEST_STORAGE_COMMITMENT,
    SOPReference,
    read_action_information,
)
from stellarpacs.config import Config
from stellarpacs.datasets import decode_dataset
from stellarpacs.dimse.commands import Message, NActionRQ, NActionRSP
from stellarpacs.dimse.events import DatasetSink, Incoming
from stellarpacs.dimse.status import Status, describe
from stellarpacs.errors import DIMSEError
from stellarpacs.logtext import printable
from stellarpacs.services.commitment_delivery import DeliveryWorker
from stellarpacs.services.offload import parse_off_loop
from stellarpacs.storage.api import (
    CommitmentRequest,
    InstanceLookup,
    NServiceStore,
    StorageUnavailable,
)
from stellarpacs.uids import STORAGE_COMMITMENT_PUSH, STORAGE_COMMITMENT_PUSH_INSTANCE, is_valid_uid
from stellarpacs.ul.negotiation import PresentationContext, Role

__all__ = ["CommitmentService"]

log = logging.getLogger("stellarpacs.commitment")


def _comment(text: str) -> str:
    """Error Comment is LO: ASCII here, at most 64 characters (PS3.7 C.4)."""
    return text.encode("ascii", "replace").decode("ascii")[:64]


# --- the N-ACTION side -------------------------------------------------------------------------


def _check_request(request: NActionRQ, context: PresentationContext) -> None:
    """The command-level checks, in the order the module docstring gives."""
    if (
        request.requested_sop_class_uid != STORAGE_COMMITMENT_PUSH
        or context.abstract_syntax != STORAGE_COMMITMENT_PUSH
    ):
        raise DIMSEError(Status.NO_SUCH_SOP_CLASS, "not Storage Commitment Push Model")
    instance = request.requested_sop_instance_uid
    if instance != STORAGE_COMMITMENT_PUSH_INSTANCE:
        if not is_valid_uid(instance):
            raise DIMSEError(Status.INVALID_OBJECT_INSTANCE, "Requested SOP Instance UID invalid")
        raise DIMSEError(Status.NO_SUCH_OBJECT_INSTANCE, "not the well-known instance")
    if request.action_type_id != REQUEST_STORAGE_COMMITMENT:
        raise DIMSEError(Status.NO_SUCH_ACTION, f"no action type {request.action_type_id}")


def _action_information(incoming: Incoming) -> tuple[str, tuple[SOPReference, ...]]:
    if not incoming.dataset:
        raise DIMSEError(Status.MISSING_ATTRIBUTE, "no action information")
    try:
        ds = decode_dataset(incoming.dataset, incoming.context.transfer_syntax)
    except DIMSEError as error:
        raise DIMSEError(Status.PROCESSING_FAILURE, "action information unreadable") from error
    return read_action_information(ds)


class CommitmentService:
    """Storage Commitment Push Model SCP; its :attr:`worker` delivers the results."""

    # The 1.3 statement accepts one transfer syntax (3.1.3.3.6.5): Implicit VR LE is
    # preferred; Explicit VR LE is accepted too, for SCUs that offer only that.
    abstract_syntaxes: Mapping[str, tuple[str, ...]] = MappingProxyType(
        {STORAGE_COMMITMENT_PUSH: DEFAULT_TRANSFER_SYNTAXES}
    )
    roles: Mapping[str, Role] = MappingProxyType({})
    requests: tuple[type[Message], ...] = (NActionRQ,)

    ACTIVITY: ClassVar[str] = (
        "Takes storage commitment requests (N-ACTION), keeps them in the index database "
        "and answers at once; then opens a new association to the requesting AE, a "
        "`[remotes]` entry, proposing Storage Commitment Push Model with role selection "
        "(we are SCP, it is SCU), and sends the result (N-EVENT-REPORT): event type 1 when "
        "every referenced instance is stored, else 2 with the Failed SOP Sequence."
    )
    CONFORMANCE: ClassVar[str] = (
        "An instance is committed when the index holds it with the referenced SOP class and "
        "its file is on disk; StellarPACS never deletes a received file. Failure Reason "
        "(0008,1197): 0112 not stored; 0122 not stored and its SOP class not accepted; 0119 "
        "stored under another SOP class; 0110 its file is missing; 0131 for all references "
        "of a request that reuses a Transaction UID. The report is kept until the "
        "requester answers it with 0000, retried with exponential back-off, and survives "
        "a restart. Retrieve AE Title (0008,0054) is our AE title. Storage Media File-Set "
        "ID and UID are ignored."
    )
    STATUSES: ClassVar[Mapping[int, str]] = MappingProxyType(
        {
            Status.SUCCESS: "the request is kept; its result follows on a new association",
            Status.PROCESSING_FAILURE: "the Calling AE Title is not in `[remotes]`, or the "
            "request cannot be parsed or kept",
            Status.NO_SUCH_OBJECT_INSTANCE: "not the well-known SOP instance",
            Status.INVALID_OBJECT_INSTANCE: "the Requested SOP Instance UID is not a UID",
            Status.NO_SUCH_SOP_CLASS: "not the Storage Commitment Push Model SOP class",
            Status.NO_SUCH_ACTION: "Action Type ID other than 1",
            Status.MISSING_ATTRIBUTE: "no Transaction UID or Referenced SOP Sequence (or item UID)",
            Status.MISSING_ATTRIBUTE_VALUE: "one of them is empty",
            Status.INVALID_ATTRIBUTE_VALUE: "the Transaction UID is not a UID, or a value "
            "cannot be decoded",
            Status.RESOURCE_LIMITATION: "the data set is over `max_nservice_dataset_size` "
            "(drained unread)",
        }
    )

    def __init__(
        self,
        archive: InstanceLookup,
        store: NServiceStore,
        config: Config,
        *,
        base_delay: float = 2.0,
        max_delay: float = 300.0,
    ) -> None:
        self.archive = archive
        self.store = store
        self.config = config
        self.worker = DeliveryWorker(
            archive, store, config, base_delay=base_delay, max_delay=max_delay
        )

    def sink(
        self, association: AssociationLike, context: PresentationContext, command: Message
    ) -> DatasetSink | None:
        return None

    async def handle(self, association: AssociationLike, incoming: Incoming) -> None:
        request = incoming.command
        assert isinstance(request, NActionRQ)
        try:
            kept = await self._take(association, incoming)
            status, comment = int(Status.SUCCESS), None
        except DIMSEError as error:
            kept, status, comment = None, error.status, _comment(str(error))
            log.warning(
                "storage commitment request from %s refused: %s",
                printable(association.calling_ae_title),
                printable(describe(status) + f" ({error})"),
            )  # fmt: skip
        response = NActionRSP(
            message_id_being_responded_to=request.message_id,
            status=status,
            affected_sop_class_uid=STORAGE_COMMITMENT_PUSH,
            affected_sop_instance_uid=STORAGE_COMMITMENT_PUSH_INSTANCE,
            action_type_id=request.action_type_id,
            error_comment=comment,
        )
        await association.send(incoming.context.context_id, response)
        if kept is not None:
            self.worker.submit(kept)  # after the response: the requester hears us first

    async def _take(self, association: AssociationLike, incoming: Incoming) -> CommitmentRequest:
        """Check and keep one request; DIMSEError with the status otherwise."""
        request = incoming.command
        assert isinstance(request, NActionRQ)
        _check_request(request, incoming.context)
        requester = association.calling_ae_title
        if requester not in self.config.remotes:
            raise DIMSEError(Status.PROCESSING_FAILURE, f"AE {requester} not configured")
        transaction, refs = await parse_off_loop(
            incoming.dataset, lambda: _action_information(incoming)
        )
        try:
            kept = await self.store.add_commitment(
                transaction, requester, [(r.sop_class_uid, r.sop_instance_uid) for r in refs]
            )
        except StorageUnavailable as error:
            log.error(
                "cannot keep commitment request %s: %s", printable(transaction), printable(error)
            )
            raise DIMSEError(Status.PROCESSING_FAILURE, "cannot keep the request") from error
        log.info(
            "storage commitment request %s from %s: %d references%s",
            printable(transaction), printable(requester), len(refs),
            " (Transaction UID reused)" if kept.duplicate else "",
        )  # fmt: skip
        return kept
