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

N-EVENT-REPORT (J.3.3): a :class:`DeliveryWorker` assesses each pending
request and sends the result on a NEW association to the requesting AE (the
1.3 statement, 3.1.3.3.6.1), proposing the commitment SOP class with role
selection making us the SCP.  An instance is committed when the index holds
it with the referenced SOP class and its file exists; otherwise its Failure
Reason (PS3.3 C.14.1.1) is 0112 (not stored), 0122 (not stored, SOP class
not accepted for storage), 0119 (stored under another SOP class), 0110 (its
file is missing), or 0131 for every reference of a request reusing a
Transaction UID (a re-sent identical pending request is not doubled).
Event type 1 when nothing failed, else 2.  The result is assessed again at
each attempt.  A request stays pending until the requester answers 0000;
failures are retried with exponential back-off (``base_delay`` doubling up
to ``max_delay``), and pending requests are loaded again at start, so a
restart loses none.  Delivery is at least once: a report acknowledged just
as the server stops may be sent again after the restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import ClassVar, Final

from stellarpacs.aio.client import ClientAssociation
from stellarpacs.aio.client import connect as _connect
from stellarpacs.aio.protocols import AssociationLike
from stellarpacs.aio.scu.contexts import DEFAULT_TRANSFER_SYNTAXES, ProposedContext
from stellarpacs.commitment import (
    REQUEST_STORAGE_COMMITMENT,
    CommitmentReport,
    FailedReference,
    FailureReason,
    SOPReference,
    event_information,
    read_action_information,
)
from stellarpacs.config import Config
from stellarpacs.datasets import decode_dataset
from stellarpacs.dimse.commands import Message, NActionRQ, NActionRSP
from stellarpacs.dimse.events import DatasetSink, Incoming
from stellarpacs.dimse.status import Status, describe
from stellarpacs.errors import DIMSEError, StellarPACSError
from stellarpacs.logtext import printable
from stellarpacs.storage.api import (
    CommitmentRequest,
    InstanceLookup,
    InstanceRecord,
    NotFound,
    NServiceStore,
    StorageUnavailable,
)
from stellarpacs.uids import STORAGE_COMMITMENT_PUSH, STORAGE_COMMITMENT_PUSH_INSTANCE, is_valid_uid
from stellarpacs.ul.negotiation import PresentationContext, Role

__all__ = ["AttemptHook", "CommitmentService", "DeliveryWorker", "assess"]

log = logging.getLogger("stellarpacs.commitment")

#: Polling interval while waiting for the archive to be opened (the CLI opens it late).
_ARCHIVE_POLL: Final = 0.05


def _comment(text: str) -> str:
    """Error Comment is LO: ASCII here, at most 64 characters (PS3.7 C.4)."""
    return text.encode("ascii", "replace").decode("ascii")[:64]


# --- assessing a request (PS3.4 J.3.3.1.2) ----------------------------------------------------


def _files_present(archive: InstanceLookup, records: Sequence[InstanceRecord | None]) -> list[bool]:
    """Blocking: whether each indexed instance's file is where the index says."""
    present = []
    for record in records:
        try:
            present.append(record is not None and archive.file_path(record).is_file())
        except (OSError, NotFound):
            present.append(False)
    return present


def _failure(
    ref: SOPReference, record: InstanceRecord | None, on_disk: bool, accepted: frozenset[str]
) -> FailureReason | None:
    if record is None:
        if ref.sop_class_uid not in accepted:
            return FailureReason.REFERENCED_SOP_CLASS_NOT_SUPPORTED
        return FailureReason.NO_SUCH_OBJECT_INSTANCE
    if record.sop_class_uid != ref.sop_class_uid:
        return FailureReason.CLASS_INSTANCE_CONFLICT
    if not on_disk:
        return FailureReason.PROCESSING_FAILURE
    return None


async def assess(
    archive: InstanceLookup, request: CommitmentRequest, config: Config
) -> CommitmentReport:
    """The result of ``request`` as the archive stands now (PS3.4 J.3.3.1.2)."""
    refs = [SOPReference(c, i) for c, i in request.references]
    if request.duplicate:
        failed = [FailedReference(r, FailureReason.DUPLICATE_TRANSACTION_UID) for r in refs]
        return CommitmentReport.of(request.transaction_uid, (), failed, config.ae_title)
    records = [await archive.get_instance(r.sop_instance_uid) for r in refs]
    on_disk = await asyncio.to_thread(_files_present, archive, records)
    accepted = frozenset(config.storage_sop_classes)
    committed: list[SOPReference] = []
    failures: list[FailedReference] = []
    for ref, record, present in zip(refs, records, on_disk, strict=True):
        reason = _failure(ref, record, present, accepted)
        if reason is None:
            committed.append(ref)
        else:
            failures.append(FailedReference(ref, reason))
    return CommitmentReport.of(request.transaction_uid, committed, failures, config.ae_title)


# --- delivering results ------------------------------------------------------------------------


class _Undeliverable(StellarPACSError):
    """This attempt cannot deliver the result; it is retried later."""


AttemptHook = Callable[[CommitmentRequest, Exception | None], None]
"""Observes one delivery attempt: the request and why it failed (None: delivered)."""


class DeliveryWorker:
    """One task that sends the results of pending requests, retrying with back-off.

    ``start()`` may come before the archive is opened: the task waits for
    it, then loads the pending requests kept by earlier runs.
    """

    def __init__(
        self,
        archive: InstanceLookup,
        store: NServiceStore,
        config: Config,
        *,
        base_delay: float = 2.0,
        max_delay: float = 300.0,
        concurrency: int = 4,
    ) -> None:
        if base_delay <= 0 or max_delay < base_delay or concurrency < 1:
            raise ValueError("need 0 < base_delay <= max_delay and concurrency >= 1")
        self.archive = archive
        self.store = store
        self.config = config
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.concurrency = concurrency
        self._requests: dict[int, CommitmentRequest] = {}
        self._due: dict[int, float] = {}
        self._attempts: dict[int, int] = {}
        self._inflight: dict[int, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: Results acknowledged since start (transaction UID -> report).
        self.delivered: dict[str, CommitmentReport] = {}
        #: Notification hooks, called after each attempt with its error (None: delivered).
        self.hooks: list[AttemptHook] = []

    @property
    def pending(self) -> int:
        return len(self._requests)

    def delay(self, attempts: int) -> float:
        """Seconds before the next try after ``attempts`` failed ones."""
        return float(min(self.max_delay, self.base_delay * 2 ** max(attempts - 1, 0)))

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="stellarpacs-commitment-delivery"
            )

    def submit(self, request: CommitmentRequest) -> None:
        """Deliver ``request`` (already kept in the store) as soon as possible.

        A request re-sent while its result waits in back-off is tried at once:
        the requester is evidently reachable again.
        """
        now = asyncio.get_running_loop().time()
        self._schedule(request, now)
        self._due[request.pk] = min(self._due[request.pk], now)
        self._wake.set()

    async def close(self) -> None:
        """Stop; undelivered requests stay pending in the store for the next start."""
        tasks = [t for t in (self._task, *self._inflight.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None

    def _schedule(self, request: CommitmentRequest, due: float) -> None:
        if request.pk not in self._requests:
            self._requests[request.pk] = request
            self._due[request.pk] = due

    async def _load_pending(self) -> list[CommitmentRequest]:
        """Once the archive is open: the requests earlier runs left pending."""
        failures = 0
        while True:
            try:
                self.archive.check_available()
            except StorageUnavailable:
                await asyncio.sleep(_ARCHIVE_POLL)
                continue
            try:
                return await self.store.pending_commitments()
            except (OSError, StellarPACSError) as error:
                failures += 1
                log.error("cannot load pending storage commitment requests: %s", error)
                await asyncio.sleep(self.delay(failures))

    async def _run(self) -> None:
        pending = await self._load_pending()
        if pending:
            log.info("%d storage commitment results to deliver", len(pending))
        loop = asyncio.get_running_loop()
        for request in pending:
            self._schedule(request, loop.time())
        while True:
            self._launch_due(loop.time())
            wait = self._next_wait(loop.time())
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()

    def _launch_due(self, now: float) -> None:
        for pk, due in sorted(self._due.items(), key=lambda item: item[1]):
            if len(self._inflight) >= self.concurrency or due > now:
                return
            if pk not in self._inflight:
                task = asyncio.get_running_loop().create_task(self._attempt(pk))
                self._inflight[pk] = task
                task.add_done_callback(functools.partial(self._finished, pk))

    def _next_wait(self, now: float) -> float | None:
        """Seconds until the next launch; None: until woken (a submit or a finished attempt)."""
        if len(self._inflight) >= self.concurrency:
            return None
        waiting = [due for pk, due in self._due.items() if pk not in self._inflight]
        return max(0.0, min(waiting) - now) if waiting else None

    def _finished(self, pk: int, task: asyncio.Task[None]) -> None:
        self._inflight.pop(pk, None)
        self._wake.set()

    async def _attempt(self, pk: int) -> None:
        request = self._requests[pk]
        outcome: Exception | None = None
        try:
            await self._deliver(request)
        except Exception as error:
            if pk not in self._requests:  # acknowledged; only the release went wrong
                log.debug(
                    "after delivering %s: %s", printable(request.transaction_uid), printable(error)
                )
            else:
                outcome = error
                await self._failed(request, error)
        for hook in self.hooks:
            try:
                hook(request, outcome)
            except Exception:
                log.exception("commitment delivery hook %r failed", hook)

    async def _failed(self, request: CommitmentRequest, error: Exception) -> None:
        attempts = self._attempts[request.pk] = self._attempts.get(request.pk, 0) + 1
        wait = self.delay(attempts)
        self._due[request.pk] = asyncio.get_running_loop().time() + wait
        expected = isinstance(error, OSError | TimeoutError | StellarPACSError)
        log.log(
            logging.WARNING if expected else logging.ERROR,
            "commitment result %s for %s not delivered (attempt %d): %s; next try in %.3g s",
            request.transaction_uid, request.requester_ae, attempts,
            error or type(error).__name__, wait,
            exc_info=not expected,
        )  # fmt: skip
        try:
            await self.store.record_attempt(request.pk, str(error) or type(error).__name__)
        except StellarPACSError as db_error:
            log.error("cannot record the delivery attempt: %s", db_error)

    async def _deliver(self, request: CommitmentRequest) -> None:
        remote = self.config.remotes.get(request.requester_ae)
        if remote is None:
            raise _Undeliverable(f"AE {request.requester_ae} is not in [remotes]")
        report = await assess(self.archive, request, self.config)
        client = await _connect(
            remote.host,
            remote.port,
            called_ae=remote.ae_title,
            calling_ae=self.config.ae_title,
            contexts=[
                ProposedContext(
                    STORAGE_COMMITMENT_PUSH,
                    DEFAULT_TRANSFER_SYNTAXES,
                    scu_role=False,
                    scp_role=True,
                )
            ],
            max_pdu_length=self.config.max_pdu_length,
            connect_timeout=self.config.connect_timeout,
            dimse_timeout=self.config.dimse_timeout,
        )
        async with client:
            await _send_report(client, report)
            await self._acknowledged(request, report)

    async def _acknowledged(self, request: CommitmentRequest, report: CommitmentReport) -> None:
        self._requests.pop(request.pk, None)
        self._due.pop(request.pk, None)
        self._attempts.pop(request.pk, None)
        self.delivered[request.transaction_uid] = report
        log.info(
            "commitment result %s delivered to %s: event type %d, %d committed, %d failed",
            printable(request.transaction_uid), printable(request.requester_ae),
            report.event_type_id,
            len(report.committed), len(report.failed),
        )  # fmt: skip
        await asyncio.shield(
            self.store.mark_delivered(request.pk, report.event_type_id, len(report.failed))
        )


async def _send_report(client: ClientAssociation, report: CommitmentReport) -> None:
    """N-EVENT-REPORT-RQ with the result; returns once the requester answered 0000."""
    association = client.association
    try:
        context = association.context_for(STORAGE_COMMITMENT_PUSH)
    except StellarPACSError:
        raise _Undeliverable("the requester did not accept Storage Commitment") from None
    if not context.scp_role:
        log.debug("%s did not grant us the SCP role; reporting anyway", association.called_ae_title)
    try:
        result = await client.n_event_report(
            STORAGE_COMMITMENT_PUSH,
            STORAGE_COMMITMENT_PUSH_INSTANCE,
            report.event_type_id,
            event_information(report),
        )
    except DIMSEError as error:  # an answer that is not the N-EVENT-REPORT-RSP
        raise _Undeliverable(str(error)) from error
    if result.status != Status.SUCCESS:
        raise _Undeliverable(f"the requester answered {describe(result.status)}")


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
        transaction, refs = _action_information(incoming)
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
