"""The association acceptor: ``Server``, one task per association.

Negotiation happens inside the transport callback, synchronously, with the
pure :func:`negotiate` (compute, then commit).  Each accepted association
gets one task that reads its requests in order and hands each to the one
service that answers that request class.  ``max_associations`` bounds how
many are open at once; the next request is answered with A-ASSOCIATE-RJ
2/3/2 (PS3.8 Table 9-21) and the open ones go on.
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
from stellarpacs.aio.tls import TLSListener
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


def _forget(protocol: asyncio.Protocol) -> None:
    """A TLS connection refused in its handshake: its session never started, drop it."""
    assert isinstance(protocol, ULProtocol)
    if not protocol.closed.done():
        protocol.closed.set_result(None)  # _Session's callback discards it


class _Session:
    """One TCP connection on the acceptor side, before and after association."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.connection = Connection(
            requestor=False,
            max_pdu_length=server.config.max_pdu_length,
            artim_timeout=server.config.artim_timeout,
        )
        self.protocol = ULProtocol(self.connection, self.on_event)
        self.protocol.on_lost = self.on_lost
        self.association: Association | None = None
        #: Why the connection ends was logged already (a rejection, a withdrawn request).
        self.logged = False
        server._sessions.add(self)
        self.protocol.closed.add_done_callback(lambda _: server._sessions.discard(self))

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
    ``server.port`` is the bound port (useful with port 0 in tests), ``server.tls_port``
    the TLS listener's when ``[tls]`` has a certificate (PS3.15 B.12, B.13).
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
        self._tls_server: TLSListener | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._sessions: set[_Session] = set()
        self.associations: set[Association] = set()

    # --- lifecycle ----------------------------------------------------------------

    async def bind(self) -> None:
        """Bind the listening socket without accepting yet; raises OSError when in use.

        Lets a caller learn that the port is taken before it opens anything else.
        """
        if self._listeners:
            return
        loop = asyncio.get_running_loop()
        settings, address = self.config.tls, self.config.host
        if not settings.only:
            self._server = await loop.create_server(
                lambda: _Session(self).protocol,
                address, self.config.port, reuse_address=True, backlog=128, start_serving=False,
            )  # fmt: skip
        if settings.enabled:
            listener = TLSListener(
                settings.server_context(), self.config.artim_timeout,
                lambda: _Session(self).protocol, _forget,
            )  # fmt: skip
            try:
                await listener.bind(address, settings.port)
            except OSError:
                if self._server is not None:
                    self._server.close()
                    self._server = None
                raise
            self._tls_server = listener

    @property
    def _listeners(self) -> list[asyncio.Server | TLSListener]:
        return [s for s in (self._server, self._tls_server) if s is not None]

    async def start(self) -> None:
        """Bind (unless :meth:`bind` did) and accept connections."""
        await self.bind()
        for listener in self._listeners:
            await listener.start_serving()
        config = self.config
        log.info(
            "%s listening on %s:%s%s (max %d associations, max PDU %d)",
            config.ae_title, config.host, self.port if self._server else "-",
            f", TLS {self.tls_port} ({config.tls.profile}"
            f"{', client certificates required' if config.tls.verify_peer else ''})"
            if self._tls_server else "",
            config.max_associations, config.max_pdu_length,
        )  # fmt: skip

    @property
    def port(self) -> int:
        """The bound TCP port of the plain listener (none with ``tls.only``)."""
        assert self._server is not None and self._server.sockets, "no plain listener"
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def tls_port(self) -> int:
        """The bound TCP port of the TLS listener."""
        assert self._tls_server is not None and self._tls_server.sockets, "no TLS listener"
        return int(self._tls_server.sockets[0].getsockname()[1])

    async def serve_forever(self) -> None:
        """Serve until cancelled or closed."""
        if not self._listeners or not all(s.is_serving() for s in self._listeners):
            await self.start()
        await asyncio.gather(*(listener.serve_forever() for listener in self._listeners))

    async def close(self, timeout: float = 10.0) -> None:
        """Stop listening, let open associations finish for ``timeout`` s, then abort them.

        Connections without an association are closed at once.  Aborted ones
        are not granted ARTIM's wait for the peer to close (PS3.8 Sta13): the
        A-ABORT is flushed and the transport closed, so ``close`` returns
        about ``timeout`` + 3 s at the latest, whatever the peers do.
        """
        for listener in self._listeners:
            listener.close()
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
        for listener in self._listeners:
            await listener.wait_closed()
        self._server = self._tls_server = None

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
