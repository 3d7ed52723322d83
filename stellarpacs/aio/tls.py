"""TLS on the wire (PS3.15 B.12, B.13): the acceptor's listener and the contexts for remotes.

The TLS listener does not hand its ``ssl`` context to ``create_server``: there
a failed handshake is invisible to the application (asyncio and uvloop log it
only in debug mode and never call the protocol), so a refused peer would leave
no trace.  :class:`TLSListener` accepts the sockets itself and runs each
handshake with ``loop.connect_accepted_socket``, bounded by ARTIM (PS3.8
9.1.5 bounds how long a connection may take to associate).  A failure is one
WARNING line with the peer and the reason, and the socket is closed; on
success the DICOM session's ``connection_made`` runs with the TLS transport
and its own ARTIM starts.  (``start_tls`` on an accepted transport is no
way round it: uvloop delivers the ClientHello to the old protocol.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable

from stellarpacs import tls
from stellarpacs.config import Config, RemoteAE
from stellarpacs.logtext import printable

__all__ = ["TLSListener", "remote_context"]

log = logging.getLogger("stellarpacs.server")


class TLSListener:
    """A listening socket whose connections are served once their TLS handshake is done.

    ``protocol_factory`` makes a connection's protocol; ``refused`` is told of
    one whose handshake failed (its ``connection_made`` never ran).  The
    methods the server uses mirror :class:`asyncio.Server`'s.
    """

    def __init__(
        self,
        context: ssl.SSLContext,
        timeout: float,
        protocol_factory: Callable[[], asyncio.Protocol],
        refused: Callable[[asyncio.Protocol], None],
    ) -> None:
        self.context = context
        self.timeout = timeout
        self.protocol_factory = protocol_factory
        self.refused = refused
        self.sockets: list[socket.socket] = []
        self._accepting: asyncio.Task[None] | None = None
        self._handshakes: set[asyncio.Task[None]] = set()
        self._closed = asyncio.get_running_loop().create_future()

    async def bind(self, host: str, port: int, backlog: int = 128) -> None:
        """Bind and listen on the first address ``host`` resolves to; OSError when taken."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(backlog)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.sockets = [sock]

    async def start_serving(self) -> None:
        if self._accepting is None and self.sockets:
            self._accepting = asyncio.get_running_loop().create_task(self._accept())

    def is_serving(self) -> bool:
        return self._accepting is not None and not self._accepting.done()

    async def serve_forever(self) -> None:
        await self.start_serving()
        await asyncio.shield(self._closed)

    def close(self) -> None:
        """Stop accepting and abandon the handshakes in progress."""
        for task in (self._accepting, *self._handshakes):
            if task is not None:
                task.cancel()
        for sock in self.sockets:
            sock.close()
        if not self._closed.done():
            self._closed.set_result(None)

    async def wait_closed(self) -> None:
        pending = {t for t in (self._accepting, *self._handshakes) if t is not None}
        if pending:
            await asyncio.wait(pending, timeout=2.0)

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        listening = self.sockets[0]
        while True:
            try:
                sock, _ = await loop.sock_accept(listening)
            except OSError as error:  # e.g. EMFILE: the next accept may work
                log.warning("TLS listener cannot accept: %s", error)
                await asyncio.sleep(0.1)
                continue
            task = loop.create_task(self._handshake(sock))
            self._handshakes.add(task)
            task.add_done_callback(self._handshakes.discard)

    async def _handshake(self, sock: socket.socket) -> None:
        peer: tuple[str, int] = ("", 0)
        with contextlib.suppress(OSError):
            peer = sock.getpeername()[:2]
        made: list[asyncio.Protocol] = []

        def factory() -> asyncio.Protocol:
            made.append(self.protocol_factory())
            return made[-1]

        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeout + 1.0):
                transport, _ = await loop.connect_accepted_socket(
                    factory, sock, ssl=self.context, ssl_handshake_timeout=self.timeout
                )
        except asyncio.CancelledError:  # the server closes
            self._drop(sock, made)
            raise
        except (OSError, EOFError) as error:  # ssl.SSLError is an OSError; so is TimeoutError
            self._drop(sock, made)
            log.warning(
                "TLS handshake with %s:%s failed: %s; connection closed",
                *peer, printable(tls.describe_handshake_error(error)),
            )  # fmt: skip
            return
        _log_session(peer, transport)

    def _drop(self, sock: socket.socket, made: list[asyncio.Protocol]) -> None:
        sock.close()
        for protocol in made:
            self.refused(protocol)


def _log_session(peer: tuple[str, int], secure: asyncio.BaseTransport) -> None:
    ssl_object = secure.get_extra_info("ssl_object")
    if ssl_object is None or not log.isEnabledFor(logging.DEBUG):
        return
    subject = (secure.get_extra_info("peercert") or {}).get("subject", ())
    log.debug(
        "TLS with %s:%s: %s %s, client certificate %s",
        *peer, ssl_object.version(), ssl_object.cipher()[0], printable(str(subject) or "none"),
    )  # fmt: skip


def remote_context(config: Config, remote: RemoteAE) -> ssl.SSLContext | None:
    """The client context for a ``tls = true`` remote (None for a plain one); OSError
    when its files became unusable since the configuration was loaded.

    The remote's own files win; else ``[tls]``'s CA file and our certificate
    (when set) serve as the trust anchors and the client certificate.
    """
    if not remote.tls:
        return None
    settings = config.tls
    certificate = remote.tls_certificate or settings.certificate
    private_key = remote.tls_private_key if remote.tls_certificate else settings.private_key
    try:
        return tls.client_context(
            settings.profile, remote.tls_ca_file or settings.ca_file, certificate, private_key
        )
    except tls.TLSFileError as error:  # checked at load, so changed since: cannot connect
        raise OSError(f"TLS for remotes.{remote.ae_title}: {error}") from None
