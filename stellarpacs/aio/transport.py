"""The asyncio pump between a TCP transport and a sans-I/O machine.

The machine is the upper layer :class:`~stellarpacs.ul.connection.Connection`
until an association is established, then the
:class:`~stellarpacs.dimse.association.DIMSEAssociation` on top of it
(:meth:`ULProtocol.drive`).  The pump carries out what the machine asks for
and nothing else: bytes read are fed in with the time, bytes to send are
written, events are handed to the owner's callback, one ``loop.call_at`` is
armed for the machine's next deadline, and the transport is closed when the
machine wants it closed.  Reading pauses while the owner has too much queued
(``pause``/``resume``), writing waits in :meth:`drain` while the transport's
buffer is above its high-water mark.

A wire tap (:func:`set_tap_factory`, for traces and pcap files) sees every
chunk of bytes read and written with the wall-clock time; when none is set
the cost is one attribute test per chunk.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from typing import Protocol, TypeVar, cast

from stellarpacs.ul.connection import Connection, ConnectionEvent
from stellarpacs.ul.fsm import State

__all__ = ["Machine", "Tap", "TapFactory", "ULProtocol", "set_tap_factory"]

E_co = TypeVar("E_co", covariant=True)
E = TypeVar("E")


class Machine(Protocol[E_co]):
    """What the pump drives: bytes and time in, bytes, events and one deadline out."""

    @property
    def wants_close(self) -> bool: ...

    def receive_data(self, data: bytes, now: float) -> None: ...

    def data_to_send(self) -> bytes: ...

    def next_event(self) -> E_co | None: ...

    def next_deadline(self) -> float | None: ...

    def handle_timeout(self, now: float) -> None: ...


class Tap(Protocol):
    """Sees the bytes of one connection: ``incoming`` or written, at wall-clock ``when``."""

    def __call__(self, incoming: bool, data: bytes, when: float) -> None: ...


#: Called once per connection with (local address, peer address); returns its tap.
TapFactory = Callable[[tuple[str, int], tuple[str, int]], Tap]

_tap_factory: TapFactory | None = None


def set_tap_factory(factory: TapFactory | None) -> TapFactory | None:
    """Tap every connection made from now on (None: stop); returns the previous factory."""
    global _tap_factory
    previous, _tap_factory = _tap_factory, factory
    return previous


def _address(info: object) -> tuple[str, int]:
    if isinstance(info, tuple) and len(info) >= 2:
        return (str(info[0]), int(info[1]))
    return ("", 0)


class ULProtocol(asyncio.Protocol):
    """One TCP connection driving one upper layer connection (and its association)."""

    def __init__(self, connection: Connection, on_event: Callable[[ConnectionEvent], None]) -> None:
        self.connection = connection
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._can_write = asyncio.Event()
        self._can_write.set()
        self._machine: Machine[object] = connection
        self._deliver: Callable[[], bool] = lambda: False
        upper_layer: Machine[ConnectionEvent] = connection  # mypy infers E from the annotation
        self.drive(upper_layer, on_event)
        self.closed: asyncio.Future[None] = self._loop.create_future()
        self.peer: tuple[str, int] = ("", 0)
        #: True once ARTIM expired (Evt18): the peer was too slow to associate or to close.
        self.artim_expired = False
        #: Called once the transport is gone, after the machine saw Evt17.
        self.on_lost: Callable[[], None] | None = None
        self._tap: Tap | None = None

    def drive(self, machine: Machine[E], on_event: Callable[[E], None]) -> None:
        """Pump ``machine`` from now on, its events going to ``on_event``."""

        def deliver() -> bool:
            event = machine.next_event()
            if event is None:
                return False
            on_event(event)
            return True

        self._machine = machine
        self._deliver = deliver

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
        if _tap_factory is not None:
            self._tap = _tap_factory(_address(transport.get_extra_info("sockname")), self.peer)
        if not self.connection.requestor:
            self.connection.connection_made(self._loop.time())
        self.pump()

    def data_received(self, data: bytes) -> None:
        if self._tap is not None:
            self._tap(True, data, time.time())
        self._machine.receive_data(data, self._loop.time())
        self.pump()

    def eof_received(self) -> bool | None:
        return None  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._can_write.set()
        if self.connection.state is not State.STA1:
            self._machine.receive_data(b"", self._loop.time())
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
        """Write what the machine produced, deliver its events, honour its wishes."""
        while True:
            out = self._machine.data_to_send()  # re-read: an event may switch machines
            if out and self._transport is not None:
                self._transport.write(out)
                if self._tap is not None:
                    self._tap(False, out, time.time())
            if not self._deliver():
                break
        if self._machine.wants_close and self._transport is not None:
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

    def _arm_timer(self) -> None:
        deadline = self._machine.next_deadline()
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
        artim = self.connection.artim_deadline
        if artim is not None and now >= artim:
            self.artim_expired = True
        self._machine.handle_timeout(now)
        self.pump()
