"""The DIMSE-N client side: requests, and storage commitment for testing other systems.

* :func:`n_create`, :func:`n_set`, :func:`n_action` and :func:`n_event_report`
  send one request on an open client association (PS3.7 10.1) and return
  its :class:`NResult`, never raising for a failure status: a test tool
  wants to see the 0110 it provoked.  The client association has them as
  methods; this module is where they are built, on :class:`ClientLike`.
* :func:`commit_on` asks a Storage Commitment Push Model SCP to commit
  instances (N-ACTION, PS3.4 J.3.2) and waits for its N-EVENT-REPORT
  (J.3.3), on the same association or on a new one that the SCP opens to a
  :class:`CommitmentListener`: the small acceptor an SCU needs for that
  (J.3.3.1.3: the SCP proposes the SCP role through role selection).

The commitment data sets themselves are :mod:`stellarpacs.commitment`,
shared with the server's commitment SCP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import MappingProxyType, TracebackType
from typing import TypeAlias, TypeVar

from pydicom.dataset import Dataset

from stellarpacs.aio.protocols import AssociationLike, ClientLike
from stellarpacs.aio.scu.contexts import DEFAULT_TRANSFER_SYNTAXES
from stellarpacs.aio.server import Server
from stellarpacs.commitment import (
    REQUEST_STORAGE_COMMITMENT,
    CommitmentEvent,
    CommitmentReport,
    SOPReference,
    action_information,
    read_event_information,
)
from stellarpacs.config import Config, TLSConfig
from stellarpacs.datasets import decode_dataset, encode_dataset
from stellarpacs.dimse.commands import (
    COMMAND_NAMES,
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
from stellarpacs.logtext import printable
from stellarpacs.uids import STORAGE_COMMITMENT_PUSH, STORAGE_COMMITMENT_PUSH_INSTANCE, new_uid
from stellarpacs.ul.negotiation import PresentationContext, Role

__all__ = [
    "CommitmentListener",
    "NResult",
    "answer_event_report",
    "commit_on",
    "n_action",
    "n_create",
    "n_event_report",
    "n_set",
    "request_commitment",
]

log = logging.getLogger("stellarpacs.nclient")

NRequest: TypeAlias = NActionRQ | NCreateRQ | NEventReportRQ | NSetRQ
R = TypeVar("R", bound=NActionRSP | NCreateRSP | NEventReportRSP | NSetRSP)


@dataclass(frozen=True, slots=True)
class NResult:
    """The answer to a DIMSE-N request: its status and what came with it (PS3.7 10.3).

    ``attributes`` is the data set of the response: the attribute list of
    an N-CREATE, N-SET or N-GET, the reply of an N-ACTION or N-EVENT-REPORT.
    """

    status: int
    sop_instance_uid: str | None
    error_comment: str | None = None
    error_id: int | None = None
    attribute_identifier_list: tuple[int, ...] | None = None
    attributes: Dataset | None = None

    @property
    def ok(self) -> bool:
        return self.status == Status.SUCCESS


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
        log.warning("N-EVENT-REPORT refused: %s", printable(error))
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
    With ``tls`` (a :class:`~stellarpacs.config.TLSConfig` with a certificate)
    it listens for TLS on ``tls.port`` too (PS3.15 B.13).
    """

    def __init__(
        self,
        ae_title: str = "STELLARPACS",
        *,
        host: str = "0.0.0.0",
        port: int = 0,
        max_pdu_length: int = 16384,
        tls: TLSConfig | None = None,
    ) -> None:
        config = Config(
            ae_title=ae_title,
            host=host,
            port=port,
            max_pdu_length=max_pdu_length,
            accept_any_called_ae=True,
            tls=tls or TLSConfig(),
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


# --- the requests (PS3.7 10.1) ------------------------------------------------------------------


async def _n_request(
    client: ClientLike,
    sop_class: str,
    message: NRequest,
    information: Dataset | None,
    expected: type[R],
) -> NResult:
    """Send ``message`` on the context of ``sop_class``; DIMSEError 0110 for a wrong answer."""
    context = client.association.context_for(sop_class)
    data = None if information is None else encode_dataset(information, context.transfer_syntax)
    incoming = await client.request(context.context_id, message, data)
    name = COMMAND_NAMES[message.command_field].removesuffix("-RQ")
    text = f"unexpected answer to {name}: {incoming.command!r}"
    response = expect_response(
        message, incoming, expected, lambda _: DIMSEError(Status.PROCESSING_FAILURE, text)
    )
    attributes = None
    if incoming.dataset:
        attributes = decode_dataset(incoming.dataset, context.transfer_syntax)
    listed = (
        response.attribute_identifier_list if isinstance(response, NCreateRSP | NSetRSP) else None
    )
    return NResult(
        status=response.status,
        sop_instance_uid=response.affected_sop_instance_uid,
        error_comment=response.error_comment,
        error_id=response.error_id,
        attribute_identifier_list=listed,
        attributes=attributes,
    )


async def n_create(
    client: ClientLike, sop_class: str, attributes: Dataset, *, sop_instance_uid: str | None = None
) -> NResult:
    """N-CREATE (PS3.7 10.1.5); without ``sop_instance_uid`` the SCP assigns one."""
    request = NCreateRQ(
        message_id=client.association.next_message_id(),
        affected_sop_class_uid=sop_class,
        affected_sop_instance_uid=sop_instance_uid,
        has_dataset=True,
    )
    result = await _n_request(client, sop_class, request, attributes, NCreateRSP)
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


async def n_set(
    client: ClientLike, sop_class: str, sop_instance_uid: str, modifications: Dataset
) -> NResult:
    """N-SET (PS3.7 10.1.3): ``modifications`` is the Modification List."""
    request = NSetRQ(
        message_id=client.association.next_message_id(),
        requested_sop_class_uid=sop_class,
        requested_sop_instance_uid=sop_instance_uid,
        has_dataset=True,
    )
    return await _n_request(client, sop_class, request, modifications, NSetRSP)


async def n_action(
    client: ClientLike,
    sop_class: str,
    sop_instance_uid: str,
    action_type_id: int,
    information: Dataset | None = None,
) -> NResult:
    """N-ACTION (PS3.7 10.1.4) with its Action Information, if any."""
    request = NActionRQ(
        message_id=client.association.next_message_id(),
        requested_sop_class_uid=sop_class,
        requested_sop_instance_uid=sop_instance_uid,
        action_type_id=action_type_id,
        has_dataset=information is not None,
    )
    return await _n_request(client, sop_class, request, information, NActionRSP)


async def n_event_report(
    client: ClientLike,
    sop_class: str,
    sop_instance_uid: str,
    event_type_id: int,
    information: Dataset | None = None,
) -> NResult:
    """N-EVENT-REPORT (PS3.7 10.1.1) with its Event Information, if any."""
    request = NEventReportRQ(
        message_id=client.association.next_message_id(),
        affected_sop_class_uid=sop_class,
        affected_sop_instance_uid=sop_instance_uid,
        event_type_id=event_type_id,
        has_dataset=information is not None,
    )
    return await _n_request(client, sop_class, request, information, NEventReportRSP)


# --- storage commitment (PS3.4 J.3) -------------------------------------------------------------


async def request_commitment(
    client: ClientLike, transaction_uid: str, references: Iterable[SOPReference]
) -> NResult:
    """Send the N-ACTION of a commitment request; raises DIMSEError unless it succeeded."""
    result = await n_action(
        client,
        STORAGE_COMMITMENT_PUSH,
        STORAGE_COMMITMENT_PUSH_INSTANCE,
        REQUEST_STORAGE_COMMITMENT,
        action_information(transaction_uid, references),
    )
    if result.status != Status.SUCCESS:
        why = result.error_comment or describe(result.status)
        raise DIMSEError(result.status, f"storage commitment refused: {why}")
    return result


async def _report_on(association: AssociationLike, transaction_uid: str) -> CommitmentReport:
    """Wait for the report on the N-ACTION's own association (PS3.4 J.3.3.1.2 note 1)."""
    while (incoming := await association.receive()) is not None:
        if not isinstance(incoming.command, NEventReportRQ):
            log.warning("ignored %s while waiting for the report", type(incoming.command).__name__)
            continue
        report = await answer_event_report(association, incoming)
        if report is not None and report.transaction_uid == transaction_uid:
            return report
    raise AssociationAborted("the peer released the association before reporting")


async def _first_report(
    association: AssociationLike, listener: CommitmentListener | None, transaction_uid: str
) -> CommitmentReport:
    """Whichever comes first: the report on this association or on the listener."""
    tasks = {asyncio.ensure_future(_report_on(association, transaction_uid))}
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


async def commit_on(
    client: ClientLike,
    references: Iterable[SOPReference | tuple[str, str]],
    *,
    listener: CommitmentListener | None = None,
    transaction_uid: str | None = None,
    timeout: float = 60.0,
) -> CommitmentReport:
    """Request storage commitment on ``client`` and wait up to ``timeout`` s for the result.

    The report may come on this association or, through ``listener``, on a
    new one.  Raises DIMSEError when the N-ACTION is refused, TimeoutError
    when no report comes.
    """
    refs = [r if isinstance(r, SOPReference) else SOPReference(*r) for r in references]
    transaction = transaction_uid or new_uid()
    await request_commitment(client, transaction, refs)
    async with asyncio.timeout(timeout):
        return await _first_report(client.association, listener, transaction)
