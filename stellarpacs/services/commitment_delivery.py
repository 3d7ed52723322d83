"""Storage commitment results: assessed and delivered by N-EVENT-REPORT, durably (PS3.4 J.3.3).

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
from collections.abc import Callable, Sequence
from typing import Final

from stellarpacs.aio.client import ClientAssociation
from stellarpacs.aio.client import connect as _connect
from stellarpacs.aio.scu.contexts import DEFAULT_TRANSFER_SYNTAXES, ProposedContext
from stellarpacs.aio.tls import remote_context
from stellarpacs.commitment import (
    CommitmentReport,
    FailedReference,
    FailureReason,
    SOPReference,
    event_information,
)
from stellarpacs.config import Config
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
from stellarpacs.uids import STORAGE_COMMITMENT_PUSH, STORAGE_COMMITMENT_PUSH_INSTANCE

__all__ = ["AttemptHook", "DeliveryWorker", "assess"]

log = logging.getLogger("stellarpacs.commitment")

#: Polling interval while waiting for the archive to be opened (the CLI opens it late).
_ARCHIVE_POLL: Final = 0.05


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
            tls=remote_context(self.config, remote),
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
