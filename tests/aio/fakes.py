"""An association in memory for handler tests: satisfies :class:`AssociationLike`.

It keeps what a handler sends and receives nothing, so an SCP handler can
be driven without a server, a socket or a ``type: ignore``.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable

from stellarpacs.aio.protocols import SinkFactory
from stellarpacs.dimse.commands import Message
from stellarpacs.dimse.events import Incoming
from stellarpacs.errors import LocalProtocolError
from stellarpacs.ul.negotiation import PresentationContext

__all__ = ["RecordingAssociation"]


class RecordingAssociation:
    """Keeps every message sent as (context ID, message, data set)."""

    def __init__(
        self,
        calling_ae_title: str = "SCU",
        *,
        called_ae_title: str = "STELLARPACS",
        contexts: Iterable[PresentationContext] = (),
    ) -> None:
        self.calling_ae_title = calling_ae_title
        self.called_ae_title = called_ae_title
        self.contexts = {c.context_id: c for c in contexts}
        self.cancelled: set[int] = set()
        self.is_established = True
        self.sink_factory: SinkFactory | None = None
        self.sent: list[tuple[int, Message, bytes | None]] = []
        self._message_id = 0

    @property
    def messages(self) -> list[Message]:
        """The messages sent, in order."""
        return [message for _, message, _ in self.sent]

    def next_message_id(self) -> int:
        self._message_id += 1
        return self._message_id

    def context_for(
        self, abstract_syntax: str, transfer_syntax: str | None = None
    ) -> PresentationContext:
        for context in self.contexts.values():
            if context.abstract_syntax == abstract_syntax and transfer_syntax in (
                None,
                context.transfer_syntax,
            ):
                return context
        raise LocalProtocolError(f"no accepted presentation context for {abstract_syntax}")

    async def send(self, context_id: int, message: Message, dataset: bytes | None = None) -> None:
        self.sent.append((context_id, message, dataset))

    async def send_stream(
        self, context_id: int, message: Message, chunks: AsyncIterable[bytes] | Iterable[bytes]
    ) -> None:
        if isinstance(chunks, AsyncIterable):
            data = b"".join([chunk async for chunk in chunks])
        else:
            data = b"".join(chunks)
        await self.send(context_id, message, data)

    async def receive(self) -> Incoming | None:
        return None  # nothing arrives: as if the peer had released

    def abort(self) -> None:
        self.is_established = False
