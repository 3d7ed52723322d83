"""The asyncio pump between a TCP transport and a sans-I/O :class:`Connection`.

It carries out what the core asks for and nothing else: bytes read are fed
in, bytes to send are written, events are handed to the owner's callback,
one ``loop.call_at`` is armed for the earliest deadline (ARTIM, or the idle
limit of an established association), and the transport is closed when the
core wants it closed.  Reading pauses while the owner has too much queued
(``pause``/``resume``), writing waits in :meth:`drain` while the transport's
buffer is above its high-water mark.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import cast

from stellarpacs.ul.connection import Connection, ConnectionEvent
from stellarpacs.ul.fsm import State

__all__ = ["ULProtocol"]


class ULProtocol(asyncio.Protocol):
    """One TCP connection driving one upper layer connection."""

    def __init__(
        self,
        connection: Connection,
        on_event: Callable[[ConnectionEvent], None],
        *,
        idle_timeout: float = 0.0,
    ) -> None:
        self.connection = connection
        self.on_event = on_event
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._idle_timeout = idle_timeout
        self._last_activity = self._loop.time()
        self._can_write = asyncio.Event()
        self._can_write.set()
        self.closed: asyncio.Future[None] = self._loop.create_future()
        self.peer: tuple[str, int] = ("", 0)
        self.idle_expired = False
        #: True once ARTIM expired (Evt18): the peer was too slow to associate or to close.
        self.artim_expired = False
        #: Called instead of a bare A-ABORT when the idle limit passes.
        self.on_idle: Callable[[], None] | None = None
        #: Called once the transport is gone, after the core saw Evt17.
        self.on_lost: Callable[[], None] | None = None

    # --- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # Without it every small PDU waits ~40 ms for the peer's delayed ACK.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer = (str(peer[0]), int(peer[1]))
        if not self.connection.requestor:
            self.connection.connection_made(self._loop.time())
        self.pump()

    def data_received(self, data: bytes) -> None:
        self._last_activity = now = self._loop.time()
        self.connection.receive_data(data, now)
        self.pump()

    def eof_received(self) -> bool | None:
        return None  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._can_write.set()
        if self.connection.state is not State.STA1:
            self.connection.receive_data(b"", self._loop.time())
            self.pump()
        self._cancel_timer()
        if self.on_lost is not None:
            self.on_lost()
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    # --- driving -------------------------------------------------------------------

    def pump(self) -> None:
        """Write what the core produced, deliver its events, honour its wishes."""
        conn = self.connection
        while True:
            out = conn.data_to_send()
            if out and self._transport is not None:
                self._transport.write(out)
            event = conn.next_event()
            if event is None:
                break
            self.on_event(event)
        if conn.wants_close and self._transport is not None:
            self._transport.close()
        self._arm_timer()

    async def drain(self) -> None:
        """Wait until the transport's write buffer is below its high-water mark."""
        if not self._can_write.is_set():
            await self._can_write.wait()

    def pause(self) -> None:
        """Stop reading from the transport (the owner's queue is full)."""
        if self._transport is not None:
            self._transport.pause_reading()

    def resume(self) -> None:
        """Read again."""
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()

    def close(self) -> None:
        """Close the transport once written bytes are flushed (after an abort, or a release)."""
        if self._transport is not None:
            self._transport.close()

    def reset(self) -> None:
        """Drop the connection now, discarding unsent bytes (a peer that stopped reading)."""
        if self._transport is not None:
            self._transport.abort()

    # --- the one timer ---------------------------------------------------------------

    def _deadline(self) -> float | None:
        deadline = self.connection.next_deadline()
        if self._idle_timeout > 0 and self.connection.state is State.STA6:
            idle = self._last_activity + self._idle_timeout
            deadline = idle if deadline is None else min(deadline, idle)
        return deadline

    def _arm_timer(self) -> None:
        deadline = self._deadline()
        if deadline is None:
            self._cancel_timer()
            return
        if self._timer_at is not None and self._timer_at <= deadline:
            return  # fires no later than needed; _fire re-arms (no handle per PDU)
        self._cancel_timer()
        self._timer = self._loop.call_at(deadline, self._fire)
        self._timer_at = deadline

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._timer_at = None

    def _fire(self) -> None:
        self._timer = None
        self._timer_at = None
        now = self._loop.time()
        conn = self.connection
        if (
            self._idle_timeout > 0
            and conn.state is State.STA6
            and now >= self._last_activity + self._idle_timeout
        ):
            self.idle_expired = True
            if self.on_idle is not None:
                self.on_idle()
            else:
                conn.abort()
        else:
            deadline = conn.next_deadline()
            if deadline is not None and now >= deadline:
                self.artim_expired = True
            conn.handle_timeout(now)
        self.pump()
