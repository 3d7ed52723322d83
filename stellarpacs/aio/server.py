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
import socket
import time
from collections.abc import Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType

from stellarpacs import access
from stellarpacs.aio.acceptor import (
    Discard,
    acceptor_policy,
    describe_contexts,
    forget_protocol,
    log_end,
    refuse_request,
    screen_request,
)
from stellarpacs.aio.association import Association
from stellarpacs.aio.auditing import audit_end, audit_opened, audit_rejected
from stellarpacs.aio.guard import BoundedSink, dataset_limit
from stellarpacs.aio.handler import ServiceHandler
from stellarpacs.aio.protocols import AssociationLike
from stellarpacs.aio.tls import TLSListener
from stellarpacs.aio.transport import ULProtocol
from stellarpacs.aio.verification import VerificationService
from stellarpacs.audit import Auditor
from stellarpacs.config import Config
from stellarpacs.dimse.commands import Message
from stellarpacs.dimse.events import DatasetSink
from stellarpacs.errors import AssociationAborted
from stellarpacs.logtext import printable
from stellarpacs.ul.connection import (
    Aborted,
    AssociationRequested,
    Connection,
    ConnectionEvent,
)
from stellarpacs.ul.fsm import State
from stellarpacs.ul.negotiation import (
    Admission,
    PresentationContext,
    RejectReason,
    negotiate,
)
from stellarpacs.ul.pdus import AAssociateAC, AAssociateRJ, AAssociateRQ, UserIdentityRQ

__all__ = ["Server"]

log = logging.getLogger("stellarpacs.server")


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
    ``server.port`` is the bound port (useful with port 0 in tests), ``server.tls_port``
    the TLS listener's when ``[tls]`` has a certificate (PS3.15 B.12, B.13).
    ``auditor`` records the association events (accepted, rejected, released, aborted).
    """

    def __init__(
        self,
        config: Config,
        services: Iterable[ServiceHandler] | None = None,
        *,
        auditor: Auditor | None = None,
    ) -> None:
        self.config = config
        self.auditor = auditor if auditor is not None else Auditor()
        self.services: list[ServiceHandler] = list(services) if services is not None else []
        if not any(isinstance(s, VerificationService) for s in self.services):
            self.services.insert(0, VerificationService())
        self._dispatch: dict[type[Message], ServiceHandler] = {
            request: service for service in self.services for request in service.requests
        }
        self.policy = acceptor_policy(config, self.services)
        self._server: asyncio.Server | None = None
        self._tls_server: TLSListener | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._sessions: set[_Session] = set()
        #: Sessions not associated yet, oldest first (``max_pending_connections``).
        self._pending: dict[_Session, None] = {}
        #: Pending connections closed to make room, and those not yet logged.
        self.pending_dropped = 0
        self._unlogged_drops = 0
        self._drop_logged_at = -1.0
        self.associations: set[Association] = set()
        #: Argon2id and JWT checks run here, off the loop; two bound their memory (19 MiB each).
        self._identity_pool: ThreadPoolExecutor | None = None

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
                self._new_session,
                address, self.config.port, reuse_address=True, backlog=128, start_serving=False,
            )  # fmt: skip
        if settings.enabled:
            listener = TLSListener(
                settings.server_context(), self.config.artim_timeout,
                self._new_session, forget_protocol,
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
        if self._identity_pool is not None:
            self._identity_pool.shutdown(wait=False, cancel_futures=True)
            self._identity_pool = None
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
        remote = access.remote_of(self.config, rq)
        identity = rq.user_information.user_identity
        check_host = remote is not None and remote.check_host
        unknown = remote is None and not self.config.accept_unknown_calling_ae
        if not unknown and (isinstance(identity, UserIdentityRQ) or check_host):
            # An unknown AE is refused at once: no lookup or Argon2id spent on it.
            self._track(self._admit_later(session, rq, identity, check_host))
            return
        self._answer(session, rq, access.decide(self.config, rq, session.protocol.peer[0]))

    def _track(self, coroutine: Coroutine[None, None, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _admit_later(
        self, session: _Session, rq: AAssociateRQ, identity: object, check_host: bool
    ) -> None:
        """The access rules that need a name lookup or an identity check, then the answer.

        The connection waits in Sta3 meanwhile (PS3.8 9.2); if the peer aborted
        or closed by then there is nothing to answer.
        """
        peer = session.protocol.peer[0]
        try:
            async with asyncio.timeout(self.config.artim_timeout):
                addresses = await self._addresses(rq) if check_host else ()
                verdict = (
                    await self._verify(identity) if isinstance(identity, UserIdentityRQ) else None
                )
            decision = access.decide(self.config, rq, peer, addresses, verdict)
        except TimeoutError:
            rejection = Admission(rejection=RejectReason.NO_REASON_GIVEN)
            decision = access.Decision(rejection, reason="access check timed out")
        if session.connection.state is State.STA3 and not session.protocol.closed.done():
            self._answer(session, rq, decision)
            session.protocol.pump()  # outside data_received, nothing else sends the answer

    async def _addresses(self, rq: AAssociateRQ) -> tuple[str, ...]:
        """The addresses of the calling AE's configured host, looked up now (names move)."""
        remote = access.remote_of(self.config, rq)
        assert remote is not None
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                remote.host, None, type=socket.SOCK_STREAM
            )
        except OSError as error:
            log.warning("cannot resolve %s for check_host: %s", remote.host, printable(error))
            return ()
        return tuple(str(info[4][0]) for info in infos)

    async def _verify(self, identity: UserIdentityRQ) -> access.IdentityVerdict:
        if self._identity_pool is None:
            self._identity_pool = ThreadPoolExecutor(2, thread_name_prefix="identity")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._identity_pool, access.verify_identity, self.config, identity
        )

    def _answer(self, session: _Session, rq: AAssociateRQ, decision: access.Decision) -> None:
        """Negotiate with the access decision and commit the AC or RJ (PS3.8 9.2)."""
        at_capacity = len(self.associations) >= self.config.max_associations
        answer, contexts = negotiate(
            rq, self.policy, at_capacity=at_capacity, admission=decision.admission
        )
        peer = session.protocol.peer
        if isinstance(answer, AAssociateRJ):
            session.logged = True
            session.connection.reject(answer)
            log.warning(
                "association rejected: %s -> %s from %s:%s, result %d source %d reason %d%s",
                printable(rq.calling_ae_title), printable(rq.called_ae_title), *peer,
                answer.result, answer.source, answer.reason,
                f" ({decision.reason})" if decision.reason else "",
            )  # fmt: skip
            audit_rejected(self.auditor, rq, answer, peer)
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
        association.user = decision.user
        association.services = decision.admission.services
        association.attach(session.protocol)
        session.association = association
        self._pending.pop(session, None)
        session.connection.accept(answer)
        self.associations.add(association)
        if log.isEnabledFor(logging.INFO):  # naming the contexts costs more than the echo
            user = decision.user
            log.info(
                "association opened: %s -> %s from %s:%s%s, contexts: %s",
                printable(rq.calling_ae_title), printable(rq.called_ae_title), *peer,
                f", user {printable(user.name)} (type {int(user.identity_type)})" if user else "",
                describe_contexts(contexts) or "none accepted",
            )  # fmt: skip
        audit_opened(self.auditor, association, peer)
        self._track(self._run(association))

    def _permitted(self, association: AssociationLike, context: int, command: Message) -> bool:
        """May this association use the service ``command`` belongs to (``[remotes] services``)?"""
        services = association.services if isinstance(association, Association) else None
        if services is None:
            return True
        syntax = association.contexts[context].abstract_syntax
        return access.request_service(command, syntax, self.policy.service_names) in services

    def _sink(
        self, association: AssociationLike, context: PresentationContext, command: Message
    ) -> DatasetSink | None:
        if not self._permitted(association, context.context_id, command):
            return Discard()
        service = self._dispatch.get(type(command))
        if service is None:
            return None
        sink = service.sink(association, context, command)
        return sink if sink is not None else BoundedSink(dataset_limit(self.config, command))

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
                admitted = await screen_request(association, incoming)
                if admitted is None:
                    continue
                if not self._permitted(association, admitted.context.context_id, admitted.command):
                    await refuse_request(association, admitted)
                    continue
                await service.handle(association, admitted)
        except AssociationAborted:
            pass
        except Exception:
            log.exception(
                "%s: handler failed; aborting association", printable(association.calling_ae_title)
            )
            association.abort()
        finally:
            self.associations.discard(association)
            log_end(association, time.monotonic() - started)
            audit_end(self.auditor, association, time.monotonic() - started)
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
