"""The association requestor: ``connect()`` and one client association with every operation.

``connect`` opens the TCP connection, sends the A-ASSOCIATE-RQ through the
same sans-I/O core the server uses and returns a :class:`ClientAssociation`
once the A-ASSOCIATE-AC arrived (or raises :class:`AssociationRejected`).
Every SCU operation is a method of it: :meth:`~ClientAssociation.echo`,
:meth:`~ClientAssociation.store`, :meth:`~ClientAssociation.find`,
:meth:`~ClientAssociation.move`, :meth:`~ClientAssociation.get`, the DIMSE-N
requests and storage commitment; each returns a typed result or an async
iterator.  They are built by the helpers of :mod:`stellarpacs.aio.scu`,
which know the client only as :class:`~stellarpacs.aio.protocols.ClientLike`.
Asynchronous operations are not used, so one request is outstanding at a
time (PS3.7 D.3.3.3 default).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import tempfile
from collections.abc import AsyncGenerator, Iterable
from pathlib import Path
from types import TracebackType

from pydicom.dataset import Dataset

from stellarpacs.aio.association import Association
from stellarpacs.aio.protocols import SinkFactory
from stellarpacs.aio.scu import nservices, query, store
from stellarpacs.aio.scu.contexts import ProposedContext, build_request
from stellarpacs.aio.scu.nservices import CommitmentListener, NResult
from stellarpacs.aio.scu.retrieve import RetrieveStream, StoreHandler
from stellarpacs.aio.scu.store import StoreResult
from stellarpacs.aio.transport import ULProtocol
from stellarpacs.commitment import CommitmentReport, SOPReference
from stellarpacs.datasets import encode_dataset
from stellarpacs.dimse.commands import CEchoRQ, CEchoRSP, CGetRQ, CMoveRQ, Message, Priority
from stellarpacs.dimse.events import Incoming
from stellarpacs.dimse.matching import expect_response
from stellarpacs.errors import AssociationAborted, AssociationRejected
from stellarpacs.uids import STORAGE_COMMITMENT_PUSH, VERIFICATION
from stellarpacs.ul.connection import (
    Aborted,
    AssociationAccepted,
    AssociationDeclined,
    Connection,
    ConnectionEvent,
)
from stellarpacs.ul.negotiation import PresentationContext, contexts_from_ac
from stellarpacs.ul.pdus import AAssociateRQ

__all__ = ["ClientAssociation", "commit", "connect", "contexts_for_paths"]


class ClientAssociation:
    """An association we requested; an async context manager that releases on exit."""

    #: The C-MOVE or C-GET whose final response has not been read yet.
    open_stream: RetrieveStream | None = None

    def __init__(self, association: Association, dimse_timeout: float) -> None:
        self.association = association
        self.dimse_timeout = dimse_timeout

    @property
    def contexts(self) -> dict[int, PresentationContext]:
        return dict(self.association.contexts)

    # --- one request, one response ----------------------------------------------------

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

    async def settle(self) -> None:
        """Cancel and drain a C-MOVE/C-GET that was left before its final response."""
        stream = self.open_stream
        if stream is not None and self.association.is_established:
            await stream.aclose()
        self.open_stream = None

    # --- DIMSE-C (PS3.7 9.1) --------------------------------------------------------------

    async def echo(self) -> int:
        """C-ECHO (PS3.7 9.1.5); returns the status, raises DIMSEError on a failure."""
        context = self.association.context_for(VERIFICATION)
        rq = CEchoRQ(message_id=self.association.next_message_id())
        incoming = await self.request(context.context_id, rq)
        rsp = expect_response(rq, incoming, CEchoRSP, query.unexpected_answer("C-ECHO", incoming))
        return rsp.status

    def find(
        self, model_uid: str, identifier: Dataset, *, priority: int = Priority.MEDIUM
    ) -> AsyncGenerator[Dataset, None]:
        """C-FIND (PS3.7 9.1.2): yield each match's identifier as its Pending response arrives.

        Ends after Success or Cancel; raises DIMSEError with the status of a
        failure.  Leaving the loop early sends C-CANCEL-RQ (PS3.7 9.3.2.3) and
        reads on to the final response, so the association can be used again;
        wrap the call in ``contextlib.aclosing`` for that to happen at the
        ``break`` rather than when the generator is collected.
        """
        return query.find(self, model_uid, identifier, priority=priority)

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
        await self.settle()
        if isinstance(source, Dataset):
            with tempfile.TemporaryDirectory(prefix="stellarpacs-store-") as folder:
                path = await asyncio.to_thread(
                    store.dataset_file, source, Path(folder), transfer_syntax
                )
                return await self.store(path)
        items, _ = await asyncio.to_thread(store.scan_paths, [Path(source)])
        return await store.send_all(self.association, items, dimse_timeout=self.dimse_timeout)

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

    # --- DIMSE-N (PS3.7 10.1): the status comes back, a failure is not raised -------------

    async def n_create(
        self, sop_class: str, attributes: Dataset, *, sop_instance_uid: str | None = None
    ) -> NResult:
        """N-CREATE; without ``sop_instance_uid`` the SCP assigns one (e.g. MPPS, PS3.4 F.7.2.1)."""
        return await nservices.n_create(
            self, sop_class, attributes, sop_instance_uid=sop_instance_uid
        )

    async def n_set(self, sop_class: str, sop_instance_uid: str, modifications: Dataset) -> NResult:
        """N-SET of ``modifications`` (e.g. an MPPS to COMPLETED, PS3.4 F.7.2.2)."""
        return await nservices.n_set(self, sop_class, sop_instance_uid, modifications)

    async def n_action(
        self,
        sop_class: str,
        sop_instance_uid: str,
        action_type_id: int,
        information: Dataset | None = None,
    ) -> NResult:
        """N-ACTION with its Action Information."""
        return await nservices.n_action(
            self, sop_class, sop_instance_uid, action_type_id, information
        )

    async def n_event_report(
        self,
        sop_class: str,
        sop_instance_uid: str,
        event_type_id: int,
        information: Dataset | None = None,
    ) -> NResult:
        """N-EVENT-REPORT with its Event Information (e.g. a commitment result, PS3.4 J.3.3)."""
        return await nservices.n_event_report(
            self, sop_class, sop_instance_uid, event_type_id, information
        )

    async def commit(
        self,
        references: Iterable[SOPReference | tuple[str, str]],
        *,
        listener: CommitmentListener | None = None,
        transaction_uid: str | None = None,
        timeout: float = 60.0,
    ) -> CommitmentReport:
        """Storage commitment (PS3.4 J.3): N-ACTION, then wait for the result.

        The result comes on this association or, as an N-EVENT-REPORT on a new
        one, to ``listener``; TimeoutError after ``timeout`` s, DIMSEError when
        the request is refused.
        """
        return await nservices.commit_on(
            self, references, listener=listener, transaction_uid=transaction_uid, timeout=timeout
        )

    # --- ending -----------------------------------------------------------------------------

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
    tls: ssl.SSLContext | None = None,
) -> ClientAssociation:
    """Open an association; ``contexts`` are ProposedContexts or abstract syntax UIDs.

    With ``tls`` (see :func:`stellarpacs.tls.client_context`) the connection
    is TLS (PS3.15 B.12, B.13), its handshake within ``connect_timeout``; a
    failed one raises :class:`ssl.SSLError`.

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
    pending = _Establishing(connection, rq, sink_factory)
    connection.request(loop.time())
    async with asyncio.timeout(connect_timeout):
        _, protocol = await loop.create_connection(
            lambda: ULProtocol(connection, pending.on_event), host, port, ssl=tls
        )
    pending.protocol = protocol
    protocol.on_lost = lambda: pending.on_event(Aborted(by_peer_user=False))
    connection.transport_connected(loop.time(), rq)
    protocol.pump()
    try:
        async with asyncio.timeout(dimse_timeout or None):
            association = await pending.answer
    except BaseException:
        protocol.close()
        raise
    return ClientAssociation(association, dimse_timeout)


class _Establishing:
    """The requestor's upper layer events until the A-ASSOCIATE answer (PS3.8 9.2.1).

    On the AC the association takes over the transport at once, inside the
    pump, so that a P-DATA read together with the AC reaches it.
    """

    def __init__(
        self, connection: Connection, rq: AAssociateRQ, sink_factory: SinkFactory | None
    ) -> None:
        self.connection = connection
        self.rq = rq
        self.sink_factory = sink_factory
        self.answer: asyncio.Future[Association] = asyncio.get_running_loop().create_future()
        self.protocol: ULProtocol | None = None

    def on_event(self, event: ConnectionEvent) -> None:
        if self.answer.done():
            return
        if isinstance(event, AssociationAccepted):
            assert self.protocol is not None  # an AC only follows transport_connected
            ac, rq = event.response, self.rq
            association = Association(
                self.connection, rq, ac, contexts_from_ac(rq, ac), self.sink_factory
            )
            association.attach(self.protocol)
            self.answer.set_result(association)
        elif isinstance(event, AssociationDeclined):
            rj = event.response
            self.answer.set_exception(AssociationRejected(rj.result, rj.source, rj.reason))
        elif isinstance(event, Aborted):
            self.answer.set_exception(
                AssociationAborted("association request aborted", event.source, event.reason)
            )


def contexts_for_paths(paths: Iterable[str | os.PathLike[str]]) -> list[ProposedContext]:
    """Blocking: the contexts :meth:`ClientAssociation.store` needs for these files and folders.

    Per SOP class, each stored transfer syntax and an uncompressed fallback,
    read from the files' meta only. ValueError above the 128 contexts of one
    A-ASSOCIATE-RQ (PS3.8 9.3.2.2).
    """
    items, _ = store.scan_paths(Path(p) for p in paths)
    return store.propose_contexts(items)


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
    tls: ssl.SSLContext | None = None,
) -> CommitmentReport:
    """Connect, request storage commitment of ``references`` and wait for the result.

    The SCP may report on the same association or on a new one to our AE
    title: give a running ``listener``, or ``listen_port`` to run one for
    the duration of the call (the SCP must know ``calling_ae`` at that
    port).  Raises DIMSEError when the N-ACTION is refused, TimeoutError
    when no report comes within ``timeout`` s.
    """
    async with contextlib.AsyncExitStack() as stack:
        if listener is None and listen_port is not None:
            listener = CommitmentListener(
                calling_ae, host=listen_host, port=listen_port, max_pdu_length=max_pdu_length
            )
            await stack.enter_async_context(listener)
        client = await connect(
            host,
            port,
            called_ae=called_ae,
            calling_ae=calling_ae,
            contexts=[ProposedContext(STORAGE_COMMITMENT_PUSH)],
            max_pdu_length=max_pdu_length,
            connect_timeout=connect_timeout,
            dimse_timeout=dimse_timeout,
            tls=tls,
        )
        async with client:
            return await client.commit(
                references, listener=listener, transaction_uid=transaction_uid, timeout=timeout
            )
    raise AssertionError("unreachable")  # pragma: no cover (mypy: the with blocks return)
