"""The association requestor: ``connect()`` and the SCU operations.

``connect`` opens the TCP connection, sends the A-ASSOCIATE-RQ through the
same sans-I/O core the server uses and returns a :class:`ClientAssociation`
once the A-ASSOCIATE-AC arrived (or raises :class:`AssociationRejected`).
Operations are typed coroutines; asynchronous operations are not used, so
one request is outstanding at a time (PS3.7 D.3.3.3 default).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from pydicom.dataset import Dataset

from stellarpacs.aio.association import Association
from stellarpacs.aio.protocols import SinkFactory
from stellarpacs.aio.retrieve_scu import RetrieveStream, StoreHandler
from stellarpacs.aio.transport import ULProtocol
from stellarpacs.datasets import decode_dataset, encode_dataset
from stellarpacs.dimse.commands import (
    CCancelRQ,
    CEchoRQ,
    CEchoRSP,
    CFindRQ,
    CFindRSP,
    CGetRQ,
    CMoveRQ,
    Message,
    Priority,
)
from stellarpacs.dimse.events import Incoming
from stellarpacs.dimse.matching import Mismatch, expect_response
from stellarpacs.dimse.status import Service, StatusCategory, category, describe
from stellarpacs.errors import AssociationAborted, AssociationRejected, DIMSEError
from stellarpacs.uids import (
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
    IMPLICIT_VR_LITTLE_ENDIAN,
    QR_GET_MODELS,
    VERIFICATION,
)
from stellarpacs.ul.connection import (
    Aborted,
    AssociationAccepted,
    Connection,
    Event,
)
from stellarpacs.ul.connection import (
    AssociationRejected as RejectedEvent,
)
from stellarpacs.ul.negotiation import contexts_from_ac
from stellarpacs.ul.pdus import (
    AAssociateAC,
    AAssociateRQ,
    PresentationContextRQ,
    RoleSelection,
    UserInformation,
)

if TYPE_CHECKING:
    from stellarpacs.aio.storescu import StoreResult

__all__ = [
    "ClientAssociation",
    "ProposedContext",
    "connect",
    "contexts_for_paths",
    "get_contexts",
]

DEFAULT_TRANSFER_SYNTAXES = (IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN)


@dataclass(frozen=True, slots=True)
class ProposedContext:
    """One presentation context to propose; ``scp_role`` asks to act as SCP (C-GET)."""

    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...] = DEFAULT_TRANSFER_SYNTAXES
    scu_role: bool = True
    scp_role: bool = False


def build_request(
    calling_ae: str,
    called_ae: str,
    contexts: Sequence[ProposedContext],
    max_pdu_length: int,
) -> AAssociateRQ:
    """The A-ASSOCIATE-RQ for ``contexts`` (odd IDs 1, 3, 5... as PS3.8 9.3.2.2 asks)."""
    if not 1 <= len(contexts) <= 128:
        raise ValueError("between 1 and 128 presentation contexts can be proposed")
    items = tuple(
        PresentationContextRQ(2 * i + 1, c.abstract_syntax, c.transfer_syntaxes)
        for i, c in enumerate(contexts)
    )
    roles = tuple(
        RoleSelection(c.abstract_syntax, c.scu_role, c.scp_role)
        for c in {c.abstract_syntax: c for c in contexts if c.scp_role}.values()
    )
    return AAssociateRQ(
        called_ae_title=called_ae,
        calling_ae_title=calling_ae,
        presentation_contexts=items,
        user_information=UserInformation(
            maximum_length=max_pdu_length,
            implementation_class_uid=IMPLEMENTATION_CLASS_UID,
            implementation_version_name=IMPLEMENTATION_VERSION_NAME,
            role_selections=roles,
        ),
    )


def _unexpected(operation: str, incoming: Incoming) -> Callable[[Mismatch], DIMSEError]:
    """The error of an answer that does not answer a C-ECHO or C-FIND (0xC000)."""
    return lambda _: DIMSEError(0xC000, f"unexpected answer to {operation}: {incoming.command!r}")


class ClientAssociation:
    """An association we requested; an async context manager that releases on exit."""

    def __init__(self, association: Association, dimse_timeout: float) -> None:
        self.association = association
        self.dimse_timeout = dimse_timeout

    @property
    def contexts(self) -> dict[int, object]:
        return dict(self.association.contexts)

    async def request(
        self, context_id: int, message: Message, dataset: bytes | None = None
    ) -> Incoming:
        """Send a request and wait (up to the DIMSE timeout) for its one response."""
        await self.settle()
        await self.association.send(context_id, message, dataset)
        return await self.response()

    async def response(self) -> Incoming:
        """The next message from the peer, within the DIMSE timeout."""
        try:
            async with asyncio.timeout(self.dimse_timeout or None):
                incoming = await self.association.receive()
        except TimeoutError:
            self.association.abort()
            raise AssociationAborted(
                f"no DIMSE response within {self.dimse_timeout} s; association aborted"
            ) from None
        if incoming is None:
            raise AssociationAborted("the peer released the association")
        return incoming

    async def echo(self) -> int:
        """C-ECHO (PS3.7 9.1.5); returns the status, raises DIMSEError on a failure."""
        context = self.association.context_for(VERIFICATION)
        rq = CEchoRQ(message_id=self.association.next_message_id())
        incoming = await self.request(context.context_id, rq)
        rsp = expect_response(rq, incoming, CEchoRSP, _unexpected("C-ECHO", incoming))
        return rsp.status

    async def find(
        self, model_uid: str, identifier: Dataset, *, priority: int = Priority.MEDIUM
    ) -> AsyncGenerator[Dataset, None]:
        """C-FIND (PS3.7 9.1.2): yield each match's identifier as its Pending response arrives.

        Ends after Success or Cancel; raises DIMSEError with the status of a
        failure.  Leaving the loop early sends C-CANCEL-RQ (PS3.7 9.3.2.3) and
        reads on to the final response, so the association can be used again;
        wrap the call in ``contextlib.aclosing`` for that to happen at the
        ``break`` rather than when the generator is collected.
        """
        context = self.association.context_for(model_uid)
        rq = CFindRQ(
            message_id=self.association.next_message_id(),
            affected_sop_class_uid=model_uid,
            priority=priority,
        )
        await self.association.send(
            context.context_id, rq, encode_dataset(identifier, context.transfer_syntax)
        )
        done = False
        try:
            while not done:
                incoming = await self.response()
                rsp = expect_response(rq, incoming, CFindRSP, _unexpected("C-FIND", incoming))
                kind = category(rsp.status)
                if kind is StatusCategory.PENDING:
                    if incoming.dataset is not None:
                        yield decode_dataset(incoming.dataset, context.transfer_syntax)
                    continue
                done = True
                if kind is StatusCategory.FAILURE:
                    text = rsp.error_comment or describe(rsp.status, Service.FIND)
                    raise DIMSEError(rsp.status, f"C-FIND failed, 0x{rsp.status:04X}: {text}")
        except GeneratorExit:
            if not done and self.association.is_established:
                cancel = CCancelRQ(message_id_being_responded_to=rq.message_id)
                await self.association.send(context.context_id, cancel)
                while True:  # the SCP answers Pending until it notices, then Cancel
                    final = (await self.response()).command
                    pending = isinstance(final, CFindRSP) and category(final.status) is (
                        StatusCategory.PENDING
                    )
                    if not pending:
                        break
            raise

    # --- storage and retrieve (PS3.4 B, C.4.2, C.4.3) ---------------------------------------

    #: The C-MOVE or C-GET whose final response has not been read yet.
    open_stream: RetrieveStream | None = None

    async def settle(self) -> None:
        """Cancel and drain a C-MOVE/C-GET that was left before its final response."""
        stream = self.open_stream
        if stream is not None and self.association.is_established:
            await stream.aclose()
        self.open_stream = None

    async def store(
        self, source: str | os.PathLike[str] | Dataset, *, transfer_syntax: str | None = None
    ) -> list[StoreResult]:
        """C-STORE a file, a folder (recursively) or a pydicom data set (PS3.4 B.2).

        Files are sent as stored, converted only when the peer did not accept
        their transfer syntax; a data set goes in ``transfer_syntax`` or its
        ``file_meta`` one. The contexts must have been proposed at connect time
        (:func:`contexts_for_paths`). Returns one result per DICOM file; other
        files are skipped. A result with status None was never answered.
        """
        from stellarpacs.aio import storescu

        await self.settle()
        if isinstance(source, Dataset):
            with tempfile.TemporaryDirectory(prefix="stellarpacs-store-") as folder:
                path = await asyncio.to_thread(
                    storescu.dataset_file, source, Path(folder), transfer_syntax
                )
                return await self.store(path)
        items, _ = await asyncio.to_thread(storescu.scan_paths, [Path(source)])
        return await storescu.send_all(self.association, items, dimse_timeout=self.dimse_timeout)

    def move(
        self,
        model_uid: str,
        identifier: Dataset,
        destination: str,
        *,
        priority: int = Priority.MEDIUM,
    ) -> RetrieveStream:
        """C-MOVE (PS3.7 9.1.4) to ``destination``: an async iterator of the responses.

        Yields every response, Pending ones with the sub-operation counts and
        the final one last, whatever its status: check ``.status`` (0000, B000
        with failed UIDs, A7xx, A801, FE00...). Leaving early with ``async
        with`` or ``contextlib.aclosing`` sends C-CANCEL-RQ and drains; after a
        bare ``break`` that happens before the next request or the release.
        """
        context = self.association.context_for(model_uid)
        request = CMoveRQ(
            message_id=self.association.next_message_id(),
            affected_sop_class_uid=model_uid,
            move_destination=destination,
            priority=priority,
        )
        data = encode_dataset(identifier, context.transfer_syntax)
        return RetrieveStream(self, context, request, data)

    def get(
        self,
        model_uid: str,
        identifier: Dataset,
        handler: StoreHandler,
        *,
        priority: int = Priority.MEDIUM,
    ) -> RetrieveStream:
        """C-GET (PS3.7 9.1.3): like :meth:`move`, the instances coming back on this association.

        Each C-STORE-RQ goes to ``handler`` (e.g. a :class:`FolderStoreHandler`),
        which decides the C-STORE-RSP status. The storage contexts must have
        been proposed with the SCP role (:func:`get_contexts`).
        """
        context = self.association.context_for(model_uid)
        request = CGetRQ(
            message_id=self.association.next_message_id(),
            affected_sop_class_uid=model_uid,
            priority=priority,
        )
        data = encode_dataset(identifier, context.transfer_syntax)
        return RetrieveStream(self, context, request, data, handler)

    async def release(self, timeout: float = 30.0) -> None:
        """A-RELEASE and wait for the transport to close."""
        await self.settle()
        await self.association.release(timeout)
        await self.association.wait_closed()

    def abort(self) -> None:
        """A-ABORT: end the association at once."""
        self.association.abort()
        if self.association.protocol is not None:
            self.association.protocol.close()

    async def __aenter__(self) -> ClientAssociation:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None and self.association.is_established:
            await self.release()
        elif self.association.is_established:
            self.abort()


async def connect(
    host: str,
    port: int,
    *,
    called_ae: str = "ANY-SCP",
    calling_ae: str = "STELLARPACS",
    contexts: Iterable[ProposedContext | str] = (VERIFICATION,),
    max_pdu_length: int = 16384,
    connect_timeout: float = 10.0,
    artim_timeout: float = 30.0,
    dimse_timeout: float = 60.0,
    sink_factory: SinkFactory | None = None,
) -> ClientAssociation:
    """Open an association; ``contexts`` are ProposedContexts or abstract syntax UIDs.

    Raises :class:`AssociationRejected` with the result/source/reason of an
    A-ASSOCIATE-RJ, :class:`AssociationAborted` when the peer aborts or
    closes, and ``OSError``/``TimeoutError`` when no connection is made.
    """
    proposed = [c if isinstance(c, ProposedContext) else ProposedContext(c) for c in contexts]
    rq = build_request(calling_ae, called_ae, proposed, max_pdu_length)
    loop = asyncio.get_running_loop()
    connection = Connection(
        requestor=True, max_pdu_length=max_pdu_length, artim_timeout=artim_timeout
    )
    answer: asyncio.Future[AAssociateAC] = loop.create_future()

    def on_event(event: Event) -> None:
        if answer.done():
            return
        if isinstance(event, AssociationAccepted):
            answer.set_result(event.response)
        elif isinstance(event, RejectedEvent):
            rj = event.response
            answer.set_exception(AssociationRejected(rj.result, rj.source, rj.reason))
        elif isinstance(event, Aborted):
            answer.set_exception(
                AssociationAborted("association request aborted", event.source, event.reason)
            )

    connection.request(loop.time())
    async with asyncio.timeout(connect_timeout):
        _, protocol = await loop.create_connection(
            lambda: ULProtocol(connection, on_event), host, port
        )
    protocol.on_lost = lambda: on_event(Aborted(by_peer_user=False))
    connection.transport_connected(loop.time(), rq)
    protocol.pump()
    try:
        async with asyncio.timeout(dimse_timeout or None):
            ac = await answer
    except BaseException:
        protocol.close()
        raise
    association = Association(connection, rq, ac, contexts_from_ac(rq, ac), sink_factory)
    association.attach(protocol)
    return ClientAssociation(association, dimse_timeout)


def contexts_for_paths(paths: Iterable[str | os.PathLike[str]]) -> list[ProposedContext]:
    """Blocking: the contexts :meth:`ClientAssociation.store` needs for these files and folders.

    Per SOP class, each stored transfer syntax and an uncompressed fallback,
    read from the files' meta only. ValueError above the 128 contexts of one
    A-ASSOCIATE-RQ (PS3.8 9.3.2.2).
    """
    from stellarpacs.aio.storescu import propose_contexts, scan_paths

    items, _ = scan_paths(Path(p) for p in paths)
    return propose_contexts(items)


def get_contexts(
    sop_classes: Iterable[str],
    transfer_syntaxes: Sequence[str] = DEFAULT_TRANSFER_SYNTAXES,
    *,
    models: Sequence[str] = QR_GET_MODELS,
) -> list[ProposedContext]:
    """Contexts for a C-GET: the Q/R GET ``models`` and storage contexts with the SCP role.

    Each SOP class gets one context per transfer syntax, each offering that
    syntax alone: the SCP can then send every instance in the very syntax it
    is stored in, where a context offering several lets it choose one for
    all (PS3.4 C.4.3.3, PS3.7 D.3.3.4). ValueError above 128 contexts.
    """
    contexts = [ProposedContext(model) for model in models]
    contexts.extend(
        ProposedContext(sop_class, (syntax,), scu_role=False, scp_role=True)
        for sop_class in dict.fromkeys(sop_classes)
        for syntax in dict.fromkeys(transfer_syntaxes)
    )
    if len(contexts) > 128:
        raise ValueError(f"{len(contexts)} presentation contexts needed, 128 at most")
    return contexts
