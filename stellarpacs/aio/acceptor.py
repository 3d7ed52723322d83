"""What the acceptor does around each association: its policy, refusals and log lines.

The pieces of :class:`~stellarpacs.aio.server.Server` that need no state of
their own: the negotiation policy built from the services' declarations,
the answers to requests that never reach a service (screened by
:mod:`stellarpacs.aio.guard`, or for a service the calling AE may not use),
and the lines that open and close an association in the log.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from stellarpacs import access
from stellarpacs.aio.association import Association
from stellarpacs.aio.guard import screen
from stellarpacs.aio.handler import ServiceHandler
from stellarpacs.aio.transport import ULProtocol
from stellarpacs.config import Config
from stellarpacs.dimse.events import Incoming
from stellarpacs.dimse.refusal import refusal
from stellarpacs.dimse.status import Status
from stellarpacs.logtext import printable
from stellarpacs.uids import EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN, name_of
from stellarpacs.ul.negotiation import AcceptorPolicy, PresentationContext, Role

__all__ = [
    "Discard",
    "acceptor_policy",
    "describe_contexts",
    "forget_protocol",
    "log_end",
    "refuse_request",
    "screen_request",
]

log = logging.getLogger("stellarpacs.server")


def describe_contexts(contexts: Mapping[int, PresentationContext], shown: int = 4) -> str:
    """A short list for the log: the first few contexts and how many more."""
    names = [
        f"{name_of(c.abstract_syntax)}/{name_of(c.transfer_syntax)}" for c in contexts.values()
    ]
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def acceptor_policy(config: Config, services: Iterable[ServiceHandler]) -> AcceptorPolicy:
    """The negotiation policy the services declare (compute, then commit: PS3.8 7.1.1)."""
    syntaxes: dict[str, tuple[str, ...]] = {}
    roles: dict[str, Role] = {}
    for service in services:
        syntaxes.update(service.abstract_syntaxes)
        roles.update(service.roles)
    names, scp_roles = access.service_names(syntaxes)
    return AcceptorPolicy(
        ae_title=config.ae_title,
        abstract_syntaxes=MappingProxyType(syntaxes),
        accept_any_called_ae=config.accept_any_called_ae,
        max_pdu_length=config.max_pdu_length,
        roles=MappingProxyType(roles),
        scp_role_preference=(EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN),
        service_names=MappingProxyType(names),
        scp_role_services=MappingProxyType(scp_roles),
    )


class Discard:
    """Where the data set of a refused C-STORE goes: nowhere, without being held."""

    def write(self, data: bytes) -> None:
        pass

    def abandon(self) -> None:
        pass


def forget_protocol(protocol: asyncio.Protocol) -> None:
    """A TLS connection refused in its handshake: its session never started, drop it."""
    assert isinstance(protocol, ULProtocol)
    if not protocol.closed.done():
        protocol.closed.set_result(None)  # _Session's callback discards it


async def screen_request(association: Association, incoming: Incoming) -> Incoming | None:
    """What the handler gets, or None once a refusal was sent (see :mod:`.guard`)."""
    incoming, refusal = screen(incoming)
    if refusal is None:
        return incoming
    log.warning(
        "%s: %s refused with 0x%04X: %s",
        printable(association.calling_ae_title), type(incoming.command).__name__,
        refusal.status, refusal.reason,
    )  # fmt: skip
    await association.send(incoming.context.context_id, refusal.response)
    return None


async def refuse_request(association: Association, incoming: Incoming) -> None:
    """Answer a request for a service this AE may not use: 0124, refused: not authorized.

    PS3.7 Annex C's general failure status for exactly this; it is a failure
    to every SCU, where A7xx (out of resources) would invite a retry and
    Cxxx would blame the data set.
    """
    command = incoming.command
    log.warning(
        "%s: %s refused, service not allowed for this AE (0124)",
        printable(association.calling_ae_title), type(command).__name__,
    )  # fmt: skip
    response = refusal(command, Status.NOT_AUTHORIZED, "not authorized for this AE")
    if response is not None:
        await association.send(incoming.context.context_id, response)


def log_end(association: Association, duration: float) -> None:
    log.info(
        "association ended: %s -> %s from %s:%s, %s after %.3f s, %d requests",
        printable(association.calling_ae_title), printable(association.called_ae_title),
        *association.peer, printable(association.end_reason or "closed"), duration,
        association.stats.messages_in,
    )  # fmt: skip
