"""Faults injected into an in-process SCP's C-ECHO and C-STORE answers, for testing SCUs.

A small in-process subset of the scenario faults of the issue's emulator:
``status`` (answer with a chosen DIMSE status; a C-STORE so answered is not
stored), ``delay`` (answer, after a wait) and ``abort`` (A-ABORT instead of
an answer, PS3.8 7.3.1).  Occurrences are counted from 1 across the
server's life, per kind of request; ``nth = 0`` hits every one.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from stellarpacs.aio.handler import ServiceHandler
from stellarpacs.aio.protocols import AssociationLike
from stellarpacs.dimse.commands import CEchoRQ, CEchoRSP, CStoreRQ, CStoreRSP, Message
from stellarpacs.dimse.events import DatasetSink, Incoming
from stellarpacs.ul.negotiation import PresentationContext, Role

__all__ = ["ACTIONS", "WHEN", "Fault", "FaultyService"]

log = logging.getLogger("stellarpacs.testing")

#: The requests a fault may hit, and the message classes they are.
WHEN: Mapping[str, type[Message]] = {"C-ECHO": CEchoRQ, "C-STORE": CStoreRQ}
ACTIONS = frozenset({"status", "delay", "abort"})


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault: on the ``nth`` ``when`` (0: every one), do ``action``."""

    when: str
    action: str
    nth: int = 0
    status: int = 0xA700
    seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.when not in WHEN:
            raise ValueError(f"fault 'when' must be one of {sorted(WHEN)}, not {self.when!r}")
        if self.action not in ACTIONS:
            raise ValueError(f"fault action must be one of {sorted(ACTIONS)}, not {self.action!r}")
        if self.nth < 0 or not 0 <= self.status <= 0xFFFF or self.seconds < 0:
            raise ValueError(f"bad fault values: {self!r}")


class FaultyService:
    """Wraps a service handler; faults that hit a request replace or delay its answer."""

    def __init__(self, inner: ServiceHandler, faults: Iterable[Fault], counts: Counter[str]):
        self.inner = inner
        self.faults = [f for f in faults if WHEN[f.when] in inner.requests]
        self.counts = counts
        #: Each fault that fired: (when, occurrence, action).
        self.fired: list[tuple[str, int, str]] = []

    @property
    def abstract_syntaxes(self) -> Mapping[str, tuple[str, ...]]:
        return self.inner.abstract_syntaxes

    @property
    def roles(self) -> Mapping[str, Role]:
        return self.inner.roles

    @property
    def requests(self) -> tuple[type[Message], ...]:
        return self.inner.requests

    def sink(
        self, association: AssociationLike, context: PresentationContext, command: Message
    ) -> DatasetSink | None:
        return self.inner.sink(association, context, command)

    async def handle(self, association: AssociationLike, incoming: Incoming) -> None:
        when = next((w for w, cls in WHEN.items() if isinstance(incoming.command, cls)), None)
        if when is None:
            return await self.inner.handle(association, incoming)
        self.counts[when] += 1
        nth = self.counts[when]
        fault = next((f for f in self.faults if f.when == when and f.nth in (0, nth)), None)
        if fault is None:
            return await self.inner.handle(association, incoming)
        log.info("fault on %s #%d: %s", when, nth, fault.action)
        self.fired.append((when, nth, fault.action))
        if fault.action == "delay":
            await asyncio.sleep(fault.seconds)
            return await self.inner.handle(association, incoming)
        if incoming.sink is not None:
            incoming.sink.abandon()  # a C-STORE not answered Success is not stored
        if fault.action == "abort":
            association.abort()
            return None
        await association.send(incoming.context.context_id, _response(incoming.command, fault))
        return None


def _response(request: Message, fault: Fault) -> Message:
    if isinstance(request, CStoreRQ):
        return CStoreRSP(
            message_id_being_responded_to=request.message_id,
            status=fault.status,
            affected_sop_class_uid=request.affected_sop_class_uid,
            affected_sop_instance_uid=request.affected_sop_instance_uid,
        )
    assert isinstance(request, CEchoRQ)
    return CEchoRSP(
        message_id_being_responded_to=request.message_id,
        status=fault.status,
        affected_sop_class_uid=request.affected_sop_class_uid,
    )
