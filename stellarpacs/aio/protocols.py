"""What SCP handlers and SCU helpers may use of an association, as typing Protocols.

:class:`AssociationLike` is the association (either side): the services'
handlers, the storage SCU and the retrieve SCU are written against it, so a
test can hand them a small recording fake instead of a network connection.
:class:`ClientLike` is the client association (:class:`~stellarpacs.aio.client.ClientAssociation`)
as the SCU helpers under :mod:`stellarpacs.aio.scu` see it: they never import
the client module, which imports them.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, Self, TypeAlias

from stellarpacs.dimse.commands import Message
from stellarpacs.dimse.events import DatasetSink, Incoming
from stellarpacs.ul.negotiation import PresentationContext

if TYPE_CHECKING:
    from stellarpacs.aio.scu.retrieve import RetrieveStream

__all__ = ["AssociationLike", "ClientLike", "SinkFactory"]


class AssociationLike(Protocol):
    """An established association as handlers and SCU helpers use it (PS3.7 7)."""

    #: Asked when a command with a data set arrives; a C-GET swaps it for its own.
    sink_factory: SinkFactory | None

    @property
    def contexts(self) -> Mapping[int, PresentationContext]:
        """The accepted presentation contexts by ID."""
        ...

    @property
    def calling_ae_title(self) -> str: ...

    @property
    def called_ae_title(self) -> str: ...

    @property
    def cancelled(self) -> set[int]:
        """Message IDs of the peer's requests it asked to cancel (PS3.7 9.3.2.3)."""
        ...

    @property
    def is_established(self) -> bool: ...

    def next_message_id(self) -> int:
        """A Message ID no outstanding request uses (PS3.7 9.1.1.1)."""
        ...

    def context_for(
        self, abstract_syntax: str, transfer_syntax: str | None = None
    ) -> PresentationContext:
        """An accepted context for ``abstract_syntax``; LocalProtocolError when there is none."""
        ...

    async def send(
        self, context_id: int, message: Message, dataset: bytes | None = None
    ) -> None: ...

    async def send_stream(
        self, context_id: int, message: Message, chunks: AsyncIterable[bytes] | Iterable[bytes]
    ) -> None: ...

    async def receive(self) -> Incoming | None:
        """The next message; None once the peer released."""
        ...

    def abort(self) -> None: ...


SinkFactory: TypeAlias = Callable[
    [AssociationLike, PresentationContext, Message], DatasetSink | None
]
"""Where a received data set's fragments go, asked when its command arrives; None: memory."""


class ClientLike(Protocol):
    """The client association as the SCU helpers use it."""

    dimse_timeout: float
    #: The C-MOVE or C-GET whose final response has not been read yet.
    open_stream: RetrieveStream | None

    @property
    def association(self) -> AssociationLike: ...

    async def settle(self) -> None:
        """Cancel and drain a retrieve left before its final response."""
        ...

    async def request(
        self, context_id: int, message: Message, dataset: bytes | None = None
    ) -> Incoming:
        """Send a request and wait, within the DIMSE timeout, for the next message."""
        ...

    async def response(self) -> Incoming:
        """The next message from the peer, within the DIMSE timeout."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
