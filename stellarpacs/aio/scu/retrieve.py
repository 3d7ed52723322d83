"""Retrieve SCU: the responses of a C-MOVE or C-GET, and the C-STORE receiver of a C-GET.

:class:`RetrieveStream` is what :meth:`ClientAssociation.move` and
:meth:`ClientAssociation.get` return: an async iterator of
:class:`RetrieveResponse`, one per C-MOVE-RSP / C-GET-RSP, Pending ones with
their sub-operation counts (PS3.4 C.4.2.1.4) and the final one last.  A
failure final status is yielded like any other (it carries counts and the
Failed SOP Instance UID List); the caller reads ``.status``.

Leaving early cancels: ``aclose()`` (called by ``async with`` and
``contextlib.aclosing``) sends C-CANCEL-RQ (PS3.7 9.3.2.3) and reads on to
the final response, so the association stays usable.  A stream abandoned
with a bare ``break`` is settled the same way before the next operation or
release on its association.

During a C-GET the SCP sends C-STORE-RQs on the same association (PS3.4
C.4.3.3); a :class:`StoreHandler` takes each one.  :class:`FolderStoreHandler`
streams each data set to a temporary file and renames it into a folder as a
PS3.10 file, as the server's storage service does.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol

from stellarpacs.aio.protocols import AssociationLike, ClientLike, SinkFactory
from stellarpacs.datasets import decode_dataset
from stellarpacs.dimse.commands import (
    CCancelRQ,
    CGetRQ,
    CGetRSP,
    CMoveRQ,
    CMoveRSP,
    CStoreRQ,
    CStoreRSP,
    Message,
)
from stellarpacs.dimse.events import DatasetSink, Incoming
from stellarpacs.dimse.matching import Mismatch, expect_response
from stellarpacs.dimse.status import Status, StatusCategory, category
from stellarpacs.errors import DIMSEError
from stellarpacs.fileio import INSTANCE_SUFFIX, TempFile, uid_component
from stellarpacs.logtext import printable
from stellarpacs.part10 import encode_file_meta
from stellarpacs.uids import (
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
)
from stellarpacs.ul.negotiation import PresentationContext

__all__ = [
    "FolderStoreHandler",
    "RetrieveResponse",
    "RetrieveStream",
    "StoreHandler",
]

log = logging.getLogger("stellarpacs.retrieve_scu")


# --- identifiers ------------------------------------------------------------------------------


# --- responses --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetrieveResponse:
    """One C-MOVE-RSP or C-GET-RSP (PS3.4 C.4.2.1.4 to C.4.2.1.6), with its counts.

    A count the SCP left out is None (the final response usually has no
    remaining count). ``failed_sop_instance_uids`` comes from the response's
    identifier, sent with a final Warning, Failure or Cancel status.
    """

    status: int
    remaining: int | None
    completed: int | None
    failed: int | None
    warning: int | None
    failed_sop_instance_uids: tuple[str, ...]
    error_comment: str | None
    message: CMoveRSP | CGetRSP

    @property
    def category(self) -> StatusCategory:
        return category(self.status)

    @property
    def pending(self) -> bool:
        """Whether more responses follow (FF00/FF01)."""
        return self.category is StatusCategory.PENDING

    @classmethod
    def of(cls, incoming: Incoming) -> RetrieveResponse:
        rsp = incoming.command
        assert isinstance(rsp, CMoveRSP | CGetRSP)
        failed: tuple[str, ...] = ()
        if incoming.dataset:
            ds = decode_dataset(incoming.dataset, incoming.context.transfer_syntax)
            value = ds.get("FailedSOPInstanceUIDList")
            if value:
                failed = (str(value),) if isinstance(value, str) else tuple(map(str, value))
        return cls(
            status=rsp.status,
            remaining=rsp.number_of_remaining_suboperations,
            completed=rsp.number_of_completed_suboperations,
            failed=rsp.number_of_failed_suboperations,
            warning=rsp.number_of_warning_suboperations,
            failed_sop_instance_uids=failed,
            error_comment=rsp.error_comment,
            message=rsp,
        )


# --- C-STORE sub-operations of a C-GET --------------------------------------------------------


class StoreHandler(Protocol):
    """Takes the C-STORE-RQs a C-GET SCP sends back on the association (PS3.4 C.4.3.3)."""

    def sink(
        self, association: AssociationLike, context: PresentationContext, request: CStoreRQ
    ) -> DatasetSink | None:
        """Where the data set's fragments go as they arrive; None gathers it in memory."""
        ...

    async def handle(self, association: AssociationLike, incoming: Incoming) -> int:
        """Finish one received instance; returns the C-STORE-RSP status (PS3.4 B.2.3)."""
        ...


class _FileSink:
    """One instance being received: a temporary file under the output folder."""

    __slots__ = ("error", "final", "temp")

    def __init__(self, temp: TempFile | None, final: Path, error: str = "") -> None:
        self.temp = temp
        self.final = final
        self.error = error

    def write(self, data: bytes) -> None:
        # Called inside the transport's data_received: an I/O error must not escape.
        if self.temp is None or self.error:
            return
        try:
            self.temp.write(data)
        except OSError as error:
            self.error = str(error)

    def abandon(self) -> None:
        if self.temp is not None:
            self.temp.abandon()

    def install(self, *, fsync: bool) -> None:
        """Blocking: flush (and fsync) the temporary file, then rename it into place."""
        assert self.temp is not None
        self.temp.finish(fsync=fsync)
        os.replace(self.temp.path, self.final)


class FolderStoreHandler:
    """Writes each received instance as ``<folder>/<SOP Instance UID>.dcm`` (PS3.10).

    The file holds our meta header (transfer syntax of the context, the peer
    as Source AE) and then the data set bytes exactly as received. Answers
    0000 once the file is in place, A700 (Refused: Out of Resources) when it
    could not be written. ``received`` lists the files written, in order.
    """

    def __init__(self, folder: Path | str, *, fsync: bool = False) -> None:
        self.folder = Path(folder)
        self.fsync = fsync
        self.received: list[Path] = []
        self.failed: list[tuple[str, str]] = []

    def sink(
        self, association: AssociationLike, context: PresentationContext, request: CStoreRQ
    ) -> DatasetSink | None:
        uid = request.affected_sop_instance_uid
        final = self.folder / (uid_component(uid) + INSTANCE_SUFFIX)
        header = encode_file_meta(
            sop_class_uid=request.affected_sop_class_uid,
            sop_instance_uid=uid,
            transfer_syntax_uid=context.transfer_syntax,
            implementation_class_uid=IMPLEMENTATION_CLASS_UID,
            implementation_version_name=IMPLEMENTATION_VERSION_NAME,
            source_ae=association.called_ae_title,
        )
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            return _FileSink(TempFile.create(self.folder, header), final)
        except OSError as error:
            return _FileSink(None, final, str(error))

    async def handle(self, association: AssociationLike, incoming: Incoming) -> int:
        request = incoming.command
        assert isinstance(request, CStoreRQ)
        sink = incoming.sink
        if not isinstance(sink, _FileSink) or sink.temp is None or sink.error:
            why = sink.error if isinstance(sink, _FileSink) else "data set not received to a file"
            return self._fail(request, sink, why)
        try:
            await asyncio.to_thread(sink.install, fsync=self.fsync)
        except OSError as error:
            return self._fail(request, sink, str(error))
        self.received.append(sink.final)
        return Status.SUCCESS

    def _fail(self, request: CStoreRQ, sink: DatasetSink | None, why: str) -> int:
        log.error(
            "cannot write %s: %s", printable(request.affected_sop_instance_uid), printable(why)
        )
        if isinstance(sink, _FileSink) and sink.temp is not None:
            sink.temp.abandon()
        self.failed.append((request.affected_sop_instance_uid, why))
        return Status.OUT_OF_RESOURCES


def _sink_factory(handler: StoreHandler, previous: SinkFactory | None) -> SinkFactory:
    """The association's sink factory while a C-GET runs: C-STORE-RQs go to ``handler``."""

    def factory(
        association: AssociationLike, context: PresentationContext, command: Message
    ) -> DatasetSink | None:
        if isinstance(command, CStoreRQ):
            return handler.sink(association, context, command)
        return previous(association, context, command) if previous is not None else None

    return factory


def _unexpected(command: Message) -> Callable[[Mismatch], DIMSEError]:
    """The error of a message that neither answers the retrieve nor is a sub-operation."""
    return lambda _: DIMSEError(0xC000, f"unexpected message during the retrieve: {command!r}")


# --- the response stream ----------------------------------------------------------------------


class RetrieveStream:
    """The responses of one C-MOVE or C-GET; see the module docstring.

    The request is sent at the first ``__anext__`` (or on ``async with``
    entry). ``final`` holds the final response once it arrived.
    """

    def __init__(
        self,
        client: ClientLike,
        context: PresentationContext,
        request: CMoveRQ | CGetRQ,
        identifier: bytes,
        handler: StoreHandler | None = None,
    ) -> None:
        self.client = client
        self.context = context
        self.request = request
        self.identifier = identifier
        self.handler = handler
        self.final: RetrieveResponse | None = None
        #: What answers the request (PS3.7 9.3.3.2, 9.3.4.2).
        self.response_class: type[CMoveRSP] | type[CGetRSP] = (
            CMoveRSP if isinstance(request, CMoveRQ) else CGetRSP
        )
        self._started = False
        self._cancel_sent = False
        self._previous_factory: SinkFactory | None = None

    @property
    def association(self) -> AssociationLike:
        return self.client.association

    async def start(self) -> None:
        """Send the request (once); settles an earlier stream left unfinished first."""
        if self._started:
            return
        await self.client.settle()
        self._started = True
        self.client.open_stream = self
        if self.handler is not None:
            self._previous_factory = self.association.sink_factory
            self.association.sink_factory = _sink_factory(self.handler, self._previous_factory)
        try:
            await self.association.send(self.context.context_id, self.request, self.identifier)
        except BaseException:
            self._finish(None)
            raise

    def __aiter__(self) -> RetrieveStream:
        return self

    async def __anext__(self) -> RetrieveResponse:
        if self.final is not None or (self._started and self.client.open_stream is not self):
            raise StopAsyncIteration
        await self.start()
        return await self._next()

    async def _next(self) -> RetrieveResponse:
        try:
            while True:
                incoming = await self.client.response()
                command = incoming.command
                if isinstance(command, CStoreRQ):
                    await self._store(incoming, command)
                    continue
                expect_response(self.request, incoming, self.response_class, _unexpected(command))
                response = RetrieveResponse.of(incoming)
                if not response.pending:
                    self._finish(response)
                return response
        except asyncio.CancelledError:
            raise  # still open: the next operation on the association cancels and drains it
        except BaseException:
            self._finish(None)
            raise

    async def _store(self, incoming: Incoming, request: CStoreRQ) -> None:
        """Answer one C-STORE sub-operation of a C-GET (PS3.4 C.4.3.3)."""
        if self.handler is None:
            status = int(Status.SOP_CLASS_NOT_SUPPORTED)  # a C-MOVE has no store handler
        else:
            try:
                status = await self.handler.handle(self.association, incoming)
            except Exception:
                log.exception(
                    "store handler failed on %s", printable(request.affected_sop_instance_uid)
                )
                status = int(Status.OUT_OF_RESOURCES)
        response = CStoreRSP(
            message_id_being_responded_to=request.message_id,
            status=status,
            affected_sop_class_uid=request.affected_sop_class_uid,
            affected_sop_instance_uid=request.affected_sop_instance_uid,
        )
        await self.association.send(incoming.context.context_id, response)

    def _finish(self, final: RetrieveResponse | None) -> None:
        """The operation is over (or broken): restore the sink factory, let go of the client."""
        if final is not None:
            self.final = final
        if self.handler is not None and self._started:
            self.association.sink_factory = self._previous_factory
        if self.client.open_stream is self:
            self.client.open_stream = None

    @property
    def open(self) -> bool:
        """Sent and not yet answered with a final response."""
        return self._started and self.client.open_stream is self

    async def cancel(self) -> RetrieveResponse | None:
        """C-CANCEL-RQ (once) and read on to the final response, which is returned.

        Does nothing when the final response already came (or nothing was sent).
        """
        if not self.open:
            self._started = True  # an unsent request stays unsent
            return self.final
        if not self._cancel_sent:
            self._cancel_sent = True
            cancel = CCancelRQ(message_id_being_responded_to=self.request.message_id)
            await self.association.send(self.context.context_id, cancel)
        while self.open:
            await self._next()
        return self.final

    async def aclose(self) -> None:
        """Cancel if still running (what ``contextlib.aclosing`` calls)."""
        if self.open and self.association.is_established:
            await self.cancel()
        elif self.open:
            self._finish(None)

    async def __aenter__(self) -> RetrieveStream:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            await self.aclose()
            return
        try:
            await self.aclose()
        except Exception as error:  # the original exception matters more
            log.debug("cancelling the retrieve after %r failed: %s", exc, printable(error))
