"""The association requestor: ``connect()`` and the SCU operations.

``connect`` opens the TCP connection, sends the A-ASSOCIATE-RQ through the
same sans-I/O core the server uses and returns a :class:`ClientAssociation`
once the A-ASSOCIATE-AC arrived (or raises :class:`AssociationRejected`).
Operations are typed coroutines; asynchronous operations are not used, so
one request is outstanding at a time (PS3.7 D.3.3.3 default).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType

from stellarpacs.aio.association import Association, Incoming, SinkFactory
from stellarpacs.aio.transport import ULProtocol
from stellarpacs.dimse.commands import CEchoRQ, CEchoRSP, Message
from stellarpacs.errors import AssociationAborted, AssociationRejected, DIMSEError
from stellarpacs.uids import (
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
    IMPLICIT_VR_LITTLE_ENDIAN,
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

__all__ = ["ClientAssociation", "ProposedContext", "connect"]

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
        rsp = incoming.command
        if not isinstance(rsp, CEchoRSP) or rsp.message_id_being_responded_to != rq.message_id:
            raise DIMSEError(0xC000, f"unexpected answer to C-ECHO: {rsp!r}")
        return rsp.status

    async def release(self, timeout: float = 30.0) -> None:
        """A-RELEASE and wait for the transport to close."""
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
