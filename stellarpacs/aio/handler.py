"""What the server hands requests to: the service handler interface.

A service handler is an *intervention handler*: exactly one answers each
request class (PS3.7 9, 10).  It declares the abstract syntaxes it serves and
the transfer syntaxes it accepts for each, in preference order; the server
builds its negotiation policy from these declarations, so what is accepted at
association time is exactly what can be served.

The interface lives here, below the service class providers of
:mod:`stellarpacs.services`, so the server depends on it alone and the
services (which may import ``aio``) implement it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from stellarpacs.aio.protocols import AssociationLike
from stellarpacs.dimse.commands import Message
from stellarpacs.dimse.events import DatasetSink, Incoming
from stellarpacs.ul.negotiation import PresentationContext, Role

__all__ = ["ServiceHandler"]


class ServiceHandler(Protocol):
    """A service class provider (SCP) the server dispatches requests to."""

    @property
    def abstract_syntaxes(self) -> Mapping[str, tuple[str, ...]]:
        """Served abstract syntax -> accepted transfer syntaxes, preferred first."""
        ...

    @property
    def roles(self) -> Mapping[str, Role]:
        """Roles a requestor may take by role selection, per abstract syntax."""
        ...

    @property
    def requests(self) -> tuple[type[Message], ...]:
        """The request message classes this service answers."""
        ...

    def sink(
        self, association: AssociationLike, context: PresentationContext, command: Message
    ) -> DatasetSink | None:
        """Where the data set of ``command`` should go as it arrives; None: in memory."""
        ...

    async def handle(self, association: AssociationLike, incoming: Incoming) -> None:
        """Answer one request; responses are sent through ``association``."""
        ...
