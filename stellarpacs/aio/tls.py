"""TLS on the wire (PS3.15 B.12, B.13): the acceptor's handshake and the contexts for remotes.

The TLS listener does not hand its ``ssl`` context to ``create_server``: there
a failed handshake is invisible to the application (asyncio and uvloop log it
only in debug mode and never call the protocol), so a refused peer would leave
no trace and a half-made session behind.  Instead each accepted connection
starts as a :class:`TLSHandshake`, which runs ``loop.start_tls`` bounded by
ARTIM (PS3.8 9.1.5 bounds how long a connection may take to associate).  A
failure is one WARNING line with the peer and the reason, and the connection
is closed; on success the DICOM session takes the TLS transport over, with any
bytes that came behind the handshake, and its own ARTIM starts.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import cast

from stellarpacs import tls
from stellarpacs.config import Config, RemoteAE
from stellarpacs.logtext import printable

__all__ = ["TLSHandshake", "remote_context"]

log = logging.getLogger("stellarpacs.server")


class TLSHandshake(asyncio.Protocol):
    """One connection to the TLS port until its handshake is done.

    ``attach`` is called with the TLS transport and returns the protocol that
    serves it from then on; ``tasks`` holds the handshake so that the server
    can cancel it when it closes.
    """

    def __init__(
        self,
        context: ssl.SSLContext,
        timeout: float,
        attach: Callable[[asyncio.Transport], asyncio.Protocol],
        tasks: set[asyncio.Task[None]],
    ) -> None:
        self.context = context
        self.timeout = timeout
        self.attach = attach
        self.tasks = tasks
        self.peer: tuple[str, int] = ("", 0)
        self._early = bytearray()  # application data read with the handshake's last record
        self._lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        raw = cast(asyncio.Transport, transport)  # uvloop's do not subclass asyncio's
        raw.pause_reading()  # the ClientHello is for start_tls, which resumes reading
        peer = raw.get_extra_info("peername")
        if peer:
            self.peer = (str(peer[0]), int(peer[1]))
        task = asyncio.get_running_loop().create_task(self._handshake(raw))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # Between the handshake and ``attach`` this object is the TLS transport's protocol.
    def data_received(self, data: bytes) -> None:
        self._early += data

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True

    async def _handshake(self, raw: asyncio.Transport) -> None:
        loop = asyncio.get_running_loop()
        try:
            secure = await loop.start_tls(
                raw, self, self.context, server_side=True, ssl_handshake_timeout=self.timeout
            )
        except (OSError, ssl.SSLError, EOFError) as error:
            raw.close()
            log.warning(
                "TLS handshake with %s:%s failed: %s; connection closed",
                *self.peer, printable(tls.describe_handshake_error(error)),
            )  # fmt: skip
            return
        if secure is None:  # the transport closed under us
            return
        self._hand_over(secure)

    def _hand_over(self, secure: asyncio.Transport) -> None:
        protocol = self.attach(secure)
        secure.set_protocol(protocol)
        protocol.connection_made(secure)
        if self._early:
            protocol.data_received(bytes(self._early))
            self._early.clear()
        if self._lost:
            protocol.connection_lost(None)
        else:
            _log_session(self.peer, secure)


def _log_session(peer: tuple[str, int], secure: asyncio.Transport) -> None:
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
