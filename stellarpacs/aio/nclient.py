"""The DIMSE-N client side: storage commitment and MPPS for testing other systems.

* :func:`commit` asks a Storage Commitment Push Model SCP to commit
  instances (N-ACTION, PS3.4 J.3.2) and waits for its N-EVENT-REPORT
  (J.3.3), on the same association or on a new one that the SCP opens to a
  :class:`CommitmentListener`: the small acceptor an SCU needs for that
  (J.3.3.1.3: the SCP proposes the SCP role through role selection).
* :func:`mpps_create` and :func:`mpps_set` send N-CREATE and N-SET of the
  Modality Performed Procedure Step SOP Class (PS3.4 F.7.2) on an open
  :class:`ClientAssociation` and return the status, never raising for a
  failure status: a test tool wants to see the 0110 it provoked.

The commitment *data sets* (Table J.3-1 action information, Table J.3-2
event information) are read and written here once, for both sides: the
server's SCP uses the same functions, so what we send is what we parse.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import IntEnum
from types import MappingProxyType, TracebackType
from typing import Any, Final

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from stellarpacs.aio.client import DEFAULT_TRANSFER_SYNTAXES, ClientAssociation, ProposedContext
from stellarpacs.aio.client import connect as _connect
from stellarpacs.aio.protocols import AssociationLike
from stellarpacs.aio.server import Server
from stellarpacs.config import Config
from stellarpacs.datasets import decode_dataset, encode_dataset
from stellarpacs.dimse.commands import (
    Message,
    NActionRQ,
    NActionRSP,
    NCreateRQ,
    NCreateRSP,
    NEventReportRQ,
    NEventReportRSP,
    NSetRQ,
    NSetRSP,
)
from stellarpacs.dimse.events import DatasetSink, Incoming
from stellarpacs.dimse.matching import expect_response
from stellarpacs.dimse.status import Status, describe
from stellarpacs.errors import AssociationAborted, DIMSEError
from stellarpacs.uids import (
    MPPS,
    STORAGE_COMMITMENT_PUSH,
    STORAGE_COMMITMENT_PUSH_INSTANCE,
    is_valid_uid,
)
from stellarpacs.ul.negotiation import PresentationContext, Role

__all__ = [
    "REQUEST_STORAGE_COMMITMENT",
    "CommitmentEvent",
    "CommitmentListener",
    "CommitmentReport",
    "FailedReference",
    "FailureReason",
    "NResult",
    "SOPReference",
    "action_information",
    "answer_event_report",
    "commit",
    "event_information",
    "mpps_create",
    "mpps_set",
    "new_uid",
    "read_action_information",
    "read_event_information",
    "request_commitment",
]

log = logging.getLogger("stellarpacs.nclient")

REQUEST_STORAGE_COMMITMENT: Final = 1
"""Action Type ID of a storage commitment request (PS3.4 J.3.2.1.1)."""
_UID_MAX: Final = 64  # PS3.5 9.1


def new_uid() -> str:
    """A fresh UID under the UUID-derived root 2.25 (PS3.5 B.2): no registered root needed."""
    return f"2.25.{uuid.uuid4().int}"


class CommitmentEvent(IntEnum):
    """Event Type ID of the storage commitment N-EVENT-REPORT (PS3.4 Table J.3-2)."""

    SUCCESSFUL = 1
    FAILURES_EXIST = 2


class FailureReason(IntEnum):
    """Failure Reason (0008,1197) values (PS3.3 C.14.1.1)."""

    PROCESSING_FAILURE = 0x0110
    NO_SUCH_OBJECT_INSTANCE = 0x0112
    CLASS_INSTANCE_CONFLICT = 0x0119
    REFERENCED_SOP_CLASS_NOT_SUPPORTED = 0x0122
    DUPLICATE_TRANSACTION_UID = 0x0131
    RESOURCE_LIMITATION = 0x0213


@dataclass(frozen=True, slots=True)
class SOPReference:
    """One Referenced SOP Sequence item: the instance to commit (PS3.4 Table J.3-1)."""

    sop_class_uid: str
    sop_instance_uid: str


@dataclass(frozen=True, slots=True)
class FailedReference:
    """One Failed SOP Sequence item of a report, with its Failure Reason."""

    reference: SOPReference
    reason: int


@dataclass(frozen=True, slots=True)
class CommitmentReport:
    """A storage commitment result (PS3.4 J.3.3): what is committed and what failed."""

    transaction_uid: str
    event_type_id: int
    committed: tuple[SOPReference, ...] = ()
    failed: tuple[FailedReference, ...] = ()
    retrieve_ae_title: str | None = None

    @classmethod
    def of(
        cls,
        transaction_uid: str,
        committed: Iterable[SOPReference],
        failed: Iterable[FailedReference],
        retrieve_ae_title: str | None = None,
    ) -> CommitmentReport:
        """The report of these outcomes, event type 1 only when nothing failed."""
        failures = tuple(failed)
        event = CommitmentEvent.FAILURES_EXIST if failures else CommitmentEvent.SUCCESSFUL
        return cls(transaction_uid, int(event), tuple(committed), failures, retrieve_ae_title)


@dataclass(frozen=True, slots=True)
class NResult:
    """The answer to an N-CREATE or N-SET: status and what came with it."""

    status: int
    sop_instance_uid: str | None
    error_comment: str | None = None
    error_id: int | None = None
    attribute_identifier_list: tuple[int, ...] | None = None
    attributes: Dataset | None = None

    @property
    def ok(self) -> bool:
        return self.status == Status.SUCCESS


# --- the commitment data sets (PS3.4 Tables J.3-1 and J.3-2) ----------------------------------


def _uid(ds: Dataset, keyword: str, *, strict_shape: bool = False) -> str:
    """A required UID attribute: 0120 when absent, 0121 when empty, 0106 when malformed."""
    if keyword not in ds:
        raise DIMSEError(Status.MISSING_ATTRIBUTE, f"{keyword} missing")
    value = ds[keyword].value
    text = "" if value is None else str(value).strip("\0 ")
    if not text:
        raise DIMSEError(Status.MISSING_ATTRIBUTE_VALUE, f"{keyword} empty")
    if len(text) > _UID_MAX or (strict_shape and not is_valid_uid(text)):
        raise DIMSEError(Status.INVALID_ATTRIBUTE_VALUE, f"{keyword} is not a UID")
    return text


def _items(ds: Dataset, keyword: str, *, required: bool) -> list[Dataset]:
    if keyword not in ds:
        if required:
            raise DIMSEError(Status.MISSING_ATTRIBUTE, f"{keyword} missing")
        return []
    items = list(ds[keyword].value or [])
    if required and not items:
        raise DIMSEError(Status.MISSING_ATTRIBUTE_VALUE, f"{keyword} empty")
    return items


def _reference(item: Dataset) -> SOPReference:
    return SOPReference(_uid(item, "ReferencedSOPClassUID"), _uid(item, "ReferencedSOPInstanceUID"))


def _parsing(read: Callable[[], Any]) -> Any:
    """Run ``read``; a value pydicom cannot decode becomes 0106 invalid attribute value."""
    try:
        return read()
    except DIMSEError:
        raise
    except Exception as error:  # pydicom raises many kinds on malformed values
        raise DIMSEError(Status.INVALID_ATTRIBUTE_VALUE, f"cannot read: {error}") from error


def _reference_item(ref: SOPReference) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = ref.sop_class_uid
    item.ReferencedSOPInstanceUID = ref.sop_instance_uid
    return item


def action_information(transaction_uid: str, references: Iterable[SOPReference]) -> Dataset:
    """The N-ACTION data set of a storage commitment request (PS3.4 Table J.3-1)."""
    ds = Dataset()
    ds.TransactionUID = transaction_uid
    ds.ReferencedSOPSequence = DicomSequence([_reference_item(r) for r in references])
    return ds


def read_action_information(ds: Dataset) -> tuple[str, tuple[SOPReference, ...]]:
    """Transaction UID and references of a request; DIMSEError with the status to answer.

    The Transaction UID must be a well-formed UID (it names the transaction
    for both sides); referenced UIDs are taken as given, since an instance
    stored under a sloppy UID may still be committed.
    """

    def read() -> tuple[str, tuple[SOPReference, ...]]:
        transaction = _uid(ds, "TransactionUID", strict_shape=True)
        items = _items(ds, "ReferencedSOPSequence", required=True)
        return transaction, tuple(_reference(item) for item in items)

    result: tuple[str, tuple[SOPReference, ...]] = _parsing(read)
    return result


def event_information(report: CommitmentReport) -> Dataset:
    """The N-EVENT-REPORT data set of a commitment result (PS3.4 Table J.3-2)."""
    ds = Dataset()
    ds.TransactionUID = report.transaction_uid
    if report.retrieve_ae_title:
        ds.RetrieveAETitle = report.retrieve_ae_title
    if report.committed:
        ds.ReferencedSOPSequence = DicomSequence([_reference_item(r) for r in report.committed])
    if report.failed:
        failed = []
        for failure in report.failed:
            item = _reference_item(failure.reference)
            item.FailureReason = int(failure.reason)
            failed.append(item)
        ds.FailedSOPSequence = DicomSequence(failed)
    return ds


def read_event_information(ds: Dataset, event_type_id: int) -> CommitmentReport:
    """A received commitment result; DIMSEError with the status to answer when malformed."""

    def read() -> CommitmentReport:
        transaction = _uid(ds, "TransactionUID")
        committed = tuple(
            _reference(i) for i in _items(ds, "ReferencedSOPSequence", required=False)
        )
        failed = tuple(
            FailedReference(_reference(item), int(item.get("FailureReason", 0) or 0))
            for item in _items(ds, "FailedSOPSequence", required=event_type_id == 2)
        )
        retrieve = ds.get("RetrieveAETitle")
        title = str(retrieve).strip() if retrieve else None
        return CommitmentReport(transaction, event_type_id, committed, failed, title)

    report: CommitmentReport = _parsing(read)
    return report


# --- receiving N-EVENT-REPORTs (the SCU side of J.3.3) ------------------------------------------


async def answer_event_report(
    association: AssociationLike, incoming: Incoming
) -> CommitmentReport | None:
    """Read a commitment N-EVENT-REPORT-RQ and answer it; the report, or None if refused."""
    request = incoming.command
    assert isinstance(request, NEventReportRQ)
    report: CommitmentReport | None = None
    try:
        if request.affected_sop_class_uid != STORAGE_COMMITMENT_PUSH:
            raise DIMSEError(Status.NO_SUCH_SOP_CLASS, "not a storage commitment report")
        if request.event_type_id not in tuple(CommitmentEvent):
            raise DIMSEError(Status.NO_SUCH_EVENT_TYPE, f"event type {request.event_type_id}")
        if not incoming.dataset:
            raise DIMSEError(Status.MISSING_ATTRIBUTE, "no event information")
        try:
            ds = decode_dataset(incoming.dataset, incoming.context.transfer_syntax)
        except DIMSEError as error:
            raise DIMSEError(Status.PROCESSING_FAILURE, str(error)) from error
        report = read_event_information(ds, request.event_type_id)
        status = int(Status.SUCCESS)
    except DIMSEError as error:
        log.warning("N-EVENT-REPORT refused: %s", error)
        status, report = error.status, None
    response = NEventReportRSP(
        message_id_being_responded_to=request.message_id,
        status=status,
        affected_sop_class_uid=request.affected_sop_class_uid,
        affected_sop_instance_uid=request.affected_sop_instance_uid,
        event_type_id=request.event_type_id,
    )
    await association.send(incoming.context.context_id, response)
    return report


class _ReportService:
    """Service of the listener: takes commitment N-EVENT-REPORTs, with the peer as SCP."""

    abstract_syntaxes = MappingProxyType({STORAGE_COMMITMENT_PUSH: DEFAULT_TRANSFER_SYNTAXES})
    # The commitment SCP proposes to be SCP (PS3.4 J.3.3.1.3); we grant both roles.
    roles = MappingProxyType({STORAGE_COMMITMENT_PUSH: Role(scu=True, scp=True)})
    requests: tuple[type[Message], ...] = (NEventReportRQ,)

    def __init__(self, on_report: Callable[[CommitmentReport], None]) -> None:
        self._on_report = on_report

    def sink(
        self, association: AssociationLike, context: PresentationContext, command: Message
    ) -> DatasetSink | None:
        return None

    async def handle(self, association: AssociationLike, incoming: Incoming) -> None:
        report = await answer_event_report(association, incoming)
        if report is not None:
            self._on_report(report)


class CommitmentListener:
    """The listening SCU: an acceptor for the commitment results sent on new associations.

    Use as ``async with CommitmentListener("MODALITY", port=11113) as listener``;
    reports are kept by Transaction UID, so one that arrives before
    :meth:`report` is asked for is not lost.  Any Called AE Title is accepted.
    """

    def __init__(
        self,
        ae_title: str = "STELLARPACS",
        *,
        host: str = "0.0.0.0",
        port: int = 0,
        max_pdu_length: int = 16384,
    ) -> None:
        config = Config(
            ae_title=ae_title,
            host=host,
            port=port,
            max_pdu_length=max_pdu_length,
            accept_any_called_ae=True,
        )
        self.server = Server(config, [_ReportService(self._received)])
        self.received: list[CommitmentReport] = []
        self._waiting: dict[str, asyncio.Future[CommitmentReport]] = {}

    @property
    def port(self) -> int:
        return self.server.port

    async def start(self) -> None:
        await self.server.start()

    async def close(self) -> None:
        await self.server.close(timeout=2.0)

    async def __aenter__(self) -> CommitmentListener:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _future(self, transaction_uid: str) -> asyncio.Future[CommitmentReport]:
        future = self._waiting.get(transaction_uid)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._waiting[transaction_uid] = future
        return future

    def _received(self, report: CommitmentReport) -> None:
        self.received.append(report)
        future = self._future(report.transaction_uid)
        if not future.done():
            future.set_result(report)

    async def report(self, transaction_uid: str) -> CommitmentReport:
        """The first report received for ``transaction_uid`` (waits for it)."""
        return await asyncio.shield(self._future(transaction_uid))


# --- the requests -------------------------------------------------------------------------------


async def request_commitment(
    client: ClientAssociation, transaction_uid: str, references: Iterable[SOPReference]
) -> NActionRSP:
    """Send the N-ACTION of a commitment request; raises DIMSEError unless it succeeded."""
    association = client.association
    context = association.context_for(STORAGE_COMMITMENT_PUSH)
    dataset = action_information(transaction_uid, references)
    request = NActionRQ(
        message_id=association.next_message_id(),
        requested_sop_class_uid=STORAGE_COMMITMENT_PUSH,
        requested_sop_instance_uid=STORAGE_COMMITMENT_PUSH_INSTANCE,
        action_type_id=REQUEST_STORAGE_COMMITMENT,
        has_dataset=True,
    )
    encoded = encode_dataset(dataset, context.transfer_syntax)
    incoming = await client.request(context.context_id, request, encoded)
    text = f"unexpected answer to N-ACTION: {incoming.command!r}"
    response = expect_response(
        request, incoming, NActionRSP, lambda _: DIMSEError(Status.PROCESSING_FAILURE, text)
    )
    if response.status != Status.SUCCESS:
        why = response.error_comment or describe(response.status)
        raise DIMSEError(response.status, f"storage commitment refused: {why}")
    return response


async def _report_on(client: ClientAssociation, transaction_uid: str) -> CommitmentReport:
    """Wait for the report on the N-ACTION's own association (PS3.4 J.3.3.1.2 note 1)."""
    association = client.association
    while (incoming := await association.receive()) is not None:
        if not isinstance(incoming.command, NEventReportRQ):
            log.warning("ignored %s while waiting for the report", type(incoming.command).__name__)
            continue
        report = await answer_event_report(association, incoming)
        if report is not None and report.transaction_uid == transaction_uid:
            return report
    raise AssociationAborted("the peer released the association before reporting")


async def _first_report(
    client: ClientAssociation, listener: CommitmentListener | None, transaction_uid: str
) -> CommitmentReport:
    """Whichever comes first: the report on this association or on the listener."""
    tasks = {asyncio.ensure_future(_report_on(client, transaction_uid))}
    if listener is not None:
        tasks.add(asyncio.ensure_future(listener.report(transaction_uid)))
    error: BaseException | None = None
    try:
        while tasks:
            done, tasks = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task.exception() is None:
                    return task.result()
                error = task.exception()
        assert error is not None
        raise error
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task


async def commit(
    host: str,
    port: int,
    references: Iterable[SOPReference | tuple[str, str]],
    *,
    called_ae: str = "ANY-SCP",
    calling_ae: str = "STELLARPACS",
    listener: CommitmentListener | None = None,
    listen_port: int | None = None,
    listen_host: str = "0.0.0.0",
    transaction_uid: str | None = None,
    timeout: float = 60.0,
    connect_timeout: float = 10.0,
    dimse_timeout: float = 60.0,
    max_pdu_length: int = 16384,
) -> CommitmentReport:
    """Request storage commitment of ``references`` and wait up to ``timeout`` s for the result.

    The SCP may report on the same association or on a new one to our AE
    title: give a running ``listener``, or ``listen_port`` to run one for
    the duration of the call (the SCP must know ``calling_ae`` at that
    port).  Raises DIMSEError when the N-ACTION is refused, TimeoutError
    when no report comes.
    """
    refs = [r if isinstance(r, SOPReference) else SOPReference(*r) for r in references]
    transaction = transaction_uid or new_uid()
    async with contextlib.AsyncExitStack() as stack:
        if listener is None and listen_port is not None:
            listener = CommitmentListener(
                calling_ae, host=listen_host, port=listen_port, max_pdu_length=max_pdu_length
            )
            await stack.enter_async_context(listener)
        client = await _connect(
            host,
            port,
            called_ae=called_ae,
            calling_ae=calling_ae,
            contexts=[ProposedContext(STORAGE_COMMITMENT_PUSH)],
            max_pdu_length=max_pdu_length,
            connect_timeout=connect_timeout,
            dimse_timeout=dimse_timeout,
        )
        async with client:
            await request_commitment(client, transaction, refs)
            async with asyncio.timeout(timeout):
                return await _first_report(client, listener, transaction)
    raise AssertionError("unreachable")  # pragma: no cover (mypy: the with blocks return)


async def _n_request(
    client: ClientAssociation,
    message: NCreateRQ | NSetRQ,
    dataset: Dataset,
    expected: type[NCreateRSP] | type[NSetRSP],
) -> NResult:
    association = client.association
    context = association.context_for(MPPS)
    encoded = encode_dataset(dataset, context.transfer_syntax)
    incoming = await client.request(context.context_id, message, encoded)
    text = f"unexpected answer: {incoming.command!r}"
    response = expect_response(
        message, incoming, expected, lambda _: DIMSEError(Status.PROCESSING_FAILURE, text)
    )
    attributes = None
    if incoming.dataset:
        attributes = decode_dataset(incoming.dataset, context.transfer_syntax)
    return NResult(
        status=response.status,
        sop_instance_uid=response.affected_sop_instance_uid,
        error_comment=response.error_comment,
        error_id=response.error_id,
        attribute_identifier_list=response.attribute_identifier_list,
        attributes=attributes,
    )


async def mpps_create(
    client: ClientAssociation, attributes: Dataset, *, sop_instance_uid: str | None = None
) -> NResult:
    """N-CREATE an MPPS instance (PS3.4 F.7.2.1); without a UID the SCP assigns one.

    The association needs an accepted context for the MPPS SOP class.
    """
    request = NCreateRQ(
        message_id=client.association.next_message_id(),
        affected_sop_class_uid=MPPS,
        affected_sop_instance_uid=sop_instance_uid,
        has_dataset=True,
    )
    result = await _n_request(client, request, attributes, NCreateRSP)
    if result.sop_instance_uid is None and sop_instance_uid is not None:
        result = NResult(
            result.status,
            sop_instance_uid,
            result.error_comment,
            result.error_id,
            result.attribute_identifier_list,
            result.attributes,
        )
    return result


async def mpps_set(
    client: ClientAssociation, sop_instance_uid: str, modifications: Dataset
) -> NResult:
    """N-SET an MPPS instance (PS3.4 F.7.2.2): e.g. its status to COMPLETED."""
    request = NSetRQ(
        message_id=client.association.next_message_id(),
        requested_sop_class_uid=MPPS,
        requested_sop_instance_uid=sop_instance_uid,
        has_dataset=True,
    )
    return await _n_request(client, request, modifications, NSetRSP)
