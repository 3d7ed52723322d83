"""The association acceptor: ``Server``, one task per association.

Negotiation happens inside the transport callback, synchronously, with the
pure :func:`negotiate` (compute, then commit).  Each accepted association
gets one task that reads its requests in order and hands each to the one
service that answers that request class.  ``max_associations`` bounds how
many are open at once; the next request is answered with A-ASSOCIATE-RJ
2/3/2 (PS3.8 Table 9-21) and the open ones go on.

``max_pending_connections`` bounds the connections accepted and not yet
associated.  One more closes the OLDEST of them: a flood of silent sockets
then only ever holds the newest few, and a real peer, which sends its
A-ASSOCIATE-RQ within milliseconds, is associated long before as many new
connections come behind it.  Dropping the newest instead would let the
flood, once in place, refuse every real peer until ARTIM freed it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from types import MappingProxyType, TracebackType

from stellarpacs.aio.association import Association
from stellarpacs.aio.handler import ServiceHandler
from stellarpacs.aio.protocols import AssociationLike
from stellarpacs.aio.transport import ULProtocol
from stellarpacs.aio.verification import VerificationService
from stellarpacs.config import Config
from stellarpacs.dimse.commands import Message
from stellarpacs.dimse.events import DatasetSink
from stellarpacs.errors import AssociationAborted
from stellarpacs.logtext import printable
from stellarpacs.uids import EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN, name_of
from stellarpacs.ul.connection import (
    Aborted,
    AssociationRequested,
    Connection,
    ConnectionEvent,
)
from stellarpacs.ul.fsm import State
from stellarpacs.ul.negotiation import AcceptorPolicy, PresentationContext, Role, negotiate
from stellarpacs.ul.pdus import AAssociateAC, AAssociateRJ

__all__ = ["Server"]

log = logging.getLogger("stellarpacs.server")


def _describe_contexts(contexts: Mapping[int, PresentationContext], shown: int = 4) -> str:
    """A short list for the log: the first few contexts and how many more."""
    names = [
        f"{name_of(c.abstract_syntax)}/{name_of(c.transfer_syntax)}" for c in contexts.values()
    ]
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _policy(config: Config, services: Iterable[ServiceHandler]) -> AcceptorPolicy:
    syntaxes: dict[str, tuple[str, ...]] = {}
    roles: dict[str, Role] = {}
    for service in services:
        syntaxes.update(service.abstract_syntaxes)
        roles.update(service.roles)
    return AcceptorPolicy(
        ae_title=config.ae_title,
        abstract_syntaxes=MappingProxyType(syntaxes),
        accept_any_called_ae=config.accept_any_called_ae,
        max_pdu_length=config.max_pdu_length,
        roles=MappingProxyType(roles),
        scp_role_preference=(EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN),
    )


class _Session:
    """One TCP connection on the acceptor side, before and after association."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.connection = Connection(
            requestor=False,
            max_pdu_length=server.config.max_pdu_length,
            artim_timeout=server.config.artim_timeout,
            pdu_timeout=server.config.pdu_timeout,
        )
        self.protocol = ULProtocol(self.connection, self.on_event)
        self.protocol.on_lost = self.on_lost
        self.association: Association | None = None
        #: Why the connection ends was logged already (a rejection, a withdrawn request).
        self.logged = False
        server._sessions.add(self)
        server._pending[self] = None
        self.protocol.closed.add_done_callback(lambda _: server._forget(self))

    def on_event(self, event: ConnectionEvent) -> None:
        if isinstance(event, AssociationRequested):
            self.server._on_request(self, event)
        elif isinstance(event, Aborted):
            self.protocol.close()  # on_lost says why

    def on_lost(self) -> None:
        """The transport closed before any association: log why, once (PS3.8 9.2.2, 9.1.5).

        Accepted sessions hand ``on_lost`` to their association, and a
        rejection was logged when it was sent, so only the silent and the
        broken connections reach the log here.
        """
        if self.association is not None or self.logged:
            return
        peer = self.protocol.peer
        error = self.connection.last_error
        if error is not None:
            log.warning(
                "connection from %s:%s ended before association: %s (A-ABORT sent)",
                *peer, printable(error),
            )  # fmt: skip
        elif self.protocol.artim_expired:
            log.warning(
                "connection from %s:%s ended before association: no A-ASSOCIATE-RQ within "
                "%g s (ARTIM)",
                *peer, self.connection.artim_timeout,
            )  # fmt: skip
        else:
            # INFO only: port probes and load balancer health checks do this all day.
            log.info("connection from %s:%s closed by the peer before association", *peer)


class Server:
    """A DICOM association acceptor serving the given service handlers.

    The caller passes the handlers (:func:`stellarpacs.services.registry.default_services`
    builds the archive's); a :class:`VerificationService` is put first unless one
    is given, and a request class goes to the last handler that declares it.

    Use as ``async with Server(config) as server: await server.serve_forever()``;
    ``server.port`` is the bound port (useful with port 0 in tests).
    """

    def __init__(self, config: Config, services: Iterable[ServiceHandler] | None = None) -> None:
        self.config = config
        self.services: list[ServiceHandler] = list(services) if services is not None else []
        if not any(isinstance(s, VerificationService) for s in self.services):
            self.services.insert(0, VerificationService())
        self._dispatch: dict[type[Message], ServiceHandler] = {
            request: service for service in self.services for request in service.requests
        }
        self.policy = _policy(config, self.services)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._sessions: set[_Session] = set()
        #: Sessions not associated yet, oldest first (``max_pending_connections``).
        self._pending: dict[_Session, None] = {}
        #: Pending connections closed to make room, and those not yet logged.
        self.pending_dropped = 0
        self._unlogged_drops = 0
        self._drop_logged_at = -1.0
        self.associations: set[Association] = set()

    # --- lifecycle ----------------------------------------------------------------

    async def bind(self) -> None:
        """Bind the listening socket without accepting yet; raises OSError when in use.

        Lets a caller learn that the port is taken before it opens anything else.
        """
        if self._server is not None:
            return
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._new_session,
            self.config.host,
            self.config.port,
            reuse_address=True,
            backlog=128,
            start_serving=False,
        )

    def _new_session(self) -> ULProtocol:
        """A session for a connection just accepted, making room among the pending ones."""
        while len(self._pending) >= self.config.max_pending_connections:
            oldest = next(iter(self._pending))
            self._drop_pending(oldest)
        return _Session(self).protocol

    def _drop_pending(self, session: _Session) -> None:
        """Close a connection that never associated; logged at most once a second, counted."""
        del self._pending[session]
        session.logged = True
        session.protocol.reset()
        self.pending_dropped += 1
        self._unlogged_drops += 1
        now = time.monotonic()
        if now - self._drop_logged_at >= 1.0:
            log.warning(
                "closed %d connection(s) not associated, the last from %s:%s, to make room "
                "(max_pending_connections %d; %d closed so far)",
                self._unlogged_drops, printable(session.protocol.peer[0]),
                session.protocol.peer[1], self.config.max_pending_connections,
                self.pending_dropped,
            )  # fmt: skip
            self._unlogged_drops = 0
            self._drop_logged_at = now

    def _forget(self, session: _Session) -> None:
        self._sessions.discard(session)
        self._pending.pop(session, None)

    async def start(self) -> None:
        """Bind (unless :meth:`bind` did) and accept connections."""
        await self.bind()
        assert self._server is not None
        await self._server.start_serving()
        log.info(
            "%s listening on %s:%s (max %d associations, max PDU %d)",
            self.config.ae_title,
            self.config.host,
            self.port,
            self.config.max_associations,
            self.config.max_pdu_length,
        )

    @property
    def port(self) -> int:
        """The bound TCP port."""
        assert self._server is not None and self._server.sockets, "server not started"
        return int(self._server.sockets[0].getsockname()[1])

    async def serve_forever(self) -> None:
        """Serve until cancelled or closed."""
        if self._server is None or not self._server.is_serving():
            await self.start()
        assert self._server is not None
        await self._server.serve_forever()

    async def close(self, timeout: float = 10.0) -> None:
        """Stop listening, let open associations finish for ``timeout`` s, then abort them.

        Connections without an association are closed at once.  Aborted ones
        are not granted ARTIM's wait for the peer to close (PS3.8 Sta13): the
        A-ABORT is flushed and the transport closed, so ``close`` returns
        about ``timeout`` + 3 s at the latest, whatever the peers do.
        """
        if self._server is not None:
            self._server.close()
        for session in list(self._sessions):
            if session.association is None:
                session.protocol.close()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
        for session in list(self._sessions):
            if session.association is not None:
                session.association.abort()
            session.protocol.close()
        await self._settle(grace=2.0)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _settle(self, grace: float) -> None:
        """Wait ``grace`` s for the association tasks; then drop connections and cancel."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace)
        for session in list(self._sessions):
            session.protocol.reset()  # a peer that does not read keeps close() from flushing
        if self._tasks:
            pending = set(self._tasks)
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=1.0)

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- association establishment ----------------------------------------------------

    def _on_request(self, session: _Session, event: AssociationRequested) -> None:
        rq = event.request
        if session.connection.state is not State.STA3:
            # An A-ABORT came right behind the request (AA-3, PS3.8 9.2): nothing to answer.
            session.logged = True
            log.info(
                "association request withdrawn: %s -> %s from %s:%s, A-ABORT before our answer",
                printable(rq.calling_ae_title), printable(rq.called_ae_title),
                *session.protocol.peer,
            )  # fmt: skip
            return
        at_capacity = len(self.associations) >= self.config.max_associations
        answer, contexts = negotiate(rq, self.policy, at_capacity=at_capacity)
        peer = session.protocol.peer
        if isinstance(answer, AAssociateRJ):
            session.logged = True
            session.connection.reject(answer)
            log.warning(
                "association rejected: %s -> %s from %s:%s, result %d source %d reason %d",
                printable(rq.calling_ae_title), printable(rq.called_ae_title), *peer,
                answer.result, answer.source, answer.reason,
            )  # fmt: skip
            return
        assert isinstance(answer, AAssociateAC)
        association = Association(
            session.connection,
            rq,
            answer,
            contexts,
            sink_factory=self._sink,
            idle_timeout=self.config.idle_timeout,
        )
        association.attach(session.protocol)
        session.association = association
        self._pending.pop(session, None)
        session.connection.accept(answer)
        self.associations.add(association)
        if log.isEnabledFor(logging.INFO):  # naming the contexts costs more than the echo
            log.info(
                "association opened: %s -> %s from %s:%s, contexts: %s",
                printable(rq.calling_ae_title), printable(rq.called_ae_title), *peer,
                _describe_contexts(contexts) or "none accepted",
            )  # fmt: skip
        task = asyncio.get_running_loop().create_task(self._run(association))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _sink(
        self, association: AssociationLike, context: PresentationContext, command: Message
    ) -> DatasetSink | None:
        service = self._dispatch.get(type(command))
        return service.sink(association, context, command) if service else None

    # --- serving one association ---------------------------------------------------------

    async def _run(self, association: Association) -> None:
        started = time.monotonic()
        try:
            while (incoming := await association.receive()) is not None:
                service = self._dispatch.get(type(incoming.command))
                if service is None:
                    log.warning(
                        "%s: no service for %s; aborting",
                        printable(association.calling_ae_title),
                        type(incoming.command).__name__,
                    )
                    association.abort()
                    break
                await service.handle(association, incoming)
        except AssociationAborted:
            pass
        except Exception:
            log.exception(
                "%s: handler failed; aborting association", printable(association.calling_ae_title)
            )
            association.abort()
        finally:
            self.associations.discard(association)
            self._log_end(association, time.monotonic() - started)
            await self._await_close(association)

    async def _await_close(self, association: Association) -> None:
        """Give the peer ARTIM's time to close after release or abort, then close."""
        protocol = association.protocol
        if protocol is None:
            return
        try:
            async with asyncio.timeout(self.config.artim_timeout + 1.0):
                await protocol.closed
        except TimeoutError:
            protocol.close()

    @staticmethod
    def _log_end(association: Association, duration: float) -> None:
        log.info(
            "association ended: %s -> %s from %s:%s, %s after %.3f s, %d requests",
            printable(association.calling_ae_title), printable(association.called_ae_title),
            *association.peer, printable(association.end_reason or "closed"), duration,
            association.stats.messages_in,
        )  # fmt: skip
