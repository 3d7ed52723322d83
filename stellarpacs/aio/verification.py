"""Verification SOP Class SCP (PS3.4 Annex A): answers C-ECHO with Success.

The 1.3 statement accepts Verification with Implicit VR Little Endian only
(3.1.3.1.4), so that is the one transfer syntax offered here.

It lives in ``aio`` because it needs nothing above the association: the
:class:`~stellarpacs.aio.server.Server` puts one first among its handlers
unless it is given one, so ``Server(config)`` serves Verification without the
server importing :mod:`stellarpacs.services`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from stellarpacs.aio.protocols import AssociationLike
from stellarpacs.dimse.commands import CEchoRQ, CEchoRSP, Message
from stellarpacs.dimse.events import DatasetSink, Incoming
from stellarpacs.uids import IMPLICIT_VR_LITTLE_ENDIAN, VERIFICATION
from stellarpacs.ul.negotiation import PresentationContext, Role

__all__ = ["VerificationService"]


class VerificationService:
    """C-ECHO SCP."""

    abstract_syntaxes: Mapping[str, tuple[str, ...]] = MappingProxyType(
        {VERIFICATION: (IMPLICIT_VR_LITTLE_ENDIAN,)}
    )
    roles: Mapping[str, Role] = MappingProxyType({})
    requests: tuple[type[Message], ...] = (CEchoRQ,)

    def sink(
        self, association: AssociationLike, context: PresentationContext, command: Message
    ) -> DatasetSink | None:
        return None

    async def handle(self, association: AssociationLike, incoming: Incoming) -> None:
        request = incoming.command
        assert isinstance(request, CEchoRQ)
        response = CEchoRSP(
            message_id_being_responded_to=request.message_id,
            status=0x0000,
            affected_sop_class_uid=request.affected_sop_class_uid,
        )
        await association.send(incoming.context.context_id, response)
