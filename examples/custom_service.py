"""A custom service class provider: a Verification SCP that counts C-ECHOs per calling AE.

A service declares what it serves (abstract syntax -> transfer syntaxes) and
which request classes it answers; the Server builds its negotiation policy
from those declarations and dispatches each request to the one service that
answers its class (an intervention handler, PS3.7 9).  The program serves on
a free port, echoes from two calling AEs and prints the counts.

    python examples/custom_service.py
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping
from types import MappingProxyType

from stellarpacs import Config, Server, connect
from stellarpacs.aio.handler import ServiceHandler
from stellarpacs.aio.protocols import AssociationLike
from stellarpacs.dimse.commands import CEchoRQ, CEchoRSP, Message
from stellarpacs.dimse.events import DatasetSink, Incoming
from stellarpacs.uids import IMPLICIT_VR_LITTLE_ENDIAN, VERIFICATION
from stellarpacs.ul.negotiation import PresentationContext, Role


class CountingEcho:
    """C-ECHO SCP (PS3.4 A) that remembers who asked; satisfies the ServiceHandler protocol."""

    abstract_syntaxes: Mapping[str, tuple[str, ...]] = MappingProxyType(
        {VERIFICATION: (IMPLICIT_VR_LITTLE_ENDIAN,)}
    )
    roles: Mapping[str, Role] = MappingProxyType({})  # no SCP/SCU role selection
    requests: tuple[type[Message], ...] = (CEchoRQ,)

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def sink(
        self, association: AssociationLike, context: PresentationContext, command: Message
    ) -> DatasetSink | None:
        return None  # C-ECHO carries no data set

    async def handle(self, association: AssociationLike, incoming: Incoming) -> None:
        request = incoming.command
        assert isinstance(request, CEchoRQ)  # the Server dispatches by request class
        self.counts[association.calling_ae_title] += 1
        response = CEchoRSP(
            message_id_being_responded_to=request.message_id,
            status=0x0000,
            affected_sop_class_uid=request.affected_sop_class_uid,
        )
        await association.send(incoming.context.context_id, response)


async def main() -> None:
    counter = CountingEcho()
    service: ServiceHandler = counter  # mypy checks the protocol here
    config = Config(host="127.0.0.1", port=0, ae_title="COUNTER")
    # The Server puts its built-in Verification SCP first when no VerificationService
    # is given; a request class goes to the last service declaring it: ours.
    async with Server(config, [service]) as server:  # listening from here on
        for calling_ae, echoes in (("MODALITY1", 3), ("WORKSTATION", 1)):
            async with await connect(
                "127.0.0.1", server.port, called_ae="COUNTER", calling_ae=calling_ae
            ) as association:
                for _ in range(echoes):
                    await association.echo()
    for calling_ae, count in sorted(counter.counts.items()):
        print(f"{calling_ae}: {count} C-ECHO")


if __name__ == "__main__":
    asyncio.run(main())
